// The forge tables. See forge_store.h.
#include "orchestrator/forge_store.h"

namespace loom {
namespace {

ForgeDelivery ReadDelivery(const Statement& r) {
  ForgeDelivery d;
  d.forge = r.Text(0);
  d.id = r.Text(1);
  d.repo = r.Text(2);
  d.event = r.Text(3);
  d.body = r.Text(4);
  d.received_at_ms = r.Int(5);
  d.finished = !r.IsNull(6);
  d.outcome = r.OptionalText(7).value_or("");
  return d;
}

constexpr const char* kDeliveryColumns =
    "forge, delivery_id, repo, event, body, received_at, finished_at, outcome";

ForgePull ReadPull(const Statement& r) {
  ForgePull p;
  p.task_id = r.Int(0);
  p.repo = r.Text(1);
  p.forge = r.Text(2);
  p.project = r.Text(3);
  p.number = r.Int(4);
  p.url = r.Text(5);
  p.draft = r.Int(6) != 0;
  return p;
}

constexpr const char* kPullColumns = "task_id, repo, forge, project, number, url, draft";

}  // namespace

const std::vector<Migration>& ForgeStore::Migrations() {
  static const std::vector<Migration> kMigrations = {
      {10, R"sql(
        -- Webhook deliveries, recorded before they are answered: a redelivery
        -- of the same id is answered from here, and one loomd stopped before
        -- finishing is finished at the next start.
        CREATE TABLE forge_deliveries(
          forge TEXT NOT NULL,             -- github | gitlab
          delivery_id TEXT NOT NULL,
          repo TEXT NOT NULL,
          event TEXT NOT NULL,
          body TEXT NOT NULL,
          received_at INTEGER NOT NULL,
          finished_at INTEGER,
          outcome TEXT,
          PRIMARY KEY(forge, delivery_id)
        );
        CREATE INDEX forge_deliveries_unfinished ON forge_deliveries(received_at)
          WHERE finished_at IS NULL;
        -- Each task's pull request (GitHub) or merge request (GitLab: its iid).
        CREATE TABLE forge_pulls(
          task_id INTEGER PRIMARY KEY REFERENCES tasks(id),
          repo TEXT NOT NULL,
          forge TEXT NOT NULL,
          project TEXT NOT NULL,
          number INTEGER NOT NULL,
          url TEXT NOT NULL,
          draft INTEGER NOT NULL,
          updated_at INTEGER NOT NULL,
          UNIQUE(forge, project, number)
        );
        -- Forge issues that became feedback.
        CREATE TABLE forge_issues(
          feedback_id INTEGER PRIMARY KEY REFERENCES feedback(id),
          repo TEXT NOT NULL,
          forge TEXT NOT NULL,
          project TEXT NOT NULL,
          number INTEGER NOT NULL,
          url TEXT NOT NULL,
          commented_task_id INTEGER,
          UNIQUE(forge, project, number)
        );
        -- Line comments of a pull/merge request waiting for the review that
        -- requests changes.
        CREATE TABLE forge_line_comments(
          forge TEXT NOT NULL,
          project TEXT NOT NULL,
          number INTEGER NOT NULL,
          comment_id TEXT NOT NULL,
          review_id TEXT NOT NULL,         -- '' when the forge names none
          path TEXT NOT NULL,
          line INTEGER NOT NULL,
          body TEXT NOT NULL,
          received_at INTEGER NOT NULL,
          used_at INTEGER,
          used_by TEXT,                    -- the delivery whose review took it
          PRIMARY KEY(forge, project, comment_id)
        );
        CREATE INDEX forge_line_comments_pending ON forge_line_comments(forge, project, number)
          WHERE used_at IS NULL;
      )sql"},
      {11, R"sql(
        -- Durable consumers of the task event log: the last event each is done with.
        CREATE TABLE forge_cursors(
          consumer TEXT PRIMARY KEY,
          after_event INTEGER NOT NULL
        );
      )sql"},
  };
  return kMigrations;
}

Result<ForgeDelivery> ForgeStore::RecordDelivery(const ForgeDelivery& delivery) {
  auto lock = db_->Acquire();
  Db* db = lock.db();
  LOOM_ASSIGN_OR_RETURN(
      Statement * ins,
      db->Prepare("INSERT INTO forge_deliveries(forge, delivery_id, repo, event, body, "
                  "received_at) VALUES(?,?,?,?,?,?) ON CONFLICT DO NOTHING"));
  LOOM_RETURN_IF_ERROR(ins->BindAll(delivery.forge, delivery.id, delivery.repo, delivery.event,
                                    delivery.body, lock.NowMs())
                           .Run());
  return db->QueryOne(std::string("SELECT ") + kDeliveryColumns +
                          " FROM forge_deliveries WHERE forge=? AND delivery_id=?",
                      "delivery not recorded", ReadDelivery, delivery.forge, delivery.id);
}

Status ForgeStore::FinishDelivery(const std::string& forge, const std::string& id,
                                  const std::string& outcome) {
  auto lock = db_->Acquire();
  LOOM_ASSIGN_OR_RETURN(Statement * q,
                        lock.db()->Prepare("UPDATE forge_deliveries SET finished_at=?, outcome=? "
                                           "WHERE forge=? AND delivery_id=?"));
  return q->BindAll(lock.NowMs(), lock.Masked(outcome), forge, id).Run();
}

Result<std::vector<ForgeDelivery>> ForgeStore::UnfinishedDeliveries() {
  auto lock = db_->Acquire();
  LOOM_ASSIGN_OR_RETURN(Statement * q,
                        lock.db()->Prepare(std::string("SELECT ") + kDeliveryColumns +
                                           " FROM forge_deliveries WHERE finished_at IS NULL "
                                           "ORDER BY received_at"));
  std::vector<ForgeDelivery> out;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    out.push_back(ReadDelivery(*q));
  }
  q->Reset();
  return out;
}

Status ForgeStore::PutPull(const ForgePull& pull) {
  auto lock = db_->Acquire();
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      lock.db()->Prepare("INSERT INTO forge_pulls(task_id, repo, forge, project, number, url, "
                         "draft, updated_at) VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(task_id) DO "
                         "UPDATE SET repo=excluded.repo, forge=excluded.forge, "
                         "project=excluded.project, number=excluded.number, url=excluded.url, "
                         "draft=excluded.draft, updated_at=excluded.updated_at"));
  return q
      ->BindAll(pull.task_id, pull.repo, pull.forge, pull.project, pull.number, pull.url,
                int64_t{pull.draft ? 1 : 0}, lock.NowMs())
      .Run();
}

Result<std::optional<ForgePull>> ForgeStore::PullOfTask(int64_t task_id) {
  auto lock = db_->Acquire();
  return lock.db()->QueryOptional(
      std::string("SELECT ") + kPullColumns + " FROM forge_pulls WHERE task_id=?", ReadPull,
      task_id);
}

Result<std::optional<ForgePull>> ForgeStore::PullByNumber(const std::string& forge,
                                                          const std::string& project,
                                                          int64_t number) {
  auto lock = db_->Acquire();
  return lock.db()->QueryOptional(std::string("SELECT ") + kPullColumns +
                                      " FROM forge_pulls WHERE forge=? AND project=? AND number=?",
                                  ReadPull, forge, project, number);
}

Status ForgeStore::PutIssue(const ForgeIssue& issue) {
  auto lock = db_->Acquire();
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      lock.db()->Prepare("INSERT INTO forge_issues(feedback_id, repo, forge, project, number, url) "
                         "VALUES(?,?,?,?,?,?) ON CONFLICT DO NOTHING"));
  return q
      ->BindAll(issue.feedback_id, issue.repo, issue.forge, issue.project, issue.number, issue.url)
      .Run();
}

Result<std::vector<ForgeIssue>> ForgeStore::IssuesOfTask(int64_t task_id) {
  auto lock = db_->Acquire();
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      lock.db()->Prepare("SELECT i.feedback_id, i.repo, i.forge, i.project, i.number, i.url, "
                         "i.commented_task_id FROM forge_issues i JOIN task_feedback t "
                         "ON t.feedback_id = i.feedback_id WHERE t.task_id=? ORDER BY "
                         "i.feedback_id"));
  q->BindAll(task_id);
  std::vector<ForgeIssue> out;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    ForgeIssue i;
    i.feedback_id = q->Int(0);
    i.repo = q->Text(1);
    i.forge = q->Text(2);
    i.project = q->Text(3);
    i.number = q->Int(4);
    i.url = q->Text(5);
    if (!q->IsNull(6)) i.commented_task_id = q->Int(6);
    out.push_back(std::move(i));
  }
  q->Reset();
  return out;
}

Status ForgeStore::MarkIssueCommented(int64_t feedback_id, int64_t task_id) {
  auto lock = db_->Acquire();
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      lock.db()->Prepare("UPDATE forge_issues SET commented_task_id=? WHERE feedback_id=?"));
  return q->BindAll(task_id, feedback_id).Run();
}

Result<int64_t> ForgeStore::Cursor(const std::string& consumer) {
  auto lock = db_->Acquire();
  LOOM_ASSIGN_OR_RETURN(std::optional<int64_t> at,
                        lock.db()->QueryOptional(
                            "SELECT after_event FROM forge_cursors WHERE consumer=?",
                            [](const Statement& r) { return r.Int(0); }, consumer));
  return at.value_or(0);
}

Status ForgeStore::SetCursor(const std::string& consumer, int64_t after_event) {
  auto lock = db_->Acquire();
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      lock.db()->Prepare("INSERT INTO forge_cursors(consumer, after_event) VALUES(?,?) ON "
                         "CONFLICT(consumer) DO UPDATE SET after_event=excluded.after_event"));
  return q->BindAll(consumer, after_event).Run();
}

Result<int64_t> ForgeStore::LastEventId() {
  auto lock = db_->Acquire();
  return lock.db()->QueryOne("SELECT COALESCE(MAX(id), 0) FROM events", "no events table",
                             [](const Statement& r) { return r.Int(0); });
}

Result<std::vector<LoggedEvent>> ForgeStore::EventsAfter(int64_t after_event,
                                                         const std::vector<std::string>& types,
                                                         int limit) {
  auto lock = db_->Acquire();
  std::string in;
  for (size_t i = 0; i < types.size(); ++i) in += i ? ",?" : "?";
  std::string where = types.empty() ? "" : " AND type IN (" + in + ")";
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      lock.db()->Prepare("SELECT id, task_id, type, data, created_at FROM events WHERE id>?" +
                         where + " ORDER BY id LIMIT ?"));
  int index = 1;
  q->Bind(index++, after_event);
  for (const std::string& t : types) q->Bind(index++, t);
  q->Bind(index++, int64_t{limit});
  std::vector<LoggedEvent> out;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    out.push_back(
        {q->Int(0), q->Int(1), q->Text(2), ParseJson(q->Text(3)).value_or(Json()), q->Int(4)});
  }
  q->Reset();
  return out;
}

Status ForgeStore::AddPendingComment(const std::string& forge, const std::string& project,
                                     int64_t number, const std::string& comment_id,
                                     const std::string& review_id, const LineComment& comment) {
  auto lock = db_->Acquire();
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      lock.db()->Prepare("INSERT INTO forge_line_comments(forge, project, number, comment_id, "
                         "review_id, path, line, body, received_at) VALUES(?,?,?,?,?,?,?,?,?) "
                         "ON CONFLICT DO NOTHING"));
  return q
      ->BindAll(forge, project, number, comment_id, review_id, comment.path, comment.line,
                lock.Masked(comment.body), lock.NowMs())
      .Run();
}

Result<std::vector<LineComment>> ForgeStore::TakePendingComments(const std::string& forge,
                                                                 const std::string& project,
                                                                 int64_t number,
                                                                 const std::string& review_id,
                                                                 const std::string& taker) {
  auto lock = db_->Acquire();
  Transaction tx(lock.db());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      lock.db()->Prepare("SELECT path, line, body FROM forge_line_comments WHERE forge=? AND "
                         "project=? AND number=? AND ((used_at IS NULL AND (review_id=? OR "
                         "review_id='')) OR used_by=?) ORDER BY received_at, rowid"));
  q->BindAll(forge, project, number, review_id, taker);
  std::vector<LineComment> out;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    out.push_back({q->Text(0), q->Int(1), q->Text(2)});
  }
  q->Reset();
  LOOM_ASSIGN_OR_RETURN(
      Statement * mark,
      lock.db()->Prepare("UPDATE forge_line_comments SET used_at=?, used_by=? WHERE forge=? AND "
                         "project=? AND number=? AND used_at IS NULL AND (review_id=? OR "
                         "review_id='')"));
  LOOM_RETURN_IF_ERROR(mark->BindAll(lock.NowMs(), taker, forge, project, number, review_id).Run());
  LOOM_RETURN_IF_ERROR(tx.Commit());
  return out;
}

}  // namespace loom
