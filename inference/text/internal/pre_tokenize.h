// The regex pre-tokenizers of byte-level BPE tokenizers, written by hand.
//
// HF tokenizers runs these patterns through Oniguruma; a stock GPU node has no regex
// library with \p{L}, so, like llama.cpp's unicode.cpp, each known pattern is a small
// state machine over code points that reproduces the leftmost-alternative semantics
// of the regex. Only the patterns below are recognised; anything else is an error
// reported by the tokenizer loader. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace loom::inference::internal {

enum class SplitPattern {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
  //  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  // As kLlama3 with \p{N} (one digit per piece) instead of \p{N}{1,3}.
  kQwen2,
};

// The pattern whose regex source (as written in tokenizer.json) is `regex`.
std::optional<SplitPattern> RecognizeSplitRegex(std::string_view regex);

// The regex source of `pattern`, as tokenizer.json spells it.
std::string_view SplitRegexSource(SplitPattern pattern);

// Splits `text` into the matches of `pattern`, as byte ranges [first, second) that
// cover `text` in order with no gaps (every character matches some alternative).
// Invalid UTF-8 bytes are single characters of no class (like punctuation).
std::vector<std::pair<size_t, size_t>> SplitByPattern(std::string_view text, SplitPattern pattern);

// Length of the longest prefix of `bytes` that does not end inside a UTF-8
// sequence that later bytes could still complete.
size_t CompleteUtf8PrefixLength(std::string_view bytes);

// Appends code point `cp` (<= 0x10FFFF) to `out` as UTF-8.
void AppendUtf8(uint32_t cp, std::string* out);

}  // namespace loom::inference::internal
