// Starts an in-process loomd on port 0 with a temp data dir, and gives tests
// tokens of each role.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "common/auth.h"
#include "common/json.h"
#include "orchestrator/daemon.h"
#include "orchestrator/schema.h"
#include "repos/workspace.h"
#include "tests/support/http_client.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_paths.h"

namespace loom::testing {

class DaemonFixture : public ::testing::Test {
 protected:
  // Extra "key=value" settings applied over the defaults.
  void StartDaemon(const std::vector<std::pair<std::string, std::string>>& settings = {}) {
    Config config(DaemonConfigSchema());
    ASSERT_TRUE(config.Set("data_dir", dir_.path(), "test").ok());
    ASSERT_TRUE(config.Set("listen", "127.0.0.1:0", "test").ok());
    for (const auto& [k, v] : settings) ASSERT_TRUE(config.Set(k, v, "test").ok()) << k;
    ASSERT_TRUE(MigrateDatabase(DatabasePath(dir_.path())).ok());
    auto tokens = TokenStore::Open(DatabasePath(dir_.path()));
    ASSERT_TRUE(tokens.ok());
    admin_ = *(*tokens)->Create(Role::kAdmin, "admin");
    engineer_ = *(*tokens)->Create(Role::kEngineer, "eng");
    reporter_ = *(*tokens)->Create(Role::kReporter, "rep");
    other_reporter_ = *(*tokens)->Create(Role::kReporter, "rep2");
    auto d = Daemon::Start(config);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    daemon_ = std::move(d).value();
  }

  void TearDown() override {
    if (daemon_) daemon_->Stop(std::chrono::milliseconds(100));
  }

  ClientResponse Call(const std::string& method, const std::string& target,
                      const std::string& token, const std::string& body = "",
                      std::map<std::string, std::string> headers = {}) {
    if (!token.empty()) headers["Authorization"] = "Bearer " + token;
    return HttpCall(daemon_->port(), method, target, body, headers);
  }

  // GET `target` as an engineer: the body as JSON (an empty object, and a failure,
  // unless the answer is 200 with JSON).
  Json Get(const std::string& target) {
    auto r = Call("GET", target, engineer_);
    EXPECT_EQ(r.status, 200) << target << ": " << r.body.substr(0, 300);
    return ParseJson(r.body).value_or(Json::object());
  }

  // A copy of examples/calc (without bytecode caches) as a new git repository in the
  // test's directory, registered as "calc" with its unittest command; its path.
  std::string RegisterCalc() {
    namespace fs = std::filesystem;
    std::string repo = dir_.path() + "/calc-origin";
    fs::copy(std::string(LOOM_SOURCE_DIR) + "/examples/calc", repo, fs::copy_options::recursive);
    fs::remove_all(repo + "/__pycache__");
    fs::remove_all(repo + "/tests/__pycache__");
    EXPECT_TRUE(repos::InitRepository(repo, "main", "initial").ok());
    Json body = {{"name", "calc"},
                 {"path", repo},
                 {"test_command", "python3 -m unittest discover -s tests -t ."}};
    auto r = Call("POST", "/v1/repos", admin_, DumpJson(body));
    EXPECT_EQ(r.status, 201) << r.body;
    return repo;
  }

  // The task made of feedback item `feedback_id`, once it has left queued, running
  // and verifying (an empty object, and a failure, after `limit`).
  Json WaitSettled(int64_t feedback_id, std::chrono::seconds limit = std::chrono::seconds(60)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      Json item = Get("/v1/feedback/" + std::to_string(feedback_id));
      if (item.contains("task_id") && item["task_id"].is_number_integer()) {
        Json task = Get("/v1/tasks/" + std::to_string(item["task_id"].get<int64_t>()));
        std::string state = task.value("state", "");
        if (state != "queued" && state != "running" && state != "verifying") return task;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "feedback " << feedback_id << " did not settle";
    return Json::object();
  }

  TempDir dir_;
  std::unique_ptr<Daemon> daemon_;
  std::string admin_, engineer_, reporter_, other_reporter_;
};

}  // namespace loom::testing
