// The agent's tools as one table: each row is a tool's name, its JSON schema (what
// the model is sent) and its handler. A name appears once, in its row; the schemas
// sent to the model, the dispatch, the argument check and the "unknown tool"
// answer are all read from the table.
//
// A handler receives the call's arguments (already parsed, depth-limited, and
// checked against the row's properties) and a ToolContext: the narrow interface
// through which it reaches the task, its workspace, the sandbox, the event log and
// the person-facing escalations. The agent loop implements ToolContext; tools never
// see the loop, so tools.cc does not depend on agent.cc.
//
// The contract of DESIGN.md: list_files(path), read_file(path, start_line?,
// end_line?), search(pattern, path?), write_file(path, content),
// replace_in_file(path, old, new), run_tests(args?), run_command(command),
// request_human(kind, summary, secret_name?), finish(summary). Malformed calls,
// unknown tools and bad arguments are answered to the model as errors. On a task
// of kind `question` the edits (write_file, replace_in_file) are refused, and
// finish(summary) answers the question instead of verifying and committing.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/json_reader.h"
#include "common/status.h"
#include "orchestrator/event_type.h"
#include "orchestrator/llm_client.h"
#include "orchestrator/task_store.h"
#include "policies/policy.h"
#include "repos/workspace.h"
#include "sandbox/executor.h"

namespace loom {

// A tool's answer to the model, and what the loop does next.
struct ToolOutput {
  enum class Next {
    kContinue,  // the next model call
    kFinished,  // finish verified and committed: the task goes to review
    kAnswered,  // a question answered (`answer`): the task ends with it
    kBlocked,   // an escalation was raised (`reason`): the task waits for a person
  };
  std::string content;
  bool error = false;
  Next next = Next::kContinue;
  std::string reason;  // kFinished / kAnswered / kBlocked
  std::string answer;  // kAnswered
};

ToolOutput ToolReply(std::string content);
// A refusal the model should act on (a failed check, not a broken call).
ToolOutput ToolRefusal(std::string content);
// "error: " + message, as a refusal.
ToolOutput ToolError(std::string message);

// What a sandboxed run is, for the task's counters and log.
enum class RunKind {
  kTest,     // counts against the test-run budget; a "test_run" event
  kCommand,  // run_command; a "command_run" event
};

// The escalation kinds of Loom, one table: what request_human accepts, and what
// the orchestrator raises itself. `infrastructure` (a broken host: a full disk, a
// sandbox that cannot start, a tool missing from the sandbox) is not a policy
// matter: no policy lists it, and it is never refused by one.
const std::vector<std::string>& EscalationKinds();

// What a tool may use of the task it runs for. Implemented by the agent loop.
class ToolContext {
 public:
  virtual ~ToolContext() = default;
  virtual const Task& task() const = 0;
  virtual repos::Workspace& workspace() = 0;
  virtual const policies::Policy& policy() const = 0;
  // The policy's test command.
  virtual const std::vector<std::string>& test_argv() const = 0;
  // Bytes of a tool result the model sees.
  virtual size_t max_tool_output() const = 0;
  // Runs `argv` in the sandbox on the worktree and records its outcome in the log.
  // The outcome has the task's secrets masked. An error: nothing was run.
  virtual Result<sandbox::Outcome> RunSandboxed(std::vector<std::string> argv, RunKind kind) = 0;
  // Before a run_command starts: records its start ("command_started"), so that a
  // restart never runs it a second time. An error: it must not run.
  virtual Status CommandStarting(const std::string& call_id) = 0;
  // Before an edit: records the snapshot step it starts from (or, resumed after a
  // crash, rolls the worktree back to it), so that every edit takes effect once.
  virtual Status EditStarting(const std::string& call_id) = 0;
  // After an edit of `path` was applied (see agent.cc: file mtimes and caches).
  virtual void EditApplied(const std::string& path) = 0;
  // Raises an escalation to a person. Returns the reason the task is blocked
  // ("escalation N (kind): summary").
  virtual Result<std::string> Escalate(const std::string& kind, const std::string& summary,
                                       const std::string& raised_by,
                                       std::optional<std::string> secret_name) = 0;
  // finish(summary) on a task that changes code: verification and the commit
  // (see verifier.h), with the task `verifying` while it runs.
  virtual ToolOutput FinishChange(const std::string& summary) = 0;
};

// What a tool does, for the rules that hold per kind of tool.
enum class ToolEffect {
  kReads,  // list_files, read_file, search
  kEdits,  // write_file, replace_in_file: refused on a question
  kRuns,   // run_tests, run_command
  kAsks,   // request_human
  kEnds,   // finish
};

using ToolHandler = ToolOutput (*)(ToolContext& ctx, const ToolCall& call, JsonReader& args);

struct ToolSpec {
  std::string name;
  ToolEffect effect;
  Json schema;  // {"type": "function", "function": {name, description, parameters}}
  ToolHandler handler;
};

// The tools, in the order the model is sent them.
const std::vector<ToolSpec>& Tools();
// The row named `name`; nullptr when there is none.
const ToolSpec* FindTool(const std::string& name);

// Runs one call: parses its arguments (the model's input crosses the JSON
// boundary here), checks them against the row's schema, applies the per-effect
// rules, and calls the handler. Anything wrong is an error result for the model,
// never a crash, live or replayed.
ToolOutput RunTool(ToolContext& ctx, const ToolCall& call);

// A sandboxed run as the model sees it: how it ended, its time, its output (cut to
// `max` bytes).
std::string DescribeOutcome(const sandbox::Outcome& o, size_t max);

// The test command with the words of run_tests' `args` after it. A `sh -c CMD` command
// gets them as its "$@", appended to CMD (after `sh -c CMD`, words would only set $0,
// $1... and be dropped); any other argv gets them as arguments. Words are split on
// whitespace, with no quoting.
std::vector<std::string> TestArgvWithArgs(std::vector<std::string> test_argv,
                                          const std::string& args);

// Keeps the head and the tail of `text` within `max` bytes, saying what was cut.
std::string TruncateMiddle(const std::string& text, size_t max);

}  // namespace loom
