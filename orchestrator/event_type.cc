#include "orchestrator/event_type.h"

#include <array>
#include <utility>

namespace loom {
namespace {

constexpr std::array<std::pair<EventType, std::string_view>, 20> kNames = {{
    {EventType::kCreated, "created"},
    {EventType::kState, "state"},
    {EventType::kPrompt, "prompt"},
    {EventType::kLlmReply, "llm_reply"},
    {EventType::kToolResult, "tool_result"},
    {EventType::kToolRetry, "tool_retry"},
    {EventType::kMalformed, "malformed"},
    {EventType::kNote, "note"},
    {EventType::kCommandStarted, "command_started"},
    {EventType::kEditStarted, "edit_started"},
    {EventType::kCommandRun, "command_run"},
    {EventType::kTestRun, "test_run"},
    {EventType::kSandboxError, "sandbox_error"},
    {EventType::kFailToPass, "fail_to_pass"},
    {EventType::kReviewComment, "review_comment"},
    {EventType::kEscalationAnswered, "escalation_answered"},
    {EventType::kApproved, "approved"},
    {EventType::kMerging, "merging"},
    {EventType::kRetried, "retried"},
    {EventType::kPushed, "pushed"},
}};

}  // namespace

std::string_view EventTypeName(EventType type) {
  for (const auto& [t, name] : kNames) {
    if (t == type) return name;
  }
  return "unknown";
}

EventType ParseEventType(std::string_view name) {
  for (const auto& [t, n] : kNames) {
    if (n == name) return t;
  }
  return EventType::kUnknown;
}

}  // namespace loom
