#include "inference/engine/output_text.h"

#include <gtest/gtest.h>

#include <map>

namespace loom::inference {
namespace {

// Token i decodes to kPieces[i]; bytes, so a character may be split.
const std::vector<std::string> kPieces = {"Hel", "lo", " wor", "ld",  "\xE2\x82", "\xAC",
                                          "!",   "<",  "|",    "end", "|>",       " ok"};

Detokenizer Pieces() {
  return [](std::span<const int32_t> ids) {
    std::string s;
    for (int32_t id : ids) s += kPieces[id];
    return s;
  };
}

std::string Feed(OutputText& out, std::vector<int32_t> ids, bool* stopped = nullptr,
                 std::vector<std::string>* deltas = nullptr) {
  std::string all;
  bool stop = false;
  for (int32_t id : ids) {
    stop = out.Append(id);
    std::string d = out.TakeDelta();
    if (deltas) deltas->push_back(d);
    all += d;
    if (stop) break;
  }
  if (!stop) {
    out.Flush();
    all += out.TakeDelta();
  }
  if (stopped) *stopped = stop;
  return all;
}

TEST(OutputTextTest, ConcatenatesTokensWithoutStops) {
  OutputText out(Pieces(), {});
  EXPECT_EQ(Feed(out, {0, 1, 2, 3}), "Hello world");
}

TEST(OutputTextTest, StopStringAcrossTokenBoundariesEndsTheText) {
  OutputText out(Pieces(), {"o wo"});
  bool stopped = false;
  EXPECT_EQ(Feed(out, {0, 1, 2, 3}, &stopped), "Hell");
  EXPECT_TRUE(stopped);
}

TEST(OutputTextTest, HoldsBackAPossibleStopPrefixUntilItIsDecided) {
  OutputText out(Pieces(), {"<|end|>"});
  std::vector<std::string> deltas;
  bool stopped = false;
  EXPECT_EQ(Feed(out, {0, 1, 7, 8, 9, 10, 11}, &stopped, &deltas), "Hello");
  EXPECT_TRUE(stopped);
  // "<", "|", "end" were never released.
  EXPECT_EQ(deltas[2], "");
  EXPECT_EQ(deltas[3], "");
  EXPECT_EQ(deltas[4], "");
}

TEST(OutputTextTest, ReleasesHeldTextWhenTheStopDoesNotMaterialize) {
  OutputText out(Pieces(), {"<|end|>"});
  bool stopped = true;
  EXPECT_EQ(Feed(out, {0, 7, 8, 11}, &stopped), "Hel<| ok");
  EXPECT_FALSE(stopped);
}

TEST(OutputTextTest, NeverSplitsAMultiByteCharacter) {
  OutputText out(Pieces(), {});
  std::vector<std::string> deltas;
  EXPECT_EQ(Feed(out, {0, 4, 5, 6}, nullptr, &deltas), "Hel\xE2\x82\xAC!");
  EXPECT_EQ(deltas[1], "");
  EXPECT_EQ(deltas[2], "\xE2\x82\xAC");
}

}  // namespace
}  // namespace loom::inference
