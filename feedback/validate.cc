// Validation of feedback submissions. The whole body is checked before anything
// is stored, so a bad request never leaves half an item behind.
#include <algorithm>
#include <cctype>

#include "feedback/intake.h"

namespace loom::feedback {
namespace {

struct Field {
  const char* name;
  std::optional<std::string> Item::*member;  // null for the required/special ones
  size_t Limits::*limit;
};

constexpr Field kOptional[] = {
    {"reporter", &Item::reporter, &Limits::short_field},
    {"app_version", &Item::app_version, &Limits::short_field},
    {"commit", &Item::commit, &Limits::short_field},
    {"url", &Item::url, &Limits::url},
    {"logs", &Item::logs, &Limits::logs},
    {"stack_trace", &Item::stack_trace, &Limits::stack_trace},
    {"repo", &Item::repo, &Limits::short_field},
};

bool IsBlank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); });
}

Invalid TooLong(const char* field, size_t limit) {
  return {field, std::string(field) + " is longer than " + std::to_string(limit) + " bytes"};
}

}  // namespace

std::variant<Item, Invalid> ParseSubmission(std::string_view body, const Limits& limits) {
  if (!IsValidUtf8(body)) return Invalid{"", "the request body is not valid UTF-8"};
  auto parsed = ParseJson(body);
  if (!parsed.ok()) return Invalid{"", parsed.status().message()};
  const Json& j = *parsed;
  if (!j.is_object()) return Invalid{"", "the request body must be a JSON object"};

  for (const auto& [key, value] : j.items()) {
    bool known = key == "kind" || key == "title" || key == "body" || key == "context";
    for (const auto& f : kOptional) known = known || key == f.name;
    if (!known) return Invalid{key, "unknown field '" + key + "'"};
  }

  Item item;
  auto required = [&](const char* name, std::string* out, size_t limit) -> std::optional<Invalid> {
    auto it = j.find(name);
    if (it == j.end() || it->is_null()) return Invalid{name, std::string(name) + " is required"};
    if (!it->is_string()) return Invalid{name, std::string(name) + " must be a string"};
    *out = it->get<std::string>();
    if (IsBlank(*out)) return Invalid{name, std::string(name) + " must not be empty"};
    if (out->size() > limit) return TooLong(name, limit);
    return std::nullopt;
  };
  if (auto bad = required("kind", &item.kind, 16)) return *bad;
  if (item.kind != "bug" && item.kind != "feature" && item.kind != "question") {
    return Invalid{"kind", "kind must be one of bug, feature, question (got '" + item.kind + "')"};
  }
  if (auto bad = required("title", &item.title, limits.title)) return *bad;
  if (auto bad = required("body", &item.body, limits.body)) return *bad;

  for (const auto& f : kOptional) {
    auto it = j.find(f.name);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_string()) return Invalid{f.name, std::string(f.name) + " must be a string"};
    std::string v = it->get<std::string>();
    if (v.size() > limits.*f.limit) return TooLong(f.name, limits.*f.limit);
    item.*f.member = std::move(v);
  }

  if (auto it = j.find("context"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return Invalid{"context", "context must be a JSON object"};
    if (DumpJson(*it).size() > limits.context) return TooLong("context", limits.context);
    item.context = *it;
  }
  return item;
}

}  // namespace loom::feedback
