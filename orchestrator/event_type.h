// The kinds of event in a task's log (TaskStore::AppendEvent), and their names
// as stored and served by the API. One table: add a kind here and nowhere else.
//
//   created             a feedback item became the task {feedback_id}
//   state               a transition {from, to, reason, ...}
//   prompt              the system and first user message {system, user}
//   llm_reply           one model reply {message, usage}
//   tool_result         what the model saw for one tool call {tool_call_id, name, content}
//   tool_retry          a tool call restarted after loomd died during it
//   malformed           a reply that was not a usable tool call {what}
//   note                an orchestrator message to the model {text}
//   command_started     a run_command began (never run twice after a crash)
//   edit_started        an edit began (redone from the last snapshot after a crash)
//   command_run         a sandboxed command's outcome
//   test_run            a sandboxed test run's outcome {argv, tree, outcome, ms}
//   sandbox_error       the sandbox could not run something
//   fail_to_pass        the FAIL_TO_PASS check's result
//   review_comment      an engineer's request for changes {comment, comments?: [{path,
//                       line, body}], reviewer} (review_comments.h)
//   escalation_answered a person's answer {escalation_id, answer}
//   approved            an engineer's approval (review.auto_merge = false)
//   merging             an approval began merging
//   retried             an engineer retried the task: a fresh start {by, extra_steps,
//                       extra_tokens, steps, tokens, test_runs (the counters then)}
//   pushed              the task branch pushed to the server (a contract: forge
//                       integrations act on it) {remote (no credentials), branch,
//                       commit, previous (hex or null)}
#pragma once

#include <string_view>

namespace loom {

enum class EventType {
  kCreated,
  kState,
  kPrompt,
  kLlmReply,
  kToolResult,
  kToolRetry,
  kMalformed,
  kNote,
  kCommandStarted,
  kEditStarted,
  kCommandRun,
  kTestRun,
  kSandboxError,
  kFailToPass,
  kReviewComment,
  kEscalationAnswered,
  kApproved,
  kMerging,
  kRetried,
  kPushed,
  kUnknown,  // a name this binary does not know (read back, never written)
};

std::string_view EventTypeName(EventType type);
// kUnknown for a name not in the table.
EventType ParseEventType(std::string_view name);

}  // namespace loom
