// Tokenizer: exact against the HF golden ids of the tiny-llama fixture, special
// tokens, the Llama-3 / Qwen2 / GPT-2 splitters against Python `re` (with \p{L} and
// \p{N} spelled out as explicit classes), and load errors that name the field.
#include "inference/text/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/json.h"
#include "inference/text/internal/nfc.h"
#include "inference/text/internal/pre_tokenize.h"
#include "tests/inference/fixture_path.h"

namespace loom::inference {
namespace {

using testing::FixturePath;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

Json FixtureJson(const std::string& rel) {
  auto j = ParseJson(ReadAll(FixturePath(rel)));
  EXPECT_TRUE(j.ok()) << j.status().ToString();
  return j.ok() ? *j : Json();
}

std::unique_ptr<Tokenizer> LoadFixture() {
  auto tok = Tokenizer::Load(FixturePath("tiny-llama"));
  EXPECT_TRUE(tok.ok()) << tok.status().ToString();
  return tok.ok() ? std::move(*tok) : nullptr;
}

// A temp directory with a tokenizer.json derived from the fixture's.
class TempTokenizer {
 public:
  explicit TempTokenizer(const Json& j) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "loom_tok_XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
    std::ofstream(dir_ + "/tokenizer.json") << j.dump();
  }
  ~TempTokenizer() { std::filesystem::remove_all(dir_); }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

std::vector<int32_t> Ids(const Json& j) { return j.get<std::vector<int32_t>>(); }

TEST(TokenizerTest, EncodesEveryGoldenCaseExactly) {
  auto tok = LoadFixture();
  ASSERT_NE(tok, nullptr);
  const Json golden = FixtureJson("tiny-llama/golden.json");
  ASSERT_TRUE(golden["cases"].is_array());
  ASSERT_FALSE(golden["cases"].empty());
  for (const Json& c : golden["cases"]) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ(tok->Encode(text), Ids(c["ids"])) << text;
  }
}

TEST(TokenizerTest, DecodesEveryGoldenCaseBackToItsText) {
  auto tok = LoadFixture();
  ASSERT_NE(tok, nullptr);
  const Json golden = FixtureJson("tiny-llama/golden.json");
  for (const Json& c : golden["cases"]) {
    const std::vector<int32_t> ids = Ids(c["ids"]);
    EXPECT_EQ(tok->Decode(ids), c["decoded"].get<std::string>());
    EXPECT_EQ(tok->Decode(ids), c["text"].get<std::string>());
  }
}

TEST(TokenizerTest, EmptyTextHasNoIds) {
  auto tok = LoadFixture();
  ASSERT_NE(tok, nullptr);
  const Json golden = FixtureJson("tiny-llama/golden.json");
  EXPECT_EQ(tok->Encode(""), Ids(golden["empty_text_ids"]));
  EXPECT_TRUE(tok->Encode("").empty());
}

TEST(TokenizerTest, SpecialTokensInTextAreParsedOnlyWhenAsked) {
  auto tok = LoadFixture();
  ASSERT_NE(tok, nullptr);
  const std::string text = "<|im_start|>user\nhi<|im_end|>";
  const std::vector<int32_t> parsed = tok->Encode(text, SpecialTokens::kParse);
  ASSERT_GE(parsed.size(), 3u);
  EXPECT_EQ(parsed.front(), 1);
  EXPECT_EQ(parsed.back(), 2);
  const std::vector<int32_t> as_text = tok->Encode(text, SpecialTokens::kAsText);
  EXPECT_EQ(std::count(as_text.begin(), as_text.end(), 1), 0);
  EXPECT_EQ(std::count(as_text.begin(), as_text.end(), 2), 0);
  EXPECT_EQ(tok->Decode(as_text), text);
  // Adjacent special tokens and ones at the very ends.
  EXPECT_EQ(tok->Encode("<tool_call></tool_call><|endoftext|>"), (std::vector<int32_t>{3, 4, 0}));
}

TEST(TokenizerTest, DecodeCanSkipSpecialTokens) {
  auto tok = LoadFixture();
  ASSERT_NE(tok, nullptr);
  const std::vector<int32_t> ids = tok->Encode("<|im_start|>hello<|im_end|>");
  EXPECT_EQ(tok->Decode(ids, DecodeSpecial::kSkip), "hello");
}

TEST(TokenizerTest, LooksUpTokensAndKnowsWhichAreSpecial) {
  auto tok = LoadFixture();
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->TokenId("<|im_end|>"), 2);
  EXPECT_EQ(tok->TokenId("<|im_start|>"), 1);
  EXPECT_EQ(tok->TokenId("!"), 5);
  EXPECT_FALSE(tok->TokenId("no such token").has_value());
  EXPECT_EQ(tok->TokenText(2), "<|im_end|>");
  EXPECT_TRUE(tok->IsSpecial(0));
  EXPECT_TRUE(tok->IsSpecial(4));
  EXPECT_FALSE(tok->IsSpecial(5));
  EXPECT_FALSE(tok->IsSpecial(-1));
  EXPECT_FALSE(tok->IsSpecial(100000));
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{-3, 99999}), "");
}

TEST(TokenizerTest, CachesWordsAndGivesTheSameIdsFromTheCache) {
  auto tok = LoadFixture();
  ASSERT_NE(tok, nullptr);
  const std::string text = "def add(a, b):\n    return a + b\n";
  const std::vector<int32_t> first = tok->Encode(text);
  const size_t cached = tok->cached_words();
  EXPECT_GT(cached, 0u);
  EXPECT_EQ(tok->Encode(text), first);
  EXPECT_EQ(tok->cached_words(), cached);
}

TEST(TokenizerTest, LongRunsAndArbitraryBytesRoundTrip) {
  auto tok = LoadFixture();
  ASSERT_NE(tok, nullptr);
  const std::string spaces(5000, ' ');
  EXPECT_EQ(tok->Decode(tok->Encode(spaces + "x")), spaces + "x");
  std::string bytes;
  for (int b = 1; b < 256; ++b) bytes.push_back(static_cast<char>(b));  // invalid UTF-8 too
  EXPECT_EQ(tok->Decode(tok->Encode(bytes)), bytes);
}

TEST(TokenizerTest, MergesAsStringsEqualMergesAsPairs) {
  Json j = FixtureJson("tiny-llama/tokenizer.json");
  Json merges = Json::array();
  for (const Json& m : j["model"]["merges"]) {
    merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
  }
  j["model"]["merges"] = merges;
  TempTokenizer tmp(j);
  auto strings = Tokenizer::Load(tmp.dir() + "/tokenizer.json");
  ASSERT_TRUE(strings.ok()) << strings.status().ToString();
  auto pairs = LoadFixture();
  ASSERT_NE(pairs, nullptr);
  for (const Json& c : FixtureJson("tiny-llama/golden.json")["cases"]) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ((*strings)->Encode(text), pairs->Encode(text));
  }
}

// The fixture's vocabulary with a Llama-3 style pre-tokenizer: Split then ByteLevel
// without its own regex. Each Split piece must be BPE'd on its own.
TEST(TokenizerTest, SequenceOfSplitAndByteLevelEncodesEachPieceAlone) {
  Json j = FixtureJson("tiny-llama/tokenizer.json");
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers", Json::array({{{"type", "Split"},
                                      {"pattern",
                                       {{"Regex", std::string(internal::SplitRegexSource(
                                                      internal::SplitPattern::kLlama3))}}},
                                      {"behavior", "Isolated"},
                                      {"invert", false}},
                                     {{"type", "ByteLevel"},
                                      {"add_prefix_space", false},
                                      {"trim_offsets", true},
                                      {"use_regex", false}}})}};
  TempTokenizer tmp(j);
  auto llama3 = Tokenizer::Load(tmp.dir());
  ASSERT_TRUE(llama3.ok()) << llama3.status().ToString();
  auto gpt2 = LoadFixture();
  ASSERT_NE(gpt2, nullptr);
  const std::string text = "x = 12345;\r\n  (hello)";
  std::vector<int32_t> expected;
  for (auto [first, last] : internal::SplitByPattern(text, internal::SplitPattern::kLlama3)) {
    std::vector<int32_t> piece = gpt2->Encode(text.substr(first, last - first));
    expected.insert(expected.end(), piece.begin(), piece.end());
  }
  EXPECT_EQ((*llama3)->Encode(text), expected);
  EXPECT_EQ((*llama3)->Decode(expected), text);
}

// Llama 3 sets ignore_merges: a word spelled by one vocabulary entry is that entry,
// even when the merges would not build it.
TEST(TokenizerTest, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  auto reference = LoadFixture();
  ASSERT_NE(reference, nullptr);
  Json j = FixtureJson("tiny-llama/tokenizer.json");
  Json& merges = j["model"]["merges"];
  // The last merge that builds a whole pre-tokenized word; drop it.
  std::string word;
  int32_t word_id = -1;
  for (size_t k = merges.size(); k-- > 0;) {
    const std::string spelled = merges[k][0].get<std::string>() + merges[k][1].get<std::string>();
    const int32_t id = *reference->TokenId(spelled);
    const std::string bytes = reference->Decode(std::vector<int32_t>{id});
    if (internal::SplitByPattern(bytes, internal::SplitPattern::kGpt2).size() == 1 &&
        reference->Encode(bytes) == std::vector<int32_t>{id}) {
      word = bytes;
      word_id = id;
      merges.erase(k);
      break;
    }
  }
  ASSERT_GE(word_id, 0);
  TempTokenizer without_merge(j);
  auto plain = Tokenizer::Load(without_merge.dir());
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_NE((*plain)->Encode(word), std::vector<int32_t>{word_id}) << word;
  j["model"]["ignore_merges"] = true;
  TempTokenizer ignoring(j);
  auto ignore = Tokenizer::Load(ignoring.dir());
  ASSERT_TRUE(ignore.ok()) << ignore.status().ToString();
  EXPECT_EQ((*ignore)->Encode(word), std::vector<int32_t>{word_id}) << word;
}

TEST(TokenizerTest, EncodesFromManyThreadsAtOnce) {
  auto tok = LoadFixture();
  ASSERT_NE(tok, nullptr);
  const Json golden = FixtureJson("tiny-llama/golden.json");
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 50; ++round) {
        for (const Json& c : golden["cases"]) {
          if (tok->Encode(c["text"].get<std::string>()) != Ids(c["ids"])) ++mismatches[t];
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(TokenizerTest, ReportsTheIdsATemplatePostProcessorAdds) {
  auto plain = LoadFixture();
  ASSERT_NE(plain, nullptr);
  EXPECT_TRUE(plain->template_prefix().empty());
  EXPECT_TRUE(plain->template_suffix().empty());
  // Llama 3's shape: Sequence[ByteLevel, TemplateProcessing(BOS $A)].
  Json j = FixtureJson("tiny-llama/tokenizer.json");
  j["post_processor"] = Json::parse(R"({"type": "Sequence", "processors": [
    {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
    {"type": "TemplateProcessing",
     "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "<|im_end|>", "type_id": 0}}],
     "pair": [],
     "special_tokens": {"<|im_start|>": {"id": "<|im_start|>", "ids": [1], "tokens": ["<|im_start|>"]}}}]})");
  TempTokenizer tmp(j);
  auto tok = Tokenizer::Load(tmp.dir());
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ((*tok)->template_prefix(), std::vector<int32_t>{1});
  EXPECT_EQ((*tok)->template_suffix(), std::vector<int32_t>{2});
  EXPECT_EQ((*tok)->Encode("hi"), plain->Encode("hi"));
}

// Qwen2's normalizer: decomposed input encodes like its composed form.
TEST(TokenizerTest, NfcNormalizerComposesBeforeSplitting) {
  Json j = FixtureJson("tiny-llama/tokenizer.json");
  j["normalizer"] = {{"type", "NFC"}};
  TempTokenizer tmp(j);
  auto nfc = Tokenizer::Load(tmp.dir());
  ASSERT_TRUE(nfc.ok()) << nfc.status().ToString();
  auto plain = LoadFixture();
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ((*nfc)->Encode("cafe\u0301 <|im_end|>"), plain->Encode("caf\u00e9 <|im_end|>"));
  EXPECT_NE(plain->Encode("cafe\u0301"), plain->Encode("caf\u00e9"));
  for (const Json& c : FixtureJson("tiny-llama/golden.json")["cases"]) {
    EXPECT_EQ((*nfc)->Encode(c["text"].get<std::string>()), Ids(c["ids"]));
  }
}

// The shape of Llama 3's tokenizer.json: added tokens far above the BPE vocabulary,
// Split + ByteLevel without regex, ignore_merges, a BOS template.
TEST(TokenizerTest, LoadsALlama3ShapedTokenizer) {
  Json j = FixtureJson("tiny-llama/tokenizer.json");
  j["added_tokens"] = Json::parse(R"([
    {"id": 128000, "content": "<|begin_of_text|>", "special": true},
    {"id": 128009, "content": "<|eot_id|>", "special": true},
    {"id": 128006, "content": "<|start_header_id|>", "special": true},
    {"id": 128007, "content": "<|end_header_id|>", "special": true}])");
  j["model"]["ignore_merges"] = true;
  j["pre_tokenizer"] = Json::parse(R"({"type": "Sequence", "pretokenizers": [
    {"type": "Split", "behavior": "Isolated", "invert": false, "pattern": {"Regex": ""}},
    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})");
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] =
      std::string(internal::SplitRegexSource(internal::SplitPattern::kLlama3));
  j["post_processor"] = Json::parse(R"({"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
               {"Sequence": {"id": "A", "type_id": 0}}],
    "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [128000]}}})");
  TempTokenizer tmp(j);
  auto tok = Tokenizer::Load(tmp.dir());
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ((*tok)->vocab_size(), 128010);
  EXPECT_EQ((*tok)->template_prefix(), std::vector<int32_t>{128000});
  EXPECT_EQ((*tok)->TokenId("<|eot_id|>"), 128009);
  const std::string prompt =
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nSum 1234 and 5!<|eot_id|>";
  const std::vector<int32_t> ids = (*tok)->Encode(prompt);
  ASSERT_GE(ids.size(), 6u);
  EXPECT_EQ(ids[0], 128000);
  EXPECT_EQ(ids[1], 128006);
  EXPECT_EQ(ids.back(), 128009);
  EXPECT_EQ((*tok)->Decode(ids), prompt);
  EXPECT_EQ((*tok)->Decode(ids, DecodeSpecial::kSkip), "user\n\nSum 1234 and 5!");
  EXPECT_EQ((*tok)->Decode(std::vector<int32_t>{128001}), "");  // a gap in the ids
}

TEST(TokenizerTest, UnknownPreTokenizerIsAnErrorNamingFileAndField) {
  Json j = FixtureJson("tiny-llama/tokenizer.json");
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", Json::array({{{"type", "Metaspace"}}})}};
  TempTokenizer tmp(j);
  auto tok = Tokenizer::Load(tmp.dir());
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(tok.status().message().find(tmp.dir() + "/tokenizer.json"), std::string::npos);
  EXPECT_NE(tok.status().message().find("pre_tokenizer.pretokenizers[0].type"), std::string::npos);
  EXPECT_NE(tok.status().message().find("Metaspace"), std::string::npos);
}

TEST(TokenizerTest, UnknownSplitRegexAndModelTypeAreErrors) {
  Json j = FixtureJson("tiny-llama/tokenizer.json");
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "\\w+"}}}};
  TempTokenizer split(j);
  auto tok = Tokenizer::Load(split.dir());
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("pre_tokenizer.pattern.Regex"), std::string::npos);

  j = FixtureJson("tiny-llama/tokenizer.json");
  j["model"]["type"] = "WordPiece";
  TempTokenizer model(j);
  tok = Tokenizer::Load(model.dir());
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("model.type"), std::string::npos);
}

TEST(TokenizerTest, MissingOrBrokenFileIsAnError) {
  auto missing = Tokenizer::Load("/nonexistent/dir");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  std::string tmpl = (std::filesystem::temp_directory_path() / "loom_tok_XXXXXX").string();
  const std::string dir = mkdtemp(tmpl.data());
  std::ofstream(dir + "/tokenizer.json") << "{not json";
  auto broken = Tokenizer::Load(dir);
  std::filesystem::remove_all(dir);
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.status().code(), StatusCode::kInvalidArgument);
}

TEST(TokenizerTest, CompleteUtf8PrefixHoldsBackOnlyAnUnfinishedCharacter) {
  const std::string rocket = "\xF0\x9F\x9A\x80";  // U+1F680
  EXPECT_EQ(CompleteUtf8Prefix(""), 0u);
  EXPECT_EQ(CompleteUtf8Prefix("abc"), 3u);
  EXPECT_EQ(CompleteUtf8Prefix("a" + rocket), 5u);
  for (size_t cut = 1; cut < 4; ++cut) {
    EXPECT_EQ(CompleteUtf8Prefix("a" + rocket.substr(0, cut)), 1u) << cut;
  }
  EXPECT_EQ(CompleteUtf8Prefix("caf\xC3"), 3u);
  EXPECT_EQ(CompleteUtf8Prefix("caf\xC3\xA9"), 5u);
  EXPECT_EQ(CompleteUtf8Prefix("x\x80"), 2u);  // a stray continuation byte never completes
}

struct SplitCase {
  std::string text;
  std::vector<std::string> pieces;
};

std::vector<std::string> Split(const std::string& text, internal::SplitPattern pattern) {
  std::vector<std::string> out;
  for (auto [first, last] : internal::SplitByPattern(text, pattern)) {
    out.push_back(text.substr(first, last - first));
  }
  return out;
}

// Expected pieces come from Python's `re` running the exact tokenizer.json regexes
// with \p{L}, \p{N} and \s replaced by explicit code point classes; the ones below
// were also checked by hand: contractions (case-sensitive for GPT-2 only), digit
// groups (runs / 3 / 1), CRLF, the whitespace look-ahead, marks, CJK, emoji.
const SplitCase kGpt2Cases[] = {
    {"Hello world", {"Hello", " world"}},
    {"I'm here, you're not. THEY'LL go; it'S",
     {"I", "'m", " here", ",", " you", "'re", " not", ".", " THEY", "'", "LL", " go", ";", " it",
      "'", "S"}},
    {"12345 678 9", {"12345", " 678", " 9"}},
    {"a\r\nb\n\n  c", {"a", "\r", "\n", "b", "\n\n ", " c"}},
    {"x  \n\t y   ", {"x", "  \n\t", " y", "   "}},
    {"naïve café — résumé", {"naïve", " café", " —", " résumé"}},
    {"e\u0301té", {"e", "\u0301", "té"}},
    {"emoji 🚀🚀 ok👍", {"emoji", " 🚀🚀", " ok", "👍"}},
    {"(hello) [world]!\n\n", {"(", "hello", ")", " [", "world", "]!", "\n\n"}},
    {"你好，世界 123", {"你好", "，", "世界", " 123"}},
    {"  leading", {" ", " leading"}},
    {"trailing  ", {"trailing", "  "}},
    {"'quoted' ''s", {"'", "quoted", "'", " ''", "s"}},
    {"tab\there", {"tab", "\t", "here"}},
    {"\u00a0nbsp\u3000ideo", {"\u00a0", "nbsp", "\u3000", "ideo"}},
    {"x=1+2; y==3\r\n", {"x", "=", "1", "+", "2", ";", " y", "==", "3", "\r\n"}},
};
const SplitCase kLlama3Cases[] = {
    {"Hello world", {"Hello", " world"}},
    {"I'm here, you're not. THEY'LL go; it'S",
     {"I", "'m", " here", ",", " you", "'re", " not", ".", " THEY", "'LL", " go", ";", " it",
      "'S"}},
    {"12345 678 9", {"123", "45", " ", "678", " ", "9"}},
    {"a\r\nb\n\n  c", {"a", "\r\n", "b", "\n\n", " ", " c"}},
    {"x  \n\t y   ", {"x", "  \n", "\t", " y", "   "}},
    {"naïve café — résumé", {"naïve", " café", " —", " résumé"}},
    {"e\u0301té", {"e", "\u0301té"}},
    {"emoji 🚀🚀 ok👍", {"emoji", " 🚀🚀", " ok", "👍"}},
    {"(hello) [world]!\n\n", {"(hello", ")", " [", "world", "]!\n\n"}},
    {"你好，世界 123", {"你好", "，世界", " ", "123"}},
    {"  leading", {" ", " leading"}},
    {"trailing  ", {"trailing", "  "}},
    {"'quoted' ''s", {"'quoted", "'", " ''", "s"}},
    {"tab\there", {"tab", "\there"}},
    {"\u00a0nbsp\u3000ideo", {"\u00a0nbsp", "\u3000ideo"}},
    {"x=1+2; y==3\r\n", {"x", "=", "1", "+", "2", ";", " y", "==", "3", "\r\n"}},
};
const SplitCase kQwen2Cases[] = {
    {"Hello world", {"Hello", " world"}},
    {"I'm here, you're not. THEY'LL go; it'S",
     {"I", "'m", " here", ",", " you", "'re", " not", ".", " THEY", "'LL", " go", ";", " it",
      "'S"}},
    {"12345 678 9", {"1", "2", "3", "4", "5", " ", "6", "7", "8", " ", "9"}},
    {"a\r\nb\n\n  c", {"a", "\r\n", "b", "\n\n", " ", " c"}},
    {"x  \n\t y   ", {"x", "  \n", "\t", " y", "   "}},
    {"naïve café — résumé", {"naïve", " café", " —", " résumé"}},
    {"e\u0301té", {"e", "\u0301té"}},
    {"emoji 🚀🚀 ok👍", {"emoji", " 🚀🚀", " ok", "👍"}},
    {"(hello) [world]!\n\n", {"(hello", ")", " [", "world", "]!\n\n"}},
    {"你好，世界 123", {"你好", "，世界", " ", "1", "2", "3"}},
    {"  leading", {" ", " leading"}},
    {"trailing  ", {"trailing", "  "}},
    {"'quoted' ''s", {"'quoted", "'", " ''", "s"}},
    {"tab\there", {"tab", "\there"}},
    {"\u00a0nbsp\u3000ideo", {"\u00a0nbsp", "\u3000ideo"}},
    {"x=1+2; y==3\r\n", {"x", "=", "1", "+", "2", ";", " y", "==", "3", "\r\n"}},
};

TEST(PreTokenizeTest, Gpt2SplitsLikeTheRegex) {
  for (const SplitCase& c : kGpt2Cases) {
    EXPECT_EQ(Split(c.text, internal::SplitPattern::kGpt2), c.pieces) << c.text;
  }
}

TEST(PreTokenizeTest, Llama3SplitsLikeTheRegex) {
  for (const SplitCase& c : kLlama3Cases) {
    EXPECT_EQ(Split(c.text, internal::SplitPattern::kLlama3), c.pieces) << c.text;
  }
}

TEST(PreTokenizeTest, Qwen2SplitsLikeTheRegex) {
  for (const SplitCase& c : kQwen2Cases) {
    EXPECT_EQ(Split(c.text, internal::SplitPattern::kQwen2), c.pieces) << c.text;
  }
}

TEST(PreTokenizeTest, RecognizesTheTokenizerJsonRegexes) {
  using internal::SplitPattern;
  for (SplitPattern p : {SplitPattern::kGpt2, SplitPattern::kLlama3, SplitPattern::kQwen2}) {
    EXPECT_EQ(internal::RecognizeSplitRegex(internal::SplitRegexSource(p)), p);
  }
  EXPECT_FALSE(internal::RecognizeSplitRegex("\\w+").has_value());
  // Exactly as Qwen2.5's tokenizer.json spells it (after JSON unescaping).
  EXPECT_EQ(internal::RecognizeSplitRegex(
                "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"),
            SplitPattern::kQwen2);
}

TEST(PreTokenizeTest, InvalidUtf8IsCoveredByteByByte) {
  const std::string text = "ab\xFF\xC3 cd\xE2\x82";
  for (auto p : {internal::SplitPattern::kGpt2, internal::SplitPattern::kLlama3}) {
    std::string joined;
    for (const std::string& piece : Split(text, p)) joined += piece;
    EXPECT_EQ(joined, text);
  }
}

// Expected forms from Python's unicodedata.normalize("NFC", ...); a 20,000-string
// random comparison over marks, Hangul, singletons and exclusions agreed too.
TEST(NfcTest, MatchesPythonNormalize) {
  using internal::ToNfc;
  EXPECT_EQ(ToNfc("plain ASCII"), "plain ASCII");
  EXPECT_EQ(ToNfc("e\u0301"), "\u00e9");
  EXPECT_EQ(ToNfc("A\u030a"), "\u00c5");
  EXPECT_EQ(ToNfc("\u212b"), "\u00c5");                // singleton (Angstrom sign)
  EXPECT_EQ(ToNfc("\u2126"), "\u03a9");                // singleton (Ohm sign)
  EXPECT_EQ(ToNfc("\u1100\u1161\u11a8"), "\uac01");    // Hangul L V T
  EXPECT_EQ(ToNfc("q\u0307\u0323"), "q\u0323\u0307");  // reordered, no composite
  EXPECT_EQ(ToNfc("a\u0328\u0301"), "\u0105\u0301");   // ogonek first, then acute
  EXPECT_EQ(ToNfc("\u0958"), "\u0915\u093c");          // composition exclusion
  EXPECT_EQ(ToNfc("\u0301e"), "\u0301e");              // leading mark stays
  EXPECT_EQ(ToNfc("\u1e0b\u0323"), "\u1e0d\u0307");    // d+dot above+dot below
  EXPECT_EQ(ToNfc("x\xff"
                  "e\u0301\xc3"),
            "x\xff\u00e9\xc3");  // invalid bytes kept
  EXPECT_TRUE(internal::IsNfcQuick("caf\u00e9 \u4f60\u597d \U0001f680"));
  EXPECT_FALSE(internal::IsNfcQuick("cafe\u0301"));
}

}  // namespace
}  // namespace loom::inference
