// The orchestrator's stores on a fresh, migrated database in a temp dir, with
// the feedback store and a reporter token: where the task store, lifecycle and
// agent-loop tests start.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "common/auth.h"
#include "common/clock.h"
#include "feedback/intake.h"
#include "orchestrator/schema.h"
#include "orchestrator/stores.h"
#include "repos/workspace.h"
#include "tests/support/temp_dir.h"

namespace loom::testing {

class StoreFixture : public ::testing::Test {
 protected:
  // `clock` stamps the orchestrator's rows; REQUIRES: it outlives the fixture.
  void OpenStores(const Clock* clock = SystemClock::Default()) {
    std::string db = DatabasePath(dir_.path());
    ASSERT_TRUE(MigrateDatabase(db).ok());
    auto fb = feedback::Store::Open(db);
    ASSERT_TRUE(fb.ok()) << fb.status().ToString();
    feedback_ = std::move(*fb);
    auto s = OrchestratorStores::Open(db, clock);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    stores_ = std::move(*s);
    store_ = stores_.tasks.get();
    auto tokens = TokenStore::Open(db);
    ASSERT_TRUE(tokens.ok());
    auto token = (*tokens)->Create(Role::kReporter, "reporter");
    ASSERT_TRUE(token.ok());
    token_id_ = (*tokens)->Lookup(*token)->token_id;
  }

  // Registers a real repository named `name` under the temp dir: one file
  // (`file`, holding `content`), one commit on main. Returns its path.
  std::string RegisterRepo(const std::string& name, const std::string& test_command,
                           const std::string& file = "README",
                           const std::string& content = "readme\n") {
    std::string path = dir_.path() + "/" + name;
    std::filesystem::create_directories(path);
    std::ofstream(path + "/" + file) << content;
    EXPECT_TRUE(repos::InitRepository(path, "main", "initial").ok());
    repos::RepoRecord record;
    record.name = name;
    record.path = path;
    record.test_command = test_command;
    auto registered = stores_.repos->Register(record);
    EXPECT_TRUE(registered.ok()) << registered.status().ToString();
    return path;
  }

  TempDir dir_;
  std::unique_ptr<feedback::Store> feedback_;
  OrchestratorStores stores_;
  TaskStore* store_ = nullptr;
  int64_t token_id_ = 0;
};

}  // namespace loom::testing
