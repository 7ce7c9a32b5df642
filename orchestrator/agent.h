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
//
// Tools (the contract of DESIGN.md): list_files(path), read_file(path,
// start_line?, end_line?), search(pattern, path?), write_file(path, content),
// replace_in_file(path, old, new), run_tests(args?), run_command(command),
// request_human(kind, summary, secret_name?), finish(summary). Malformed calls,
// unknown tools and bad arguments are answered to the model as errors.
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

#include "common/json.h"
#include "orchestrator/disk_reserve.h"
#include "orchestrator/escalation_store.h"
#include "orchestrator/llm_client.h"
#include "orchestrator/secrets.h"
#include "orchestrator/task_store.h"
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
  // branch (FAIL_TO_PASS). `base_tree` is a pristine copy of the worktree taken
  // when the workspace was created; empty disables the check.
  bool require_failing_test = true;
  std::string base_tree;
  std::string scratch_dir;  // where temporary trees for verification are made
  // The data dir's reserve; null: the disk is never checked.
  DiskReserve* disk = nullptr;
  // Set by the scheduler on shutdown: the loop returns kInterrupted before its
  // next model call (the task goes back to queued and resumes from its log).
  const std::atomic<bool>* stop = nullptr;
};

enum class AgentResult { kReview, kBlocked, kFailed, kInterrupted };

struct AgentOutcome {
  AgentResult result;
  std::string reason;
};

// The tool definitions sent to the model (OpenAI "tools" format).
Json AgentToolSchemas();

// The system prompt: the task, the repository's layout and instructions file,
// and how to work.
// `instructions_file` is the policy's; empty means AGENTS.md, else
// .loom/instructions.md.
std::string AgentSystemPrompt(const Task& task, repos::Workspace& workspace,
                              const std::string& instructions_file = "");

// Runs `task` (state running) until it is ready for review, blocked on a person,
// or failed. The caller makes the state transition the outcome names.
AgentOutcome RunAgent(const Task& task, AgentEnv& env);

// The test command with the words of run_tests' `args` after it. A `sh -c CMD` command
// gets them as its "$@", appended to CMD (after `sh -c CMD`, words would only set $0,
// $1... and be dropped); any other argv gets them as arguments. Words are split on
// whitespace, with no quoting.
std::vector<std::string> TestArgvWithArgs(std::vector<std::string> test_argv,
                                          const std::string& args);

// Keeps the head and the tail of `text` within `max` bytes, saying what was cut.
std::string TruncateMiddle(const std::string& text, size_t max);

}  // namespace loom
