// Chat formats: the fixture's golden rendering, and ChatML/Hermes and Llama 3 with
// tools against the real templates. The expected prompts below were rendered by
// jinja2 3.1.6 (trim_blocks, lstrip_blocks, HF's tojson = json.dumps with
// ensure_ascii=False) from Qwen2.5-Instruct's and Llama-3.2-Instruct's chat
// templates, on the same conversations (tool keys written in sorted order, as
// nlohmann::json keeps them).
#include "inference/text/chat_format.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/inference/fixture_path.h"

namespace loom::inference {
namespace {

using testing::FixturePath;

constexpr std::string_view kQwenTools = R"EOS(<|im_start|>system
You are a coding agent.

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{"function": {"description": "Read a file of the repository.", "name": "read_file", "parameters": {"properties": {"path": {"description": "Path from the root", "type": "string"}}, "required": ["path"], "type": "object"}}, "type": "function"}
{"function": {"description": "Run the tests.", "name": "run_tests", "parameters": {"properties": {}, "type": "object"}}, "type": "function"}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
<|im_start|>user
Fix add() in calc.py.<|im_end|>
<|im_start|>assistant
Let me look.
<tool_call>
{"name": "read_file", "arguments": {"path": "calc.py"}}
</tool_call>
<tool_call>
{"name": "run_tests", "arguments": {}}
</tool_call><|im_end|>
<|im_start|>user
<tool_response>
def add(a, b):
    return a - b

</tool_response>
<tool_response>
1 failed
</tool_response><|im_end|>
<|im_start|>assistant
It subtracts.<|im_end|>
<|im_start|>user
Fix it, café ✓.<|im_end|>
<|im_start|>assistant
)EOS";
constexpr std::string_view kQwenNoSystemNoTools = R"EOS(<|im_start|>system
You are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>
<|im_start|>user
hi<|im_end|>
<|im_start|>assistant
)EOS";
constexpr std::string_view kQwenNoSystemTools = R"EOS(<|im_start|>system
You are Qwen, created by Alibaba Cloud. You are a helpful assistant.

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{"function": {"description": "Read a file of the repository.", "name": "read_file", "parameters": {"properties": {"path": {"description": "Path from the root", "type": "string"}}, "required": ["path"], "type": "object"}}, "type": "function"}
{"function": {"description": "Run the tests.", "name": "run_tests", "parameters": {"properties": {}, "type": "object"}}, "type": "function"}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
<|im_start|>user
hi<|im_end|>
<|im_start|>assistant
)EOS";
constexpr std::string_view kLlamaTools =
    R"EOS(<|begin_of_text|><|start_header_id|>system<|end_header_id|>

Environment: ipython
Cutting Knowledge Date: December 2023
Today Date: 26 Jul 2024

You are a coding agent.<|eot_id|><|start_header_id|>user<|end_header_id|>

Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.

Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.Do not use variables.

{
    "function": {
        "description": "Read a file of the repository.",
        "name": "read_file",
        "parameters": {
            "properties": {
                "path": {
                    "description": "Path from the root",
                    "type": "string"
                }
            },
            "required": [
                "path"
            ],
            "type": "object"
        }
    },
    "type": "function"
}

{
    "function": {
        "description": "Run the tests.",
        "name": "run_tests",
        "parameters": {
            "properties": {},
            "type": "object"
        }
    },
    "type": "function"
}

Fix add() in calc.py.<|eot_id|><|start_header_id|>assistant<|end_header_id|>

{"name": "read_file", "parameters": {"path": "calc.py"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>

"def add(a, b):\n    return a - b\n"<|eot_id|><|start_header_id|>assistant<|end_header_id|>

It subtracts; I will fix it.<|eot_id|><|start_header_id|>user<|end_header_id|>

Go on.<|eot_id|><|start_header_id|>assistant<|end_header_id|>

)EOS";
constexpr std::string_view kLlamaNoTools =
    R"EOS(<|begin_of_text|><|start_header_id|>system<|end_header_id|>

Cutting Knowledge Date: December 2023
Today Date: 26 Jul 2024

Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>

hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>

)EOS";

Json Tools() {
  return Json::parse(R"([
    {"type": "function", "function": {"name": "read_file",
      "description": "Read a file of the repository.",
      "parameters": {"type": "object", "required": ["path"],
        "properties": {"path": {"type": "string", "description": "Path from the root"}}}}},
    {"type": "function", "function": {"name": "run_tests", "description": "Run the tests.",
      "parameters": {"type": "object", "properties": {}}}}])");
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "loom_chat_XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(dir_); }
  const std::string& path() const { return dir_; }
  void Write(const std::string& name, const std::string& text) const {
    std::ofstream(dir_ + "/" + name) << text;
  }

 private:
  std::string dir_;
};

TEST(ChatFormatTest, RendersTheFixtureConversationExactlyLikeItsTemplate) {
  auto format = ChatFormat::ForModel(FixturePath("tiny-llama"));
  ASSERT_TRUE(format.ok()) << format.status().ToString();
  EXPECT_EQ(format->kind(), ChatFormatKind::kChatMl);
  EXPECT_EQ(format->options().default_system, "");
  std::ifstream in(FixturePath("tiny-llama/golden.json"));
  std::stringstream buf;
  buf << in.rdbuf();
  const Json golden = Json::parse(buf.str());
  const Json messages = Json::parse(R"([
    {"role": "system", "content": "You are a coding agent."},
    {"role": "user", "content": "Fix the bug in add(): it subtracts."}])");
  auto text = format->Render(messages, nullptr);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(*text, golden["chat_rendered"].get<std::string>());
}

TEST(ChatFormatTest, ChatMlWithToolsMatchesQwen25Template) {
  auto format = ChatFormat::ByName("chatml");
  ASSERT_TRUE(format.ok());
  // OpenAI sends arguments as JSON text; the template renders them as an object.
  const Json messages = Json::parse(R"([
    {"role": "system", "content": "You are a coding agent."},
    {"role": "user", "content": "Fix add() in calc.py."},
    {"role": "assistant", "content": "Let me look.", "tool_calls": [
      {"id": "call_0", "type": "function",
       "function": {"name": "read_file", "arguments": "{\"path\": \"calc.py\"}"}},
      {"id": "call_1", "type": "function", "function": {"name": "run_tests", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "call_0", "content": "def add(a, b):\n    return a - b\n"},
    {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "1 failed"}]},
    {"role": "assistant", "content": "It subtracts."},
    {"role": "user", "content": "Fix it, café ✓."}])");
  auto text = format->Render(messages, Tools());
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(*text, kQwenTools);
}

TEST(ChatFormatTest, QwenTemplateBringsItsDefaultSystemPrompt) {
  TempDir dir;
  dir.Write("tokenizer_config.json",
            Json{{"chat_template",
                  "{%- if tools %}...You are Qwen, created by Alibaba Cloud. You are a helpful "
                  "assistant....<|im_start|>..."}}
                .dump());
  auto format = ChatFormat::ForModel(dir.path());
  ASSERT_TRUE(format.ok()) << format.status().ToString();
  EXPECT_EQ(format->kind(), ChatFormatKind::kChatMl);
  const Json hi = Json::parse(R"([{"role": "user", "content": "hi"}])");
  EXPECT_EQ(*format->Render(hi, nullptr), kQwenNoSystemNoTools);
  EXPECT_EQ(*format->Render(hi, Tools()), kQwenNoSystemTools);
}

TEST(ChatFormatTest, Llama3WithToolsMatchesLlama32Template) {
  auto format = ChatFormat::ByName("llama3");
  ASSERT_TRUE(format.ok());
  const Json messages = Json::parse(R"([
    {"role": "system", "content": "You are a coding agent."},
    {"role": "user", "content": "Fix add() in calc.py."},
    {"role": "assistant", "content": null, "tool_calls": [{"id": "call_0", "type": "function",
      "function": {"name": "read_file", "arguments": "{\"path\":\"calc.py\"}"}}]},
    {"role": "tool", "tool_call_id": "call_0", "content": "def add(a, b):\n    return a - b\n"},
    {"role": "assistant", "content": "It subtracts; I will fix it."},
    {"role": "user", "content": "Go on."}])");
  auto text = format->Render(messages, Tools());
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(*text, kLlamaTools);
}

TEST(ChatFormatTest, Llama3WithoutToolsTrimsTurns) {
  auto format = ChatFormat::ByName("llama3");
  ASSERT_TRUE(format.ok());
  const Json messages = Json::parse(R"([
    {"role": "system", "content": " Be brief. "}, {"role": "user", "content": "hi\n"}])");
  EXPECT_EQ(*format->Render(messages, nullptr), kLlamaNoTools);
  EXPECT_EQ(*format->Render(messages, Json::array()), kLlamaNoTools);
}

TEST(ChatFormatTest, Llama30TemplateHasNoDatedSystemTurn) {
  TempDir dir;
  dir.Write("tokenizer_config.json",
            Json{{"chat_template",
                  "{% for message in messages %}<|start_header_id|>{{ message['role'] }}..."}}
                .dump());
  auto format = ChatFormat::ForModel(dir.path());
  ASSERT_TRUE(format.ok()) << format.status().ToString();
  EXPECT_EQ(format->kind(), ChatFormatKind::kLlama3);
  const Json hi = Json::parse(R"([{"role": "user", "content": "hi"}])");
  EXPECT_EQ(*format->Render(hi, nullptr),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(*format->Render(hi, nullptr, GenerationPrompt::kOmit),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>");
}

TEST(ChatFormatTest, DeveloperRoleIsTheSystemPrompt) {
  auto format = ChatFormat::ByName("chatml");
  ASSERT_TRUE(format.ok());
  const Json messages = Json::parse(R"([
    {"role": "developer", "content": "You are a coding agent."},
    {"role": "user", "content": "Fix add() in calc.py."}])");
  EXPECT_EQ(*format->Render(messages, nullptr),
            "<|im_start|>system\nYou are a coding agent.<|im_end|>\n<|im_start|>user\nFix add() in "
            "calc.py.<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatFormatTest, NameOverridesDetection) {
  auto format = ChatFormat::ForModel(FixturePath("tiny-llama"), "llama3");
  ASSERT_TRUE(format.ok());
  EXPECT_EQ(format->kind(), ChatFormatKind::kLlama3);
  EXPECT_EQ(format->name(), "llama3");
  EXPECT_EQ(format->stop_tokens(), (std::vector<std::string>{"<|eot_id|>", "<|eom_id|>"}));
  EXPECT_FALSE(ChatFormat::ByName("vicuna").ok());
}

TEST(ChatFormatTest, ModelWithoutTemplateNeedsAName) {
  TempDir dir;
  auto format = ChatFormat::ForModel(dir.path());
  ASSERT_FALSE(format.ok());
  EXPECT_EQ(format.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(format.status().message().find(dir.path()), std::string::npos);
  EXPECT_TRUE(ChatFormat::ForModel(dir.path(), "chatml").ok());

  dir.Write("chat_template.jinja", "{{ messages }}[INST]");
  format = ChatFormat::ForModel(dir.path());
  ASSERT_FALSE(format.ok());
  EXPECT_NE(format.status().message().find("chat_template.jinja"), std::string::npos);
}

TEST(ChatFormatTest, RejectsMalformedMessagesSayingWhich) {
  auto format = ChatFormat::ByName("chatml");
  ASSERT_TRUE(format.ok());
  auto r = format->Render(Json::object(), nullptr);
  EXPECT_FALSE(r.ok());
  r = format->Render(Json::parse(R"([{"role": "user", "content": "a"}, {"content": "b"}])"),
                     nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("messages[1]"), std::string::npos);
  r = format->Render(Json::parse(R"([{"role": "user", "content": 42}])"), nullptr);
  EXPECT_FALSE(r.ok());
  r = format->Render(Json::parse(R"([{"role": "assistant", "tool_calls": [{"id": "x"}]}])"),
                     nullptr);
  EXPECT_FALSE(r.ok());
  auto llama = ChatFormat::ByName("llama3");
  EXPECT_FALSE(llama->Render(Json::parse(R"([{"role": "system", "content": "s"}])"), Tools()).ok());
}

TEST(ChatFormatTest, PythonJsonDumpsMatchesJsonDumps) {
  const Json v = Json::parse(R"({"b": [1, 2.5, "x\ny\u0001é"], "a": {}, "c": [], "d": null,
                                 "e": true})");
  EXPECT_EQ(PythonJsonDumps(v),
            R"({"a": {}, "b": [1, 2.5, "x\ny\u0001é"], "c": [], "d": null, "e": true})");
  EXPECT_EQ(PythonJsonDumps(Json::parse(R"({"a": [1, {"b": 2}]})"), 2),
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": 2\n    }\n  ]\n}");
}

}  // namespace
}  // namespace loom::inference
