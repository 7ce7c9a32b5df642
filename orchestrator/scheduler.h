// The scheduler: N agent slots that lease queued tasks and run them.
//
// One triage thread turns new feedback into tasks when woken (a submission, a
// repository added) and wakes the slots when it made some. It works in bounded
// rounds, fair across reporter tokens, and sets items it cannot route aside as
// unroutable (TaskStore::TriageBatch), so no backlog stalls it. Each slot is a worker
// thread that, when woken, leases the oldest queued task (a compare-and-set
// transition, so no task runs twice at once), opens or creates its workspace,
// runs the agent, and records the outcome as the next state: review, answered (a
// question), blocked (escalated, the slot is freed) or failed. The agent moves no
// state itself, nor does the scheduler: each transition of a run is asked of the
// task's lifecycle (lifecycle.h), those during finish (running -> verifying and
// back) through LifecyclePhases. A task cancelled while it runs has its agent and
// sandbox run stopped through the lifecycle's cancel flag, and its files removed
// when the slot releases it. On Stop() the agents stop at their next step and
// their tasks go back to queued; after a crash, TaskLifecycle::RecoverInterrupted()
// does the same at start-up. A step that meets a full disk (the data dir's
// DiskReserve) parks its task as blocked with an `infrastructure` escalation.
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "common/status.h"
#include "orchestrator/agent.h"
#include "orchestrator/escalation_store.h"
#include "orchestrator/lifecycle.h"
#include "orchestrator/llm_client.h"
#include "orchestrator/repo_policy.h"
#include "orchestrator/repo_store.h"
#include "orchestrator/task_store.h"
#include "policies/policy.h"
#include "sandbox/executor.h"

namespace loom {

struct SchedulerOptions {
  int agents = 2;
  std::string data_dir;  // worktrees/ and scratch/ live here
  LlmOptions llm;
  // Per repository: budgets, sandbox limits, paths, test command. A repository
  // not in the set gets the shipped defaults; null: every repository does.
  // REQUIRES: outlives the scheduler. A task keeps the policies it started with.
  const PolicySet* policies = nullptr;
  SecretStore* secrets = nullptr;  // may be null: no secrets
  // Triage and idle slots wait for Wake() (new feedback, a repository added, a
  // task requeued); this is only the safety net for a wake-up that never came.
  std::chrono::milliseconds idle_recheck{std::chrono::seconds(5)};
  // Space kept free on the data dir's filesystem (see disk_reserve.h); 0: none.
  uint64_t disk_reserve_bytes = 16 << 20;
  // Where the model calls are counted (observability.h); null: nowhere.
  // REQUIRES: outlives the scheduler.
  MetricsRegistry* metrics = nullptr;
};

class Scheduler {
 public:
  // REQUIRES: the stores, `lifecycle` (over the same task store) and `executor`
  // outlive the scheduler.
  static Result<std::unique_ptr<Scheduler>> Start(TaskStore* store, EscalationStore* escalations,
                                                  RepoStore* repos, TaskLifecycle* lifecycle,
                                                  sandbox::Executor* executor,
                                                  SchedulerOptions options);
  ~Scheduler();
  // Wakes triage and the idle slots: new feedback, a repository added, a task
  // requeued (an answered escalation, a review sent back).
  void Wake() EXCLUDES(mu_);
  // Stops leasing and waits for the slots to finish their current step.
  void Stop();
  int busy_slots() const { return busy_; }

 private:
  Scheduler(TaskStore* store, EscalationStore* escalations, RepoStore* repos,
            TaskLifecycle* lifecycle, sandbox::Executor* executor, SchedulerOptions options);
  // One thread turns new feedback into tasks, and wakes the slots when it made some.
  void TriageLoop();
  void SlotLoop(int slot);
  // The number of Wake() calls so far; WaitForWake returns once it has moved on
  // from `seen`, at Stop(), or after `options_.idle_recheck`.
  uint64_t Wakes() EXCLUDES(mu_);
  void WaitForWake(uint64_t seen) EXCLUDES(mu_);
  void RunTask(int slot, const Task& task);
  Result<bool> ProtectedEditsApproved(int64_t task_id);

  TaskStore* store_;
  EscalationStore* escalations_;
  RepoStore* repos_;
  TaskLifecycle* lifecycle_;
  sandbox::Executor* executor_;
  SchedulerOptions options_;
  std::unique_ptr<LlmClient> llm_;
  std::unique_ptr<DiskReserve> disk_;
  std::atomic<bool> stop_{false};
  std::atomic<int> busy_{0};
  Mutex mu_;
  std::condition_variable wake_;
  uint64_t wakes_ GUARDED_BY(mu_) = 0;
  std::thread triage_;
  std::vector<std::thread> slots_;
};

}  // namespace loom
