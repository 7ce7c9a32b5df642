// Durable feedback storage with group commit (see intake.h).
#include <chrono>
#include <future>

#include "common/log.h"
#include "common/schema.h"
#include "feedback/intake.h"

namespace loom::feedback {
namespace {

constexpr size_t kMaxBatch = 1024;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

constexpr const char* kColumns =
    "id, kind, title, body, reporter, app_version, commit_sha, url, logs, stack_trace, repo, "
    "context, status, fingerprint, duplicate_of, reporter_count, token_id, created_at, task_id, "
    "resolution";

Item ReadItem(Statement* q) {
  Item it;
  it.id = q->Int(0);
  it.kind = q->Text(1);
  it.title = q->Text(2);
  it.body = q->Text(3);
  it.reporter = q->OptionalText(4);
  it.app_version = q->OptionalText(5);
  it.commit = q->OptionalText(6);
  it.url = q->OptionalText(7);
  it.logs = q->OptionalText(8);
  it.stack_trace = q->OptionalText(9);
  it.repo = q->OptionalText(10);
  auto ctx = ParseJson(q->Text(11));
  it.context = ctx.ok() ? *ctx : Json::object();
  it.status = q->Text(12);
  it.fingerprint = q->Text(13);
  if (!q->IsNull(14)) it.duplicate_of = q->Int(14);
  it.reporter_count = q->Int(15);
  it.token_id = q->Int(16);
  it.created_at_ms = q->Int(17);
  if (!q->IsNull(18)) it.task_id = q->Int(18);
  it.resolution = q->OptionalText(19);
  return it;
}

}  // namespace

Json Item::ToJson() const {
  Json j = {{"id", id},
            {"kind", kind},
            {"title", title},
            {"body", body},
            {"status", status},
            {"fingerprint", fingerprint},
            {"reporter_count", reporter_count},
            {"context", context},
            {"created_at", created_at_ms}};
  auto opt = [&](const char* name, const std::optional<std::string>& v) {
    if (v) j[name] = *v;
  };
  opt("reporter", reporter);
  opt("app_version", app_version);
  opt("commit", commit);
  opt("url", url);
  if (task_id) j["task_id"] = *task_id;
  opt("resolution", resolution);
  opt("logs", logs);
  opt("stack_trace", stack_trace);
  opt("repo", repo);
  if (duplicate_of) j["duplicate_of"] = *duplicate_of;
  return j;
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& db_path) {
  LOOM_ASSIGN_OR_RETURN(auto writer, Db::Open(db_path, LoomMigrations()));
  LOOM_ASSIGN_OR_RETURN(auto reader, Db::Open(db_path, LoomMigrations()));
  return std::unique_ptr<Store>(new Store(std::move(writer), std::move(reader)));
}

Store::Store(std::unique_ptr<Db> writer, std::unique_ptr<Db> reader)
    : writer_db_(std::move(writer)), reader_db_(std::move(reader)) {
  writer_ = std::thread([this] { WriterLoop(); });
}

Store::~Store() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  writer_.join();
}

void Store::Submit(Item item, std::string idempotency_key, Callback done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(Pending{std::move(item), std::move(idempotency_key), std::move(done)});
  }
  cv_.notify_one();
}

Result<SubmitResult> Store::SubmitAndWait(Item item, std::string idempotency_key) {
  std::promise<Result<SubmitResult>> promise;
  auto future = promise.get_future();
  Submit(std::move(item), std::move(idempotency_key),
         [&promise](Result<SubmitResult> r) { promise.set_value(std::move(r)); });
  return future.get();
}

void Store::WriterLoop() {
  while (true) {
    std::vector<Pending> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_ and nothing left to write
      while (!queue_.empty() && batch.size() < kMaxBatch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    std::vector<Result<SubmitResult>> results;
    results.reserve(batch.size());
    Status tx_status = writer_db_->Begin();
    if (tx_status.ok()) {
      for (auto& p : batch) {
        // A savepoint per item: one failing item does not spoil the batch.
        Status sp = writer_db_->Exec("SAVEPOINT item");
        Result<SubmitResult> r =
            sp.ok() ? Insert(p.item, p.idempotency_key) : Result<SubmitResult>(sp);
        (void)writer_db_->Exec(r.ok() ? "RELEASE item" : "ROLLBACK TO item; RELEASE item");
        results.push_back(std::move(r));
      }
      tx_status = writer_db_->Commit();
      if (!tx_status.ok()) (void)writer_db_->Rollback();
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!tx_status.ok()) {
        LOOM_LOG(kError) << "feedback commit failed: " << tx_status.ToString();
        batch[i].done(
            Status::Unavailable("could not store the feedback durably: " + tx_status.message()));
      } else {
        batch[i].done(std::move(results[i]));
      }
    }
  }
}

Result<SubmitResult> Store::Insert(Item& item, const std::string& idempotency_key) {
  Db* db = writer_db_.get();
  if (!idempotency_key.empty()) {
    LOOM_ASSIGN_OR_RETURN(Statement * q,
                          db->Prepare("SELECT f.id, f.status, f.duplicate_of, o.token_id FROM "
                                      "feedback f LEFT JOIN feedback o ON o.id = f.duplicate_of "
                                      "WHERE f.token_id=? AND f.idempotency_key=?"));
    q->BindAll(item.token_id, idempotency_key);
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (row) {
      SubmitResult r{q->Int(0), q->Text(1), std::nullopt, 0, true};
      if (!q->IsNull(2)) r.duplicate_of = q->Int(2);
      if (!q->IsNull(3)) r.original_token_id = q->Int(3);
      q->Reset();
      return r;
    }
  }
  item.fingerprint = Fingerprint(item);
  item.created_at_ms = NowMs();
  LOOM_ASSIGN_OR_RETURN(
      Statement * find,
      db->Prepare("SELECT id, token_id FROM feedback WHERE fingerprint=? AND duplicate_of IS "
                  "NULL AND repo IS ? ORDER BY id LIMIT 1"));
  find->Bind(1, item.fingerprint).Bind(2, item.repo);
  LOOM_ASSIGN_OR_RETURN(bool dup, find->Step());
  int64_t original_token_id = 0;
  if (dup) {
    item.duplicate_of = find->Int(0);
    original_token_id = find->Int(1);
  }
  find->Reset();
  item.status = dup ? "duplicate" : "new";

  LOOM_ASSIGN_OR_RETURN(
      Statement * ins,
      db->Prepare("INSERT INTO feedback(kind, title, body, reporter, app_version, commit_sha, url, "
                  "logs, stack_trace, repo, context, status, fingerprint, duplicate_of, token_id, "
                  "idempotency_key, created_at) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
  ins->BindAll(item.kind, item.title, item.body, item.reporter, item.app_version, item.commit,
               item.url, item.logs, item.stack_trace, item.repo, DumpJson(item.context),
               item.status, item.fingerprint);
  if (item.duplicate_of) {
    ins->Bind(14, *item.duplicate_of);
  } else {
    ins->BindNull(14);
  }
  ins->Bind(15, item.token_id);
  if (idempotency_key.empty()) {
    ins->BindNull(16);
  } else {
    ins->Bind(16, idempotency_key);
  }
  ins->Bind(17, item.created_at_ms);
  LOOM_RETURN_IF_ERROR(ins->Run());
  item.id = db->LastInsertRowId();

  // Count distinct reporters on the original: the reporter's name when given,
  // else the token that filed it.
  int64_t original = item.duplicate_of.value_or(item.id);
  std::string who = item.reporter ? "r:" + *item.reporter : "t:" + std::to_string(item.token_id);
  LOOM_ASSIGN_OR_RETURN(
      Statement * rep,
      db->Prepare("INSERT OR IGNORE INTO feedback_reporters(feedback_id, reporter) VALUES(?,?)"));
  LOOM_RETURN_IF_ERROR(rep->BindAll(original, who).Run());
  if (item.duplicate_of && db->Changes() > 0) {
    LOOM_ASSIGN_OR_RETURN(
        Statement * bump,
        db->Prepare("UPDATE feedback SET reporter_count = reporter_count + 1 WHERE id=?"));
    LOOM_RETURN_IF_ERROR(bump->BindAll(original).Run());
  }
  return SubmitResult{item.id, item.status, item.duplicate_of, original_token_id, false};
}

Result<Item> Store::Get(int64_t id) {
  std::lock_guard<std::mutex> lock(read_mu_);
  LOOM_ASSIGN_OR_RETURN(Statement * q, reader_db_->Prepare(std::string("SELECT ") + kColumns +
                                                           " FROM feedback WHERE id=?"));
  q->Bind(1, id);
  LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
  if (!row) return Status::NotFound("no feedback item " + std::to_string(id));
  Item it = ReadItem(q);
  q->Reset();
  return it;
}

Result<std::vector<Item>> Store::List(const ListQuery& query) {
  std::string sql = std::string("SELECT ") + kColumns + " FROM feedback WHERE id > ?";
  if (query.status) sql += " AND status = ?";
  if (query.kind) sql += " AND kind = ?";
  if (query.repo) sql += " AND repo = ?";
  if (query.token_id) sql += " AND token_id = ?";
  sql += " ORDER BY id LIMIT ?";
  std::lock_guard<std::mutex> lock(read_mu_);
  LOOM_ASSIGN_OR_RETURN(Statement * q, reader_db_->Prepare(sql));
  int i = 1;
  q->Bind(i++, query.after_id);
  if (query.status) q->Bind(i++, *query.status);
  if (query.kind) q->Bind(i++, *query.kind);
  if (query.repo) q->Bind(i++, *query.repo);
  if (query.token_id) q->Bind(i++, *query.token_id);
  q->Bind(i++, static_cast<int64_t>(query.limit));
  std::vector<Item> out;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    out.push_back(ReadItem(q));
  }
  return out;
}

Result<Counts> Store::CountByStatus() {
  std::lock_guard<std::mutex> lock(read_mu_);
  LOOM_ASSIGN_OR_RETURN(
      Statement * q, reader_db_->Prepare("SELECT status, count(*) FROM feedback GROUP BY status"));
  Counts c;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    c.by_status.emplace_back(q->Text(0), q->Int(1));
  }
  return c;
}

}  // namespace loom::feedback
