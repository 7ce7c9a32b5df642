// Task lifecycle. See lifecycle.h.
//
// Transitions are the task store's transactions; this file decides which one an
// intent is, from which state, and what happens around it (the cancel flag of a
// leased task, the removal of a task's files). A cancel moves the state first and
// removes files after: a crash in between leaves a cancelled task with a branch,
// which RecoverInterrupted removes at the next start.
#include "orchestrator/lifecycle.h"

#include <filesystem>
#include <initializer_list>

#include "common/log.h"
#include "repos/workspace.h"

namespace loom {
namespace {

bool OneOf(TaskState s, std::initializer_list<TaskState> states) {
  for (TaskState t : states)
    if (s == t) return true;
  return false;
}

Status NotFrom(const Task& task, const std::string& what, const std::string& allowed) {
  return Status::FailedPrecondition("task " + std::to_string(task.id) + " is " +
                                    std::string(TaskStateName(task.state)) + ": only " + allowed +
                                    " tasks can be " + what);
}

}  // namespace

TaskLifecycle::TaskLifecycle(TaskStore* store, EscalationStore* escalations, RepoStore* repos,
                             LifecycleOptions options)
    : store_(store),
      escalations_(escalations),
      repos_(repos),
      options_(std::move(options)),
      own_repo_cache_(options_.repo_cache ? nullptr
                                          : std::make_unique<RepoCache>(repos_, options_.policies,
                                                                        options_.data_dir)),
      repo_cache_(options_.repo_cache ? options_.repo_cache : own_repo_cache_.get()),
      instance_(repos_->InstanceId().value_or("")),
      remote_(std::make_unique<RemoteSync>(store_, escalations_, repos_, options_.secrets,
                                           repo_cache_, options_.remote)) {}

std::string TaskWorkspaceKey(const Task& task, const std::string& instance) {
  std::string id = std::to_string(task.id);
  if (instance.empty() || (task.branch && task.branch->starts_with("loom/" + id + "-"))) return id;
  return instance + "-" + id;
}

void TaskLifecycle::StartRemotePasses(std::chrono::milliseconds interval) {
  remote_->StartPasses(
      interval,
      [this](const Task& task, const std::string& commit) {
        LOOM_LOG(kInfo) << "task " << task.id << ": its branch was merged on the server";
        return Merged(task.id, 0, "merged on the server (" + task.repo + " holds " + commit + ")",
                      {{"how", "upstream"}, {"commit", commit}});
      },
      [this](const Task& task) { return WorkspaceKey(task); });
}

Result<std::optional<Task>> TaskLifecycle::Lease() {
  // Held across the lease, so that a Cancel never sees a running task that no
  // slot has a flag for.
  std::shared_ptr<const PolicyMap> snapshot =
      options_.policies ? options_.policies->Snapshot() : std::make_shared<const PolicyMap>();
  MutexLock lock(&mu_);
  LOOM_ASSIGN_OR_RETURN(std::optional<Task> task, store_->LeaseNext([&](const std::string& repo) {
    return PolicyFor(*snapshot, repo).review.max_waiting;
  }));
  if (task) leased_[task->id] = std::make_shared<std::atomic<bool>>(false);
  return task;
}

const std::atomic<bool>* TaskLifecycle::CancelFlag(int64_t id) {
  MutexLock lock(&mu_);
  auto it = leased_.find(id);
  return it == leased_.end() ? nullptr : it->second.get();
}

void TaskLifecycle::Release(int64_t id) {
  bool cancelled = false;
  {
    MutexLock lock(&mu_);
    auto it = leased_.find(id);
    if (it == leased_.end()) return;
    cancelled = it->second->load();
    leased_.erase(it);
  }
  MutexLock files(&files_mu_);
  auto task = store_->Get(id);
  if (!task.ok()) {
    LOOM_LOG(kError) << "task " << id << ": cannot remove its files: " << task.status().ToString();
    return;
  }
  // A cancelled task, and an answered question (its answer is all it left: no
  // branch to review), lose their files as soon as the slot lets go.
  if (cancelled || task->state == TaskState::kAnswered) RemoveTaskFiles(*task);
}

Result<int> TaskLifecycle::RecoverInterrupted() {
  LOOM_ASSIGN_OR_RETURN(int requeued, store_->RecoverInterrupted());
  for (int64_t after = 0;;) {
    LOOM_ASSIGN_OR_RETURN(std::vector<Task> cancelled,
                          store_->List(TaskState::kCancelled, after, 200));
    if (cancelled.empty()) break;
    for (const Task& t : cancelled) {
      if (!t.branch) continue;
      MutexLock files(&files_mu_);
      RemoveTaskFiles(t);
    }
    after = cancelled.back().id;
  }
  return requeued;
}

Status TaskLifecycle::BeginVerification(int64_t id, const std::string& reason) {
  LOOM_RETURN_IF_ERROR(store_->Transition(id, TaskState::kRunning, TaskState::kVerifying, reason));
  // The change is verified, and later diffed and merged, against the server's
  // current target. A server that cannot be reached does not hold the task up:
  // the target is fetched again before each push and merge.
  if (auto task = store_->Get(id); task.ok()) {
    if (auto fetched = remote_->FetchForTask(*task, "verification"); !fetched.ok()) {
      LOOM_LOG(kWarning) << "task " << id << ": " << fetched.status().ToString();
    }
  }
  return Status::Ok();
}

Status TaskLifecycle::VerificationFailed(int64_t id, const std::string& reason) {
  return store_->Transition(id, TaskState::kVerifying, TaskState::kRunning, reason);
}

Status TaskLifecycle::RecordOutcome(int64_t id, const AgentOutcome& outcome) {
  Status s;
  switch (outcome.result) {
    case AgentResult::kFinished:
      s = store_->Transition(id, TaskState::kVerifying, TaskState::kReview, outcome.reason);
      // In review: its branch goes to the server (a failure is recorded and
      // escalated there, and tried again by the remote passes).
      if (s.ok()) (void)remote_->PushTask(id);
      break;
    case AgentResult::kAnswered:
      s = store_->RecordAnswer(id, TaskState::kRunning, outcome.answer);
      break;
    case AgentResult::kBlocked:
      s = store_->Transition(id, TaskState::kRunning, TaskState::kBlocked, outcome.reason);
      if (s.code() == StatusCode::kFailedPrecondition) {
        // Parked during finish, when the disk was too full to go back to running.
        s = store_->Transition(id, TaskState::kVerifying, TaskState::kBlocked, outcome.reason);
      }
      break;
    case AgentResult::kFailed:
      s = store_->Transition(id, TaskState::kRunning, TaskState::kFailed, outcome.reason);
      break;
    case AgentResult::kInterrupted:
      s = store_->Transition(id, TaskState::kRunning, TaskState::kQueued, outcome.reason);
      break;
    case AgentResult::kCancelled:
      return Status::Ok();  // Cancel moved it
  }
  return CancellationStands(id, s);
}

Status TaskLifecycle::Park(int64_t id, const std::string& reason) {
  return CancellationStands(
      id, store_->Transition(id, TaskState::kRunning, TaskState::kBlocked, reason));
}

Status TaskLifecycle::Fail(int64_t id, const std::string& reason) {
  return CancellationStands(
      id, store_->Transition(id, TaskState::kRunning, TaskState::kFailed, reason));
}

Status TaskLifecycle::CancellationStands(int64_t id, Status s) {
  if (s.code() == StatusCode::kFailedPrecondition) {
    // Cancelled while its slot ran it: the cancellation stands.
    auto task = store_->Get(id);
    if (task.ok() && task->state == TaskState::kCancelled) return Status::Ok();
  }
  return s;
}

Status TaskLifecycle::Merged(int64_t id, int64_t reviewer, const std::string& reason, Json extra) {
  return store_->RecordReview(id, ReviewDecision::kMerged, reason, reviewer, std::move(extra));
}

Status TaskLifecycle::RequestChanges(int64_t id, int64_t reviewer, const std::string& comment,
                                     Json extra) {
  return store_->RecordReview(id, ReviewDecision::kChangesRequested, comment, reviewer,
                              std::move(extra));
}

Status TaskLifecycle::Reject(int64_t id, int64_t reviewer, const std::string& reason) {
  LOOM_RETURN_IF_ERROR(store_->RecordReview(id, ReviewDecision::kRejected, reason, reviewer));
  // The branch pushed to the server goes too, unless the policy keeps rejected
  // branches (retention.keep_rejected_branch keeps both).
  auto task = store_->Get(id);
  std::shared_ptr<const PolicyMap> snapshot =
      options_.policies ? options_.policies->Snapshot() : std::make_shared<const PolicyMap>();
  if (task.ok() && !PolicyFor(*snapshot, task->repo).retention.keep_rejected_branch) {
    if (Status s = remote_->DeleteTaskBranch(id); !s.ok()) {
      LOOM_LOG(kWarning) << "task " << id << ": " << s.ToString();
    }
  }
  return Status::Ok();
}

Status TaskLifecycle::AnswerEscalation(int64_t escalation_id, const Json& answer,
                                       int64_t answered_by) {
  return escalations_->Answer(escalation_id, answer, answered_by);
}

Result<Task> TaskLifecycle::Cancel(int64_t id, const std::string& reason, int64_t by) {
  // A slot may move the task meanwhile (running -> verifying, -> review): the
  // compare-and-set fails and the state is read again.
  for (int attempt = 0;; ++attempt) {
    LOOM_ASSIGN_OR_RETURN(Task task, store_->Get(id));
    if (!OneOf(task.state, {TaskState::kQueued, TaskState::kBlocked, TaskState::kChangesRequested,
                            TaskState::kRunning, TaskState::kVerifying})) {
      return NotFrom(task, "cancelled", "queued, running, blocked, verifying or changes_requested");
    }
    // Held across the transition so that a slot's Release either comes before
    // (the task is not leased: its files are removed here) or sees the flag.
    bool running = false;
    {
      MutexLock lock(&mu_);
      Status s = store_->RecordCancel(id, task.state, reason, by);
      if (s.code() == StatusCode::kFailedPrecondition && attempt < 3) continue;
      LOOM_RETURN_IF_ERROR(s);
      auto leased = leased_.find(id);
      running = leased != leased_.end();
      if (running) leased->second->store(true);
    }
    LOOM_LOG(kInfo) << "task " << id << " cancelled: " << reason;
    // A branch pushed for an earlier review goes from the server too.
    if (Status s = remote_->DeleteTaskBranch(id); !s.ok()) {
      LOOM_LOG(kWarning) << "task " << id << ": " << s.ToString();
    }
    if (!running) {
      MutexLock files(&files_mu_);
      RemoveTaskFiles(task);
    }
    return store_->Get(id);
  }
}

Result<Task> TaskLifecycle::Retry(int64_t id, int64_t by, const RetryBudget& budget) {
  LOOM_ASSIGN_OR_RETURN(Task task, store_->Get(id));
  if (!OneOf(task.state, {TaskState::kFailed, TaskState::kCancelled})) {
    return NotFrom(task, "retried", "failed or cancelled");
  }
  {
    MutexLock lock(&mu_);
    if (leased_.count(id)) {
      return Status::FailedPrecondition("task " + std::to_string(id) +
                                        " is still stopping after its cancellation: retry it in "
                                        "a moment");
    }
  }
  int64_t extra_steps = budget.extra_steps, extra_tokens = budget.extra_tokens;
  if (extra_steps < 0 || extra_tokens < 0)
    return Status::InvalidArgument("extra budget cannot be negative");
  if (budget.more) {
    std::shared_ptr<const PolicyMap> snapshot =
        options_.policies ? options_.policies->Snapshot() : std::make_shared<const PolicyMap>();
    AgentBudgets policy = BudgetsFor(PolicyFor(*snapshot, task.repo));
    extra_steps += policy.max_steps;
    extra_tokens += policy.max_tokens;
  }
  // The old attempt's files go first: once queued, a slot may lease the task
  // and create its new workspace. Under files_mu_, so that a cancel's removal
  // still under way cannot remove the new workspace.
  {
    MutexLock files(&files_mu_);
    RemoveTaskFiles(task);
    LOOM_RETURN_IF_ERROR(store_->RecordRetry(id, task.state, by, extra_steps, extra_tokens));
  }
  LOOM_LOG(kInfo) << "task " << id << " retried";
  return store_->Get(id);
}

Result<TaskLifecycle::Removal> TaskLifecycle::RemoveFilesIfOver(int64_t id, int64_t now_ms) {
  // Under files_mu_ a failed or cancelled task cannot be retried (and so leased
  // with a new workspace) while its files go.
  MutexLock files(&files_mu_);
  {
    MutexLock lock(&mu_);
    if (leased_.count(id)) return Removal{};  // its slot removes them on Release
  }
  Result<Task> task = store_->Get(id);
  if (!task.ok() && task.status().code() == StatusCode::kNotFound) return Removal{};
  LOOM_RETURN_IF_ERROR(task.status());
  std::shared_ptr<const PolicyMap> snapshot =
      options_.policies ? options_.policies->Snapshot() : std::make_shared<const PolicyMap>();
  const policies::RetentionPolicy& retention = PolicyFor(*snapshot, task->repo).retention;
  using repos::BranchDisposition;
  BranchDisposition branch = BranchDisposition::kDelete;
  switch (task->state) {
    case TaskState::kMerged:
      if (retention.keep_merged_branch) branch = BranchDisposition::kKeep;
      break;
    case TaskState::kRejected:
      if (retention.keep_rejected_branch) branch = BranchDisposition::kKeep;
      break;
    case TaskState::kCancelled:
    case TaskState::kAnswered:
      break;
    case TaskState::kFailed:
      if (now_ms - task->updated_at_ms < retention.failed_hours * 3'600'000) return Removal{};
      break;
    default:
      return Removal{};
  }
  Removal removal;
  removal.removed = RemoveTaskFiles(*task, branch);
  removal.branch_deleted = branch == BranchDisposition::kDelete && task->branch.has_value();
  return removal;
}

bool TaskLifecycle::RemoveTaskFiles(const Task& task, repos::BranchDisposition branch) {
  std::string id = std::to_string(task.id);
  std::string key = WorkspaceKey(task);
  std::error_code ec;
  std::filesystem::remove_all(options_.data_dir + "/base/" + id, ec);
  if (ec) {
    LOOM_LOG(kWarning) << "task " << id << ": cannot remove its base copy: " << ec.message();
  }
  auto repo = repo_cache_->Get(task.repo);
  Status s = repo.ok() ? (*repo)->RemoveWorkspace(key, branch) : repo.status();
  if (!s.ok() && s.code() != StatusCode::kNotFound) {
    LOOM_LOG(kWarning) << "task " << id
                       << ": cannot remove its worktree and branch: " << s.ToString();
    return false;
  }
  if (task.branch && branch == repos::BranchDisposition::kDelete) {
    if (Status c = store_->ClearBranch(task.id); !c.ok()) {
      LOOM_LOG(kWarning) << "task " << id << ": " << c.ToString();
    }
  }
  return s.ok();
}

}  // namespace loom
