// JSON at the edges: nlohmann::json, parsed without exceptions.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/status.h"

namespace loom {

using Json = nlohmann::json;

// Parses `text`; an InvalidArgument status that names the byte offset when it is
// not valid JSON (including invalid UTF-8 in strings).
Result<Json> ParseJson(std::string_view text);

// Serialises compactly; invalid UTF-8 in strings is replaced, never thrown.
std::string DumpJson(const Json& j, int indent = -1);

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool IsValidUtf8(std::string_view s);

}  // namespace loom
