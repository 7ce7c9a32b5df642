// The typed side of the JSON boundary: untrusted documents (HTTP bodies, model
// tool-call arguments) are read into plain structs here, with an error that
// names the field; stored documents (the event log) are read tolerantly.
//
// Nothing outside this file calls value(), get<>(), at() or operator[] on a Json
// that came from outside: nlohmann throws on a wrong type (`{"approve": "yes"}`)
// and asserts on a missing key, and either kills the process.
//
//   RepoRequest r;
//   JsonReader in(*body);
//   in.String("name", &r.name, Presence::kNonEmpty)
//     .String("branch", &r.branch)
//     .Int("limit", &r.limit, Presence::kOptional, 1, 500);
//   if (!in.ok()) return ErrorResponse(in.status(), in.error().field);
//
// JsonReader is a thread-compatible value; it refers to the Json it reads, which
// must outlive it.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "common/json.h"
#include "common/status.h"

namespace loom {

enum class Presence {
  kOptional,  // absent or null leaves the output untouched
  kRequired,  // must be present and not null
  kNonEmpty,  // kRequired, and a string must not be empty
};

// What is wrong with a document, and where: `field` is the member's path
// ("secret.value", "messages[2].role"), empty for the document itself.
struct FieldError {
  std::string field;
  std::string message;
};

class JsonReader {
 public:
  // Reads the members of `object`; `where` is its path in the document, put in
  // front of member names in errors. A non-object fails the first read (and
  // ok() at once).
  explicit JsonReader(const Json& object, std::string where = {});
  // The reader keeps a reference: a temporary would dangle.
  JsonReader(Json&& object, std::string where = {}) = delete;

  // Each reads member `name` into *out when present and of the right type. After
  // the first failure every later call does nothing, so calls chain and the
  // first error is the one reported.
  JsonReader& String(std::string_view name, std::string* out,
                     Presence presence = Presence::kOptional);
  JsonReader& String(std::string_view name, std::optional<std::string>* out);
  // An integer in [lo, hi]; a float with an integral value (`3.0`) counts.
  JsonReader& Int(std::string_view name, int64_t* out, Presence presence = Presence::kOptional,
                  int64_t lo = std::numeric_limits<int64_t>::min(),
                  int64_t hi = std::numeric_limits<int64_t>::max());
  JsonReader& Number(std::string_view name, double* out, Presence presence, double lo, double hi);
  JsonReader& Bool(std::string_view name, bool* out, Presence presence = Presence::kOptional);
  // A member kept as a Json (already depth-bounded by ParseJson); *out points
  // into the document, nullptr when absent.
  JsonReader& Object(std::string_view name, const Json** out,
                     Presence presence = Presence::kOptional);
  JsonReader& Array(std::string_view name, const Json** out,
                    Presence presence = Presence::kOptional);
  JsonReader& Any(std::string_view name, const Json** out);
  // Fails on a member that no call so far has named.
  JsonReader& NoOtherMembers();
  // Records an error on `name` (a value the caller found wrong: not in an enum).
  JsonReader& Fail(std::string_view name, std::string message);

  // Takes the error of a reader of a nested object (made with this reader's
  // PathOf(member) as its `where`), if it failed and this one has not.
  JsonReader& Include(const JsonReader& nested);

  // True when `name` is present and not null.
  bool Has(std::string_view name) const;
  // The path of member `name` ("stream_options.include_usage").
  std::string PathOf(std::string_view name) const;

  bool ok() const { return !error_; }
  // REQUIRES: !ok().
  const FieldError& error() const { return *error_; }
  // OK, or InvalidArgument with the error's message.
  Status status() const;
  // The failed field's path, empty when ok().
  std::string field() const { return error_ ? error_->field : std::string(); }

 private:
  // The member, or nullptr when absent/null (an error when required).
  const Json* Find(std::string_view name, Presence presence);
  void TypeError(std::string_view name, const Json& v, const char* expected);

  const Json& object_;
  std::string where_;
  std::set<std::string, std::less<>> seen_;
  std::optional<FieldError> error_;
};

// "a string", "a number", "an object" ...: for messages.
const char* JsonTypeName(const Json& v);

// Tolerant reads of stored documents (events, escalation answers). They were
// written by loomd, but an older version, a hand edit, or whatever a model put
// in them may have any shape: these never throw and fall back instead. Not for
// requests, which must be refused with an error.
const Json& MemberOrNull(const Json& object, std::string_view name);
std::string StringOr(const Json& object, std::string_view name, std::string_view fallback = "");
int64_t IntOr(const Json& object, std::string_view name, int64_t fallback);
bool BoolOr(const Json& object, std::string_view name, bool fallback);

}  // namespace loom
