// The scheduler: N agent slots that lease queued tasks and run them.
//
// Each slot is a worker thread that triages new feedback into tasks, leases the
// oldest queued task (a compare-and-set transition, so no task runs twice at
// once), opens or creates its workspace, runs the agent, and records the
// outcome as the next state: review, answered (a question), blocked (escalated,
// the slot is freed) or failed. The agent moves no state itself, nor does the
// scheduler: each transition of a run is asked of the task's lifecycle
// (lifecycle.h), those during finish (running -> verifying and back) through
// LifecyclePhases. A task cancelled while it runs has its agent and sandbox run
// stopped through the lifecycle's cancel flag, and its files removed when the
// slot releases it. On Stop() the agents stop at their next step and their tasks
// go back to queued; after a crash, TaskLifecycle::RecoverInterrupted() does the
// same at start-up. A step that meets a full disk (the data dir's DiskReserve)
// parks its task as blocked with an `infrastructure` escalation. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

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
  std::string data_dir;  // worktrees/, base/ and scratch/ live here
  LlmOptions llm;
  // Per repository: budgets, sandbox limits, paths, test command. A repository
  // not in the set gets the shipped defaults; null: every repository does.
  // REQUIRES: outlives the scheduler. A task keeps the policies it started with.
  const PolicySet* policies = nullptr;
  SecretStore* secrets = nullptr;  // may be null: no secrets
  std::chrono::milliseconds poll{250};
  // Space kept free on the data dir's filesystem (see disk_reserve.h); 0: none.
  uint64_t disk_reserve_bytes = 16 << 20;
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
  // Wakes idle slots (new feedback, an answered escalation).
  void Wake();
  // Stops leasing and waits for the slots to finish their current step.
  void Stop();
  int busy_slots() const { return busy_; }

 private:
  Scheduler(TaskStore* store, EscalationStore* escalations, RepoStore* repos,
            TaskLifecycle* lifecycle, sandbox::Executor* executor, SchedulerOptions options);
  void SlotLoop(int slot);
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
  std::mutex mu_;
  std::condition_variable wake_;
  std::vector<std::thread> slots_;
};

}  // namespace loom
