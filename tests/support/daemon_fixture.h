// Starts an in-process loomd on port 0 with a temp data dir, and gives tests
// tokens of each role.
#pragma once

#include <gtest/gtest.h>

#include "common/auth.h"
#include "common/schema.h"
#include "orchestrator/daemon.h"
#include "tests/support/http_client.h"
#include "tests/support/temp_dir.h"

namespace loom::testing {

class DaemonFixture : public ::testing::Test {
 protected:
  // Extra "key=value" settings applied over the defaults.
  void StartDaemon(const std::vector<std::pair<std::string, std::string>>& settings = {}) {
    Config config(DaemonConfigSchema());
    ASSERT_TRUE(config.Set("data_dir", dir_.path(), "test").ok());
    ASSERT_TRUE(config.Set("listen", "127.0.0.1:0", "test").ok());
    for (const auto& [k, v] : settings) ASSERT_TRUE(config.Set(k, v, "test").ok()) << k;
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

  TempDir dir_;
  std::unique_ptr<Daemon> daemon_;
  std::string admin_, engineer_, reporter_, other_reporter_;
};

}  // namespace loom::testing
