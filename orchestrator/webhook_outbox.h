// Outbound webhooks: every task event POSTed as JSON to the URLs in loomd's
// configuration (`webhooks.urls`), so teams can wire Loom into chat or CI.
//
// At-least-once from a durable outbox: a consumer of the task event log (its
// cursor in SQLite, like the pull request sync's) copies each new event into
// `webhook_outbox`, one row per URL, in the same transaction as it moves its
// cursor; a delivery pass POSTs the rows that are due. A 2xx answer marks a
// row delivered; anything else (an error status, no answer, a timeout) is
// retried with exponential backoff (1 s doubling, at most 10 min) up to
// `max_attempts`, then the row is marked failed and kept. A restart loses
// nothing: rows and cursor are in the database.
//
// Each POST carries
//   Content-Type: application/json
//   X-Loom-Delivery: <id>            the same on every retry: receivers dedupe by it
//   X-Loom-Event: <event type>
//   X-Loom-Signature-256: sha256=<hex HMAC-SHA256 of the body with the secret>
// and the body {"delivery", "event": {"id", "task_id", "seq", "type", "data",
// "created_at"}, "task": {"id", "repo", "title", "state"}}. Order is not
// guaranteed across retries; `event.id` is the log's order.
//
// Thread-safe: RunOnce is serialised; Start runs it on a thread of its own.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/mutex.h"
#include "orchestrator/forge_store.h"
#include "orchestrator/secrets.h"
#include "orchestrator/store_db.h"
#include "orchestrator/task_store.h"

namespace loom {

struct WebhookOutboxOptions {
  std::vector<std::string> urls;  // http:// or https://
  std::string secret_name;        // the signing secret, in the secret store
  int max_attempts = 20;
  std::chrono::milliseconds first_backoff{1000};
  std::chrono::milliseconds max_backoff{600'000};
  std::chrono::milliseconds timeout{10'000};
  std::chrono::milliseconds interval{1000};  // between passes of the thread
};

// Parses `webhooks.urls` ("https://a/hook, https://b/hook"): InvalidArgument
// naming a URL that is not http(s).
Result<std::vector<std::string>> ParseWebhookUrls(const std::string& text);

class WebhookOutbox {
 public:
  static constexpr const char* kConsumer = "webhooks";
  // The migration of the outbox table (assembled in orchestrator/schema.h).
  static const std::vector<Migration>& Migrations();

  // REQUIRES: the pointers outlive the outbox; `clock` decides when a retry is due.
  WebhookOutbox(std::shared_ptr<StoreDb> db, ForgeStore* cursors, TaskStore* tasks,
                SecretStore* secrets, WebhookOutboxOptions options,
                const Clock* clock = SystemClock::Default());
  ~WebhookOutbox();  // Stop()

  void Start() EXCLUDES(mu_);
  void Stop() EXCLUDES(mu_);

  // Copies new events into the outbox, then delivers what is due. Returns how
  // many deliveries succeeded in this pass.
  Result<int> RunOnce() EXCLUDES(pass_mu_);

  struct Row {
    int64_t id = 0;
    std::string url, delivery_id, event_type, body;
    int64_t attempts = 0;
    bool delivered = false, failed = false;
    std::string last_error;
  };
  // Every row, oldest first (for tests and the operator).
  Result<std::vector<Row>> Rows();

 private:
  Status Enqueue() REQUIRES(pass_mu_);
  Result<int> DeliverDue() REQUIRES(pass_mu_);
  void Loop() EXCLUDES(mu_);

  std::shared_ptr<StoreDb> db_;
  ForgeStore* cursors_;
  TaskStore* tasks_;
  SecretStore* secrets_;
  const WebhookOutboxOptions options_;
  const Clock* clock_;
  Mutex pass_mu_;
  Mutex mu_;
  std::condition_variable wake_;
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace loom
