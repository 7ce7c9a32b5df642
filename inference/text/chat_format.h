// Chat formats: OpenAI-style messages + tools -> the prompt text a model was trained on.
//
// Two families, written in C++ rather than by a Jinja interpreter:
//  * ChatML with Hermes-style tools (Qwen2.5): tools as JSON signatures inside
//    <tools></tools> in the system turn, assistant calls as
//    <tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>, results as
//    <tool_response> blocks in a user turn; what Qwen2.5's chat_template renders.
//  * Llama 3.x: <|begin_of_text|>, <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>,
//    tools as JSON in the first user message, calls as {"name": ..., "parameters": ...},
//    results in the ipython role; what Llama 3.1's chat_template renders (one
//    tool call per assistant turn there; more are rendered one JSON object per line).
// JSON inside the prompt is written as Python's json.dumps does (", " and ": "), since
// HF's `tojson` filter is json.dumps. Object keys come out sorted (nlohmann::json
// sorts them), which keeps a conversation's prefix byte-stable for the prefix cache.
//
// Immutable value type after construction; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/json.h"
#include "common/status.h"

namespace loom::inference {

enum class ChatFormatKind { kChatMl, kLlama3 };

enum class GenerationPrompt {
  kAdd,  // end with the opening of an assistant turn (what a completion request needs)
  kOmit
};

struct ChatFormatOptions {
  // ChatML: the system prompt used when the conversation has none; "" writes no
  // system turn. Set to Qwen's default when the model's template carries it.
  std::string default_system;
  // Llama 3.1+: the system turn always opens with "Cutting Knowledge Date: December
  // 2023\nToday Date: <date_string>\n\n" (Llama 3.0 has no such preamble).
  bool llama3_dated_system = true;
  // Fixed rather than today's date so a conversation's prefix stays the same.
  std::string date_string = "26 Jul 2024";
};

class ChatFormat {
 public:
  // The format of the model in `model_dir`, from chat_template.jinja or the
  // chat_template of tokenizer_config.json: `<|im_start|>` => ChatML,
  // `<|start_header_id|>` => Llama 3. A non-empty `name` ("chatml" | "llama3")
  // overrides the detection (and makes a model without a template usable).
  static Result<ChatFormat> ForModel(const std::string& model_dir, std::string_view name = "");
  // The format called `name` ("chatml" | "llama3").
  static Result<ChatFormat> ByName(std::string_view name, ChatFormatOptions options = {});

  ChatFormatKind kind() const { return kind_; }
  std::string_view name() const;
  const ChatFormatOptions& options() const { return options_; }

  // Renders `messages` (an array of {"role", "content", "tool_calls"?, ...} as in
  // OpenAI's chat API; content may be a string, null or an array of text parts) and
  // `tools` (null or an array of {"type": "function", "function": {...}}).
  // InvalidArgument, saying which message, when the input has the wrong shape.
  Result<std::string> Render(const Json& messages, const Json& tools,
                             GenerationPrompt generation = GenerationPrompt::kAdd) const;

  // Added-token texts that end an assistant turn ("<|im_end|>"; "<|eot_id|>", "<|eom_id|>").
  std::vector<std::string> stop_tokens() const;

 private:
  ChatFormat(ChatFormatKind kind, ChatFormatOptions options)
      : kind_(kind), options_(std::move(options)) {}

  ChatFormatKind kind_;
  ChatFormatOptions options_;
};

// Python's json.dumps(value, ensure_ascii=False[, indent=indent]): ", "/": "
// separators, or one item per line indented by `indent` spaces when indent >= 0.
std::string PythonJsonDumps(const Json& value, int indent = -1);

}  // namespace loom::inference
