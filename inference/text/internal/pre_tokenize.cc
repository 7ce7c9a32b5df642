// Hand-written splitters for the GPT-2, Llama-3 and Qwen2 pre-tokenizer regexes.
//
// Text is decoded once into code points with their byte offsets and class flags;
// each splitter then walks the code points trying the regex's alternatives in order,
// the way a backtracking engine would settle them. The only look-ahead, \s+(?!\S),
// reduces to "a whitespace run followed by a non-space gives back its last char".
#include "inference/text/internal/pre_tokenize.h"

#include <cstdint>
#include <string_view>

#include "inference/text/internal/unicode_tables.h"

namespace loom::inference::internal {
namespace {

constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

constexpr uint32_t kNone = 0xFFFFFFFF;  // "no character": past the end

struct CodePoints {
  std::vector<uint32_t> cp;
  std::vector<uint8_t> flags;
  std::vector<size_t> offset;  // size() + 1 entries; the last is the text's length
  size_t size() const { return cp.size(); }
};

// Decodes one UTF-8 sequence at `s[i]`; returns its length, or 0 when invalid.
size_t DecodeOne(std::string_view s, size_t i, uint32_t* out) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    *out = b0;
    return 1;
  }
  size_t len = 0;
  uint32_t cp = 0;
  uint32_t min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  *out = cp;
  return len;
}

CodePoints Decode(std::string_view s) {
  CodePoints out;
  out.cp.reserve(s.size());
  out.flags.reserve(s.size());
  out.offset.reserve(s.size() + 1);
  size_t i = 0;
  while (i < s.size()) {
    uint32_t cp = 0;
    size_t len = DecodeOne(s, i, &cp);
    out.offset.push_back(i);
    if (len == 0) {
      out.cp.push_back(0xFFFD);
      out.flags.push_back(unicode::kOther);
      i += 1;
    } else {
      out.cp.push_back(cp);
      out.flags.push_back(unicode::CategoryFlags(cp));
      i += len;
    }
  }
  out.offset.push_back(s.size());
  return out;
}

// Predicates over code point indices; out of range is "no character".
class Cursor {
 public:
  explicit Cursor(const CodePoints& cps) : cps_(cps), n_(cps.size()) {}
  size_t size() const { return n_; }
  uint32_t At(size_t i) const { return i < n_ ? cps_.cp[i] : kNone; }
  bool Letter(size_t i) const { return i < n_ && (cps_.flags[i] & unicode::kLetter); }
  bool Number(size_t i) const { return i < n_ && (cps_.flags[i] & unicode::kNumber); }
  bool Space(size_t i) const { return i < n_ && (cps_.flags[i] & unicode::kWhitespace); }
  // [^\s\p{L}\p{N}]
  bool Other(size_t i) const {
    return i < n_ &&
           !(cps_.flags[i] & (unicode::kLetter | unicode::kNumber | unicode::kWhitespace));
  }
  bool Newline(size_t i) const { return At(i) == '\r' || At(i) == '\n'; }

 private:
  const CodePoints& cps_;
  size_t n_;
};

uint32_t AsciiLower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// Length of a contraction ('s 't 're 've 'm 'll 'd) at i, or 0.
size_t Contraction(const Cursor& c, size_t i, bool ignore_case) {
  if (c.At(i) != '\'') return 0;
  auto norm = [&](uint32_t x) { return ignore_case ? AsciiLower(x) : x; };
  const uint32_t c1 = norm(c.At(i + 1));
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  const uint32_t c2 = norm(c.At(i + 2));
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
  return 0;
}

// \s+(?!\S)|\s+ at a whitespace character i: the end of the match.
size_t TrailingSpaceRun(const Cursor& c, size_t i) {
  size_t j = i;
  while (c.Space(j)) ++j;
  if (j < c.size() && j - i >= 2) return j - 1;  // leave the last space to the next word
  return j;
}

template <typename Emit>
void SplitGpt2(const Cursor& c, Emit emit) {
  size_t i = 0;
  while (i < c.size()) {
    if (size_t len = Contraction(c, i, /*ignore_case=*/false)) {
      i = emit(i, i + len);
      continue;
    }
    size_t j = c.At(i) == ' ' ? i + 1 : i;  // " ?"
    if (c.Letter(j)) {
      while (c.Letter(j)) ++j;
      i = emit(i, j);
    } else if (c.Number(j)) {
      while (c.Number(j)) ++j;
      i = emit(i, j);
    } else if (c.Other(j)) {
      while (c.Other(j)) ++j;
      i = emit(i, j);
    } else {
      // Only whitespace is left here (a lone ' ' before more whitespace or the end).
      i = emit(i, TrailingSpaceRun(c, i));
    }
  }
}

template <typename Emit>
void SplitLlama3(const Cursor& c, size_t max_digits, Emit emit) {
  size_t i = 0;
  while (i < c.size()) {
    if (size_t len = Contraction(c, i, /*ignore_case=*/true)) {
      i = emit(i, i + len);
      continue;
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c.Letter(i) || (!c.Newline(i) && !c.Number(i) && c.Letter(i + 1))) {
      size_t j = i + 1;
      while (c.Letter(j)) ++j;
      i = emit(i, j);
      continue;
    }
    // \p{N}{1,max_digits}
    if (c.Number(i)) {
      size_t j = i;
      while (c.Number(j) && j - i < max_digits) ++j;
      i = emit(i, j);
      continue;
    }
    //  ?[^\s\p{L}\p{N}]+[\r\n]*
    size_t j = c.At(i) == ' ' ? i + 1 : i;
    if (c.Other(j)) {
      while (c.Other(j)) ++j;
      while (c.Newline(j)) ++j;
      i = emit(i, j);
      continue;
    }
    // Whitespace. \s*[\r\n]+ ends after the run's last newline, if it has one.
    size_t last_newline = kNone;
    for (j = i; c.Space(j); ++j) {
      if (c.Newline(j)) last_newline = j;
    }
    if (last_newline != kNone) {
      i = emit(i, last_newline + 1);
    } else {
      i = emit(i, TrailingSpaceRun(c, i));
    }
  }
}

}  // namespace

std::optional<SplitPattern> RecognizeSplitRegex(std::string_view regex) {
  if (regex == kGpt2Regex) return SplitPattern::kGpt2;
  if (regex == kLlama3Regex) return SplitPattern::kLlama3;
  if (regex == kQwen2Regex) return SplitPattern::kQwen2;
  return std::nullopt;
}

std::string_view SplitRegexSource(SplitPattern pattern) {
  switch (pattern) {
    case SplitPattern::kGpt2:
      return kGpt2Regex;
    case SplitPattern::kLlama3:
      return kLlama3Regex;
    case SplitPattern::kQwen2:
      return kQwen2Regex;
  }
  return {};
}

std::vector<std::pair<size_t, size_t>> SplitByPattern(std::string_view text, SplitPattern pattern) {
  const CodePoints cps = Decode(text);
  const Cursor cursor(cps);
  std::vector<std::pair<size_t, size_t>> out;
  auto emit = [&](size_t first, size_t last) {
    out.emplace_back(cps.offset[first], cps.offset[last]);
    return last;
  };
  switch (pattern) {
    case SplitPattern::kGpt2:
      SplitGpt2(cursor, emit);
      break;
    case SplitPattern::kLlama3:
      SplitLlama3(cursor, 3, emit);
      break;
    case SplitPattern::kQwen2:
      SplitLlama3(cursor, 1, emit);
      break;
  }
  return out;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t CompleteUtf8PrefixLength(std::string_view bytes) {
  const size_t n = bytes.size();
  // Look back over at most 3 continuation bytes for the lead byte of the last sequence.
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const auto b = static_cast<unsigned char>(bytes[n - back]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte
    size_t need = 1;
    if ((b & 0xE0) == 0xC0) {
      need = 2;
    } else if ((b & 0xF0) == 0xE0) {
      need = 3;
    } else if ((b & 0xF8) == 0xF0) {
      need = 4;
    }
    return back < need ? n - back : n;
  }
  return n;
}

}  // namespace loom::inference::internal
