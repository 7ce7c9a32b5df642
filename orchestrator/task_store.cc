// Task persistence. See task_store.h for the state machine and the contract.
#include "orchestrator/task_store.h"

#include <chrono>

#include "common/json_reader.h"
#include "common/schema.h"

namespace loom {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

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

Task ReadTask(Statement* q) {
  Task t;
  t.id = q->Int(0);
  t.repo = q->Text(1);
  t.kind = q->Text(2);
  t.title = q->Text(3);
  t.instructions = q->Text(4);
  t.state = ParseTaskState(q->Text(5)).value_or(TaskState::kFailed);
  t.reason = q->Text(6);
  t.branch = q->OptionalText(7);
  t.base_commit = q->OptionalText(8);
  t.steps = q->Int(9);
  t.prompt_tokens = q->Int(10);
  t.completion_tokens = q->Int(11);
  t.test_runs = q->Int(12);
  if (!q->IsNull(13)) t.requested_by = q->Int(13);
  t.created_at_ms = q->Int(14);
  t.updated_at_ms = q->Int(15);
  t.answer = q->OptionalText(16);
  t.extra_steps = q->Int(17);
  t.extra_tokens = q->Int(18);
  return t;
}

// What the agent is asked to do, from the feedback item.
std::string Instructions(const std::string& kind, Statement* fb) {
  std::string s;
  if (kind == "bug") {
    s = "A user reported a bug.\n";
  } else if (kind == "feature") {
    s = "A user requested a feature.\n";
  } else {
    s = "A user asked a question; answer it, changing code only if that is the answer.\n";
  }
  s += "Title: " + fb->Text(2) + "\n\n" + fb->Text(3) + "\n";
  auto add = [&](const char* label, int col) {
    if (!fb->IsNull(col) && !fb->Text(col).empty())
      s += std::string("\n") + label + ":\n" + fb->Text(col) + "\n";
  };
  add("App version", 4);
  add("Commit", 5);
  add("URL", 6);
  add("Stack trace", 7);
  add("Logs", 8);
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

Json RepoEntry::ToJson() const {
  return {
      {"name", name}, {"path", path}, {"branch", target_branch}, {"test_command", test_command}};
}

Json Escalation::ToJson() const {
  Json j = {{"id", id},           {"kind", kind},
            {"summary", summary}, {"raised_by", raised_by},
            {"state", state},     {"created_at", created_at_ms}};
  if (task_id) j["task_id"] = *task_id;
  if (secret_name) j["secret_name"] = *secret_name;
  if (!answer.is_null()) j["answer"] = answer;
  return j;
}

Result<std::unique_ptr<TaskStore>> TaskStore::Open(const std::string& db_path) {
  // synchronous=NORMAL: in WAL mode a commit survives kill -9 and any crash of
  // loomd (it is in the OS's page cache); only a power cut can lose the last
  // steps, which a resumed agent then makes again. FULL would cost an fsync per
  // step (bench/RESULTS.md, "Agent loop").
  Db::Options options;
  options.durability = Db::Durability::kNormal;
  LOOM_ASSIGN_OR_RETURN(auto db, Db::Open(db_path, LoomMigrations(), options));
  return std::unique_ptr<TaskStore>(new TaskStore(std::move(db)));
}

Status TaskStore::AddRepo(const RepoEntry& repo) {
  std::lock_guard<std::mutex> lock(mu_);
  LOOM_ASSIGN_OR_RETURN(Statement * q,
                        db_->Prepare("INSERT INTO repos(name, path, target_branch, test_command, "
                                     "created_at) VALUES(?,?,?,?,?)"));
  Status s = q->BindAll(repo.name, repo.path, repo.target_branch, repo.test_command, NowMs()).Run();
  if (s.code() == StatusCode::kAlreadyExists) {
    return Status::AlreadyExists("a repository named '" + repo.name + "' is already registered");
  }
  return s;
}

Result<RepoEntry> TaskStore::GetRepo(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      db_->Prepare("SELECT name, path, target_branch, test_command FROM repos WHERE name=?"));
  q->Bind(1, name);
  LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
  if (!row) return Status::NotFound("no repository named '" + name + "'");
  RepoEntry r{q->Text(0), q->Text(1), q->Text(2), q->Text(3)};
  q->Reset();
  return r;
}

Result<std::vector<RepoEntry>> TaskStore::ListRepos() {
  std::lock_guard<std::mutex> lock(mu_);
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      db_->Prepare("SELECT name, path, target_branch, test_command FROM repos ORDER BY name"));
  std::vector<RepoEntry> out;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    out.push_back({q->Text(0), q->Text(1), q->Text(2), q->Text(3)});
  }
  return out;
}

Result<std::vector<int64_t>> TaskStore::Triage() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int64_t> created;
  Transaction tx(db_.get());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  // The single registered repository, if there is exactly one.
  std::optional<std::string> only_repo;
  {
    LOOM_ASSIGN_OR_RETURN(Statement * q, db_->Prepare("SELECT name FROM repos LIMIT 2"));
    std::vector<std::string> names;
    while (true) {
      LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
      if (!row) break;
      names.push_back(q->Text(0));
    }
    if (names.size() == 1) only_repo = names[0];
  }
  LOOM_ASSIGN_OR_RETURN(
      Statement * fb,
      db_->Prepare("SELECT f.id, f.kind, f.title, f.body, f.app_version, f.commit_sha, f.url, "
                   "f.stack_trace, f.logs, f.repo, f.duplicate_of, f.token_id "
                   "FROM feedback f WHERE f.task_id IS NULL AND f.status IN ('new', 'duplicate') "
                   "ORDER BY f.id LIMIT 200"));
  struct Pending {
    int64_t id;
    std::string kind, title, instructions;
    std::optional<std::string> repo;
    std::optional<int64_t> duplicate_of;
    int64_t token_id;
  };
  std::vector<Pending> pending;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, fb->Step());
    if (!row) break;
    Pending p{
        fb->Int(0),          fb->Text(1),
        fb->Text(2),         Instructions(fb->Text(1), fb),
        fb->OptionalText(9), fb->IsNull(10) ? std::nullopt : std::optional<int64_t>(fb->Int(10)),
        fb->Int(11)};
    pending.push_back(std::move(p));
  }
  int64_t now = NowMs();
  for (auto& p : pending) {
    std::optional<int64_t> task_id;
    if (p.duplicate_of) {
      LOOM_ASSIGN_OR_RETURN(Statement * q, db_->Prepare("SELECT task_id FROM feedback WHERE id=?"));
      q->Bind(1, *p.duplicate_of);
      LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
      if (row && !q->IsNull(0)) task_id = q->Int(0);
      q->Reset();
      if (!task_id) continue;  // the original is not triaged yet; next round
    } else {
      std::optional<std::string> repo = p.repo;
      if (repo) {
        LOOM_ASSIGN_OR_RETURN(Statement * q, db_->Prepare("SELECT 1 FROM repos WHERE name=?"));
        q->Bind(1, *repo);
        LOOM_ASSIGN_OR_RETURN(bool known, q->Step());
        q->Reset();
        if (!known) continue;  // waits until the repository is registered
      } else {
        repo = only_repo;
      }
      if (!repo) continue;
      LOOM_ASSIGN_OR_RETURN(
          Statement * ins,
          db_->Prepare("INSERT INTO tasks(repo, kind, title, instructions, state, requested_by, "
                       "created_at, updated_at) VALUES(?,?,?,?,'queued',?,?,?)"));
      LOOM_RETURN_IF_ERROR(
          ins->BindAll(*repo, p.kind, p.title, p.instructions, p.token_id, now, now).Run());
      task_id = db_->LastInsertRowId();
      created.push_back(*task_id);
      LOOM_RETURN_IF_ERROR(
          AppendEventLocked(*task_id, EventType::kCreated, {{"feedback_id", p.id}}, {}).status());
    }
    LOOM_ASSIGN_OR_RETURN(
        Statement * link,
        db_->Prepare("INSERT OR IGNORE INTO task_feedback(task_id, feedback_id) VALUES(?,?)"));
    LOOM_RETURN_IF_ERROR(link->BindAll(*task_id, p.id).Run());
    LOOM_ASSIGN_OR_RETURN(
        Statement * upd,
        db_->Prepare("UPDATE feedback SET task_id=?, status=CASE status WHEN 'new' THEN 'triaged' "
                     "ELSE status END WHERE id=?"));
    LOOM_RETURN_IF_ERROR(upd->BindAll(*task_id, p.id).Run());
  }
  LOOM_RETURN_IF_ERROR(tx.Commit());
  return created;
}

Result<Task> TaskStore::GetLocked(int64_t id) {
  LOOM_ASSIGN_OR_RETURN(Statement * q, db_->Prepare(std::string("SELECT ") + kTaskColumns +
                                                    " FROM tasks WHERE id=?"));
  q->Bind(1, id);
  LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
  if (!row) return Status::NotFound("no task " + std::to_string(id));
  Task t = ReadTask(q);
  q->Reset();
  LOOM_ASSIGN_OR_RETURN(
      Statement * fb,
      db_->Prepare("SELECT feedback_id FROM task_feedback WHERE task_id=? ORDER BY feedback_id"));
  fb->Bind(1, id);
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool r, fb->Step());
    if (!r) break;
    t.feedback_ids.push_back(fb->Int(0));
  }
  return t;
}

Result<Task> TaskStore::Get(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  return GetLocked(id);
}

Result<std::vector<Task>> TaskStore::List(std::optional<TaskState> state, int64_t after_id,
                                          int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string sql = std::string("SELECT id FROM tasks WHERE id > ?") +
                    (state ? " AND state = ?" : "") + " ORDER BY id LIMIT ?";
  std::vector<int64_t> ids;
  {
    LOOM_ASSIGN_OR_RETURN(Statement * q, db_->Prepare(sql));
    int i = 1;
    q->Bind(i++, after_id);
    if (state) q->Bind(i++, TaskStateName(*state));
    q->Bind(i++, static_cast<int64_t>(limit));
    while (true) {
      LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
      if (!row) break;
      ids.push_back(q->Int(0));
    }
  }
  std::vector<Task> out;
  for (int64_t id : ids) {
    LOOM_ASSIGN_OR_RETURN(Task t, GetLocked(id));
    out.push_back(std::move(t));
  }
  return out;
}

Status TaskStore::TransitionLocked(int64_t id, TaskState from, TaskState to,
                                   const std::string& reason, Json extra) {
  if (!TransitionAllowed(from, to)) {
    return Status::FailedPrecondition("a task cannot go from " + std::string(TaskStateName(from)) +
                                      " to " + std::string(TaskStateName(to)));
  }
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      db_->Prepare("UPDATE tasks SET state=?, reason=?, updated_at=? WHERE id=? AND state=?"));
  LOOM_RETURN_IF_ERROR(
      q->BindAll(TaskStateName(to), Masked(reason), NowMs(), id, TaskStateName(from)).Run());
  if (db_->Changes() != 1) {
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
        resolution = Masked(a.get<std::string>());
      break;
    case TaskState::kMerged:
    case TaskState::kRejected:
    case TaskState::kFailed:
    case TaskState::kCancelled:
      resolution = Masked(reason);
      break;
    default:
      break;
  }
  LOOM_ASSIGN_OR_RETURN(Statement * fb,
                        db_->Prepare("UPDATE feedback SET status=?, resolution=? WHERE task_id=?"));
  LOOM_RETURN_IF_ERROR(fb->BindAll(FeedbackStatusFor(to), resolution, id).Run());
  extra["from"] = TaskStateName(from);
  extra["to"] = TaskStateName(to);
  extra["reason"] = reason;
  return AppendEventLocked(id, EventType::kState, extra, {}).status();
}

Status TaskStore::RecordReview(int64_t id, ReviewDecision decision, const std::string& text,
                               int64_t reviewer, Json extra) {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction tx(db_.get());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  if (!extra.is_object()) extra = Json::object();
  extra["reviewer"] = reviewer;
  switch (decision) {
    case ReviewDecision::kMerged:
      LOOM_RETURN_IF_ERROR(
          TransitionLocked(id, TaskState::kReview, TaskState::kMerged, text, extra));
      break;
    case ReviewDecision::kRejected:
      LOOM_RETURN_IF_ERROR(
          TransitionLocked(id, TaskState::kReview, TaskState::kRejected, text, extra));
      break;
    case ReviewDecision::kChangesRequested:
      LOOM_RETURN_IF_ERROR(TransitionLocked(id, TaskState::kReview, TaskState::kChangesRequested,
                                            "changes requested", extra));
      extra["comment"] = text;
      LOOM_RETURN_IF_ERROR(AppendEventLocked(id, EventType::kReviewComment, extra, {}).status());
      LOOM_RETURN_IF_ERROR(TransitionLocked(id, TaskState::kChangesRequested, TaskState::kQueued,
                                            "back to the agent with the review", {}));
      break;
  }
  return tx.Commit();
}

Status TaskStore::RecordAnswer(int64_t id, TaskState from, const std::string& answer) {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction tx(db_.get());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  LOOM_RETURN_IF_ERROR(
      TransitionLocked(id, from, TaskState::kAnswered, "answered", {{"answer", answer}}));
  LOOM_ASSIGN_OR_RETURN(Statement * q, db_->Prepare("UPDATE tasks SET answer=? WHERE id=?"));
  LOOM_RETURN_IF_ERROR(q->BindAll(Masked(answer), id).Run());
  return tx.Commit();
}

Status TaskStore::Transition(int64_t id, TaskState from, TaskState to, const std::string& reason,
                             Json extra) {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction tx(db_.get());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  LOOM_RETURN_IF_ERROR(TransitionLocked(id, from, to, reason, std::move(extra)));
  return tx.Commit();
}

Result<std::optional<Task>> TaskStore::LeaseNext() {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction tx(db_.get());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  LOOM_ASSIGN_OR_RETURN(
      Statement * q, db_->Prepare("SELECT id FROM tasks WHERE state='queued' ORDER BY id LIMIT 1"));
  LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
  if (!row) return std::optional<Task>();
  int64_t id = q->Int(0);
  q->Reset();
  LOOM_RETURN_IF_ERROR(TransitionLocked(id, TaskState::kQueued, TaskState::kRunning, "leased", {}));
  LOOM_RETURN_IF_ERROR(tx.Commit());
  LOOM_ASSIGN_OR_RETURN(Task t, GetLocked(id));
  return std::optional<Task>(std::move(t));
}

Result<int> TaskStore::RecoverInterrupted() {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction tx(db_.get());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  std::vector<std::pair<int64_t, TaskState>> stuck;
  {
    LOOM_ASSIGN_OR_RETURN(
        Statement * q,
        db_->Prepare("SELECT id, state FROM tasks WHERE state IN ('running', 'verifying')"));
    while (true) {
      LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
      if (!row) break;
      stuck.emplace_back(q->Int(0), *ParseTaskState(q->Text(1)));
    }
  }
  for (auto [id, state] : stuck) {
    LOOM_RETURN_IF_ERROR(
        TransitionLocked(id, state, TaskState::kQueued, "resumed after a restart", {}));
  }
  LOOM_RETURN_IF_ERROR(tx.Commit());
  return static_cast<int>(stuck.size());
}

Status TaskStore::SetBranch(int64_t id, const std::string& branch, const std::string& base_commit) {
  std::lock_guard<std::mutex> lock(mu_);
  LOOM_ASSIGN_OR_RETURN(Statement * q,
                        db_->Prepare("UPDATE tasks SET branch=?, base_commit=? WHERE id=?"));
  return q->BindAll(branch, base_commit, id).Run();
}

Status TaskStore::ClearBranch(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  LOOM_ASSIGN_OR_RETURN(Statement * q,
                        db_->Prepare("UPDATE tasks SET branch=NULL, base_commit=NULL WHERE id=?"));
  return q->BindAll(id).Run();
}

Status TaskStore::RecordCancel(int64_t id, TaskState from, const std::string& reason, int64_t by) {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction tx(db_.get());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  LOOM_RETURN_IF_ERROR(TransitionLocked(id, from, TaskState::kCancelled, reason, {{"by", by}}));
  LOOM_ASSIGN_OR_RETURN(Statement * q,
                        db_->Prepare("UPDATE escalations SET state='closed', answered_by=?, "
                                     "answered_at=? WHERE task_id=? AND state='open'"));
  LOOM_RETURN_IF_ERROR(q->BindAll(by, NowMs(), id).Run());
  return tx.Commit();
}

Status TaskStore::RecordRetry(int64_t id, TaskState from, int64_t by, int64_t extra_steps,
                              int64_t extra_tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction tx(db_.get());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  LOOM_ASSIGN_OR_RETURN(Task t, GetLocked(id));
  LOOM_RETURN_IF_ERROR(TransitionLocked(id, from, TaskState::kQueued, "retried", {{"by", by}}));
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      db_->Prepare("UPDATE tasks SET branch=NULL, base_commit=NULL, answer=NULL, "
                   "extra_steps=extra_steps+?, extra_tokens=extra_tokens+? WHERE id=?"));
  LOOM_RETURN_IF_ERROR(q->BindAll(extra_steps, extra_tokens, id).Run());
  LOOM_RETURN_IF_ERROR(AppendEventLocked(id, EventType::kRetried,
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

Result<int64_t> TaskStore::AppendEventLocked(int64_t task_id, EventType type, const Json& data,
                                             const Usage& usage) {
  LOOM_ASSIGN_OR_RETURN(
      Statement * seq_q,
      db_->Prepare("SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE task_id=?"));
  seq_q->Bind(1, task_id);
  LOOM_ASSIGN_OR_RETURN(bool row, seq_q->Step());
  int64_t seq = row ? seq_q->Int(0) : 1;
  seq_q->Reset();
  int64_t now = NowMs();
  LOOM_ASSIGN_OR_RETURN(
      Statement * ins,
      db_->Prepare("INSERT INTO events(task_id, seq, type, data, created_at) VALUES(?,?,?,?,?)"));
  LOOM_RETURN_IF_ERROR(
      ins->BindAll(task_id, seq, EventTypeName(type), DumpJson(Masked(data)), now).Run());
  if (usage.steps || usage.prompt_tokens || usage.completion_tokens || usage.test_runs) {
    LOOM_ASSIGN_OR_RETURN(
        Statement * upd,
        db_->Prepare("UPDATE tasks SET steps=steps+?, prompt_tokens=prompt_tokens+?, "
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
  std::lock_guard<std::mutex> lock(mu_);
  Transaction tx(db_.get());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  LOOM_ASSIGN_OR_RETURN(int64_t seq, AppendEventLocked(task_id, type, data, usage));
  LOOM_RETURN_IF_ERROR(tx.Commit());
  return seq;
}

Result<std::vector<Event>> TaskStore::Events(int64_t task_id, int64_t after_seq, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      db_->Prepare("SELECT seq, type, data, created_at FROM events WHERE task_id=? AND seq>? "
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
  return out;
}

Result<int64_t> TaskStore::Escalate(std::optional<int64_t> task_id, const std::string& kind,
                                    const std::string& summary, const std::string& raised_by,
                                    std::optional<std::string> secret_name) {
  std::lock_guard<std::mutex> lock(mu_);
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      db_->Prepare("INSERT INTO escalations(task_id, kind, summary, secret_name, raised_by, "
                   "created_at) VALUES(?,?,?,?,?,?)"));
  if (task_id) {
    q->Bind(1, *task_id);
  } else {
    q->BindNull(1);
  }
  q->Bind(2, kind)
      .Bind(3, Masked(summary))
      .Bind(4, secret_name)
      .Bind(5, raised_by)
      .Bind(6, NowMs());
  LOOM_RETURN_IF_ERROR(q->Run());
  return db_->LastInsertRowId();
}

namespace {
Escalation ReadEscalation(Statement* q) {
  Escalation e;
  e.id = q->Int(0);
  if (!q->IsNull(1)) e.task_id = q->Int(1);
  e.kind = q->Text(2);
  e.summary = q->Text(3);
  e.secret_name = q->OptionalText(4);
  e.raised_by = q->Text(5);
  e.state = q->Text(6);
  if (!q->IsNull(7)) e.answer = ParseJson(q->Text(7)).value_or(Json());
  e.created_at_ms = q->Int(8);
  return e;
}
constexpr const char* kEscalationColumns =
    "id, task_id, kind, summary, secret_name, raised_by, state, answer, created_at";
}  // namespace

Result<std::vector<Escalation>> TaskStore::ListEscalations(bool open_only) {
  std::lock_guard<std::mutex> lock(mu_);
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      db_->Prepare(std::string("SELECT ") + kEscalationColumns + " FROM escalations" +
                   (open_only ? " WHERE state='open'" : "") + " ORDER BY id"));
  std::vector<Escalation> out;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    out.push_back(ReadEscalation(q));
  }
  return out;
}

Result<Escalation> TaskStore::GetEscalation(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  LOOM_ASSIGN_OR_RETURN(Statement * q, db_->Prepare(std::string("SELECT ") + kEscalationColumns +
                                                    " FROM escalations WHERE id=?"));
  q->Bind(1, id);
  LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
  if (!row) return Status::NotFound("no escalation " + std::to_string(id));
  Escalation e = ReadEscalation(q);
  q->Reset();
  return e;
}

Status TaskStore::AnswerEscalation(int64_t id, const Json& answer, int64_t answered_by) {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction tx(db_.get());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  LOOM_ASSIGN_OR_RETURN(Statement * q,
                        db_->Prepare("SELECT task_id, state FROM escalations WHERE id=?"));
  q->Bind(1, id);
  LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
  if (!row) return Status::NotFound("no escalation " + std::to_string(id));
  std::optional<int64_t> task_id;
  if (!q->IsNull(0)) task_id = q->Int(0);
  std::string state = q->Text(1);
  q->Reset();
  if (state != "open") {
    return Status::FailedPrecondition(
        "escalation " + std::to_string(id) + " is already " +
        (state == "closed" ? "closed: its task was cancelled" : "answered"));
  }
  LOOM_ASSIGN_OR_RETURN(Statement * upd,
                        db_->Prepare("UPDATE escalations SET state='answered', answer=?, "
                                     "answered_by=?, answered_at=? WHERE id=?"));
  LOOM_RETURN_IF_ERROR(upd->BindAll(DumpJson(Masked(answer)), answered_by, NowMs(), id).Run());
  if (task_id) {
    LOOM_RETURN_IF_ERROR(AppendEventLocked(*task_id, EventType::kEscalationAnswered,
                                           {{"escalation_id", id}, {"answer", answer}}, {})
                             .status());
    LOOM_ASSIGN_OR_RETURN(Task t, GetLocked(*task_id));
    if (t.state == TaskState::kBlocked) {
      LOOM_RETURN_IF_ERROR(TransitionLocked(*task_id, TaskState::kBlocked, TaskState::kQueued,
                                            "escalation " + std::to_string(id) + " answered", {}));
    }
  }
  return tx.Commit();
}

void TaskStore::SetMasker(std::shared_ptr<const SecretMasker> masker) {
  std::lock_guard<std::mutex> lock(mu_);
  masker_ = std::move(masker);
}

Json TaskStore::Masked(const Json& j) const { return masker_ ? masker_->MaskJson(j) : j; }

std::string TaskStore::Masked(const std::string& text) const {
  return masker_ ? masker_->Mask(text) : text;
}

}  // namespace loom
