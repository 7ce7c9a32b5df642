// The coding agent: one task's loop of model calls and tool calls.
//
// The event log is the agent's memory. Every model reply ("llm_reply") and every
// tool result ("tool_result", holding exactly the text the model saw) is appended
// before the next step, and the conversation is rebuilt from those events when a
// task starts or resumes, so a restart after kill -9 continues at the first step
// that was not recorded. Tool calls of the last reply that have no result yet are
// executed first (the workspace has already restored the worktree to its last
// snapshot, so an edit interrupted half-way is redone exactly once). A
// run_command is the exception: its effects are unknown and cannot be rolled
// back, so its start is recorded ("command_started") before it runs, and one
// that started without a recorded result is answered "interrupted: not run
// again" instead of being run a second time.
//
// A full disk (the data dir's DiskReserve, checked before each model call and
// after each tool call, or a step that cannot be recorded) parks the task as
// blocked with an `infrastructure` escalation; the reserve is given up first so
// that the tool's result, the escalation and the state change can be written.
// A sandbox run that is Unavailable (a Slurm pool that stays down after the
// executor's own retries) parks the task the same way once the call's result is
// recorded.
//
// The tools are a table (tools.h): the loop dispatches each call through it and
// gives the handlers a ToolContext, never itself. Verification (the suite and
// FAIL_TO_PASS) is the verifier's (verifier.h).
//
// The loop never moves the task's state: RunAgent returns an outcome (finished
// with a verified change, answered, blocked, failed, interrupted) and the
// scheduler asks the task's lifecycle (lifecycle.h) for the transition. The one state change during
// the loop, running
// -> verifying while finish verifies (and back when it fails), is asked of the
// caller through TaskPhases. A task of kind `question` ends with its answer
// (finish's summary): no edit, no suite, no commit.
//
// A "retried" event starts the task afresh: the conversation is rebuilt from the
// events after the last one only, and the budgets count from the counters it
// recorded, raised by the task's extra_steps and extra_tokens.
//
// Every event the conversation is rebuilt from is written or the task stops
// (parked on a full disk, failed otherwise); records that are evidence only (a
// test run's outcome) are logged loudly when they cannot be written.
//
// RunAgent is called on a worker thread with a leased task; it blocks on the
// model and the sandbox. Thread-compatible: one call per task at a time (the
// scheduler guarantees it).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/json.h"
#include "orchestrator/disk_reserve.h"
#include "orchestrator/escalation_store.h"
#include "orchestrator/llm_client.h"
#include "orchestrator/secrets.h"
#include "orchestrator/task_store.h"
#include "orchestrator/tools.h"
#include "orchestrator/verifier.h"
#include "policies/policy.h"
#include "repos/workspace.h"
#include "sandbox/executor.h"

namespace loom {

struct AgentBudgets {
  int max_steps = 60;                 // model calls
  int64_t max_tokens = 4'000'000;     // prompt + completion, whole task
  std::chrono::minutes max_wall{90};  // from the task's first event
  int max_test_runs = 30;             // run_tests calls + verifications
  int max_consecutive_malformed = 4;  // replies that are garbage or use no tool
  int stuck_repeats = 3;              // same call, same result, this many times
  // Starts of one tool call that loomd did not outlive (a crash, a kill) before
  // the task fails instead of running it again on the next restart.
  int max_tool_attempts = 3;
  size_t max_tool_output = 16 << 10;  // bytes of a tool result the model sees
};

// The state changes of a task that happen while its agent runs, made by the
// caller (the scheduler) when the loop asks. Each returns the store's error,
// FailedPrecondition when the task is no longer where the change starts.
class TaskPhases {
 public:
  virtual ~TaskPhases() = default;
  // running -> verifying: finish was called (or was verified before a restart).
  virtual Status BeginVerification(const std::string& reason) = 0;
  // verifying -> running: verification refused the change; the agent goes on.
  virtual Status VerificationFailed(const std::string& reason) = 0;
};

struct AgentEnv {
  TaskStore* store = nullptr;
  EscalationStore* escalations = nullptr;
  LlmClient* llm = nullptr;
  repos::Workspace* workspace = nullptr;
  sandbox::Executor* executor = nullptr;
  std::vector<std::string> test_argv;  // the policy's test command
  sandbox::Limits limits;
  sandbox::Network network = sandbox::Network::kNone;
  AgentBudgets budgets;
  // The repository's policy: escalation kinds the agent may use, its
  // instructions file. REQUIRES: set, and outlives the run.
  const policies::Policy* policy = nullptr;
  // Secrets the policy lets this repository's runs have (environment variables
  // of every sandbox run); masked in everything recorded or shown to the model.
  SecretList secrets;
  // For bugs: the test the agent adds must fail on the base tree and pass on the
  // branch (FAIL_TO_PASS), on the base tree `write_base_tree` writes when the
  // check runs; empty disables the check.
  bool require_failing_test = true;
  BaseTreeWriter write_base_tree;
  std::string scratch_dir;  // where temporary trees for verification are made
  // The data dir's reserve; null: the disk is never checked.
  DiskReserve* disk = nullptr;
  // Set by the scheduler on shutdown: the loop returns kInterrupted before its
  // next model call (the task goes back to queued and resumes from its log).
  const std::atomic<bool>* stop = nullptr;
  // Set by the task's lifecycle when an engineer cancels the task (already
  // moved to cancelled): the sandbox run in progress is killed, and the loop
  // returns kCancelled before its next tool call or model call. May be null.
  const std::atomic<bool>* cancel = nullptr;
  // The state changes during the loop. REQUIRES: set, and outlives the run.
  TaskPhases* phases = nullptr;
  // The wall-time budget's clock; null: the system clock.
  const Clock* clock = nullptr;
};

// How a run of the loop ended, and the transition the caller makes for it.
enum class AgentResult {
  kFinished,     // a change verified and committed: verifying -> review
  kAnswered,     // a question answered: running -> answered, with `answer`
  kBlocked,      // an escalation raised: -> blocked until a person answers
  kFailed,       // a budget spent, stuck, or an unrecoverable error: -> failed
  kInterrupted,  // loomd is stopping: -> queued, resumed from the log
  kCancelled,    // an engineer cancelled the task: already cancelled, nothing to record
};

struct AgentOutcome {
  AgentResult result;
  std::string reason;
  std::string answer;  // kAnswered
};

// The tool definitions sent to the model (OpenAI "tools" format), from Tools().
Json AgentToolSchemas();

// The system prompt: the task, the repository's layout and instructions file,
// and how to work.
// `instructions_file` is the policy's; empty means AGENTS.md, else
// .loom/instructions.md.
std::string AgentSystemPrompt(const Task& task, repos::Workspace& workspace,
                              const std::string& instructions_file = "");

// Runs `task` (state running) until it is ready for review, answered, blocked on
// a person, or failed. The caller makes the state transition the outcome names.
AgentOutcome RunAgent(const Task& task, AgentEnv& env);

// A tool result with the run times taken out ("(12 ms)", "in 0.013s", "1.2 sec"):
// what the stuck-loop detector compares, so that the same test run repeated
// counts as the same result.
std::string WithoutRunTimes(const std::string& text);

}  // namespace loom
