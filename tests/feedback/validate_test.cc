#include <gtest/gtest.h>

#include "feedback/intake.h"

namespace loom::feedback {
namespace {

Invalid Reject(std::string_view body) {
  auto r = ParseSubmission(body, Limits{});
  EXPECT_TRUE(std::holds_alternative<Invalid>(r)) << body;
  return std::holds_alternative<Invalid>(r) ? std::get<Invalid>(r) : Invalid{};
}

TEST(ParseSubmissionTest, AcceptsAFullSubmission) {
  auto r = ParseSubmission(
      R"({"kind":"bug","title":"Crash","body":"It crashed","reporter":"ann","app_version":"1.2",
          "commit":"abc","url":"https://x/y","logs":"l","stack_trace":"s","repo":"app",
          "context":{"os":"linux","n":[1,2]}})",
      Limits{});
  ASSERT_TRUE(std::holds_alternative<Item>(r));
  const Item& it = std::get<Item>(r);
  EXPECT_EQ(it.kind, "bug");
  EXPECT_EQ(*it.repo, "app");
  EXPECT_EQ(it.context["os"], "linux");
}

TEST(ParseSubmissionTest, RejectsMalformedJson) {
  EXPECT_NE(Reject(R"({"kind":"bug",)").message.find("malformed JSON"), std::string::npos);
  EXPECT_NE(Reject("[1,2]").message.find("JSON object"), std::string::npos);
}

TEST(ParseSubmissionTest, RejectsMissingFieldsNamingThem) {
  EXPECT_EQ(Reject(R"({"title":"t","body":"b"})").field, "kind");
  EXPECT_EQ(Reject(R"({"kind":"bug","body":"b"})").field, "title");
  EXPECT_EQ(Reject(R"({"kind":"bug","title":"t"})").field, "body");
  EXPECT_EQ(Reject(R"({"kind":"bug","title":"   ","body":"b"})").field, "title");
}

TEST(ParseSubmissionTest, RejectsWrongTypes) {
  EXPECT_EQ(Reject(R"({"kind":"bug","title":1,"body":"b"})").field, "title");
  EXPECT_EQ(Reject(R"({"kind":"bug","title":"t","body":"b","url":["x"]})").field, "url");
  EXPECT_EQ(Reject(R"({"kind":"bug","title":"t","body":"b","context":"x"})").field, "context");
}

TEST(ParseSubmissionTest, RejectsUnknownKindAndUnknownFields) {
  EXPECT_EQ(Reject(R"({"kind":"rant","title":"t","body":"b"})").field, "kind");
  EXPECT_EQ(Reject(R"({"kind":"bug","title":"t","body":"b","severity":"high"})").field, "severity");
}

TEST(ParseSubmissionTest, RejectsOverLongFields) {
  std::string title(301, 'x');
  EXPECT_EQ(Reject(R"({"kind":"bug","title":")" + title + R"(","body":"b"})").field, "title");
  std::string big_ctx =
      R"({"kind":"bug","title":"t","body":"b","context":{"a":")" + std::string(40000, 'y') + "\"}}";
  EXPECT_EQ(Reject(big_ctx).field, "context");
}

TEST(ParseSubmissionTest, RejectsAContextNestedPastThirtyTwoLevels) {
  // The context object is level 1; `n` arrays inside it make 1 + n levels.
  auto with_arrays = [](int n) {
    return R"({"kind":"bug","title":"t","body":"b","context":{"a":)" + std::string(n, '[') +
           std::string(n, ']') + "}}";
  };
  EXPECT_TRUE(std::holds_alternative<Item>(ParseSubmission(with_arrays(31), Limits{})));
  EXPECT_EQ(Reject(with_arrays(32)).field, "context");
}

TEST(ParseSubmissionTest, RejectsInvalidUtf8) {
  EXPECT_NE(
      Reject("{\"kind\":\"bug\",\"title\":\"\xff\xfe\",\"body\":\"b\"}").message.find("UTF-8"),
      std::string::npos);
}

TEST(FingerprintTest, IgnoresNumbersCaseAndPunctuationInTitles) {
  Item a, b, c;
  a.kind = b.kind = c.kind = "bug";
  a.title = "Crash on save (order 1234)";
  b.title = "crash on SAVE: order 99!";
  c.title = "Crash on load";
  EXPECT_EQ(Fingerprint(a), Fingerprint(b));
  EXPECT_NE(Fingerprint(a), Fingerprint(c));
}

TEST(FingerprintTest, UsesTheTopStackFrames) {
  Item a, b, c;
  a.kind = b.kind = c.kind = "bug";
  a.title = b.title = c.title = "Crash";
  a.stack_trace =
      "Traceback:\n  File \"app.py\", line 10, in save\n  File \"db.py\", line 3, in put";
  b.stack_trace =
      "Traceback:\n  File \"app.py\", line 12, in save\n  File \"db.py\", line 4, in put";
  c.stack_trace =
      "Traceback:\n  File \"app.py\", line 10, in load\n  File \"db.py\", line 3, in get";
  EXPECT_EQ(Fingerprint(a), Fingerprint(b));
  EXPECT_NE(Fingerprint(a), Fingerprint(c));
}

}  // namespace
}  // namespace loom::feedback
