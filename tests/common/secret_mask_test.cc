// SecretMasker: the value, pieces of it cut at either end, and the encodings a
// payload can print, each checked against an independent encoder (python3).
#include "common/secret_mask.h"

#include <gtest/gtest.h>

#include "tests/support/subprocess.h"

namespace loom {
namespace {

constexpr const char* kValue = "sup-OVERWRITTEN/9f3k+2?";

// What python3 prints for `expr`, with V bound to kValue (as bytes: B).
std::string Python(const std::string& expr) {
  std::string out = testing::CommandOutput(
      "python3 -c 'import base64, urllib.parse, json, re, sys; V = sys.argv[1]; B = V.encode(); "
      "print(" +
      expr + ", end=\"\")' '" + kValue + "'");
  return out;
}

std::unique_ptr<SecretMasker> Masker() {
  auto m = std::make_unique<SecretMasker>();
  m->Add("TOKEN", kValue);
  return m;
}

TEST(SecretMaskerTest, MasksTheValueWherever) {
  EXPECT_EQ(Masker()->Mask(std::string("a=") + kValue + ", b=" + kValue),
            "a=[secret TOKEN], b=[secret TOKEN]");
}

TEST(SecretMaskerTest, MasksPiecesCutFromEitherEnd) {
  std::string value = kValue;
  auto masker = Masker();
  SecretMasker& m = *masker;
  // What is left of a value when a long output is cut in its middle.
  std::string head = "before " + value.substr(0, 13);
  std::string tail = value.substr(value.size() - 9) + " after";
  EXPECT_EQ(m.Mask(head), "before [secret TOKEN]");
  EXPECT_EQ(m.Mask(tail), "[secret TOKEN] after");
  EXPECT_EQ(m.Mask("x" + value.substr(0, 8) + "y"), "x[secret TOKEN]y");
  // Under kMinFragment characters a piece is ordinary text.
  EXPECT_EQ(m.Mask("sup-OVE"), "sup-OVE");
}

TEST(SecretMaskerTest, MasksEncodingsAPayloadCanPrint) {
  auto masker = Masker();
  SecretMasker& m = *masker;
  for (const char* expr :
       {"B.hex()", "B.hex().upper()", "base64.b64encode(B).decode()",
        "base64.b64encode(b\"x\" + B + b\"yz\").decode()", "base64.b64encode(b\"xy\" + B).decode()",
        "base64.urlsafe_b64encode(b\"x\" + B).decode()", "urllib.parse.quote(V, safe=\"\")",
        "re.sub(\"%..\", lambda m: m.group().lower(), urllib.parse.quote(V, safe=\"\"))",
        "json.dumps({\"v\": V})"}) {
    std::string printed = Python(expr);
    ASSERT_FALSE(printed.empty()) << expr;
    std::string masked = m.Mask("out: " + printed);
    EXPECT_NE(masked.find("[secret TOKEN]"), std::string::npos) << expr << ": " << masked;
    // No run of the encoding as long as kMinFragment survives around the mask.
    for (const std::string& form : SecretEncodings(kValue)) {
      EXPECT_EQ(masked.find(form), std::string::npos) << expr << ": " << masked;
    }
  }
}

TEST(SecretMaskerTest, ShortValuesAreStillMaskedWhole) {
  SecretMasker m;
  m.Add("PIN", "123");
  EXPECT_EQ(m.Mask("pin=123"), "pin=[secret PIN]");
}

TEST(SecretMaskerTest, MasksEveryStringOfJsonAndKeepsDepthBounded) {
  auto masker = Masker();
  SecretMasker& m = *masker;
  Json j = {{"a", {1, std::string("v=") + kValue}}, {kValue, true}};
  std::string dumped = DumpJson(m.MaskJson(j));
  EXPECT_EQ(dumped.find(kValue), std::string::npos) << dumped;
  Json deep = kValue;
  for (int i = 0; i < 1000; ++i) deep = Json::array({std::move(deep)});
  Json masked = m.MaskJson(deep, 64);
  int depth = 0;
  for (const Json* p = &masked; p->is_array(); p = &(*p)[0]) ++depth;
  EXPECT_LE(depth, 64);
}

TEST(SecretMaskerTest, AReplacedValueStaysMasked) {
  SecretMasker m;
  m.Add("K", "first-value-111");
  m.Add("K", "second-value-222");
  EXPECT_EQ(m.Mask("first-value-111 second-value-222"), "[secret K] [secret K]");
}

}  // namespace
}  // namespace loom
