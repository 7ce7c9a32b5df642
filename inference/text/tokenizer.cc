// Byte-level BPE from HF tokenizer.json.
//
// Encode: split out added tokens (longest match first) -> run the pre-tokenizer
// steps over each remaining segment (ByteLevel prefix space / GPT-2 regex, Split
// regexes) -> BPE each word over its bytes. BPE works on token ids: each byte starts
// as the id of its GPT-2 byte-to-unicode character, and the lowest-ranked adjacent
// pair is merged until none is left (a heap with lazy invalidation, as HF does, so a
// long run of spaces is O(n log n)). Results are cached per word because agents
// resend long prompts whose words repeat.
#include "inference/text/tokenizer.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <queue>
#include <sstream>
#include <unordered_map>

#include "common/json.h"
#include "common/mutex.h"
#include "inference/text/internal/nfc.h"
#include "inference/text/internal/pre_tokenize.h"

namespace loom::inference {
namespace {

using internal::AppendUtf8;
using internal::SplitPattern;

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringIdMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

constexpr size_t kMaxCachedWords = 1 << 18;

// GPT-2's bytes_to_unicode(): printable bytes map to themselves, the others to
// U+0100 onwards, so every byte is one visible character.
std::array<uint32_t, 256> ByteToUnicode() {
  std::array<uint32_t, 256> map{};
  std::array<bool, 256> direct{};
  for (int b = 0; b < 256; ++b) {
    direct[b] = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  }
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) map[b] = direct[b] ? static_cast<uint32_t>(b) : next++;
  return map;
}

// Decodes the UTF-8 string `s` into code points (input is a tokenizer.json string,
// which nlohmann has validated).
std::vector<uint32_t> CodePointsOf(std::string_view s) {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < s.size();) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    size_t len = b0 < 0x80 ? 1 : (b0 & 0xE0) == 0xC0 ? 2 : (b0 & 0xF0) == 0xE0 ? 3 : 4;
    uint32_t cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
    for (size_t k = 1; k < len && i + k < s.size(); ++k) {
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

bool IsAsciiSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

struct PreTokenizerStep {
  enum class Kind { kByteLevel, kSplit } kind = Kind::kByteLevel;
  SplitPattern pattern = SplitPattern::kGpt2;  // kSplit, or kByteLevel with use_regex
  bool add_prefix_space = false;               // kByteLevel
  bool use_regex = true;                       // kByteLevel
};

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
};

struct MergeRule {
  int32_t rank;
  int32_t merged;
};

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

std::string TypeOf(const Json& j) {
  if (!j.is_object()) return "";
  auto it = j.find("type");
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

bool BoolField(const Json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

}  // namespace

struct Tokenizer::Impl {
  std::string file;  // for messages
  StringIdMap vocab;
  StringIdMap added_ids;
  std::vector<std::string> id_text;   // vocabulary spelling or added content
  std::vector<std::string> id_bytes;  // what Decode() writes
  std::vector<uint8_t> id_special;
  std::vector<AddedToken> added;                             // longest content first
  std::array<std::vector<size_t>, 256> added_by_first_byte;  // indices into `added`
  std::unordered_map<uint64_t, MergeRule> merges;
  std::array<int32_t, 256> byte_token{};
  std::array<uint32_t, 256> byte_char{};
  std::array<int16_t, 512> char_byte{};  // inverse of byte_char; -1 elsewhere
  std::optional<int32_t> unk_id;
  bool ignore_merges = false;
  bool nfc = false;  // the normalizer is NFC
  std::vector<PreTokenizerStep> steps;
  std::vector<int32_t> template_prefix;
  std::vector<int32_t> template_suffix;

  mutable Mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache
      GUARDED_BY(cache_mu);

  Status Error(std::string_view field, std::string_view what) const {
    return Status::InvalidArgument("tokenizer " + file + ": " + std::string(field) + ": " +
                                   std::string(what));
  }
  Status Unsupported(std::string_view field, std::string_view what) const {
    return Status::Unimplemented("tokenizer " + file + ": " + std::string(field) + ": " +
                                 std::string(what) + " is not supported by loom-infer");
  }

  void SetId(int32_t id, std::string text, std::string bytes) {
    const auto need = static_cast<size_t>(id) + 1;
    if (id_text.size() < need) {
      id_text.resize(need);
      id_bytes.resize(need);
      id_special.resize(need);
    }
    id_text[id] = std::move(text);
    id_bytes[id] = std::move(bytes);
  }

  Status ParsePreTokenizer(const Json& j, const std::string& field);
  Status ParseModel(const Json& j);
  Status ParseAddedTokens(const Json& j);
  Status ParseNormalizer(const Json& j, const std::string& field);
  Status ParseDecoder(const Json& j, const std::string& field, bool* byte_level);
  Status ParsePostProcessor(const Json& j, const std::string& field);

  void EncodeSegment(std::string_view segment, std::vector<int32_t>* out) const;
  void EncodeWord(std::string_view word, std::vector<int32_t>* out) const;
  std::vector<int32_t> Bpe(std::string_view word) const;
};

Status Tokenizer::Impl::ParsePreTokenizer(const Json& j, const std::string& field) {
  if (j.is_null()) return Status::Ok();
  const std::string type = TypeOf(j);
  if (type == "Sequence") {
    auto it = j.find("pretokenizers");
    if (it == j.end() || !it->is_array()) return Error(field, "Sequence without pretokenizers");
    for (size_t i = 0; i < it->size(); ++i) {
      LOOM_RETURN_IF_ERROR(
          ParsePreTokenizer((*it)[i], field + ".pretokenizers[" + std::to_string(i) + "]"));
    }
    return Status::Ok();
  }
  if (type == "ByteLevel") {
    PreTokenizerStep step;
    step.kind = PreTokenizerStep::Kind::kByteLevel;
    step.add_prefix_space = BoolField(j, "add_prefix_space", true);
    step.use_regex = BoolField(j, "use_regex", true);
    steps.push_back(step);
    return Status::Ok();
  }
  if (type == "Split") {
    auto pattern = j.find("pattern");
    if (pattern == j.end() || !pattern->is_object()) return Error(field, "Split without pattern");
    if (!pattern->contains("Regex") || !(*pattern)["Regex"].is_string()) {
      return Unsupported(field + ".pattern", "a Split pattern other than a Regex");
    }
    const std::string regex = (*pattern)["Regex"].get<std::string>();
    auto recognized = internal::RecognizeSplitRegex(regex);
    if (!recognized) {
      return Unsupported(field + ".pattern.Regex",
                         "the regex " + regex + " (known: the GPT-2, Llama-3 and Qwen2 patterns)");
    }
    const std::string behavior = j.value("behavior", std::string("Isolated"));
    if (behavior != "Isolated") return Unsupported(field + ".behavior", "\"" + behavior + "\"");
    if (BoolField(j, "invert", false)) return Unsupported(field + ".invert", "true");
    PreTokenizerStep step;
    step.kind = PreTokenizerStep::Kind::kSplit;
    step.pattern = *recognized;
    steps.push_back(step);
    return Status::Ok();
  }
  return Unsupported(field + ".type", "\"" + type + "\" (supported: ByteLevel, Split, Sequence)");
}

Status Tokenizer::Impl::ParseNormalizer(const Json& j, const std::string& field) {
  if (j.is_null()) return Status::Ok();
  const std::string type = TypeOf(j);
  if (type == "NFC") {
    nfc = true;
    return Status::Ok();
  }
  if (type == "Sequence") {
    auto it = j.find("normalizers");
    if (it == j.end() || !it->is_array()) return Error(field, "Sequence without normalizers");
    for (size_t i = 0; i < it->size(); ++i) {
      LOOM_RETURN_IF_ERROR(
          ParseNormalizer((*it)[i], field + ".normalizers[" + std::to_string(i) + "]"));
    }
    return Status::Ok();
  }
  return Unsupported(field + ".type", "\"" + type + "\" (supported: none, NFC)");
}

Status Tokenizer::Impl::ParseDecoder(const Json& j, const std::string& field, bool* byte_level) {
  if (j.is_null()) return Status::Ok();
  const std::string type = TypeOf(j);
  if (type == "ByteLevel") {
    *byte_level = true;
    return Status::Ok();
  }
  if (type == "Sequence") {
    auto it = j.find("decoders");
    if (it == j.end() || !it->is_array()) return Error(field, "Sequence without decoders");
    for (size_t i = 0; i < it->size(); ++i) {
      LOOM_RETURN_IF_ERROR(
          ParseDecoder((*it)[i], field + ".decoders[" + std::to_string(i) + "]", byte_level));
    }
    return Status::Ok();
  }
  return Unsupported(field + ".type", "\"" + type + "\" (supported: ByteLevel)");
}

// Only TemplateProcessing matters (it adds BOS for Llama 3); ByteLevel and
// RobertaProcessing only touch offsets or pairs, which loom-infer does not use.
Status Tokenizer::Impl::ParsePostProcessor(const Json& j, const std::string& field) {
  const std::string type = TypeOf(j);
  if (type == "Sequence") {
    auto it = j.find("processors");
    if (it == j.end() || !it->is_array()) return Status::Ok();
    for (size_t i = 0; i < it->size(); ++i) {
      LOOM_RETURN_IF_ERROR(
          ParsePostProcessor((*it)[i], field + ".processors[" + std::to_string(i) + "]"));
    }
    return Status::Ok();
  }
  if (type != "TemplateProcessing") return Status::Ok();
  auto single = j.find("single");
  if (single == j.end() || !single->is_array()) return Error(field + ".single", "not an array");
  const Json* specials = j.contains("special_tokens") ? &j["special_tokens"] : nullptr;
  bool seen_sequence = false;
  for (const Json& piece : *single) {
    if (piece.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    if (!piece.contains("SpecialToken") || !piece["SpecialToken"].contains("id") ||
        !piece["SpecialToken"]["id"].is_string()) {
      return Error(field + ".single", "entries must be Sequence or SpecialToken");
    }
    const std::string name = piece["SpecialToken"]["id"].get<std::string>();
    std::vector<int32_t> ids;
    if (specials != nullptr && specials->contains(name) && (*specials)[name].contains("ids") &&
        (*specials)[name]["ids"].is_array()) {
      for (const Json& id : (*specials)[name]["ids"]) {
        if (!id.is_number_integer())
          return Error(field + ".special_tokens", "ids must be integers");
        ids.push_back(id.get<int32_t>());
      }
    } else if (auto it = added_ids.find(name); it != added_ids.end()) {
      ids.push_back(it->second);
    } else {
      return Error(field + ".single", "unknown special token \"" + name + "\"");
    }
    auto& target = seen_sequence ? template_suffix : template_prefix;
    target.insert(target.end(), ids.begin(), ids.end());
  }
  return Status::Ok();
}

Status Tokenizer::Impl::ParseModel(const Json& model) {
  if (!model.is_object()) return Error("model", "missing or not an object");
  const std::string type = TypeOf(model);
  if (!type.empty() && type != "BPE") {
    return Unsupported("model.type", "\"" + type + "\" (supported: BPE)");
  }
  if (model.contains("dropout") && model["dropout"].is_number() &&
      model["dropout"].get<double>() != 0.0) {
    return Unsupported("model.dropout", "BPE dropout");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty()) {
      return Unsupported(std::string("model.") + key, "a non-empty value");
    }
  }
  ignore_merges = BoolField(model, "ignore_merges", false);

  auto v = model.find("vocab");
  if (v == model.end() || !v->is_object()) return Error("model.vocab", "missing or not an object");
  for (auto it = v->begin(); it != v->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() > (1 << 30)) {
      return Error("model.vocab", "the id of \"" + it.key() + "\" is not a valid token id");
    }
    const auto id = it.value().get<int32_t>();
    vocab[it.key()] = id;
    std::string bytes;
    for (uint32_t cp : CodePointsOf(it.key())) {
      if (cp < char_byte.size() && char_byte[cp] >= 0) {
        bytes.push_back(static_cast<char>(char_byte[cp]));
      } else {
        AppendUtf8(cp, &bytes);
      }
    }
    SetId(id, it.key(), std::move(bytes));
  }

  auto m = model.find("merges");
  if (m == model.end() || !m->is_array()) return Error("model.merges", "missing or not an array");
  for (size_t rank = 0; rank < m->size(); ++rank) {
    const Json& e = (*m)[rank];
    std::string left, right;
    if (e.is_string()) {
      const auto& s = e.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos) {
        return Error("model.merges[" + std::to_string(rank) + "]", "\"" + s + "\" is not \"a b\"");
      }
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      left = e[0].get<std::string>();
      right = e[1].get<std::string>();
    } else {
      return Error("model.merges[" + std::to_string(rank) + "]",
                   "neither \"a b\" nor [\"a\", \"b\"]");
    }
    auto l = vocab.find(left);
    auto r = vocab.find(right);
    auto merged = vocab.find(left + right);
    if (l == vocab.end() || r == vocab.end() || merged == vocab.end()) {
      return Error("model.merges[" + std::to_string(rank) + "]",
                   "\"" + left + " " + right + "\" names a token missing from model.vocab");
    }
    merges.try_emplace(PairKey(l->second, r->second),
                       MergeRule{static_cast<int32_t>(rank), merged->second});
  }

  for (int b = 0; b < 256; ++b) {
    std::string ch;
    AppendUtf8(byte_char[b], &ch);
    auto it = vocab.find(ch);
    byte_token[b] = it == vocab.end() ? -1 : it->second;
  }
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = vocab.find(model["unk_token"].get<std::string>());
    if (it != vocab.end()) unk_id = it->second;
  }
  return Status::Ok();
}

Status Tokenizer::Impl::ParseAddedTokens(const Json& j) {
  if (j.is_null()) return Status::Ok();
  if (!j.is_array()) return Error("added_tokens", "not an array");
  for (size_t i = 0; i < j.size(); ++i) {
    const Json& t = j[i];
    const std::string field = "added_tokens[" + std::to_string(i) + "]";
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() ||
        !t.contains("content") || !t["content"].is_string()) {
      return Error(field, "needs an integer id and a string content");
    }
    AddedToken tok;
    tok.id = t["id"].get<int32_t>();
    tok.content = t["content"].get<std::string>();
    if (tok.id < 0 || tok.content.empty()) return Error(field, "negative id or empty content");
    tok.special = BoolField(t, "special", false);
    tok.lstrip = BoolField(t, "lstrip", false);
    tok.rstrip = BoolField(t, "rstrip", false);
    SetId(tok.id, tok.content, tok.content);
    id_special[tok.id] = tok.special ? 1 : 0;
    added_ids[tok.content] = tok.id;
    added.push_back(std::move(tok));
  }
  std::stable_sort(added.begin(), added.end(), [](const AddedToken& a, const AddedToken& b) {
    return a.content.size() > b.content.size();
  });
  for (size_t i = 0; i < added.size(); ++i) {
    added_by_first_byte[static_cast<unsigned char>(added[i].content[0])].push_back(i);
  }
  return Status::Ok();
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& path) {
  std::error_code ec;
  std::string file = path;
  if (std::filesystem::is_directory(path, ec)) file = path + "/tokenizer.json";
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return Status::NotFound("tokenizer " + file +
                            ": cannot open (a model directory needs tokenizer.json)");
  }
  std::stringstream buf;
  buf << in.rdbuf();
  auto parsed = ParseJson(buf.str());
  if (!parsed.ok()) return parsed.status().WithContext("tokenizer " + file);
  const Json& j = *parsed;
  if (!j.is_object()) return Status::InvalidArgument("tokenizer " + file + ": not a JSON object");

  auto impl = std::make_unique<Impl>();
  impl->file = file;
  impl->byte_char = ByteToUnicode();
  impl->char_byte.fill(-1);
  for (int b = 0; b < 256; ++b) impl->char_byte[impl->byte_char[b]] = static_cast<int16_t>(b);
  auto field = [&](const char* key) -> const Json& {
    static const Json kNull;
    auto it = j.find(key);
    return it == j.end() ? kNull : *it;
  };
  LOOM_RETURN_IF_ERROR(impl->ParseModel(field("model")));
  LOOM_RETURN_IF_ERROR(impl->ParseAddedTokens(field("added_tokens")));
  LOOM_RETURN_IF_ERROR(impl->ParseNormalizer(field("normalizer"), "normalizer"));
  LOOM_RETURN_IF_ERROR(impl->ParsePreTokenizer(field("pre_tokenizer"), "pre_tokenizer"));
  LOOM_RETURN_IF_ERROR(impl->ParsePostProcessor(field("post_processor"), "post_processor"));
  bool byte_level_decoder = false;
  LOOM_RETURN_IF_ERROR(impl->ParseDecoder(field("decoder"), "decoder", &byte_level_decoder));
  const bool byte_level_pre = std::any_of(impl->steps.begin(), impl->steps.end(), [](auto& s) {
    return s.kind == PreTokenizerStep::Kind::kByteLevel;
  });
  if (!byte_level_pre) {
    return impl->Unsupported("pre_tokenizer",
                             "a tokenizer without a ByteLevel step (only "
                             "byte-level BPE is)");
  }
  if (!byte_level_decoder) {
    return impl->Unsupported("decoder", "a decoder without ByteLevel");
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::Impl::Bpe(std::string_view word) const {
  std::vector<int32_t> ids;
  if (ignore_merges) {
    std::string spelled;
    for (char c : word) AppendUtf8(byte_char[static_cast<unsigned char>(c)], &spelled);
    if (auto it = vocab.find(spelled); it != vocab.end()) return {it->second};
  }
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
  };
  std::vector<Symbol> syms;
  syms.reserve(word.size());
  for (char c : word) {
    int32_t id = byte_token[static_cast<unsigned char>(c)];
    if (id < 0) {
      if (!unk_id) continue;  // a byte the vocabulary cannot spell is dropped
      id = *unk_id;
    }
    const auto n = static_cast<int32_t>(syms.size());
    syms.push_back({id, n - 1, -1});
    if (n > 0) syms[n - 1].next = n;
  }
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t left;
    int32_t right;
    int32_t merged;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto consider = [&](int32_t pos) {
    const int32_t next = syms[pos].next;
    if (next < 0) return;
    auto it = merges.find(PairKey(syms[pos].id, syms[next].id));
    if (it == merges.end()) return;
    heap.push({it->second.rank, pos, syms[pos].id, syms[next].id, it->second.merged});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) consider(i);
  while (!heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    Symbol& left = syms[top.pos];
    // Stale: either symbol has merged since (ids only ever grow into longer tokens).
    if (left.id != top.left || left.next < 0 || syms[left.next].id != top.right) continue;
    Symbol& right = syms[left.next];
    left.id = top.merged;
    left.next = right.next;
    right.id = -1;
    if (left.next >= 0) syms[left.next].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
  for (int32_t i = syms.empty() ? -1 : 0; i >= 0; i = syms[i].next) ids.push_back(syms[i].id);
  return ids;
}

void Tokenizer::Impl::EncodeWord(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  {
    MutexLock lock(&cache_mu);
    if (auto it = cache.find(word); it != cache.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids = Bpe(word);
  out->insert(out->end(), ids.begin(), ids.end());
  MutexLock lock(&cache_mu);
  if (cache.size() >= kMaxCachedWords) cache.clear();
  cache.emplace(std::string(word), std::move(ids));
}

void Tokenizer::Impl::EncodeSegment(std::string_view segment, std::vector<int32_t>* out) const {
  if (segment.empty()) return;
  std::vector<std::string> pieces{nfc ? internal::ToNfc(segment) : std::string(segment)};
  std::vector<std::string> next;
  for (const PreTokenizerStep& step : steps) {
    next.clear();
    for (std::string& piece : pieces) {
      bool split = step.kind == PreTokenizerStep::Kind::kSplit;
      if (step.kind == PreTokenizerStep::Kind::kByteLevel) {
        if (step.add_prefix_space && piece.front() != ' ') piece.insert(piece.begin(), ' ');
        split = step.use_regex;
      }
      if (!split) {
        next.push_back(std::move(piece));
        continue;
      }
      for (auto [first, last] : internal::SplitByPattern(piece, step.pattern)) {
        if (last > first) next.emplace_back(piece.substr(first, last - first));
      }
    }
    pieces.swap(next);
  }
  for (const std::string& word : pieces) EncodeWord(word, out);
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, SpecialTokens special) const {
  std::vector<int32_t> out;
  const Impl& m = *impl_;
  size_t segment_start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const AddedToken* match = nullptr;
    for (size_t idx : m.added_by_first_byte[static_cast<unsigned char>(text[pos])]) {
      const AddedToken& tok = m.added[idx];
      if (tok.special && special == SpecialTokens::kAsText) continue;
      if (text.substr(pos).starts_with(tok.content)) {
        match = &tok;
        break;
      }
    }
    if (match == nullptr) {
      ++pos;
      continue;
    }
    size_t segment_end = pos;
    if (match->lstrip) {
      while (segment_end > segment_start && IsAsciiSpace(text[segment_end - 1])) --segment_end;
    }
    m.EncodeSegment(text.substr(segment_start, segment_end - segment_start), &out);
    out.push_back(match->id);
    pos += match->content.size();
    if (match->rstrip) {
      while (pos < text.size() && IsAsciiSpace(text[pos])) ++pos;
    }
    segment_start = pos;
  }
  m.EncodeSegment(text.substr(segment_start), &out);
  return out;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, DecodeSpecial special) const {
  std::string out;
  const Impl& m = *impl_;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= m.id_bytes.size()) continue;
    if (special == DecodeSpecial::kSkip && m.id_special[id]) continue;
    out += m.id_bytes[id];
  }
  return out;
}

std::optional<int32_t> Tokenizer::TokenId(std::string_view token) const {
  if (auto it = impl_->added_ids.find(token); it != impl_->added_ids.end()) return it->second;
  if (auto it = impl_->vocab.find(token); it != impl_->vocab.end()) return it->second;
  return std::nullopt;
}

std::string Tokenizer::TokenText(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->id_text.size()) return "";
  return impl_->id_text[id];
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_text.size()); }

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->id_special.size() && impl_->id_special[id];
}

const std::vector<int32_t>& Tokenizer::template_prefix() const { return impl_->template_prefix; }
const std::vector<int32_t>& Tokenizer::template_suffix() const { return impl_->template_suffix; }

size_t Tokenizer::cached_words() const {
  MutexLock lock(&impl_->cache_mu);
  return impl_->cache.size();
}

size_t CompleteUtf8Prefix(std::string_view bytes) {
  return internal::CompleteUtf8PrefixLength(bytes);
}

}  // namespace loom::inference
