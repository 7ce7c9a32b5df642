// Unicode Normalization Form C, for tokenizers whose normalizer is NFC (Qwen2).
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace loom::inference::internal {

// True when `utf8` is certainly NFC already (the quick check: every code point
// NFC_QC=Yes and combining classes in order); most text, and all ASCII, is.
bool IsNfcQuick(std::string_view utf8);

// The NFC form of `utf8`. Bytes that are not valid UTF-8 are copied unchanged and
// act as starters that compose with nothing.
std::string ToNfc(std::string_view utf8);

}  // namespace loom::inference::internal
