// The JSON boundary: ParseJson never throws and refuses deep documents;
// JsonReader reads typed fields and names the one that is wrong; the tolerant
// readers of stored documents never throw whatever the shape.
#include "common/json_reader.h"

#include <gtest/gtest.h>

#include <string>

namespace loom {
namespace {

Json Parse(std::string_view text) {
  auto j = ParseJson(text);
  EXPECT_TRUE(j.ok()) << text << ": " << j.status().ToString();
  return j.ok() ? *j : Json();
}

TEST(ParseJsonTest, ANumberPastADoubleIsAnErrorNotAnException) {
  auto j = ParseJson(R"({"k": 1e400})");
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(j.status().message().find("number overflow"), std::string::npos)
      << j.status().message();
  EXPECT_FALSE(ParseJson("-1e400").ok());
}

TEST(ParseJsonTest, RefusesNestingPastTheLimitWithoutRecursing) {
  std::string deep(150000, '[');
  auto j = ParseJson(deep + std::string(150000, ']'));
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find("nested deeper than 128"), std::string::npos);
  EXPECT_FALSE(ParseJson(std::string(100000, '{')).ok());
  std::string at_limit = std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  EXPECT_TRUE(ParseJson(at_limit).ok());
  EXPECT_FALSE(ParseJson("[" + at_limit + "]").ok());
  EXPECT_TRUE(ParseJson("[" + at_limit + "]", kMaxJsonDepth + 1).ok());
}

TEST(ParseJsonTest, BracketsInsideStringsDoNotCount) {
  std::string s = "\"" + std::string(1000, '[') + "\\\"" + std::string(1000, '{') + "\"";
  EXPECT_TRUE(ParseJson(s).ok());
  EXPECT_EQ(JsonNestingDepth(R"({"a": "[[[[", "b": [1, {"c": "\"]]"}]})", 100), 3);
}

TEST(JsonReaderTest, ReadsTypedFields) {
  Json j = Parse(R"({"s": "x", "i": 7, "f": 3.0, "d": 0.5, "b": true, "o": {"k": 1},
                    "a": [1], "n": null})");
  std::string s;
  std::optional<std::string> opt, absent;
  int64_t i = 0, f = 0, missing = 42;
  double d = 0;
  bool b = false;
  const Json *o = nullptr, *a = nullptr;
  JsonReader in(j);
  in.String("s", &s)
      .String("s", &opt)
      .String("nope", &absent)
      .Int("i", &i)
      .Int("f", &f)
      .Int("n", &missing)
      .Number("d", &d, Presence::kRequired, 0, 1)
      .Bool("b", &b)
      .Object("o", &o)
      .Array("a", &a);
  ASSERT_TRUE(in.ok()) << in.error().message;
  EXPECT_EQ(s, "x");
  EXPECT_EQ(opt, "x");
  EXPECT_FALSE(absent);
  EXPECT_EQ(i, 7);
  EXPECT_EQ(f, 3);
  EXPECT_EQ(missing, 42);
  EXPECT_EQ(d, 0.5);
  EXPECT_TRUE(b);
  ASSERT_NE(o, nullptr);
  ASSERT_NE(a, nullptr);
}

TEST(JsonReaderTest, NamesTheFirstWrongField) {
  Json j = Parse(R"({"approve": "yes", "name": 5})");
  bool approve = false;
  std::string name;
  JsonReader in(j);
  in.Bool("approve", &approve).String("name", &name);
  ASSERT_FALSE(in.ok());
  EXPECT_EQ(in.field(), "approve");
  EXPECT_EQ(in.error().message, "approve must be true or false, not a string");
  EXPECT_EQ(in.status().code(), StatusCode::kInvalidArgument);
}

TEST(JsonReaderTest, EveryWrongTypeOfEveryKindIsAnError) {
  const char* values[] = {"null", "true", "1", "-1", "1.5", "18446744073709551615", "\"s\"",
                          "[]", "{}"};
  for (const char* v : values) {
    Json j = Parse(std::string(R"({"x": )") + v + "}");
    std::string s;
    int64_t i = 0;
    double d = 0;
    bool b = false;
    const Json* p = nullptr;
    // Each call is on its own reader: the type it wants either matches or is an error.
    EXPECT_EQ(JsonReader(j).String("x", &s, Presence::kRequired).ok(), j["x"].is_string()) << v;
    EXPECT_EQ(JsonReader(j).Int("x", &i, Presence::kRequired, 0, 10).ok(),
              j["x"].is_number() && (std::string(v) == "1")) << v;
    EXPECT_EQ(JsonReader(j).Number("x", &d, Presence::kRequired, -10, 10).ok(), j["x"].is_number()
              && std::string(v) != "18446744073709551615") << v;
    EXPECT_EQ(JsonReader(j).Bool("x", &b, Presence::kRequired).ok(), j["x"].is_boolean()) << v;
    EXPECT_EQ(JsonReader(j).Object("x", &p, Presence::kRequired).ok(), j["x"].is_object()) << v;
    EXPECT_EQ(JsonReader(j).Array("x", &p, Presence::kRequired).ok(), j["x"].is_array()) << v;
  }
}

TEST(JsonReaderTest, IntegersOutOfRangeOrNotIntegralAreRefused) {
  int64_t i = 0;
  for (const char* v : {"1e300", "-1e300", "9223372036854775808", "18446744073709551615", "2.5",
                        "9.3e18"}) {
    Json j = Parse(std::string(R"({"x": )") + v + "}");
    JsonReader in(j);
    in.Int("x", &i);
    EXPECT_FALSE(in.ok()) << v;
  }
  Json j = Parse(R"({"x": -9223372036854775808})");
  JsonReader in(j);
  in.Int("x", &i);
  EXPECT_TRUE(in.ok());
  EXPECT_EQ(i, INT64_MIN);
}

TEST(JsonReaderTest, RequiredNonEmptyAndUnknownMembers) {
  Json j = Parse(R"({"a": "", "b": "x", "extra": 1})");
  std::string a, b;
  EXPECT_EQ(JsonReader(j).String("missing", &a, Presence::kRequired).field(), "missing");
  EXPECT_EQ(JsonReader(j).String("a", &a, Presence::kNonEmpty).field(), "a");
  EXPECT_TRUE(JsonReader(j).String("a", &a, Presence::kRequired).ok());
  JsonReader in(j);
  in.String("a", &a).String("b", &b).NoOtherMembers();
  EXPECT_EQ(in.field(), "extra");
}

TEST(JsonReaderTest, NestedReadersReportTheFullPath) {
  Json j = Parse(R"({"secret": {"name": "K", "value": 5}})");
  const Json* secret = nullptr;
  JsonReader in(j);
  in.Object("secret", &secret);
  ASSERT_NE(secret, nullptr);
  std::string value;
  in.Include(JsonReader(*secret, "secret").String("value", &value));
  EXPECT_EQ(in.field(), "secret.value");
  EXPECT_EQ(in.error().message, "secret.value must be a string, not a number");
}

TEST(JsonReaderTest, ANonObjectDocumentFailsAtOnce) {
  for (const char* text : {"[1]", "5", "\"s\"", "null"}) {
    Json j = Parse(text);
    JsonReader in(j);
    EXPECT_FALSE(in.ok()) << text;
    EXPECT_NE(in.error().message.find("must be a JSON object"), std::string::npos);
    std::string s;
    EXPECT_FALSE(in.String("x", &s).ok());
  }
}

TEST(StoredJsonTest, TolerantReadersFallBackOnAnyShape) {
  for (const char* text : {R"({"summary": 5, "n": "x", "b": [], "m": 7})", "[1, 2]", "null", "3",
                           R"("s")", R"({"summary": {"a": 1}})"}) {
    Json j = Parse(text);
    EXPECT_EQ(StringOr(j, "summary", "none"), "none") << text;
    EXPECT_EQ(IntOr(j, "n", -1), -1) << text;
    EXPECT_FALSE(BoolOr(j, "b", false)) << text;
    EXPECT_TRUE(MemberOrNull(MemberOrNull(j, "m"), "x").is_null()) << text;
  }
  Json ok = Parse(R"({"summary": "s", "n": 4, "b": true})");
  EXPECT_EQ(StringOr(ok, "summary"), "s");
  EXPECT_EQ(IntOr(ok, "n", 0), 4);
  EXPECT_TRUE(BoolOr(ok, "b", false));
}

}  // namespace
}  // namespace loom
