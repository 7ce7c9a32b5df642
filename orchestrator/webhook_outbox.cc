// The outbound webhook outbox. See webhook_outbox.h for the contract; the
// design: the event log is copied into the outbox in batches, each batch and
// the cursor's move in one transaction (so an event is enqueued exactly once
// per URL), and the delivery pass works from the outbox alone (so what was
// enqueued is delivered, or retried, across restarts).
#include "orchestrator/webhook_outbox.h"

#include <algorithm>

#include "common/crypto.h"
#include "common/json_reader.h"
#include "common/log.h"
#include "orchestrator/http_client.h"

namespace loom {
namespace {

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\n");
  size_t e = s.find_last_not_of(" \t\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

}  // namespace

Result<std::vector<std::string>> ParseWebhookUrls(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string url = Trim(text.substr(start, comma - start));
    start = comma + 1;
    if (url.empty()) continue;
    if ((url.rfind("https://", 0) != 0 && url.rfind("http://", 0) != 0) ||
        url.find_first_of(" \t\r\n") != std::string::npos) {
      return Status::InvalidArgument("webhooks.urls: \"" + url +
                                     "\" is not an http:// or https:// URL");
    }
    out.push_back(url);
  }
  return out;
}

const std::vector<Migration>& WebhookOutbox::Migrations() {
  static const std::vector<Migration> kMigrations = {
      {12, R"sql(
        -- Outbound webhooks: one row per task event and configured URL.
        CREATE TABLE webhook_outbox(
          id INTEGER PRIMARY KEY,
          url TEXT NOT NULL,
          delivery_id TEXT NOT NULL UNIQUE,
          event_id INTEGER NOT NULL,
          event_type TEXT NOT NULL,
          body TEXT NOT NULL,
          attempts INTEGER NOT NULL DEFAULT 0,
          next_attempt_at INTEGER NOT NULL,
          delivered_at INTEGER,
          failed_at INTEGER,
          last_error TEXT
        );
        CREATE INDEX webhook_outbox_due ON webhook_outbox(next_attempt_at)
          WHERE delivered_at IS NULL AND failed_at IS NULL;
      )sql"},
  };
  return kMigrations;
}

WebhookOutbox::WebhookOutbox(std::shared_ptr<StoreDb> db, ForgeStore* cursors, TaskStore* tasks,
                             SecretStore* secrets, WebhookOutboxOptions options, const Clock* clock)
    : db_(std::move(db)),
      cursors_(cursors),
      tasks_(tasks),
      secrets_(secrets),
      options_(std::move(options)),
      clock_(clock) {}

WebhookOutbox::~WebhookOutbox() { Stop(); }

void WebhookOutbox::Start() {
  MutexLock lock(&mu_);
  if (thread_.joinable() || stop_) return;
  thread_ = std::thread([this] { Loop(); });
}

void WebhookOutbox::Stop() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void WebhookOutbox::Loop() {
  while (true) {
    {
      MutexLock lock(&mu_);
      auto next = std::chrono::steady_clock::now() + options_.interval;
      while (!stop_ && std::chrono::steady_clock::now() < next) lock.WaitUntil(&wake_, next);
      if (stop_) return;
    }
    auto r = RunOnce();
    if (!r.ok()) {
      LOOM_LOG(kWarning) << "outbound webhooks: " << r.status().ToString();
    }
  }
}

Result<int> WebhookOutbox::RunOnce() {
  MutexLock pass(&pass_mu_);
  LOOM_RETURN_IF_ERROR(Enqueue());
  return DeliverDue();
}

Status WebhookOutbox::Enqueue() {
  if (options_.urls.empty()) return Status::Ok();
  constexpr int kBatch = 200;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(int64_t cursor, cursors_->Cursor(kConsumer));
    LOOM_ASSIGN_OR_RETURN(std::vector<LoggedEvent> events,
                          cursors_->EventsAfter(cursor, {}, kBatch));
    if (events.empty()) return Status::Ok();
    std::vector<std::pair<LoggedEvent, Json>> bodies;
    for (const LoggedEvent& e : events) {
      Json task = Json::object();
      if (auto t = tasks_->Get(e.task_id); t.ok()) {
        task = {{"id", t->id},
                {"repo", t->repo},
                {"title", t->title},
                {"state", std::string(TaskStateName(t->state))}};
      }
      bodies.emplace_back(e, std::move(task));
    }
    {
      auto lock = db_->Acquire();
      Transaction tx(lock.db());
      LOOM_RETURN_IF_ERROR(tx.Begin());
      // The cursor again, under the lock: another pass may have moved it.
      LOOM_ASSIGN_OR_RETURN(std::optional<int64_t> at,
                            lock.db()->QueryOptional(
                                "SELECT after_event FROM forge_cursors WHERE consumer=?",
                                [](const Statement& r) { return r.Int(0); }, kConsumer));
      if (at.value_or(0) != cursor) return Status::Ok();
      LOOM_ASSIGN_OR_RETURN(
          Statement * ins,
          lock.db()->Prepare("INSERT INTO webhook_outbox(url, delivery_id, event_id, event_type, "
                             "body, next_attempt_at) VALUES(?,?,?,?,?,?)"));
      for (const auto& [e, task] : bodies) {
        for (size_t u = 0; u < options_.urls.size(); ++u) {
          // Random, stored: the same on every retry, unique across instances.
          LOOM_ASSIGN_OR_RETURN(std::string delivery, RandomHex(16));
          Json body = {{"delivery", delivery},
                       {"event",
                        {{"id", e.id},
                         {"task_id", e.task_id},
                         {"type", e.type},
                         {"data", e.data},
                         {"created_at", e.created_at_ms}}},
                       {"task", task}};
          LOOM_RETURN_IF_ERROR(ins->BindAll(options_.urls[u], delivery, e.id, e.type,
                                            lock.Masked(DumpJson(body)), clock_->NowMs())
                                   .Run());
        }
      }
      LOOM_ASSIGN_OR_RETURN(
          Statement * move,
          lock.db()->Prepare("INSERT INTO forge_cursors(consumer, after_event) VALUES(?,?) ON "
                             "CONFLICT(consumer) DO UPDATE SET after_event=excluded.after_event"));
      LOOM_RETURN_IF_ERROR(move->BindAll(kConsumer, events.back().id).Run());
      LOOM_RETURN_IF_ERROR(tx.Commit());
    }
    if (static_cast<int>(events.size()) < kBatch) return Status::Ok();
  }
}

Result<int> WebhookOutbox::DeliverDue() {
  std::vector<Row> due;
  {
    auto lock = db_->Acquire();
    LOOM_ASSIGN_OR_RETURN(
        Statement * q,
        lock.db()->Prepare("SELECT id, url, delivery_id, event_type, body, attempts FROM "
                           "webhook_outbox WHERE delivered_at IS NULL AND failed_at IS NULL AND "
                           "next_attempt_at <= ? ORDER BY id LIMIT 100"));
    q->BindAll(clock_->NowMs());
    while (true) {
      LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
      if (!row) break;
      Row r;
      r.id = q->Int(0);
      r.url = q->Text(1);
      r.delivery_id = q->Text(2);
      r.event_type = q->Text(3);
      r.body = q->Text(4);
      r.attempts = q->Int(5);
      due.push_back(std::move(r));
    }
    q->Reset();
  }
  if (due.empty()) return 0;
  std::string secret;
  if (!options_.secret_name.empty()) {
    LOOM_ASSIGN_OR_RETURN(SecretList found, secrets_->Get({options_.secret_name}));
    if (found.empty()) {
      return Status::FailedPrecondition("webhooks.secret_name names " + options_.secret_name +
                                        ", which is not stored: the deliveries wait for it");
    }
    secret = found[0].second;
  }
  HttpClient http;
  int delivered = 0;
  for (const Row& row : due) {
    std::vector<std::pair<std::string, std::string>> headers = {
        {"Content-Type", "application/json"},
        {"User-Agent", "loom"},
        {"X-Loom-Delivery", row.delivery_id},
        {"X-Loom-Event", row.event_type}};
    if (!secret.empty()) {
      headers.emplace_back("X-Loom-Signature-256", "sha256=" + HmacSha256Hex(secret, row.body));
    }
    auto r = http.Call("POST", row.url, row.body, headers, options_.timeout);
    std::string error;
    if (!r.ok()) {
      error = r.status().message();
    } else if (r->status < 200 || r->status >= 300) {
      error = "answered " + std::to_string(r->status);
    }
    auto lock = db_->Acquire();
    int64_t now = clock_->NowMs();
    if (error.empty()) {
      LOOM_ASSIGN_OR_RETURN(
          Statement * q,
          lock.db()->Prepare("UPDATE webhook_outbox SET delivered_at=?, attempts=attempts+1, "
                             "last_error=NULL WHERE id=?"));
      LOOM_RETURN_IF_ERROR(q->BindAll(now, row.id).Run());
      ++delivered;
      continue;
    }
    int64_t attempts = row.attempts + 1;
    auto backoff = options_.first_backoff * (int64_t{1} << std::min<int64_t>(attempts - 1, 20));
    backoff = std::min<std::chrono::milliseconds>(backoff, options_.max_backoff);
    bool give_up = attempts >= options_.max_attempts;
    LOOM_ASSIGN_OR_RETURN(
        Statement * q,
        lock.db()->Prepare("UPDATE webhook_outbox SET attempts=?, next_attempt_at=?, last_error=?, "
                           "failed_at=? WHERE id=?"));
    q->BindAll(attempts, now + backoff.count(), lock.Masked(error));
    if (give_up) {
      q->Bind(4, now);
    } else {
      q->BindNull(4);
    }
    q->Bind(5, row.id);
    LOOM_RETURN_IF_ERROR(q->Run());
    if (give_up) {
      LOOM_LOG(kError) << "outbound webhook " << row.delivery_id << " to " << row.url << " failed "
                       << attempts << " times (" << error << "): given up";
    }
  }
  return delivered;
}

Result<std::vector<WebhookOutbox::Row>> WebhookOutbox::Rows() {
  auto lock = db_->Acquire();
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      lock.db()->Prepare("SELECT id, url, delivery_id, event_type, body, attempts, delivered_at, "
                         "failed_at, last_error FROM webhook_outbox ORDER BY id"));
  std::vector<Row> out;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    Row r;
    r.id = q->Int(0);
    r.url = q->Text(1);
    r.delivery_id = q->Text(2);
    r.event_type = q->Text(3);
    r.body = q->Text(4);
    r.attempts = q->Int(5);
    r.delivered = !q->IsNull(6);
    r.failed = !q->IsNull(7);
    r.last_error = q->OptionalText(8).value_or("");
    out.push_back(std::move(r));
  }
  q->Reset();
  return out;
}

}  // namespace loom
