// Tool-call parsing over a small state machine (see tool_call_parser.h). The whole-
// output parser is the streaming one fed once, so both agree by construction.
#include "inference/text/tool_call_parser.h"

#include <optional>

#include "common/json.h"

namespace loom::inference {
namespace {

constexpr std::string_view kOpen = "<tool_call>";
constexpr std::string_view kClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// Length of the longest suffix of `s` that is a proper prefix of `tag`.
size_t PartialTagSuffix(std::string_view s, std::string_view tag) {
  for (size_t k = std::min(s.size(), tag.size() - 1); k > 0; --k) {
    if (s.substr(s.size() - k) == tag.substr(0, k)) return k;
  }
  return 0;
}

struct Call {
  std::string name;
  std::string arguments;
};

// {"name": "...", "arguments"|"parameters": {...}} -> Call.
std::optional<Call> CallFromJson(const Json& j) {
  if (!j.is_object()) return std::nullopt;
  auto name = j.find("name");
  if (name == j.end() || !name->is_string() || name->get_ref<const std::string&>().empty()) {
    return std::nullopt;
  }
  Call call;
  call.name = name->get<std::string>();
  auto args = j.find("arguments");
  if (args == j.end()) args = j.find("parameters");
  if (args == j.end() || args->is_null()) {
    call.arguments = "{}";
  } else if (args->is_string()) {
    call.arguments = args->get<std::string>();  // already JSON text
  } else {
    call.arguments = DumpJson(*args);
  }
  return call;
}

// Splits `s` into top-level JSON values separated by whitespace or ';' by tracking
// nesting and strings; nullopt when the text is anything else.
std::optional<std::vector<std::string_view>> SplitJsonValues(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (true) {
    while (i < s.size() && (IsSpace(s[i]) || s[i] == ';')) ++i;
    if (i == s.size()) break;
    if (s[i] != '{') return std::nullopt;
    const size_t start = i;
    int depth = 0;
    bool in_string = false;
    for (; i < s.size(); ++i) {
      const char c = s[i];
      if (in_string) {
        if (c == '\\') {
          ++i;
        } else if (c == '"') {
          in_string = false;
        }
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) break;
      }
    }
    if (i >= s.size()) return std::nullopt;  // unterminated
    out.push_back(s.substr(start, i + 1 - start));
    ++i;
  }
  if (out.empty()) return std::nullopt;
  return out;
}

}  // namespace

ToolCallStreamParser::ToolCallStreamParser(ChatFormatKind format, std::string id_prefix)
    : format_(format),
      id_prefix_(std::move(id_prefix)),
      state_(format == ChatFormatKind::kLlama3 ? State::kStart : State::kContent) {}

void ToolCallStreamParser::EmitContent(std::string_view text, OutputDelta* out) {
  if (after_call_) {
    while (!text.empty() && IsSpace(text.front())) text.remove_prefix(1);
    if (text.empty()) return;
    after_call_ = false;
  }
  size_t end = text.size();
  while (end > 0 && IsSpace(text[end - 1])) --end;
  if (end == 0) {
    pending_ws_.append(text);
    return;
  }
  out->content += pending_ws_;
  pending_ws_.clear();
  out->content.append(text.substr(0, end));
  pending_ws_.append(text.substr(end));
}

bool ToolCallStreamParser::EmitCalls(std::string_view body, OutputDelta* out) {
  body = Trim(body);
  std::vector<Call> calls;
  if (format_ == ChatFormatKind::kChatMl) {
    Json j = ParseJson(body).value_or(Json::value_t::discarded);
    auto call = CallFromJson(j);
    if (!call) return false;
    calls.push_back(std::move(*call));
  } else {
    auto values = SplitJsonValues(body);
    if (!values) return false;
    for (std::string_view v : *values) {
      Json j = ParseJson(v).value_or(Json::value_t::discarded);
      auto call = CallFromJson(j);
      if (!call) return false;
      calls.push_back(std::move(*call));
    }
  }
  pending_ws_.clear();  // whitespace between content and a call is not content
  for (Call& call : calls) {
    const int index = next_index_++;
    out->tool_calls.push_back({index, id_prefix_ + std::to_string(index), call.name, ""});
    out->tool_calls.push_back({index, "", "", std::move(call.arguments)});
  }
  after_call_ = true;
  return true;
}

void ToolCallStreamParser::PushHermes(OutputDelta* out) {
  while (true) {
    if (state_ == State::kContent) {
      const size_t open = buf_.find(kOpen);
      if (open == std::string::npos) {
        const size_t keep = PartialTagSuffix(buf_, kOpen);
        EmitContent(std::string_view(buf_).substr(0, buf_.size() - keep), out);
        buf_.erase(0, buf_.size() - keep);
        return;
      }
      EmitContent(std::string_view(buf_).substr(0, open), out);
      buf_.erase(0, open + kOpen.size());
      state_ = State::kInCall;
    } else {  // kInCall
      const size_t close = buf_.find(kClose);
      if (close == std::string::npos) return;
      const std::string_view body = std::string_view(buf_).substr(0, close);
      if (!EmitCalls(body, out)) {
        ++malformed_;
        EmitContent(std::string(kOpen) + std::string(body) + std::string(kClose), out);
      }
      buf_.erase(0, close + kClose.size());
      state_ = State::kContent;
    }
  }
}

void ToolCallStreamParser::PushLlama3(OutputDelta* out) {
  if (state_ == State::kStart) {
    size_t first = 0;
    while (first < buf_.size() && IsSpace(buf_[first])) ++first;
    if (first == buf_.size()) return;  // only whitespace yet
    const std::string_view rest = std::string_view(buf_).substr(first);
    if (rest.front() == '{' || rest.starts_with(kPythonTag)) {
      state_ = State::kJson;
      return;
    }
    if (kPythonTag.starts_with(rest)) return;  // maybe the tag, split across deltas
    state_ = State::kContent;
  }
  if (state_ == State::kContent) {
    EmitContent(buf_, out);
    buf_.clear();
  }
}

OutputDelta ToolCallStreamParser::Push(std::string_view text) {
  OutputDelta out;
  if (finished_) return out;
  buf_.append(text);
  if (format_ == ChatFormatKind::kChatMl) {
    PushHermes(&out);
  } else {
    PushLlama3(&out);
  }
  return out;
}

OutputDelta ToolCallStreamParser::Finish() {
  OutputDelta out;
  if (finished_) return out;
  finished_ = true;
  if (state_ == State::kInCall) {
    // The output ended inside a block: accept it if it is a whole call.
    if (!EmitCalls(buf_, &out)) {
      ++malformed_;
      EmitContent(std::string(kOpen) + buf_, &out);
    }
  } else if (state_ == State::kJson) {
    std::string_view body = Trim(buf_);
    const bool tagged = body.starts_with(kPythonTag);
    if (tagged) body.remove_prefix(kPythonTag.size());
    if (!EmitCalls(body, &out)) {
      // A JSON answer that is not a call is content; a broken one is malformed too.
      Json j = ParseJson(Trim(body)).value_or(Json::value_t::discarded);
      if (tagged || j.is_discarded()) ++malformed_;
      EmitContent(buf_, &out);
    }
  } else {
    EmitContent(buf_, &out);
  }
  buf_.clear();
  if (next_index_ == 0) out.content += pending_ws_;  // no calls: the text is returned exactly
  pending_ws_.clear();
  return out;
}

ParsedOutput ParseToolCalls(ChatFormatKind format, std::string_view text,
                            std::string_view id_prefix) {
  ToolCallStreamParser parser(format, std::string(id_prefix));
  ParsedOutput result;
  for (OutputDelta delta : {parser.Push(text), parser.Finish()}) {
    result.content += delta.content;
    for (ToolCallDelta& d : delta.tool_calls) {
      if (d.index >= static_cast<int>(result.tool_calls.size())) {
        result.tool_calls.resize(d.index + 1);
      }
      ToolCall& call = result.tool_calls[d.index];
      if (!d.id.empty()) call.id = d.id;
      if (!d.name.empty()) call.name = d.name;
      call.arguments += d.arguments;
    }
  }
  result.malformed_tool_calls = parser.malformed_tool_calls();
  return result;
}

}  // namespace loom::inference
