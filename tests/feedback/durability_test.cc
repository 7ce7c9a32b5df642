// Every submission answered 201 survives kill -9 of loomd at any moment.
//
// A client submits continuously (each submission with its own idempotency key,
// retried until acknowledged, as a well-behaved app would) while loomd is
// killed with SIGKILL and restarted several times. Afterwards every
// acknowledged id is in the database with its own title, and no submission is
// stored twice.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <random>
#include <thread>

#include "common/auth.h"
#include "common/json.h"
#include "common/schema.h"
#include "feedback/intake.h"
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

}  // namespace
}  // namespace loom
