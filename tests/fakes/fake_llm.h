// An LlmClient that answers from a script, in order, and keeps what it was sent.
// Past the end of the script every call fails (InvalidArgument, which the agent
// treats as a request the endpoint rejected). Thread-compatible.
#pragma once

#include <functional>
#include <vector>

#include "orchestrator/llm_client.h"

namespace loom {

class FakeLlm : public LlmClient {
 public:
  // A reply that calls `tool` with `args` (a JSON object, or raw text).
  static ChatReply Call(const std::string& tool, const Json& args) {
    ChatReply r;
    r.tool_calls.push_back({"call-" + std::to_string(next_id_++), tool,
                            args.is_string() ? args.get<std::string>() : DumpJson(args)});
    r.finish_reason = "tool_calls";
    r.prompt_tokens = 100;
    r.completion_tokens = 10;
    return r;
  }
  // A reply with text and no tool call.
  static ChatReply Text(const std::string& content) {
    ChatReply r;
    r.content = content;
    r.finish_reason = "stop";
    return r;
  }

  void Add(Result<ChatReply> reply) { script_.push_back(std::move(reply)); }
  // Called at the start of each call (a test's clock moves, say).
  void set_on_call(std::function<void()> on_call) { on_call_ = std::move(on_call); }
  int calls() const { return static_cast<int>(sent_.size()); }
  // The messages of each call.
  const std::vector<Json>& sent() const { return sent_; }

  Result<ChatReply> Chat(const Json& messages, const Json& /*tools*/) override {
    if (on_call_) on_call_();
    sent_.push_back(messages);
    if (sent_.size() > script_.size()) return Status::InvalidArgument("the script has ended");
    return script_[sent_.size() - 1];
  }

 private:
  static inline int next_id_ = 1;
  std::vector<Result<ChatReply>> script_;
  std::vector<Json> sent_;
  std::function<void()> on_call_;
};

}  // namespace loom
