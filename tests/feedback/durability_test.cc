// Every submission answered 201 survives kill -9 of loomd at any moment.
//
// A client submits continuously (each submission with its own idempotency key,
// retried until acknowledged, as a well-behaved app would) while loomd is
// killed with SIGKILL and restarted several times. Afterwards every
// acknowledged id is in the database with its own title, and no submission is
// stored twice.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "common/auth.h"
#include "common/json.h"
#include "feedback/intake.h"
#include "orchestrator/schema.h"
#include "tests/support/http_client.h"
#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_paths.h"

namespace loom {
namespace {

TEST(DurabilityTest, AcknowledgedFeedbackSurvivesKillNine) {
  testing::TempDir dir;
  std::string token;
  {
    ASSERT_TRUE(MigrateDatabase(DatabasePath(dir.path())).ok());
    auto tokens = TokenStore::Open(DatabasePath(dir.path()));
    ASSERT_TRUE(tokens.ok());
    token = *(*tokens)->Create(Role::kReporter, "app");
  }
  uint16_t port = testing::FreePort();
  std::vector<std::string> argv = {std::string(LOOM_BIN_DIR) + "/loomd",
                                   "--data-dir",
                                   dir.path(),
                                   "--listen",
                                   "127.0.0.1:" + std::to_string(port),
                                   "--set",
                                   "feedback.rate_per_minute=0"};
  std::string log = dir.File("loomd.log");

  std::atomic<bool> stop{false};
  std::map<int, int64_t> acked;  // submission number -> id (client thread only until join)
  int attempts_failed = 0;
  std::thread client([&] {
    for (int n = 0; !stop; ++n) {
      std::string body = DumpJson({{"kind", "bug"},
                                   {"title", "report " + std::to_string(n)},
                                   {"body", "n=" + std::to_string(n)}});
      while (!stop) {  // retry with the same key until acknowledged
        auto r = testing::HttpCall(port, "POST", "/v1/feedback", body,
                                   {{"Authorization", "Bearer " + token},
                                    {"Idempotency-Key", "sub-" + std::to_string(n)}});
        if (r.status == 201 || r.status == 200) {
          acked[n] = ParseJson(r.body).value()["id"].get<int64_t>();
          break;
        }
        ++attempts_failed;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
  });

  std::mt19937 rng(12345);
  const int kKills = 5;
  for (int round = 0; round < kKills; ++round) {
    pid_t pid = testing::Spawn(argv, log);
    ASSERT_GT(pid, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(250 + rng() % 500));
    int status = testing::KillAndWait(pid, SIGKILL);
    ASSERT_TRUE(WIFSIGNALED(status)) << "loomd exited by itself; see " << log;
  }
  // A last, clean run lets the client finish its in-flight retry.
  pid_t pid = testing::Spawn(argv, log);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  stop = true;
  client.join();
  testing::KillAndWait(pid, SIGTERM);

  ASSERT_GT(acked.size(), 20u) << "the client barely got through; see " << log;
  EXPECT_GT(attempts_failed, 0) << "no submission was ever interrupted: the test proved nothing";

  auto store = feedback::Store::Open(DatabasePath(dir.path()));
  ASSERT_TRUE(store.ok());
  std::map<std::string, int> titles;
  feedback::ListQuery q;
  q.limit = 1000;
  while (true) {
    auto page = (*store)->List(q);
    ASSERT_TRUE(page.ok());
    if (page->empty()) break;
    for (const auto& it : *page) titles[it.title]++;
    q.after_id = page->back().id;
  }
  for (const auto& [n, id] : acked) {
    auto item = (*store)->Get(id);
    ASSERT_TRUE(item.ok()) << "acknowledged id " << id << " was lost";
    EXPECT_EQ(item->title, "report " + std::to_string(n));
  }
  for (const auto& [title, count] : titles) EXPECT_EQ(count, 1) << title << " stored twice";
}

// loomd's arguments for `dir` on a free port; the port is in `*port`.
std::vector<std::string> LoomdArgs(const std::string& dir, uint16_t* port) {
  *port = testing::FreePort();
  return {std::string(LOOM_BIN_DIR) + "/loomd", "--data-dir", dir,       "--listen",
          "127.0.0.1:" + std::to_string(*port), "--set",      "agents=0"};
}

// `loom_database_wal_lost_at_start`'s value in loomd's /metrics ("" when absent or
// loomd did not answer within a few seconds).
std::string WalLostMetric(uint16_t port) {
  for (int i = 0; i < 100; ++i) {
    auto r = testing::HttpCall(port, "GET", "/metrics");
    if (r.status == 200) {
      const std::string key = "loom_database_wal_lost_at_start ";
      auto at = r.body.find("\n" + key);
      if (at == std::string::npos) return "";
      at += key.size() + 1;
      return r.body.substr(at, r.body.find('\n', at) - at);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return "";
}

TEST(DurabilityTest, AWalDeletedAfterKillNineIsReportedAtStart) {
  testing::TempDir dir;
  std::string token;
  {
    ASSERT_TRUE(MigrateDatabase(DatabasePath(dir.path())).ok());
    auto tokens = TokenStore::Open(DatabasePath(dir.path()));
    ASSERT_TRUE(tokens.ok());
    token = *(*tokens)->Create(Role::kReporter, "app");
  }
  uint16_t port;
  auto argv = LoomdArgs(dir.path(), &port);
  std::string log = dir.File("loomd.log");
  pid_t pid = testing::Spawn(argv, log);
  ASSERT_EQ(WalLostMetric(port), "0") << "see " << log;
  auto r = testing::HttpCall(port, "POST", "/v1/feedback",
                             DumpJson({{"kind", "bug"}, {"title", "t"}, {"body", "b"}}),
                             {{"Authorization", "Bearer " + token}});
  ASSERT_EQ(r.status, 201) << r.body;
  testing::KillAndWait(pid, SIGKILL);
  ASSERT_EQ(::unlink((DatabasePath(dir.path()) + "-wal").c_str()), 0);

  argv = LoomdArgs(dir.path(), &port);
  pid = testing::Spawn(argv, log);
  EXPECT_EQ(WalLostMetric(port), "1") << "see " << log;
  testing::KillAndWait(pid, SIGTERM);
  // After a clean stop nothing is reported.
  argv = LoomdArgs(dir.path(), &port);
  pid = testing::Spawn(argv, log);
  EXPECT_EQ(WalLostMetric(port), "0") << "see " << log;
  testing::KillAndWait(pid, SIGTERM);
}

TEST(DurabilityTest, ADamagedDatabaseIsRefusedAtStartWithWhatToDo) {
  testing::TempDir dir;
  {
    ASSERT_TRUE(MigrateDatabase(DatabasePath(dir.path())).ok());
    auto tokens = TokenStore::Open(DatabasePath(dir.path()));
    ASSERT_TRUE(tokens.ok());
    auto who = (*tokens)->Lookup(*(*tokens)->Create(Role::kReporter, "app"));
    ASSERT_TRUE(who.ok());
    auto store = feedback::Store::Open(DatabasePath(dir.path()));
    ASSERT_TRUE(store.ok());
    for (int i = 0; i < 300; ++i) {
      feedback::Item item;
      item.token_id = who->token_id;
      item.kind = "bug";
      item.title = "report " + std::to_string(i);
      item.body = std::string(200, 'a' + i % 26);
      auto submitted = (*store)->SubmitAndWait(std::move(item));
      ASSERT_TRUE(submitted.ok()) << submitted.status().ToString();
    }
  }  // closed: the WAL is checkpointed into loom.db
  std::string db = DatabasePath(dir.path());
  {
    std::fstream f(db, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3 * 4096);
    std::string junk(8192, '\xab');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  uint16_t port;
  auto argv = LoomdArgs(dir.path(), &port);
  std::string command = "timeout 20";
  for (const auto& a : argv) command += " " + testing::ShellQuote(a);
  testing::CommandResult r = testing::RunCommand(command + " 2>&1");
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.exit_code, 124) << "loomd started on a damaged database: " << r.out;
  EXPECT_NE(r.out.find("integrity check"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace loom
