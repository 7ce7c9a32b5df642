// Tasks and their events. See task_store.h for the state machine and the contract.
#include "orchestrator/task_store.h"

#include "common/json_reader.h"
#include "feedback/intake.h"
#include "orchestrator/repo_store.h"

namespace loom {
namespace {

constexpr const char* kTaskColumns =
    "id, repo, kind, title, instructions, state, reason, branch, base_commit, steps, "
    "prompt_tokens, completion_tokens, test_runs, requested_by, created_at, updated_at, answer, "
    "extra_steps, extra_tokens";

struct Edge {
  TaskState from, to;
};
constexpr Edge kEdges[] = {
    {TaskState::kQueued, TaskState::kRunning},
    {TaskState::kRunning, TaskState::kBlocked},
    {TaskState::kRunning, TaskState::kVerifying},
    {TaskState::kRunning, TaskState::kFailed},
    {TaskState::kRunning, TaskState::kQueued},  // interrupted (restart, slot released)
    {TaskState::kBlocked, TaskState::kQueued},
    {TaskState::kBlocked, TaskState::kFailed},
    {TaskState::kBlocked, TaskState::kRejected},
    {TaskState::kVerifying, TaskState::kReview},
    {TaskState::kVerifying, TaskState::kRunning},  // verification failed: back to the agent
    {TaskState::kVerifying, TaskState::kQueued},   // interrupted
    {TaskState::kVerifying, TaskState::kFailed},
    {TaskState::kVerifying, TaskState::kBlocked},
    {TaskState::kReview, TaskState::kMerged},
    {TaskState::kReview, TaskState::kChangesRequested},
    {TaskState::kReview, TaskState::kRejected},
    {TaskState::kChangesRequested, TaskState::kQueued},
    {TaskState::kFailed, TaskState::kQueued},  // an engineer retries
    {TaskState::kQueued, TaskState::kRejected},
    {TaskState::kFailed, TaskState::kRejected},
    {TaskState::kRunning, TaskState::kAnswered},
    {TaskState::kQueued, TaskState::kCancelled},
    {TaskState::kRunning, TaskState::kCancelled},
    {TaskState::kBlocked, TaskState::kCancelled},
    {TaskState::kVerifying, TaskState::kCancelled},
    {TaskState::kChangesRequested, TaskState::kCancelled},
    {TaskState::kCancelled, TaskState::kQueued},  // retried
};

Task ReadTask(const Statement& r) {
  Task t;
  t.id = r.Int(0);
  t.repo = r.Text(1);
  t.kind = r.Text(2);
  t.title = r.Text(3);
  t.instructions = r.Text(4);
  t.state = ParseTaskState(r.Text(5)).value_or(TaskState::kFailed);
  t.reason = r.Text(6);
  t.branch = r.OptionalText(7);
  t.base_commit = r.OptionalText(8);
  t.steps = r.Int(9);
  t.prompt_tokens = r.Int(10);
  t.completion_tokens = r.Int(11);
  t.test_runs = r.Int(12);
  if (!r.IsNull(13)) t.requested_by = r.Int(13);
  t.created_at_ms = r.Int(14);
  t.updated_at_ms = r.Int(15);
  t.answer = r.OptionalText(16);
  t.extra_steps = r.Int(17);
  t.extra_tokens = r.Int(18);
  return t;
}

// What the agent is asked to do, from the feedback item.
std::string Instructions(const feedback::Item& item) {
  std::string s;
  if (item.kind == "bug") {
    s = "A user reported a bug.\n";
  } else if (item.kind == "feature") {
    s = "A user requested a feature.\n";
  } else {
    s = "A user asked a question; answer it, changing code only if that is the answer.\n";
  }
  s += "Title: " + item.title + "\n\n" + item.body + "\n";
  auto add = [&](const char* label, const std::optional<std::string>& value) {
    if (value && !value->empty()) s += std::string("\n") + label + ":\n" + *value + "\n";
  };
  add("App version", item.app_version);
  add("Commit", item.commit);
  add("URL", item.url);
  add("Stack trace", item.stack_trace);
  add("Logs", item.logs);
  return s;
}

}  // namespace

std::string_view FeedbackStatusFor(TaskState s) {
  switch (s) {
    case TaskState::kReview:
      return "in_review";
    case TaskState::kMerged:
      return "merged";
    case TaskState::kRejected:
      return "rejected";
    case TaskState::kFailed:
      return "failed";
    case TaskState::kAnswered:
      return "answered";
    case TaskState::kCancelled:
      return "cancelled";
    default:
      return "in_progress";
  }
}

std::string_view TaskStateName(TaskState s) {
  switch (s) {
    case TaskState::kQueued:
      return "queued";
    case TaskState::kRunning:
      return "running";
    case TaskState::kBlocked:
      return "blocked";
    case TaskState::kVerifying:
      return "verifying";
    case TaskState::kReview:
      return "review";
    case TaskState::kChangesRequested:
      return "changes_requested";
    case TaskState::kMerged:
      return "merged";
    case TaskState::kRejected:
      return "rejected";
    case TaskState::kFailed:
      return "failed";
    case TaskState::kAnswered:
      return "answered";
    case TaskState::kCancelled:
      return "cancelled";
  }
  return "?";
}

Result<TaskState> ParseTaskState(std::string_view name) {
  for (TaskState s :
       {TaskState::kQueued, TaskState::kRunning, TaskState::kBlocked, TaskState::kVerifying,
        TaskState::kReview, TaskState::kChangesRequested, TaskState::kMerged, TaskState::kRejected,
        TaskState::kFailed, TaskState::kAnswered, TaskState::kCancelled}) {
    if (name == TaskStateName(s)) return s;
  }
  return Status::InvalidArgument("unknown task state '" + std::string(name) + "'");
}

bool TransitionAllowed(TaskState from, TaskState to) {
  for (const auto& e : kEdges)
    if (e.from == from && e.to == to) return true;
  return false;
}

Json Task::ToJson() const {
  Json j = {{"id", id},
            {"repo", repo},
            {"kind", kind},
            {"title", title},
            {"state", TaskStateName(state)},
            {"reason", reason},
            {"steps", steps},
            {"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion_tokens},
            {"test_runs", test_runs},
            {"feedback_ids", feedback_ids},
            {"created_at", created_at_ms},
            {"updated_at", updated_at_ms}};
  if (branch) j["branch"] = *branch;
  if (base_commit) j["base_commit"] = *base_commit;
  if (answer) j["answer"] = *answer;
  if (extra_steps) j["extra_steps"] = extra_steps;
  if (extra_tokens) j["extra_tokens"] = extra_tokens;
  return j;
}

Json Event::ToJson() const {
  return {{"task_id", task_id},
          {"seq", seq},
          {"type", EventTypeName(type)},
          {"data", data},
          {"created_at", created_at_ms}};
}

const std::vector<Migration>& TaskStore::Migrations() {
  static const std::vector<Migration> kMigrations = {
      {2, R"sql(
        CREATE TABLE tasks(
          id INTEGER PRIMARY KEY,
          repo TEXT NOT NULL,
          kind TEXT NOT NULL,               -- bug | feature | question (from the feedback)
          title TEXT NOT NULL,
          instructions TEXT NOT NULL,       -- what the agent is asked to do
          state TEXT NOT NULL,              -- see orchestrator/task_store.h
          reason TEXT NOT NULL DEFAULT '',  -- why it is in this state
          branch TEXT,
          base_commit TEXT,
          steps INTEGER NOT NULL DEFAULT 0,
          prompt_tokens INTEGER NOT NULL DEFAULT 0,
          completion_tokens INTEGER NOT NULL DEFAULT 0,
          test_runs INTEGER NOT NULL DEFAULT 0,
          requested_by INTEGER,             -- token id of the first reporter
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL
        );
        CREATE INDEX tasks_state ON tasks(state, id);
        CREATE TABLE task_feedback(
          task_id INTEGER NOT NULL REFERENCES tasks(id),
          feedback_id INTEGER NOT NULL REFERENCES feedback(id),
          PRIMARY KEY(task_id, feedback_id)
        ) WITHOUT ROWID;
        CREATE TABLE events(
          id INTEGER PRIMARY KEY,
          task_id INTEGER NOT NULL REFERENCES tasks(id),
          seq INTEGER NOT NULL,             -- 1, 2, 3, ... per task
          type TEXT NOT NULL,
          data TEXT NOT NULL,               -- JSON
          created_at INTEGER NOT NULL,
          UNIQUE(task_id, seq)
        );
      )sql"},
      {5, R"sql(
        ALTER TABLE tasks ADD COLUMN answer TEXT;  -- a question's answer (state answered)
      )sql"},
      {6, R"sql(
        -- Budget an engineer added on a retry, over the policy's.
        ALTER TABLE tasks ADD COLUMN extra_steps INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE tasks ADD COLUMN extra_tokens INTEGER NOT NULL DEFAULT 0;
      )sql"},
  };
  return kMigrations;
}

Result<std::vector<int64_t>> TaskStore::Triage() {
  std::vector<int64_t> created;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(TriageRound round, TriageBatch());
    created.insert(created.end(), round.created.begin(), round.created.end());
    if (round.moved() == 0) return created;
  }
}

Result<TriageRound> TaskStore::TriageBatch(int max_items) {
  auto lock = db_->Acquire();
  TriageRound round;
  Transaction tx(lock.db());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  // The single registered repository, if there is exactly one.
  LOOM_ASSIGN_OR_RETURN(std::optional<std::string> only_repo, repos_->OnlyRepository(lock));
  feedback::TriageQueue queue(lock.db());
  int64_t cursor = triage_cursor_.load();
  LOOM_ASSIGN_OR_RETURN(std::vector<feedback::Item> pending, queue.Untriaged(max_items, &cursor));
  triage_cursor_.store(cursor);
  int64_t now = lock.NowMs();
  auto set_aside = [&](const feedback::Item& item, const std::string& reason) -> Status {
    LOOM_RETURN_IF_ERROR(queue.MarkUnroutable(item.id, reason));
    ++round.unroutable;
    return Status::Ok();
  };
  for (const feedback::Item& item : pending) {
    std::optional<int64_t> task_id;
    if (item.duplicate_of) {
      LOOM_ASSIGN_OR_RETURN(task_id, queue.TaskOf(*item.duplicate_of));
      if (!task_id) {
        // Its original was set aside: so is it, for the same reason (they name
        // the same repository). Otherwise the original is still in the queue,
        // ahead of it (older): a later round links it.
        LOOM_ASSIGN_OR_RETURN(std::optional<std::string> why,
                              queue.UnroutableReason(*item.duplicate_of));
        if (why) {
          LOOM_RETURN_IF_ERROR(set_aside(item, *why));
        } else {
          ++round.waiting;
        }
        continue;
      }
    } else {
      std::optional<std::string> repo = item.repo;
      if (repo) {
        LOOM_ASSIGN_OR_RETURN(bool known, repos_->IsRegistered(lock, *repo));
        if (!known) {
          LOOM_RETURN_IF_ERROR(
              set_aside(item, "no repository named '" + *repo +
                                  "' is registered; it is triaged once an admin registers it"));
          continue;
        }
      } else if (only_repo) {
        repo = only_repo;
      } else {
        LOOM_ASSIGN_OR_RETURN(int64_t registered, repos_->Count(lock));
        LOOM_RETURN_IF_ERROR(set_aside(
            item, registered == 0
                      ? "no repository is registered yet; it is triaged once one is"
                      : "it names no repository and " + std::to_string(registered) +
                            " are registered; file it again with \"repo\" set to one of them"));
        continue;
      }
      LOOM_ASSIGN_OR_RETURN(
          Statement * ins,
          lock.db()->Prepare(
              "INSERT INTO tasks(repo, kind, title, instructions, state, requested_by, "
              "created_at, updated_at) VALUES(?,?,?,?,'queued',?,?,?)"));
      LOOM_RETURN_IF_ERROR(
          ins->BindAll(*repo, item.kind, item.title, Instructions(item), item.token_id, now, now)
              .Run());
      task_id = lock.db()->LastInsertRowId();
      round.created.push_back(*task_id);
      LOOM_RETURN_IF_ERROR(
          AppendEventLocked(lock, *task_id, EventType::kCreated, {{"feedback_id", item.id}}, {})
              .status());
    }
    LOOM_ASSIGN_OR_RETURN(
        Statement * link,
        lock.db()->Prepare(
            "INSERT OR IGNORE INTO task_feedback(task_id, feedback_id) VALUES(?,?)"));
    LOOM_RETURN_IF_ERROR(link->BindAll(*task_id, item.id).Run());
    LOOM_RETURN_IF_ERROR(queue.MarkTriaged(item.id, *task_id));
    ++round.linked;
  }
  LOOM_RETURN_IF_ERROR(tx.Commit());
  return round;
}

Result<Task> TaskStore::GetLocked(const StoreDb::Lock& lock, int64_t id) {
  return ReadTaskFrom(lock.db(), id);
}

Result<Task> TaskStore::ReadTaskFrom(Db* db, int64_t id) {
  LOOM_ASSIGN_OR_RETURN(
      Task t, db->QueryOne(std::string("SELECT ") + kTaskColumns + " FROM tasks WHERE id=?",
                           "no task " + std::to_string(id), ReadTask, id));
  LOOM_ASSIGN_OR_RETURN(
      Statement * fb,
      db->Prepare("SELECT feedback_id FROM task_feedback WHERE task_id=? ORDER BY feedback_id"));
  fb->Bind(1, id);
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool r, fb->Step());
    if (!r) break;
    t.feedback_ids.push_back(fb->Int(0));
  }
  fb->Reset();
  return t;
}

// Runs `read` in one read transaction on `db` (the reader's), so that its
// statements see one snapshot. A COMMIT that fails (a statement an error left
// open) is rolled back: no snapshot may outlive the read and hide later writes.
namespace {
template <class Read>
auto InSnapshot(Db* db, Read read) -> decltype(read()) {
  LOOM_RETURN_IF_ERROR(db->Exec("BEGIN"));
  auto out = read();
  if (!db->Exec("COMMIT").ok()) (void)db->Exec("ROLLBACK");
  return out;
}
}  // namespace

Result<Task> TaskStore::Get(int64_t id) {
  auto lock = db_->AcquireReader();
  return InSnapshot(lock.db(), [&] { return ReadTaskFrom(lock.db(), id); });
}

Result<std::vector<Task>> TaskStore::List(std::optional<TaskState> state, int64_t after_id,
                                          int limit) {
  auto lock = db_->AcquireReader();
  return InSnapshot(lock.db(), [&] { return ListFrom(lock.db(), state, after_id, limit); });
}

Result<std::vector<Task>> TaskStore::ListFrom(Db* db, std::optional<TaskState> state,
                                              int64_t after_id, int limit) {
  std::string sql = std::string("SELECT id FROM tasks WHERE id > ?") +
                    (state ? " AND state = ?" : "") + " ORDER BY id LIMIT ?";
  std::vector<int64_t> ids;
  {
    LOOM_ASSIGN_OR_RETURN(Statement * q, db->Prepare(sql));
    int i = 1;
    q->Bind(i++, after_id);
    if (state) q->Bind(i++, TaskStateName(*state));
    q->Bind(i++, static_cast<int64_t>(limit));
    while (true) {
      LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
      if (!row) break;
      ids.push_back(q->Int(0));
    }
    q->Reset();
  }
  std::vector<Task> out;
  for (int64_t id : ids) {
    LOOM_ASSIGN_OR_RETURN(Task t, ReadTaskFrom(db, id));
    out.push_back(std::move(t));
  }
  return out;
}

Status TaskStore::TransitionLocked(const StoreDb::Lock& lock, int64_t id, TaskState from,
                                   TaskState to, const std::string& reason, Json extra) {
  if (!TransitionAllowed(from, to)) {
    return Status::FailedPrecondition("a task cannot go from " + std::string(TaskStateName(from)) +
                                      " to " + std::string(TaskStateName(to)));
  }
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      lock.db()->Prepare(
          "UPDATE tasks SET state=?, reason=?, updated_at=? WHERE id=? AND state=?"));
  LOOM_RETURN_IF_ERROR(
      q->BindAll(TaskStateName(to), lock.Masked(reason), lock.NowMs(), id, TaskStateName(from))
          .Run());
  if (lock.db()->Changes() != 1) {
    return Status::FailedPrecondition("task " + std::to_string(id) + " is no longer " +
                                      std::string(TaskStateName(from)));
  }
  // The reporter follows the task on their feedback item, and sees why it ended
  // (or the answer).
  if (!extra.is_object()) extra = Json::object();
  std::optional<std::string> resolution;
  switch (to) {
    case TaskState::kAnswered:
      if (const Json& a = MemberOrNull(extra, "answer"); a.is_string())
        resolution = lock.Masked(a.get<std::string>());
      break;
    case TaskState::kMerged:
    case TaskState::kRejected:
    case TaskState::kFailed:
    case TaskState::kCancelled:
      resolution = lock.Masked(reason);
      break;
    default:
      break;
  }
  LOOM_RETURN_IF_ERROR(
      feedback::TriageQueue(lock.db()).SetTaskStatus(id, FeedbackStatusFor(to), resolution));
  if (transitions_) {
    // The time in `from`: since the task's last state event, or its creation.
    LOOM_ASSIGN_OR_RETURN(
        int64_t since,
        lock.db()->QueryOne(
            "SELECT COALESCE((SELECT created_at FROM events WHERE task_id=?1 AND type='state' "
            "ORDER BY seq DESC LIMIT 1), (SELECT created_at FROM tasks WHERE id=?1))",
            "no task", [](const Statement& r) { return r.Int(0); }, id));
    transitions_->Add({std::string(TaskStateName(from)), std::string(TaskStateName(to))});
    state_seconds_->Observe({std::string(TaskStateName(from))},
                            std::max<int64_t>(0, lock.NowMs() - since) / 1000.0);
  }
  extra["from"] = TaskStateName(from);
  extra["to"] = TaskStateName(to);
  extra["reason"] = reason;
  return AppendEventLocked(lock, id, EventType::kState, extra, {}).status();
}

Status TaskStore::RecordReview(int64_t id, ReviewDecision decision, const std::string& text,
                               int64_t reviewer, Json extra) {
  auto lock = db_->Acquire();
  Transaction tx(lock.db());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  if (!extra.is_object()) extra = Json::object();
  extra["reviewer"] = reviewer;
  switch (decision) {
    case ReviewDecision::kMerged:
      LOOM_RETURN_IF_ERROR(
          TransitionLocked(lock, id, TaskState::kReview, TaskState::kMerged, text, extra));
      break;
    case ReviewDecision::kRejected:
      LOOM_RETURN_IF_ERROR(
          TransitionLocked(lock, id, TaskState::kReview, TaskState::kRejected, text, extra));
      break;
    case ReviewDecision::kChangesRequested:
      LOOM_RETURN_IF_ERROR(TransitionLocked(
          lock, id, TaskState::kReview, TaskState::kChangesRequested, "changes requested", extra));
      extra["comment"] = text;
      LOOM_RETURN_IF_ERROR(
          AppendEventLocked(lock, id, EventType::kReviewComment, extra, {}).status());
      LOOM_RETURN_IF_ERROR(TransitionLocked(lock, id, TaskState::kChangesRequested,
                                            TaskState::kQueued, "back to the agent with the review",
                                            {}));
      break;
  }
  return tx.Commit();
}

Status TaskStore::RecordAnswer(int64_t id, TaskState from, const std::string& answer) {
  auto lock = db_->Acquire();
  Transaction tx(lock.db());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  LOOM_RETURN_IF_ERROR(
      TransitionLocked(lock, id, from, TaskState::kAnswered, "answered", {{"answer", answer}}));
  LOOM_ASSIGN_OR_RETURN(Statement * q, lock.db()->Prepare("UPDATE tasks SET answer=? WHERE id=?"));
  LOOM_RETURN_IF_ERROR(q->BindAll(lock.Masked(answer), id).Run());
  return tx.Commit();
}

Status TaskStore::Transition(int64_t id, TaskState from, TaskState to, const std::string& reason,
                             Json extra) {
  auto lock = db_->Acquire();
  Transaction tx(lock.db());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  LOOM_RETURN_IF_ERROR(TransitionLocked(lock, id, from, to, reason, std::move(extra)));
  return tx.Commit();
}

Result<std::optional<Task>> TaskStore::LeaseNext(const ReviewBound& max_waiting) {
  auto lock = db_->Acquire();
  Transaction tx(lock.db());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  // Repositories at their review bound (read by the state index: as many rows
  // as tasks in review).
  std::vector<std::string> full;
  if (max_waiting) {
    LOOM_ASSIGN_OR_RETURN(
        Statement * q,
        lock.db()->Prepare("SELECT repo, COUNT(*) FROM tasks WHERE state='review' GROUP BY repo"));
    while (true) {
      LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
      if (!row) break;
      std::string repo = q->Text(0);
      int64_t bound = max_waiting(repo);
      if (q->Int(1) >= bound) full.push_back(repo);
    }
  }
  std::string sql = "SELECT id FROM tasks WHERE state='queued'";
  if (!full.empty()) {
    sql += " AND repo NOT IN (?";
    for (size_t i = 1; i < full.size(); ++i) sql += ",?";
    sql += ")";
  }
  sql += " ORDER BY id LIMIT 1";
  LOOM_ASSIGN_OR_RETURN(Statement * pick, lock.db()->Prepare(sql));
  for (size_t i = 0; i < full.size(); ++i) pick->Bind(static_cast<int>(i) + 1, full[i]);
  std::optional<int64_t> next;
  LOOM_ASSIGN_OR_RETURN(bool found, pick->Step());
  if (found) next = pick->Int(0);
  pick->Reset();
  for (const std::string& repo : full) {
    std::string why = "waiting: " + std::to_string(max_waiting(repo)) + " tasks of " + repo +
                      " are in review (review.max_waiting); started once reviews drain";
    LOOM_ASSIGN_OR_RETURN(Statement * held,
                          lock.db()->Prepare("UPDATE tasks SET reason=?1 WHERE state='queued' AND "
                                             "repo=?2 AND reason IS NOT ?1"));
    LOOM_RETURN_IF_ERROR(held->BindAll(why, repo).Run());
  }
  if (!next) {
    LOOM_RETURN_IF_ERROR(tx.Commit());
    return std::optional<Task>();
  }
  int64_t id = *next;
  LOOM_RETURN_IF_ERROR(
      TransitionLocked(lock, id, TaskState::kQueued, TaskState::kRunning, "leased", {}));
  LOOM_RETURN_IF_ERROR(tx.Commit());
  LOOM_ASSIGN_OR_RETURN(Task t, GetLocked(lock, id));
  return std::optional<Task>(std::move(t));
}

Result<int> TaskStore::RecoverInterrupted() {
  auto lock = db_->Acquire();
  Transaction tx(lock.db());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  std::vector<std::pair<int64_t, TaskState>> stuck;
  {
    LOOM_ASSIGN_OR_RETURN(
        Statement * q,
        lock.db()->Prepare("SELECT id, state FROM tasks WHERE state IN ('running', 'verifying')"));
    while (true) {
      LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
      if (!row) break;
      stuck.emplace_back(q->Int(0), *ParseTaskState(q->Text(1)));
    }
  }
  for (auto [id, state] : stuck) {
    LOOM_RETURN_IF_ERROR(
        TransitionLocked(lock, id, state, TaskState::kQueued, "resumed after a restart", {}));
  }
  LOOM_RETURN_IF_ERROR(tx.Commit());
  return static_cast<int>(stuck.size());
}

Status TaskStore::SetBranch(int64_t id, const std::string& branch, const std::string& base_commit) {
  auto lock = db_->Acquire();
  LOOM_ASSIGN_OR_RETURN(Statement * q,
                        lock.db()->Prepare("UPDATE tasks SET branch=?, base_commit=? WHERE id=?"));
  return q->BindAll(branch, base_commit, id).Run();
}

Status TaskStore::ClearBranch(int64_t id) {
  auto lock = db_->Acquire();
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      lock.db()->Prepare("UPDATE tasks SET branch=NULL, base_commit=NULL WHERE id=?"));
  return q->BindAll(id).Run();
}

Status TaskStore::RecordCancel(int64_t id, TaskState from, const std::string& reason, int64_t by) {
  auto lock = db_->Acquire();
  Transaction tx(lock.db());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  LOOM_RETURN_IF_ERROR(
      TransitionLocked(lock, id, from, TaskState::kCancelled, reason, {{"by", by}}));
  LOOM_ASSIGN_OR_RETURN(Statement * q,
                        lock.db()->Prepare("UPDATE escalations SET state='closed', answered_by=?, "
                                           "answered_at=? WHERE task_id=? AND state='open'"));
  LOOM_RETURN_IF_ERROR(q->BindAll(by, lock.NowMs(), id).Run());
  return tx.Commit();
}

Status TaskStore::RecordRetry(int64_t id, TaskState from, int64_t by, int64_t extra_steps,
                              int64_t extra_tokens) {
  auto lock = db_->Acquire();
  Transaction tx(lock.db());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  LOOM_ASSIGN_OR_RETURN(Task t, GetLocked(lock, id));
  LOOM_RETURN_IF_ERROR(
      TransitionLocked(lock, id, from, TaskState::kQueued, "retried", {{"by", by}}));
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      lock.db()->Prepare("UPDATE tasks SET branch=NULL, base_commit=NULL, answer=NULL, "
                         "extra_steps=extra_steps+?, extra_tokens=extra_tokens+? WHERE id=?"));
  LOOM_RETURN_IF_ERROR(q->BindAll(extra_steps, extra_tokens, id).Run());
  LOOM_RETURN_IF_ERROR(AppendEventLocked(lock, id, EventType::kRetried,
                                         {{"by", by},
                                          {"extra_steps", extra_steps},
                                          {"extra_tokens", extra_tokens},
                                          {"steps", t.steps},
                                          {"tokens", t.prompt_tokens + t.completion_tokens},
                                          {"test_runs", t.test_runs}},
                                         {})
                           .status());
  return tx.Commit();
}

void TaskStore::Meter(MetricsRegistry* metrics) {
  transitions_ = metrics->NewCounter("loom_task_transitions_total",
                                     "Task state transitions, by the states left and entered.",
                                     {"from", "to"});
  state_seconds_ = metrics->NewHistogram(
      "loom_task_state_duration_seconds", "Time tasks spent in a state, counted when they left it.",
      {"state"}, {1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400});
  events_ =
      metrics->NewCounter("loom_task_events_total", "Task events recorded, by type.", {"type"});
}

Result<int64_t> TaskStore::AppendEventLocked(const StoreDb::Lock& lock, int64_t task_id,
                                             EventType type, const Json& data, const Usage& usage) {
  LOOM_ASSIGN_OR_RETURN(int64_t seq,
                        lock.db()->QueryOne(
                            "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE task_id=?",
                            "no next seq", [](const Statement& r) { return r.Int(0); }, task_id));
  int64_t now = lock.NowMs();
  LOOM_ASSIGN_OR_RETURN(
      Statement * ins,
      lock.db()->Prepare(
          "INSERT INTO events(task_id, seq, type, data, created_at) VALUES(?,?,?,?,?)"));
  LOOM_RETURN_IF_ERROR(
      ins->BindAll(task_id, seq, EventTypeName(type), DumpJson(lock.Masked(data)), now).Run());
  if (events_) events_->Add({std::string(EventTypeName(type))});
  if (usage.steps || usage.prompt_tokens || usage.completion_tokens || usage.test_runs) {
    LOOM_ASSIGN_OR_RETURN(
        Statement * upd,
        lock.db()->Prepare(
            "UPDATE tasks SET steps=steps+?, prompt_tokens=prompt_tokens+?, "
            "completion_tokens=completion_tokens+?, test_runs=test_runs+?, updated_at=? "
            "WHERE id=?"));
    LOOM_RETURN_IF_ERROR(upd->BindAll(usage.steps, usage.prompt_tokens, usage.completion_tokens,
                                      usage.test_runs, now, task_id)
                             .Run());
  }
  return seq;
}

Result<int64_t> TaskStore::AppendEvent(int64_t task_id, EventType type, const Json& data,
                                       Usage usage) {
  auto lock = db_->Acquire();
  Transaction tx(lock.db());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  LOOM_ASSIGN_OR_RETURN(int64_t seq, AppendEventLocked(lock, task_id, type, data, usage));
  LOOM_RETURN_IF_ERROR(tx.Commit());
  return seq;
}

Result<std::vector<Event>> TaskStore::Events(int64_t task_id, int64_t after_seq, int limit) {
  auto lock = db_->AcquireReader();
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      lock.db()->Prepare("SELECT seq, type, data, created_at FROM events WHERE task_id=? AND seq>? "
                         "ORDER BY seq LIMIT ?"));
  q->BindAll(task_id, after_seq, static_cast<int64_t>(limit));
  std::vector<Event> out;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    Event e;
    e.task_id = task_id;
    e.seq = q->Int(0);
    e.type = ParseEventType(q->Text(1));
    e.data = ParseJson(q->Text(2)).value_or(Json());
    e.created_at_ms = q->Int(3);
    out.push_back(std::move(e));
  }
  q->Reset();
  return out;
}

}  // namespace loom
