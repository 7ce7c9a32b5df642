// Validation of feedback submissions. The whole body is checked before anything
// is stored, so a bad request never leaves half an item behind. The body crosses
// the JSON boundary here: ParseJson (depth-limited) then a JsonReader, so a field
// of the wrong type is a 400 that names it, never an exception.
#include <algorithm>
#include <cctype>
#include <tuple>

#include "common/json_reader.h"
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

constexpr int kMaxContextDepth = 32;

Invalid TooLong(const char* field, size_t limit) {
  return {field, std::string(field) + " is longer than " + std::to_string(limit) + " bytes"};
}

}  // namespace

std::variant<Item, Invalid> ParseSubmission(std::string_view body, const Limits& limits) {
  if (!IsValidUtf8(body)) return Invalid{"", "the request body is not valid UTF-8"};
  auto parsed = ParseJson(body);
  if (!parsed.ok()) return Invalid{"", parsed.status().message()};
  JsonReader in(*parsed);
  Item item;
  in.String("kind", &item.kind, Presence::kRequired)
      .String("title", &item.title, Presence::kRequired)
      .String("body", &item.body, Presence::kRequired);
  for (const auto& f : kOptional) in.String(f.name, &(item.*f.member));
  const Json* context = nullptr;
  in.Object("context", &context).NoOtherMembers();
  if (!in.ok()) return Invalid{in.error().field, in.error().message};

  for (auto [name, value, limit] : {std::tuple{"kind", &item.kind, size_t{16}},
                                    std::tuple{"title", &item.title, limits.title},
                                    std::tuple{"body", &item.body, limits.body}}) {
    if (IsBlank(*value)) return Invalid{name, std::string(name) + " must not be empty"};
    if (value->size() > limit) return TooLong(name, limit);
  }
  if (item.kind != "bug" && item.kind != "feature" && item.kind != "question") {
    return Invalid{"kind", "kind must be one of bug, feature, question (got '" + item.kind + "')"};
  }
  for (const auto& f : kOptional) {
    const auto& v = item.*f.member;
    if (v && v->size() > limits.*f.limit) return TooLong(f.name, limits.*f.limit);
  }
  if (context != nullptr) {
    // Shallow by construction (ParseJson's depth limit), so dumping it is safe.
    std::string text = DumpJson(*context);
    if (text.size() > limits.context) return TooLong("context", limits.context);
    // Answers wrap the context in a few levels ({"items": [{"context": ...}]}):
    // a context near the parse limit would make them unreadable by a client
    // with the same limit (the CLI).
    if (JsonNestingDepth(text, kMaxContextDepth) > kMaxContextDepth) {
      return Invalid{"context", "context nests deeper than " + std::to_string(kMaxContextDepth) +
                                    " levels"};
    }
    item.context = *context;
  }
  return item;
}

}  // namespace loom::feedback
