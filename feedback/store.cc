// Durable feedback storage with group commit (see intake.h).
#include <algorithm>
#include <future>

#include "common/log.h"
#include "common/mutex.h"
#include "feedback/intake.h"

namespace loom::feedback {
namespace {

constexpr size_t kMaxBatch = 1024;

constexpr const char* kColumns =
    "id, kind, title, body, reporter, app_version, commit_sha, url, logs, stack_trace, repo, "
    "context, status, fingerprint, duplicate_of, reporter_count, token_id, created_at, task_id, "
    "resolution";

// TriageQueue's statements. The two reads of the queue name their index: the
// planner, without statistics, would rather read every new item by status and
// sort them.
constexpr const char* kUntriagedWhere =
    " FROM feedback INDEXED BY feedback_untriaged WHERE task_id IS NULL AND status IN ('new', "
    "'duplicate')";
const std::string& NextTokenSql() {
  static const std::string sql = std::string("SELECT token_id") + kUntriagedWhere +
                                 " AND token_id > ? ORDER BY token_id LIMIT 1";
  return sql;
}
const std::string& TokenItemsSql() {
  static const std::string sql = std::string("SELECT ") + kColumns + kUntriagedWhere +
                                 " AND token_id = ? AND id > ? ORDER BY id LIMIT ?";
  return sql;
}
constexpr const char* kTaskOfSql = "SELECT task_id FROM feedback WHERE id=?";
constexpr const char* kUnroutableReasonSql =
    "SELECT resolution FROM feedback WHERE id=? AND status='unroutable'";
constexpr const char* kMarkTriagedSql =
    "UPDATE feedback SET task_id=?, status=CASE status WHEN 'new' THEN 'triaged' ELSE status END "
    "WHERE id=?";
constexpr const char* kMarkUnroutableSql =
    "UPDATE feedback SET status='unroutable', resolution=? WHERE id=? AND task_id IS NULL";
constexpr const char* kRequeueSql =
    "UPDATE feedback SET status=CASE WHEN duplicate_of IS NULL THEN 'new' ELSE 'duplicate' END, "
    "resolution=NULL WHERE status='unroutable' AND (repo=? OR (? AND repo IS NULL))";
constexpr const char* kSetTaskStatusSql =
    "UPDATE feedback SET status=?, resolution=? WHERE task_id=?";

Item ReadItem(const Statement& r) {
  Item it;
  it.id = r.Int(0);
  it.kind = r.Text(1);
  it.title = r.Text(2);
  it.body = r.Text(3);
  it.reporter = r.OptionalText(4);
  it.app_version = r.OptionalText(5);
  it.commit = r.OptionalText(6);
  it.url = r.OptionalText(7);
  it.logs = r.OptionalText(8);
  it.stack_trace = r.OptionalText(9);
  it.repo = r.OptionalText(10);
  auto ctx = ParseJson(r.Text(11));
  it.context = ctx.ok() ? *ctx : Json::object();
  it.status = r.Text(12);
  it.fingerprint = r.Text(13);
  if (!r.IsNull(14)) it.duplicate_of = r.Int(14);
  it.reporter_count = r.Int(15);
  it.token_id = r.Int(16);
  it.created_at_ms = r.Int(17);
  if (!r.IsNull(18)) it.task_id = r.Int(18);
  it.resolution = r.OptionalText(19);
  return it;
}

}  // namespace

const std::vector<Migration>& Migrations() {
  static const std::vector<Migration> kMigrations = {
      {1, R"sql(
        CREATE TABLE feedback(
          id INTEGER PRIMARY KEY,
          kind TEXT NOT NULL CHECK(kind IN ('bug', 'feature', 'question')),
          title TEXT NOT NULL,
          body TEXT NOT NULL,
          reporter TEXT,
          app_version TEXT,
          commit_sha TEXT,
          url TEXT,
          logs TEXT,
          stack_trace TEXT,
          repo TEXT,
          context TEXT NOT NULL DEFAULT '{}',  -- a JSON object
          status TEXT NOT NULL,                -- new | duplicate | triaged | ... (see docs/api.md)
          fingerprint TEXT NOT NULL,
          duplicate_of INTEGER REFERENCES feedback(id),
          reporter_count INTEGER NOT NULL DEFAULT 1,
          token_id INTEGER NOT NULL REFERENCES tokens(id),
          idempotency_key TEXT,
          created_at INTEGER NOT NULL
        );
        CREATE INDEX feedback_fingerprint ON feedback(fingerprint) WHERE duplicate_of IS NULL;
        CREATE INDEX feedback_token ON feedback(token_id, id);
        CREATE UNIQUE INDEX feedback_idempotency ON feedback(token_id, idempotency_key)
          WHERE idempotency_key IS NOT NULL;
        CREATE TABLE feedback_reporters(
          feedback_id INTEGER NOT NULL REFERENCES feedback(id),
          reporter TEXT NOT NULL,
          PRIMARY KEY(feedback_id, reporter)
        ) WITHOUT ROWID;
      )sql"},
      // The task a feedback item was triaged into (see TriageQueue).
      {2, R"sql(
        ALTER TABLE feedback ADD COLUMN task_id INTEGER REFERENCES tasks(id);
      )sql"},
      {6, R"sql(
        -- Why the item's task ended (failed, rejected, cancelled) or its answer.
        ALTER TABLE feedback ADD COLUMN resolution TEXT;
      )sql"},
      // Triage and the task transitions by index (see TriageQueue), and lists
      // by status (the unroutable items an admin looks at).
      {7, R"sql(
        CREATE INDEX feedback_untriaged ON feedback(token_id, id)
          WHERE task_id IS NULL AND status IN ('new', 'duplicate');
        CREATE INDEX feedback_task ON feedback(task_id) WHERE task_id IS NOT NULL;
        CREATE INDEX feedback_status ON feedback(status, id);
      )sql"},
      // Crash reports from Sentry SDKs (feedback/sentry.h, crash_store.cc).
      {14, R"sql(
        CREATE TABLE sentry_keys(
          id INTEGER PRIMARY KEY,              -- the DSN's project id
          public_key TEXT NOT NULL UNIQUE,     -- in the DSN; public by design (it is in apps' pages)
          token_id INTEGER NOT NULL REFERENCES tokens(id),
          repo TEXT NOT NULL,
          created_at INTEGER NOT NULL,
          revoked_at INTEGER
        );
        CREATE TABLE crash_groups(
          id INTEGER PRIMARY KEY,
          project_id INTEGER NOT NULL REFERENCES sentry_keys(id),
          fingerprint TEXT NOT NULL,
          feedback_id INTEGER NOT NULL REFERENCES feedback(id),  -- the item it files now
          occurrences INTEGER NOT NULL,
          users INTEGER NOT NULL,
          first_seen INTEGER NOT NULL,
          last_seen INTEGER NOT NULL,
          reopened INTEGER NOT NULL DEFAULT 0
        );
        CREATE UNIQUE INDEX crash_groups_by_fingerprint ON crash_groups(project_id, fingerprint);
        CREATE TABLE crash_group_items(
          feedback_id INTEGER PRIMARY KEY REFERENCES feedback(id),
          group_id INTEGER NOT NULL REFERENCES crash_groups(id)
        );
        CREATE TABLE crash_group_users(
          group_id INTEGER NOT NULL REFERENCES crash_groups(id),
          user TEXT NOT NULL,                  -- a salted hash, never the app's user id
          PRIMARY KEY(group_id, user)
        ) WITHOUT ROWID;
        CREATE TABLE crash_group_releases(
          group_id INTEGER NOT NULL REFERENCES crash_groups(id),
          release TEXT NOT NULL,
          occurrences INTEGER NOT NULL,
          first_seen INTEGER NOT NULL,
          last_seen INTEGER NOT NULL,
          PRIMARY KEY(group_id, release)
        ) WITHOUT ROWID;
        -- Event ids seen, so that an SDK's retry is not counted twice.
        CREATE TABLE crash_events(
          project_id INTEGER NOT NULL,
          event_id TEXT NOT NULL,
          group_id INTEGER NOT NULL,
          received_at INTEGER NOT NULL,
          PRIMARY KEY(project_id, event_id)
        ) WITHOUT ROWID;
      )sql"},
  };
  return kMigrations;
}

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
  if (!crash.is_null()) j["crash"] = crash;
  return j;
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& db_path, const Clock* clock) {
  LOOM_ASSIGN_OR_RETURN(auto writer, Db::OpenMigrated(db_path));
  LOOM_ASSIGN_OR_RETURN(auto reader, Db::OpenMigrated(db_path));
  return std::unique_ptr<Store>(new Store(std::move(writer), std::move(reader), clock));
}

Store::Store(std::unique_ptr<Db> writer, std::unique_ptr<Db> reader, const Clock* clock)
    : clock_(clock), writer_db_(std::move(writer)), reader_db_(std::move(reader)) {
  writer_ = std::thread([this] { WriterLoop(); });
}

Store::~Store() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.notify_all();
  writer_.join();
}

void Store::Submit(Item item, std::string idempotency_key, Callback done) {
  {
    MutexLock lock(&mu_);
    queue_.push_back(
        Pending{std::move(item), std::move(idempotency_key), std::move(done), std::nullopt});
  }
  cv_.notify_one();
}

void Store::SubmitCrash(CrashReport report, Callback done) {
  {
    MutexLock lock(&mu_);
    queue_.push_back(Pending{Item{}, std::string(), std::move(done), std::move(report)});
  }
  cv_.notify_one();
}

Result<SubmitResult> Store::SubmitCrashAndWait(CrashReport report) {
  std::promise<Result<SubmitResult>> promise;
  auto future = promise.get_future();
  SubmitCrash(std::move(report),
              [&promise](Result<SubmitResult> r) { promise.set_value(std::move(r)); });
  return future.get();
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
      MutexLock lock(&mu_);
      while (!stop_ && queue_.empty()) lock.Wait(&cv_);
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
        Result<SubmitResult> r = !sp.ok()  ? Result<SubmitResult>(sp)
                                 : p.crash ? InsertCrash(*p.crash)
                                           : Insert(p.item, p.idempotency_key);
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
    LOOM_ASSIGN_OR_RETURN(std::optional<SubmitResult> earlier,
                          db->QueryOptional(
                              "SELECT f.id, f.status, f.duplicate_of, o.token_id FROM "
                              "feedback f LEFT JOIN feedback o ON o.id = f.duplicate_of "
                              "WHERE f.token_id=? AND f.idempotency_key=?",
                              [](const Statement& row) {
                                SubmitResult r{row.Int(0), row.Text(1), std::nullopt, 0, true};
                                if (!row.IsNull(2)) r.duplicate_of = row.Int(2);
                                if (!row.IsNull(3)) r.original_token_id = row.Int(3);
                                return r;
                              },
                              item.token_id, idempotency_key));
    if (earlier) return *earlier;
  }
  item.fingerprint = Fingerprint(item);
  item.created_at_ms = clock_->NowMs();
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
  MutexLock lock(&read_mu_);
  LOOM_ASSIGN_OR_RETURN(
      Item item,
      reader_db_->QueryOne(std::string("SELECT ") + kColumns + " FROM feedback WHERE id=?",
                           "no feedback item " + std::to_string(id), ReadItem, id));
  LOOM_RETURN_IF_ERROR(AttachCrashStats(&item));
  return item;
}

Result<std::vector<Item>> Store::List(const ListQuery& query) {
  std::string sql = std::string("SELECT ") + kColumns + " FROM feedback WHERE id > ?";
  if (query.status) sql += " AND status = ?";
  if (query.kind) sql += " AND kind = ?";
  if (query.repo) sql += " AND repo = ?";
  if (query.token_id) sql += " AND token_id = ?";
  sql += " ORDER BY id LIMIT ?";
  MutexLock lock(&read_mu_);
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
    out.push_back(ReadItem(*q));
  }
  q->Reset();
  for (Item& item : out) LOOM_RETURN_IF_ERROR(AttachCrashStats(&item));
  return out;
}

Result<Counts> Store::CountByStatus() {
  MutexLock lock(&read_mu_);
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

Result<std::vector<Item>> TriageQueue::Untriaged(int limit, int64_t* after_token) {
  if (limit <= 0) return std::vector<Item>();
  // The tokens with items waiting, from the cursor on, wrapping around once:
  // one index search each, at most `limit` of them.
  std::vector<int64_t> tokens;
  {
    LOOM_ASSIGN_OR_RETURN(Statement * next, db_->Prepare(NextTokenSql()));
    const int64_t start = *after_token;
    int64_t at = start;
    bool wrapped = false;
    while (static_cast<int>(tokens.size()) < limit) {
      next->Bind(1, at);
      LOOM_ASSIGN_OR_RETURN(bool row, next->Step());
      int64_t token = row ? next->Int(0) : 0;
      next->Reset();
      if (!row || (wrapped && token > start)) {
        if (wrapped || start == 0) break;
        wrapped = true;
        at = 0;
        continue;
      }
      tokens.push_back(token);
      at = token;
    }
  }
  if (tokens.empty()) return std::vector<Item>();
  *after_token = tokens.back();
  // Each token's oldest items, a fair share of the round each; the places a
  // token leaves (it has fewer) are shared among those that filled theirs.
  std::vector<std::vector<Item>> per_token(tokens.size());
  LOOM_ASSIGN_OR_RETURN(Statement * items, db_->Prepare(TokenItemsSql()));
  std::vector<size_t> open(tokens.size());
  for (size_t i = 0; i < open.size(); ++i) open[i] = i;
  int taken = 0;
  while (taken < limit && !open.empty()) {
    const int share =
        (limit - taken + static_cast<int>(open.size()) - 1) / static_cast<int>(open.size());
    std::vector<size_t> full;
    for (size_t i : open) {
      std::vector<Item>& mine = per_token[i];
      int64_t after = mine.empty() ? 0 : mine.back().id;
      items->BindAll(tokens[i], after, static_cast<int64_t>(share));
      int got = 0;
      while (true) {
        LOOM_ASSIGN_OR_RETURN(bool row, items->Step());
        if (!row) break;
        mine.push_back(ReadItem(*items));
        ++got;
      }
      items->Reset();
      taken += got;
      if (got == share) full.push_back(i);
    }
    open = std::move(full);
  }
  // Rank by rank: every token's oldest, then every token's second oldest, ...
  std::vector<Item> out;
  for (size_t rank = 0; static_cast<int>(out.size()) < limit; ++rank) {
    bool any = false;
    for (auto& mine : per_token) {
      if (rank < mine.size() && static_cast<int>(out.size()) < limit) {
        out.push_back(std::move(mine[rank]));
        any = true;
      }
    }
    if (!any) break;
  }
  std::sort(out.begin(), out.end(), [](const Item& a, const Item& b) { return a.id < b.id; });
  return out;
}

Result<std::optional<int64_t>> TriageQueue::TaskOf(int64_t id) {
  LOOM_ASSIGN_OR_RETURN(auto task, db_->QueryOptional(
                                       kTaskOfSql,
                                       [](const Statement& r) {
                                         return r.IsNull(0) ? std::nullopt
                                                            : std::optional<int64_t>(r.Int(0));
                                       },
                                       id));
  return task ? *task : std::nullopt;
}

Result<std::optional<std::string>> TriageQueue::UnroutableReason(int64_t id) {
  return db_->QueryOptional(
      kUnroutableReasonSql, [](const Statement& r) { return r.Text(0); }, id);
}

Status TriageQueue::MarkTriaged(int64_t id, int64_t task_id) {
  LOOM_ASSIGN_OR_RETURN(Statement * q, db_->Prepare(kMarkTriagedSql));
  return q->BindAll(task_id, id).Run();
}

Status TriageQueue::MarkUnroutable(int64_t id, std::string_view reason) {
  LOOM_ASSIGN_OR_RETURN(Statement * q, db_->Prepare(kMarkUnroutableSql));
  return q->BindAll(reason, id).Run();
}

Result<int> TriageQueue::RequeueUnroutable(std::string_view repo, Unnamed unnamed) {
  LOOM_ASSIGN_OR_RETURN(Statement * q, db_->Prepare(kRequeueSql));
  LOOM_RETURN_IF_ERROR(
      q->BindAll(repo, static_cast<int64_t>(unnamed == Unnamed::kRequeue ? 1 : 0)).Run());
  return db_->Changes();
}

Status TriageQueue::SetTaskStatus(int64_t task_id, std::string_view status,
                                  const std::optional<std::string>& resolution) {
  LOOM_ASSIGN_OR_RETURN(Statement * q, db_->Prepare(kSetTaskStatusSql));
  return q->BindAll(status, resolution, task_id).Run();
}

std::vector<std::string> TriageQueue::StatementsForPlanCheck() {
  return {NextTokenSql(),  TokenItemsSql(),    kTaskOfSql,  kUnroutableReasonSql,
          kMarkTriagedSql, kMarkUnroutableSql, kRequeueSql, kSetTaskStatusSql};
}

}  // namespace loom::feedback
