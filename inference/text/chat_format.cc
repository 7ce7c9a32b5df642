// ChatML/Hermes and Llama 3.x prompt rendering, transcribed from the Qwen2.5 and
// Llama 3.1 chat templates (see chat_format.h). Each Render* function follows its
// template's control flow line by line so differences are easy to audit.
#include "inference/text/chat_format.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/json_reader.h"

namespace loom::inference {
namespace {

constexpr std::string_view kQwenDefaultSystem =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

std::string DumpScalar(const Json& v) {
  return v.dump(-1, ' ', false, Json::error_handler_t::replace);
}

void Dumps(const Json& v, int indent, int depth, std::string* out) {
  auto newline = [&](int d) {
    out->push_back('\n');
    out->append(static_cast<size_t>(indent * d), ' ');
  };
  if (v.is_object()) {
    if (v.empty()) {
      out->append("{}");
      return;
    }
    out->push_back('{');
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!first) out->append(indent >= 0 ? "," : ", ");
      first = false;
      if (indent >= 0) newline(depth + 1);
      out->append(DumpScalar(Json(it.key())));
      out->append(": ");
      Dumps(it.value(), indent, depth + 1, out);
    }
    if (indent >= 0) newline(depth);
    out->push_back('}');
  } else if (v.is_array()) {
    if (v.empty()) {
      out->append("[]");
      return;
    }
    out->push_back('[');
    bool first = true;
    for (const Json& e : v) {
      if (!first) out->append(indent >= 0 ? "," : ", ");
      first = false;
      if (indent >= 0) newline(depth + 1);
      Dumps(e, indent, depth + 1, out);
    }
    if (indent >= 0) newline(depth);
    out->push_back(']');
  } else {
    out->append(DumpScalar(v));
  }
}

std::string Trim(std::string_view s) {
  const char* ws = " \t\n\r\v\f";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return "";
  const size_t e = s.find_last_not_of(ws);
  return std::string(s.substr(b, e - b + 1));
}

std::string Where(size_t i) { return "messages[" + std::to_string(i) + "]"; }

// The text of a message's content: a string, null (""), or the concatenated text
// parts of an array of {"type": "text", "text": ...}.
Result<std::string> ContentText(const Json& m, size_t i) {
  auto it = m.find("content");
  if (it == m.end() || it->is_null()) return std::string();
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    std::string text;
    for (const Json& part : *it) {
      if (part.is_string()) {
        text += part.get<std::string>();
      } else if (StringOr(part, "type") == "text" && part.contains("text") &&
                 part["text"].is_string()) {
        text += part["text"].get<std::string>();
      } else {
        return Status::InvalidArgument(Where(i) +
                                       ".content: only text parts are supported by this model");
      }
    }
    return text;
  }
  return Status::InvalidArgument(Where(i) + ".content must be a string, null or an array");
}

struct ToolCallText {
  std::string name;
  std::string arguments;  // Python-style JSON of the arguments
};

// The tool calls of an assistant message; arguments given as a JSON string (OpenAI)
// are parsed so they render as an object, like HF templates expect.
Result<std::vector<ToolCallText>> ToolCalls(const Json& m, size_t i) {
  std::vector<ToolCallText> calls;
  auto it = m.find("tool_calls");
  if (it == m.end() || it->is_null()) return calls;
  if (!it->is_array()) return Status::InvalidArgument(Where(i) + ".tool_calls must be an array");
  for (size_t k = 0; k < it->size(); ++k) {
    const Json& tc = (*it)[k];
    const std::string where = Where(i) + ".tool_calls[" + std::to_string(k) + "]";
    const Json* fn = &tc;
    if (tc.is_object() && tc.contains("function")) fn = &tc["function"];
    if (!fn->is_object() || !fn->contains("name") || !(*fn)["name"].is_string()) {
      return Status::InvalidArgument(where + " needs function.name");
    }
    ToolCallText call;
    call.name = (*fn)["name"].get<std::string>();
    Json args = Json::object();
    if (auto a = fn->find("arguments"); a != fn->end() && !a->is_null()) {
      if (a->is_string()) {
        // Depth-limited: the arguments string is the caller's, and is dumped
        // recursively below.
        auto parsed = ParseJson(a->get<std::string>());
        args = parsed.ok() ? std::move(parsed).value() : *a;
      } else {
        args = *a;
      }
    }
    call.arguments = PythonJsonDumps(args);
    calls.push_back(std::move(call));
  }
  return calls;
}

Status CheckMessages(const Json& messages, const Json& tools) {
  if (!messages.is_array()) return Status::InvalidArgument("messages must be an array");
  for (size_t i = 0; i < messages.size(); ++i) {
    const Json& m = messages[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return Status::InvalidArgument(Where(i) + " needs a string role");
    }
  }
  if (!tools.is_null() && !tools.is_array()) {
    return Status::InvalidArgument("tools must be an array");
  }
  return Status::Ok();
}

// OpenAI's newer "developer" role is the system prompt for these models.
std::string Role(const Json& m) {
  std::string role = m["role"].get<std::string>();
  return role == "developer" ? "system" : role;
}

Result<std::string> RenderChatMl(const ChatFormatOptions& opt, const Json& messages,
                                 const Json& tools, GenerationPrompt generation) {
  std::string out;
  const bool has_tools = tools.is_array() && !tools.empty();
  const bool first_is_system = !messages.empty() && Role(messages[0]) == "system";
  std::string system = opt.default_system;
  if (first_is_system) {
    LOOM_ASSIGN_OR_RETURN(system, ContentText(messages[0], 0));
  }
  if (has_tools) {
    out += "<|im_start|>system\n";
    if (!system.empty()) out += system + "\n\n";
    out +=
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
    for (const Json& tool : tools) out += "\n" + PythonJsonDumps(tool);
    out +=
        "\n</tools>\n\nFor each function call, return a json object with function name and "
        "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
        "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n";
  } else if (first_is_system || !system.empty()) {
    out += "<|im_start|>system\n" + system + "<|im_end|>\n";
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const Json& m = messages[i];
    const std::string role = Role(m);
    if (i == 0 && role == "system") continue;
    LOOM_ASSIGN_OR_RETURN(std::string content, ContentText(m, i));
    LOOM_ASSIGN_OR_RETURN(std::vector<ToolCallText> calls, ToolCalls(m, i));
    if (role == "tool") {
      if (i == 0 || Role(messages[i - 1]) != "tool") out += "<|im_start|>user";
      out += "\n<tool_response>\n" + content + "\n</tool_response>";
      if (i + 1 == messages.size() || Role(messages[i + 1]) != "tool") out += "<|im_end|>\n";
    } else if (role == "assistant" && !calls.empty()) {
      out += "<|im_start|>assistant";
      if (!content.empty()) out += "\n" + content;
      for (const ToolCallText& call : calls) {
        out += "\n<tool_call>\n{\"name\": \"" + call.name + "\", \"arguments\": " + call.arguments +
               "}\n</tool_call>";
      }
      out += "<|im_end|>\n";
    } else {
      out += "<|im_start|>" + role + "\n" + content + "<|im_end|>\n";
    }
  }
  if (generation == GenerationPrompt::kAdd) out += "<|im_start|>assistant\n";
  return out;
}

Result<std::string> RenderLlama3(const ChatFormatOptions& opt, const Json& messages,
                                 const Json& tools, GenerationPrompt generation) {
  const bool has_tools = tools.is_array() && !tools.empty();
  size_t next = 0;
  std::string system;
  bool has_system = false;
  if (!messages.empty() && Role(messages[0]) == "system") {
    LOOM_ASSIGN_OR_RETURN(std::string text, ContentText(messages[0], 0));
    system = Trim(text);
    has_system = true;
    next = 1;
  }
  std::string out = "<|begin_of_text|>";
  if (opt.llama3_dated_system || has_tools || has_system) {
    out += "<|start_header_id|>system<|end_header_id|>\n\n";
    if (has_tools) out += "Environment: ipython\n";
    if (opt.llama3_dated_system) {
      out += "Cutting Knowledge Date: December 2023\nToday Date: " + opt.date_string + "\n\n";
    }
    out += system + "<|eot_id|>";
  }
  if (has_tools) {
    // Llama 3.1 puts the tool list in the first user message.
    if (next >= messages.size()) {
      return Status::InvalidArgument(
          "messages: tools need a first user message to carry them (Llama 3 format)");
    }
    LOOM_ASSIGN_OR_RETURN(std::string first_user, ContentText(messages[next], next));
    ++next;
    out +=
        "<|start_header_id|>user<|end_header_id|>\n\n"
        "Given the following functions, please respond with a JSON for a function call with its "
        "proper arguments that best answers the given prompt.\n\n"
        "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument "
        "name and its value}.Do not use variables.\n\n";
    for (const Json& tool : tools) out += PythonJsonDumps(tool, 4) + "\n\n";
    out += Trim(first_user) + "<|eot_id|>";
  }
  for (size_t i = next; i < messages.size(); ++i) {
    const Json& m = messages[i];
    const std::string role = Role(m);
    LOOM_ASSIGN_OR_RETURN(std::string content, ContentText(m, i));
    LOOM_ASSIGN_OR_RETURN(std::vector<ToolCallText> calls, ToolCalls(m, i));
    if (role == "tool" || role == "ipython") {
      // The template's `tojson` of the content: a string result is written quoted.
      out += "<|start_header_id|>ipython<|end_header_id|>\n\n" + PythonJsonDumps(Json(content)) +
             "<|eot_id|>";
    } else if (!calls.empty()) {
      out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      for (size_t k = 0; k < calls.size(); ++k) {
        if (k > 0) out += "\n";
        out += "{\"name\": \"" + calls[k].name + "\", \"parameters\": " + calls[k].arguments + "}";
      }
      out += "<|eot_id|>";
    } else {
      out += "<|start_header_id|>" + role + "<|end_header_id|>\n\n" + Trim(content) + "<|eot_id|>";
    }
  }
  if (generation == GenerationPrompt::kAdd) {
    out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  }
  return out;
}

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// The chat template text of a model directory and the file it came from; empty
// text when there is none.
std::pair<std::string, std::string> FindTemplate(const std::string& dir) {
  const std::string jinja = dir + "/chat_template.jinja";
  if (auto text = ReadFile(jinja)) return {*text, jinja};
  const std::string config = dir + "/tokenizer_config.json";
  auto text = ReadFile(config);
  if (!text) return {"", ""};
  Json j = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("chat_template")) return {"", config};
  const Json& t = j["chat_template"];
  if (t.is_string()) return {t.get<std::string>(), config};
  std::string all;  // a list of named templates: detect over all of them
  if (t.is_array()) {
    for (const Json& e : t) {
      if (e.is_object() && e.contains("template") && e["template"].is_string()) {
        all += e["template"].get<std::string>();
      }
    }
  }
  return {all, config};
}

}  // namespace

std::string PythonJsonDumps(const Json& value, int indent) {
  std::string out;
  Dumps(value, indent, 0, &out);
  return out;
}

Result<ChatFormat> ChatFormat::ByName(std::string_view name, ChatFormatOptions options) {
  if (name == "chatml") return ChatFormat(ChatFormatKind::kChatMl, std::move(options));
  if (name == "llama3") return ChatFormat(ChatFormatKind::kLlama3, std::move(options));
  return Status::InvalidArgument("unknown chat format \"" + std::string(name) +
                                 "\" (known: chatml, llama3)");
}

Result<ChatFormat> ChatFormat::ForModel(const std::string& model_dir, std::string_view name) {
  auto [text, file] = FindTemplate(model_dir);
  ChatFormatOptions options;
  if (text.find(kQwenDefaultSystem) != std::string::npos) {
    options.default_system = std::string(kQwenDefaultSystem);
  }
  // Llama 3.0's template has no dated system preamble; 3.1+ (and no template) do.
  options.llama3_dated_system =
      text.empty() || text.find("Cutting Knowledge Date") != std::string::npos;
  if (!name.empty()) return ByName(name, std::move(options));
  if (text.empty()) {
    return Status::FailedPrecondition(
        "cannot tell the chat format of " + model_dir +
        ": no chat_template.jinja and no chat_template in tokenizer_config.json; name one "
        "(chatml or llama3)");
  }
  if (text.find("<|im_start|>") != std::string::npos) {
    return ChatFormat(ChatFormatKind::kChatMl, std::move(options));
  }
  if (text.find("<|start_header_id|>") != std::string::npos) {
    return ChatFormat(ChatFormatKind::kLlama3, std::move(options));
  }
  return Status::Unimplemented("the chat template in " + file +
                               " is neither ChatML (<|im_start|>) nor Llama 3 "
                               "(<|start_header_id|>); name a format (chatml or llama3)");
}

std::string_view ChatFormat::name() const {
  return kind_ == ChatFormatKind::kChatMl ? "chatml" : "llama3";
}

Result<std::string> ChatFormat::Render(const Json& messages, const Json& tools,
                                       GenerationPrompt generation) const {
  LOOM_RETURN_IF_ERROR(CheckMessages(messages, tools));
  if (kind_ == ChatFormatKind::kChatMl) return RenderChatMl(options_, messages, tools, generation);
  return RenderLlama3(options_, messages, tools, generation);
}

std::vector<std::string> ChatFormat::stop_tokens() const {
  if (kind_ == ChatFormatKind::kChatMl) return {"<|im_end|>"};
  return {"<|eot_id|>", "<|eom_id|>"};
}

}  // namespace loom::inference
