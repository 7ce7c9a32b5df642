// JSON at the edges: nlohmann::json, parsed without exceptions and with a depth
// limit.
//
// ParseJson is the only way text becomes a Json in Loom (request bodies, model
// replies, tool-call arguments, stored events). It never throws, and it refuses
// documents nested deeper than kMaxJsonDepth before nlohmann sees them, so every
// Json in the process is shallow and the recursive operations on it (dump, copy,
// compare, the chat template's tojson) have a bounded stack. Values are read
// out of a parsed document only through common/json_reader.h.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/status.h"

namespace loom {

using Json = nlohmann::json;

// Arrays and objects nested deeper than this are refused. Real payloads are a
// handful of levels deep; OpenAI tool schemas rarely pass 10.
inline constexpr int kMaxJsonDepth = 128;

// Parses `text`; an InvalidArgument status that says what is wrong when it is
// not valid JSON (including invalid UTF-8 in strings), when a number does not
// fit a double (`1e400`), or when it nests deeper than `max_depth`. Never throws.
Result<Json> ParseJson(std::string_view text, int max_depth = kMaxJsonDepth);

// How deeply `text` nests arrays and objects (outside strings), scanning
// linearly and stopping once past `limit`: the result is then limit + 1.
int JsonNestingDepth(std::string_view text, int limit);

// Serialises compactly; invalid UTF-8 in strings is replaced, never thrown.
// Recursive: it relies on every Json being built from ParseJson's output or by
// code, both shallow.
std::string DumpJson(const Json& j, int indent = -1);

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool IsValidUtf8(std::string_view s);

}  // namespace loom
