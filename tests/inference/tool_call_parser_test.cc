// Tool-call parsing: whole outputs for both formats, the streaming parser fed at
// every split point (and byte by byte) agreeing with the whole parse, hold-back of a
// partial <tool_call>, and malformed calls kept as content.
#include "inference/text/tool_call_parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace loom::inference {
namespace {

// Accumulates streamed deltas the way an OpenAI client does, checking their shape.
struct Accumulated {
  std::string content;
  std::vector<ToolCall> calls;
  void Add(const OutputDelta& d) {
    content += d.content;
    for (const ToolCallDelta& t : d.tool_calls) {
      if (t.index == static_cast<int>(calls.size())) {
        // The first delta of a call names it and carries no arguments yet.
        EXPECT_FALSE(t.id.empty());
        EXPECT_FALSE(t.name.empty());
        EXPECT_TRUE(t.arguments.empty());
        calls.push_back({t.id, t.name, ""});
      } else {
        ASSERT_EQ(t.index, static_cast<int>(calls.size()) - 1);
        EXPECT_TRUE(t.id.empty());
        EXPECT_TRUE(t.name.empty());
        calls.back().arguments += t.arguments;
      }
    }
  }
};

void ExpectStreamingMatchesWhole(ChatFormatKind format, const std::string& text) {
  const ParsedOutput whole = ParseToolCalls(format, text);
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    ToolCallStreamParser parser(format);
    Accumulated acc;
    acc.Add(parser.Push(text.substr(0, cut)));
    acc.Add(parser.Push(text.substr(cut)));
    acc.Add(parser.Finish());
    EXPECT_EQ(acc.content, whole.content) << "cut at " << cut;
    EXPECT_EQ(acc.calls, whole.tool_calls) << "cut at " << cut;
    EXPECT_EQ(parser.malformed_tool_calls(), whole.malformed_tool_calls);
  }
  ToolCallStreamParser parser(format);
  Accumulated acc;
  for (char c : text) acc.Add(parser.Push(std::string(1, c)));
  acc.Add(parser.Finish());
  EXPECT_EQ(acc.content, whole.content) << "byte by byte";
  EXPECT_EQ(acc.calls, whole.tool_calls) << "byte by byte";
}

constexpr ChatFormatKind kHermes = ChatFormatKind::kChatMl;
constexpr ChatFormatKind kLlama3 = ChatFormatKind::kLlama3;

TEST(ToolCallParserTest, HermesContentAndCalls) {
  const std::string text =
      "Let me look at the file.\n<tool_call>\n{\"name\": \"read_file\", \"arguments\": "
      "{\"path\": \"calc.py\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"run_tests\", "
      "\"arguments\": {}}\n</tool_call>";
  const ParsedOutput out = ParseToolCalls(kHermes, text);
  EXPECT_EQ(out.content, "Let me look at the file.");
  ASSERT_EQ(out.tool_calls.size(), 2u);
  EXPECT_EQ(out.tool_calls[0], (ToolCall{"call_0", "read_file", R"({"path":"calc.py"})"}));
  EXPECT_EQ(out.tool_calls[1], (ToolCall{"call_1", "run_tests", "{}"}));
  EXPECT_EQ(out.malformed_tool_calls, 0);
  ExpectStreamingMatchesWhole(kHermes, text);
}

TEST(ToolCallParserTest, HermesCallOnlyHasEmptyContent) {
  const std::string text =
      "<tool_call>\n{\"name\": \"grep\", \"arguments\": {\"pattern\": \"a}b\\\"c\", \"n\": [1, "
      "2]}}\n</tool_call>\n";
  const ParsedOutput out = ParseToolCalls(kHermes, text);
  EXPECT_EQ(out.content, "");
  ASSERT_EQ(out.tool_calls.size(), 1u);
  EXPECT_EQ(out.tool_calls[0].name, "grep");
  EXPECT_EQ(out.tool_calls[0].arguments, R"({"n":[1,2],"pattern":"a}b\"c"})");
  ExpectStreamingMatchesWhole(kHermes, text);
}

TEST(ToolCallParserTest, PlainTextComesBackExactly) {
  for (const std::string text :
       {"Hello, world!\n\n", "  a < b and c <tool no\n", "x <tool_cal", "", "  \n", "日本語 ✓ 🚀"}) {
    const ParsedOutput out = ParseToolCalls(kHermes, text);
    EXPECT_EQ(out.content, text);
    EXPECT_TRUE(out.tool_calls.empty());
    ExpectStreamingMatchesWhole(kHermes, text);
    if (text.find('{') == std::string::npos) {
      EXPECT_EQ(ParseToolCalls(kLlama3, text).content, text);
      ExpectStreamingMatchesWhole(kLlama3, text);
    }
  }
}

TEST(ToolCallParserTest, HoldsBackWhatMayStartATag) {
  ToolCallStreamParser parser(kHermes);
  EXPECT_EQ(parser.Push("I will check. <tool").content, "I will check.");
  OutputDelta d = parser.Push("_call>\n{\"name\": \"ls\", \"argum");
  EXPECT_TRUE(d.empty());
  d = parser.Push("ents\": {\"dir\": \".\"}}\n</tool_call>");
  EXPECT_EQ(d.content, "");
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_EQ(d.tool_calls[0], (ToolCallDelta{0, "call_0", "ls", ""}));
  EXPECT_EQ(d.tool_calls[1], (ToolCallDelta{0, "", "", R"({"dir":"."})"}));
  EXPECT_TRUE(parser.Finish().empty());
  EXPECT_EQ(parser.tool_calls(), 1);

  ToolCallStreamParser not_a_tag(kHermes);
  EXPECT_EQ(not_a_tag.Push("a <tool").content, "a");
  EXPECT_EQ(not_a_tag.Push("box> b").content, " <toolbox> b");
}

TEST(ToolCallParserTest, MalformedHermesCallsStayContent) {
  const std::string broken =
      "Try:\n<tool_call>\n{\"name\": \"ls\", \"arguments\": {\"d\": }\n</tool_call>";
  ParsedOutput out = ParseToolCalls(kHermes, broken);
  EXPECT_EQ(out.content, broken);
  EXPECT_TRUE(out.tool_calls.empty());
  EXPECT_EQ(out.malformed_tool_calls, 1);
  ExpectStreamingMatchesWhole(kHermes, broken);

  const std::string no_name =
      "<tool_call>{\"arguments\": {}}</tool_call> then <tool_call>[1]</tool_call>";
  out = ParseToolCalls(kHermes, no_name);
  EXPECT_EQ(out.content, no_name);
  EXPECT_EQ(out.malformed_tool_calls, 2);
  ExpectStreamingMatchesWhole(kHermes, no_name);

  // A good call after a bad one still counts, and gets index 0.
  const std::string mixed =
      "<tool_call>{oops</tool_call>\n<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>";
  out = ParseToolCalls(kHermes, mixed);
  EXPECT_EQ(out.content, "<tool_call>{oops</tool_call>");
  ASSERT_EQ(out.tool_calls.size(), 1u);
  EXPECT_EQ(out.tool_calls[0].id, "call_0");
  ExpectStreamingMatchesWhole(kHermes, mixed);
}

TEST(ToolCallParserTest, HermesCallCutOffByEndOfOutput) {
  const std::string complete = "<tool_call>\n{\"name\": \"ls\", \"arguments\": {}}\n";
  ParsedOutput out = ParseToolCalls(kHermes, complete);
  ASSERT_EQ(out.tool_calls.size(), 1u);
  EXPECT_EQ(out.content, "");
  ExpectStreamingMatchesWhole(kHermes, complete);

  const std::string truncated = "ok <tool_call>\n{\"name\": \"ls\", \"argu";
  out = ParseToolCalls(kHermes, truncated);
  EXPECT_TRUE(out.tool_calls.empty());
  EXPECT_EQ(out.content, truncated);
  EXPECT_EQ(out.malformed_tool_calls, 1);
  ExpectStreamingMatchesWhole(kHermes, truncated);
}

TEST(ToolCallParserTest, ArgumentsGivenAsJsonTextAreKept) {
  const std::string text =
      "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"x\\\": 1}\"}</tool_call>";
  const ParsedOutput out = ParseToolCalls(kHermes, text);
  ASSERT_EQ(out.tool_calls.size(), 1u);
  EXPECT_EQ(out.tool_calls[0].arguments, "{\"x\": 1}");
}

TEST(ToolCallParserTest, Llama3JsonCall) {
  const std::string text = "{\"name\": \"read_file\", \"parameters\": {\"path\": \"calc.py\"}}";
  const ParsedOutput out = ParseToolCalls(kLlama3, text);
  EXPECT_EQ(out.content, "");
  ASSERT_EQ(out.tool_calls.size(), 1u);
  EXPECT_EQ(out.tool_calls[0], (ToolCall{"call_0", "read_file", R"({"path":"calc.py"})"}));
  ExpectStreamingMatchesWhole(kLlama3, text);

  const std::string tagged =
      " <|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"arguments\": "
      "{\"s\": \"}{;\"}}\n";
  const ParsedOutput two = ParseToolCalls(kLlama3, tagged, "call_7_");
  ASSERT_EQ(two.tool_calls.size(), 2u);
  EXPECT_EQ(two.tool_calls[0], (ToolCall{"call_7_0", "a", "{}"}));
  EXPECT_EQ(two.tool_calls[1], (ToolCall{"call_7_1", "b", R"({"s":"}{;"})"}));
  EXPECT_EQ(two.content, "");
  ExpectStreamingMatchesWhole(kLlama3, tagged);
}

TEST(ToolCallParserTest, Llama3TextAndJsonAnswersAreContent) {
  ToolCallStreamParser parser(kLlama3);
  EXPECT_EQ(parser.Push("  ").content, "");
  EXPECT_EQ(parser.Push("The fix").content, "  The fix");
  EXPECT_EQ(parser.Push(" is {x}.").content, " is {x}.");
  EXPECT_TRUE(parser.Finish().empty());

  for (const std::string text :
       {"{\"answer\": 42}", "{\"name\": \"a\"} and more", "{broken", "<|python_tag|>print(1)"}) {
    const ParsedOutput out = ParseToolCalls(kLlama3, text);
    EXPECT_EQ(out.content, text);
    EXPECT_TRUE(out.tool_calls.empty());
    ExpectStreamingMatchesWhole(kLlama3, text);
  }
  EXPECT_EQ(ParseToolCalls(kLlama3, "{\"answer\": 42}").malformed_tool_calls, 0);
  EXPECT_EQ(ParseToolCalls(kLlama3, "{broken").malformed_tool_calls, 1);
}

TEST(ToolCallParserTest, NothingAfterFinish) {
  ToolCallStreamParser parser(kHermes);
  EXPECT_EQ(parser.Push("a").content, "a");
  EXPECT_TRUE(parser.Finish().empty());
  EXPECT_TRUE(parser.Push("b").empty());
  EXPECT_TRUE(parser.Finish().empty());
}

}  // namespace
}  // namespace loom::inference
