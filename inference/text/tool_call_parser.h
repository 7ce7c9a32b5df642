// Tool calls in model output: text in, OpenAI-style content + tool calls out.
//
//  * ChatML/Hermes (Qwen2.5): calls are <tool_call>\n{"name": ..., "arguments": {...}}\n
//    </tool_call> blocks anywhere in the output; text outside them is content.
//  * Llama 3.x: the whole output is one JSON call {"name": ..., "parameters": {...}}
//    (optionally after <|python_tag|>, several separated by ';' or newlines);
//    output that does not start with '{' is content.
// Whitespace between content and a call, and between calls, is dropped; output
// without calls comes back byte for byte. A block that is not valid JSON with a
// string "name" stays in the content (tags included) and is counted as malformed;
// it never fails or crashes. Arguments are compact JSON text (keys sorted).
//
// Streaming: ToolCallStreamParser takes text deltas and returns content deltas and
// tool-call deltas as OpenAI's streaming API sends them (first the call's index, id
// and name, then its arguments). Text that could be the start of "<tool_call>" is
// held back until the next delta decides. A call is released once it is complete
// (its closing tag, or the end of output), never retracted, so the streamed result
// always equals ParseToolCalls() of the whole text. Llama 3 output that starts like
// a JSON call is held until Finish().
//
// Thread-compatible: one parser per generation.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "inference/text/chat_format.h"

namespace loom::inference {

struct ToolCall {
  std::string id;  // id_prefix + index: "call_0", "call_1", ...
  std::string name;
  std::string arguments;  // JSON text of the arguments object, e.g. {"path":"a.py"}

  bool operator==(const ToolCall&) const = default;
};

struct ParsedOutput {
  std::string content;
  std::vector<ToolCall> tool_calls;
  int malformed_tool_calls = 0;  // blocks that looked like calls but were kept as content
};

// One streamed piece of a tool call. The first delta of call `index` carries its id
// and name (arguments empty); the following ones carry arguments text to append.
struct ToolCallDelta {
  int index = 0;
  std::string id;
  std::string name;
  std::string arguments;

  bool operator==(const ToolCallDelta&) const = default;
};

struct OutputDelta {
  std::string content;
  std::vector<ToolCallDelta> tool_calls;

  bool empty() const { return content.empty() && tool_calls.empty(); }
};

class ToolCallStreamParser {
 public:
  explicit ToolCallStreamParser(ChatFormatKind format, std::string id_prefix = "call_");

  // Feeds the next piece of generated text (any split, even inside a UTF-8 character).
  OutputDelta Push(std::string_view text);
  // The output has ended: releases what was held back. Call once, after the last Push.
  OutputDelta Finish();

  // Calls completed so far, and malformed blocks so far.
  int tool_calls() const { return next_index_; }
  int malformed_tool_calls() const { return malformed_; }

 private:
  enum class State {
    kStart,    // llama3: only whitespace so far
    kContent,  // plain text (hermes: watching for <tool_call>)
    kInCall,   // hermes: inside <tool_call>, waiting for </tool_call>
    kJson,     // llama3: the output is a JSON call; held until Finish()
  };

  void PushHermes(OutputDelta* out);
  void PushLlama3(OutputDelta* out);
  // Writes content through the whitespace rules (see the file comment).
  void EmitContent(std::string_view text, OutputDelta* out);
  // Adds the calls in `body` (a Hermes block or the Llama 3 output); false when the
  // body is not a valid call, in which case nothing was added.
  bool EmitCalls(std::string_view body, OutputDelta* out);

  ChatFormatKind format_;
  std::string id_prefix_;
  State state_;
  std::string buf_;          // received, not yet released
  std::string pending_ws_;   // trailing whitespace of the content, held back
  bool after_call_ = false;  // drop whitespace right after a call
  int next_index_ = 0;
  int malformed_ = 0;
  bool finished_ = false;
};

// The content and tool calls of a complete output (the same as streaming it).
ParsedOutput ParseToolCalls(ChatFormatKind format, std::string_view text,
                            std::string_view id_prefix = "call_");

}  // namespace loom::inference
