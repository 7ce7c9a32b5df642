// Outbound webhooks over real stores and a receiver on loopback that fails,
// then succeeds: every task event is delivered, signed, with a delivery id that
// stays the same across retries, after a backoff, and never enqueued twice.
#include "orchestrator/webhook_outbox.h"

#include <gtest/gtest.h>

#include "common/crypto.h"
#include "orchestrator/schema.h"
#include "orchestrator/stores.h"
#include "tests/fakes/fake_clock.h"
#include "tests/support/fake_forge.h"
#include "tests/support/temp_dir.h"

namespace loom {
namespace {

constexpr const char* kKey = "outbound-signing-key";

class WebhookOutboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string db = DatabasePath(dir_.path());
    ASSERT_TRUE(MigrateDatabase(db).ok());
    auto stores = OrchestratorStores::Open(db);
    ASSERT_TRUE(stores.ok());
    stores_ = std::move(*stores);
    auto secrets = SecretStore::Open(db, dir_.path());
    ASSERT_TRUE(secrets.ok());
    secrets_ = std::move(*secrets);
    ASSERT_TRUE(secrets_->Put("HOOK_KEY", kKey).ok());
    cursors_ = std::make_unique<ForgeStore>(stores_.db);
  }

  std::unique_ptr<WebhookOutbox> Outbox(int max_attempts = 20) {
    WebhookOutboxOptions o;
    o.urls = {receiver_.url("/hook")};
    o.secret_name = "HOOK_KEY";
    o.max_attempts = max_attempts;
    return std::make_unique<WebhookOutbox>(stores_.db, cursors_.get(), stores_.tasks.get(),
                                           secrets_.get(), o, &clock_);
  }

  // A task with `n` events of its own (a note each).
  int64_t TaskWithEvents(int n) {
    auto lock = stores_.db->Acquire();
    EXPECT_TRUE(lock.db()
                    ->Exec("INSERT INTO tasks(repo, kind, title, instructions, state, created_at, "
                           "updated_at) VALUES('calc', 'bug', 'Save fails', 'i', 'queued', 1, 1)")
                    .ok());
    int64_t id = lock.db()->LastInsertRowId();
    for (int i = 0; i < n; ++i) {
      EXPECT_TRUE(lock.db()
                      ->Exec("INSERT INTO events(task_id, seq, type, data, created_at) VALUES(" +
                             std::to_string(id) + ", " + std::to_string(i + 1) +
                             ", 'note', '{\"text\": \"step " + std::to_string(i) + "\"}', 5)")
                      .ok());
    }
    return id;
  }

  testing::TempDir dir_;
  testing::FakeForge receiver_;
  FakeClock clock_;
  OrchestratorStores stores_;
  std::unique_ptr<SecretStore> secrets_;
  std::unique_ptr<ForgeStore> cursors_;
};

TEST_F(WebhookOutboxTest, EveryEventIsDeliveredSignedAndRetriedAfterAFailure) {
  int64_t task = TaskWithEvents(2);
  auto outbox = Outbox();
  receiver_.Then({503, "busy"});
  receiver_.Then({200, "{}"});
  auto delivered = outbox->RunOnce();
  ASSERT_TRUE(delivered.ok()) << delivered.status().ToString();
  EXPECT_EQ(*delivered, 1);
  auto rows = *outbox->Rows();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_FALSE(rows[0].delivered);
  EXPECT_EQ(rows[0].attempts, 1);
  EXPECT_EQ(rows[0].last_error, "answered 503");
  EXPECT_TRUE(rows[1].delivered);
  // Not due yet: the backoff holds it.
  EXPECT_EQ(*outbox->RunOnce(), 0);
  EXPECT_EQ(receiver_.seen().size(), 2u);
  clock_.AdvanceMs(1000);
  receiver_.Then({204, ""});
  EXPECT_EQ(*outbox->RunOnce(), 1);
  auto seen = receiver_.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].headers.at("x-loom-delivery"), seen[2].headers.at("x-loom-delivery"))
      << "a retry is the same delivery";
  EXPECT_NE(seen[0].headers.at("x-loom-delivery"), seen[1].headers.at("x-loom-delivery"));
  for (const auto& s : seen) {
    EXPECT_EQ(s.method, "POST");
    EXPECT_EQ(s.target, "/hook");
    EXPECT_EQ(s.headers.at("content-type"), "application/json");
    EXPECT_EQ(s.headers.at("x-loom-event"), "note");
    EXPECT_EQ(s.headers.at("x-loom-signature-256"), "sha256=" + HmacSha256Hex(kKey, s.body));
    Json body = ParseJson(s.body).value();
    EXPECT_EQ(body["delivery"], s.headers.at("x-loom-delivery"));
    EXPECT_EQ(body["event"]["task_id"], task);
    EXPECT_EQ(body["event"]["type"], "note");
    EXPECT_EQ(body["task"]["title"], "Save fails");
  }
  EXPECT_EQ(ParseJson(seen[2].body).value()["event"]["data"]["text"], "step 0");
  // A new outbox (a restart) enqueues nothing twice; a new event goes out once.
  auto again = Outbox();
  EXPECT_EQ(*again->RunOnce(), 0);
  TaskWithEvents(1);
  receiver_.Then({200, "{}"});
  EXPECT_EQ(*again->RunOnce(), 1);
  EXPECT_EQ(again->Rows()->size(), 3u);
  EXPECT_EQ(receiver_.seen().size(), 4u);
}

TEST_F(WebhookOutboxTest, AReceiverThatNeverAnswersWellIsGivenUpOnAfterMaxAttempts) {
  TaskWithEvents(1);
  auto outbox = Outbox(/*max_attempts=*/3);
  for (int i = 0; i < 3; ++i) {
    receiver_.Then({500, "no"});
    EXPECT_EQ(*outbox->RunOnce(), 0);
    clock_.AdvanceMs(10'000);
  }
  auto rows = *outbox->Rows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_TRUE(rows[0].failed);
  EXPECT_EQ(rows[0].attempts, 3);
  EXPECT_EQ(*outbox->RunOnce(), 0);
  EXPECT_EQ(receiver_.seen().size(), 3u);
}

TEST_F(WebhookOutboxTest, AReceiverThatIsDownIsRetried) {
  TaskWithEvents(1);
  std::string url;
  {
    testing::FakeForge gone;
    url = gone.url("/hook");
  }
  WebhookOutboxOptions o;
  o.urls = {url};
  o.secret_name = "HOOK_KEY";
  WebhookOutbox outbox(stores_.db, cursors_.get(), stores_.tasks.get(), secrets_.get(), o, &clock_);
  EXPECT_EQ(*outbox.RunOnce(), 0);
  auto rows = *outbox.Rows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].attempts, 1);
  EXPECT_FALSE(rows[0].failed);
  EXPECT_FALSE(rows[0].last_error.empty());
}

TEST(WebhookUrlsTest, ParsesACommaSeparatedList) {
  EXPECT_EQ(*ParseWebhookUrls(" https://a/x, http://127.0.0.1:9/y ,"),
            (std::vector<std::string>{"https://a/x", "http://127.0.0.1:9/y"}));
  EXPECT_TRUE(ParseWebhookUrls("")->empty());
  EXPECT_EQ(ParseWebhookUrls("ftp://a").status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loom
