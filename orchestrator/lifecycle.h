// A task's life: every state transition, asked for by intent.
//
// The scheduler (leasing, the agent's phases and outcomes, parking on a full
// disk, recovery at start-up) and the API (review decisions, escalation
// answers, cancel and retry) ask TaskLifecycle; nothing else calls
// TaskStore::Transition. Each intent is one compare-and-set transaction in the
// task store (state, event, the feedback item's status and resolution), and
// FailedPrecondition says the task is not where the intent starts, with a
// message for a person.
//
// The lifecycle also knows which tasks a slot is running (from Lease until
// Release) and holds a cancel flag for each: Cancel moves a running or
// verifying task to cancelled at once and sets its flag, which kills the sandbox
// run in progress and stops the agent (AgentEnv::cancel); the task's worktree
// and branch are removed when its slot lets go (Release). A task that
// no slot runs has them removed by Cancel itself. A loomd stopped in between
// removes them at start (RecoverInterrupted), so that a cancelled task never keeps
// its branch.
//
// Thread-safe: the scheduler's slots and the API's I/O threads call it at once.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/json.h"
#include "common/mutex.h"
#include "common/status.h"
#include "orchestrator/agent.h"
#include "orchestrator/escalation_store.h"
#include "orchestrator/remote_sync.h"
#include "orchestrator/repo_cache.h"
#include "orchestrator/repo_policy.h"
#include "orchestrator/repo_store.h"
#include "orchestrator/secrets.h"
#include "orchestrator/task_store.h"
#include "repos/workspace.h"

namespace loom {

struct LifecycleOptions {
  // Task worktrees live under data_dir/worktrees/<repo> (the scheduler's
  // layout); data_dir/base/<id> is where an older loomd kept base copies.
  std::string data_dir;
  // The repositories' policies (budgets for a retry with more budget). Null: the
  // shipped defaults. REQUIRES: outlives the lifecycle.
  const PolicySet* policies = nullptr;
  // The open repositories the lifecycle, the scheduler and the API share
  // (repositories()). Null: the lifecycle keeps its own. REQUIRES: outlives it.
  RepoCache* repo_cache = nullptr;
  // The secret store the credentials of repositories on a git server are read
  // from (remote_sync.h); null: only servers that need none are reached.
  SecretStore* secrets = nullptr;
  RemoteSyncOptions remote = {};
};

// The name a task's workspace has in its repository (repos::Repository's
// `task_id`: branch `loom/<key>-<slug>`, worktree `loom-<key>`): the data dir's
// instance id and the task id, `<instance>-<id>`, so that two data dirs on one
// repository or upstream never meet; `<id>` for a task whose branch an older
// loomd made as `loom/<id>-...` (or with no instance id).
std::string TaskWorkspaceKey(const Task& task, const std::string& instance);

// What an engineer adds to a retried task's budget.
struct RetryBudget {
  bool more = false;         // as much again as the policy's step and token budgets
  int64_t extra_steps = 0;   // model calls, on top of `more`
  int64_t extra_tokens = 0;  // prompt + completion tokens, on top of `more`
};

class TaskLifecycle {
 public:
  // REQUIRES: the stores (on one connection: stores.h) outlive the lifecycle.
  TaskLifecycle(TaskStore* store, EscalationStore* escalations, RepoStore* repos,
                LifecycleOptions options);

  // --- The scheduler's slots.
  // The oldest queued task moved to running, or nullopt. The task is the
  // caller's until Release(id).
  Result<std::optional<Task>> Lease() EXCLUDES(mu_);
  // The cancel flag of a leased task, for AgentEnv::cancel; null when `id` is not
  // leased. Valid until Release(id).
  const std::atomic<bool>* CancelFlag(int64_t id) EXCLUDES(mu_);
  // The slot let go of `id` (its workspace closed, its sandbox runs over): a task
  // cancelled meanwhile, or answered (a question), has its worktree and branch
  // removed now.
  void Release(int64_t id) EXCLUDES(mu_, files_mu_);
  // At start-up, before any lease: running and verifying tasks go back to queued,
  // and cancelled tasks that still have a branch lose it. Returns how many were
  // requeued.
  Result<int> RecoverInterrupted() EXCLUDES(files_mu_);
  // running -> verifying while finish verifies; verifying -> running when it fails.
  Status BeginVerification(int64_t id, const std::string& reason);
  Status VerificationFailed(int64_t id, const std::string& reason);
  // The transition an agent's outcome names (see AgentResult). A task cancelled
  // while its agent ran is left cancelled: Ok.
  Status RecordOutcome(int64_t id, const AgentOutcome& outcome);
  // running -> blocked: preparing the task met a full disk (its escalation raised).
  // Ok when the task was cancelled meanwhile, as for RecordOutcome.
  Status Park(int64_t id, const std::string& reason);
  // running -> failed: the task could not even start. Ok when cancelled meanwhile.
  Status Fail(int64_t id, const std::string& reason);

  // --- People, through the API.
  // review -> merged, after the merge succeeded (`extra`: its commit, how).
  Status Merged(int64_t id, int64_t reviewer, const std::string& reason, Json extra = Json());
  // review -> changes_requested -> queued with `comment` for the agent.
  Status RequestChanges(int64_t id, int64_t reviewer, const std::string& comment,
                        Json extra = Json());
  // review -> rejected.
  Status Reject(int64_t id, int64_t reviewer, const std::string& reason);
  // Records a person's answer; a blocked task goes back to queued.
  Status AnswerEscalation(int64_t escalation_id, const Json& answer, int64_t answered_by);
  // queued, blocked, changes_requested, running or verifying -> cancelled, its
  // open escalations closed, its feedback told `reason`, a branch pushed to the
  // repository's git server (for an earlier review) deleted there. FailedPrecondition (a
  // message naming the state) from any other state. Returns the task as cancelled.
  Result<Task> Cancel(int64_t id, const std::string& reason, int64_t by) EXCLUDES(mu_, files_mu_);
  // failed or cancelled -> queued with a fresh start (its old worktree
  // and branch removed; a new workspace from the target's head when leased) and
  // `budget` added. FailedPrecondition from any other state, or while the slot
  // that ran a cancelled task is still stopping.
  Result<Task> Retry(int64_t id, int64_t by, const RetryBudget& budget) EXCLUDES(mu_, files_mu_);

  // --- The maintenance pass (maintenance.h).
  struct Removal {
    bool removed = false;         // the worktree and snapshot ref went
    bool branch_deleted = false;  // and the branch
  };
  // Removes what a task that is over left on disk, by its repository's
  // [retention] policy: the worktree and snapshot ref of a merged, rejected,
  // cancelled or answered task, its branch too unless the policy keeps it
  // (merged: keep_merged_branch, rejected: keep_rejected_branch); a failed
  // task's worktree and branch once retention.failed_hours have passed since it
  // failed (`now_ms`). A task in any other state, or still held by a slot, is
  // left alone (removed = false), as is an id with no task.
  Result<Removal> RemoveFilesIfOver(int64_t id, int64_t now_ms) EXCLUDES(mu_, files_mu_);

  // The registered repositories, open (LifecycleOptions::repo_cache, or the
  // lifecycle's own): what the scheduler and the API open repositories through.
  RepoCache* repositories() const { return repo_cache_; }
  // The git servers of repositories registered by URL (remote_sync.h).
  RemoteSync* remote() const { return remote_.get(); }
  // TaskWorkspaceKey with this data dir's instance id.
  std::string WorkspaceKey(const Task& task) const { return TaskWorkspaceKey(task, instance_); }
  // This data dir's instance id (RepoStore::InstanceId).
  const std::string& instance() const { return instance_; }
  // Starts the remote passes (RemoteSync::StartPasses): a task in review whose
  // branch the server's target branch now holds is merged ({how: upstream,
  // commit}); a push that failed is tried again.
  void StartRemotePasses(std::chrono::milliseconds interval);

 private:
  // `s`, or Ok when it is FailedPrecondition and the task is cancelled.
  Status CancellationStands(int64_t id, Status s);
  // Removes the task's worktree, snapshot ref and (kDelete) branch, and its
  // base copy left by an older loomd; forgets a deleted branch. What cannot be
  // removed is logged. Returns whether the worktree or its refs were there.
  bool RemoveTaskFiles(const Task& task,
                       repos::BranchDisposition branch = repos::BranchDisposition::kDelete)
      REQUIRES(files_mu_);

  TaskStore* store_;
  EscalationStore* escalations_;
  RepoStore* repos_;
  LifecycleOptions options_;
  std::unique_ptr<RepoCache> own_repo_cache_;  // when options_.repo_cache is null
  RepoCache* repo_cache_;
  const std::string instance_;  // RepoStore::InstanceId
  std::unique_ptr<RemoteSync> remote_;
  Mutex mu_;
  std::map<int64_t, std::shared_ptr<std::atomic<bool>>> leased_ GUARDED_BY(mu_);
  // Held while a task's files are removed, and by a retry until it is queued;
  // never together with mu_.
  Mutex files_mu_;
};

// The phases of one task's run (agent.h's TaskPhases), asked of its lifecycle.
class LifecyclePhases : public TaskPhases {
 public:
  // REQUIRES: `lifecycle` outlives this.
  LifecyclePhases(TaskLifecycle* lifecycle, int64_t task_id)
      : lifecycle_(lifecycle), task_id_(task_id) {}
  Status BeginVerification(const std::string& reason) override {
    return lifecycle_->BeginVerification(task_id_, reason);
  }
  Status VerificationFailed(const std::string& reason) override {
    return lifecycle_->VerificationFailed(task_id_, reason);
  }

 private:
  TaskLifecycle* lifecycle_;
  int64_t task_id_;
};

}  // namespace loom
