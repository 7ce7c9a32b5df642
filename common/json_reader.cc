// JsonReader and the tolerant readers of stored documents. Only const, checked
// accesses: find() on an object, then is_*() before every get<>().
#include "common/json_reader.h"

#include <cmath>

namespace loom {
namespace {

const Json& NullJson() {
  static const Json kNull;
  return kNull;
}

// The value of an integral number in int64 range, or nullopt.
std::optional<int64_t> AsInt64(const Json& v) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    // 2^63 is exact as a double; anything at or past it does not fit.
    if (!std::isfinite(d) || d != std::trunc(d) || d < -9223372036854775808.0 ||
        d >= 9223372036854775808.0) {
      return std::nullopt;
    }
    return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

}  // namespace

const char* JsonTypeName(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::object:
      return "an object";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float:
      return "a number";
    default:
      return "an unknown value";
  }
}

JsonReader::JsonReader(const Json& object, std::string where)
    : object_(object), where_(std::move(where)) {
  if (!object_.is_object()) {
    error_ = FieldError{where_, (where_.empty() ? std::string("the body") : where_) +
                                    " must be a JSON object, not " + JsonTypeName(object_)};
  }
}

std::string JsonReader::PathOf(std::string_view name) const {
  return where_.empty() ? std::string(name) : where_ + "." + std::string(name);
}

bool JsonReader::Has(std::string_view name) const {
  if (!object_.is_object()) return false;
  auto it = object_.find(std::string(name));
  return it != object_.end() && !it->is_null();
}

Status JsonReader::status() const {
  return error_ ? Status::InvalidArgument(error_->message) : Status::Ok();
}

JsonReader& JsonReader::Fail(std::string_view name, std::string message) {
  if (!error_) error_ = FieldError{PathOf(name), std::move(message)};
  return *this;
}

JsonReader& JsonReader::Include(const JsonReader& nested) {
  if (!error_ && nested.error_) error_ = nested.error_;
  return *this;
}

void JsonReader::TypeError(std::string_view name, const Json& v, const char* expected) {
  Fail(name, PathOf(name) + " must be " + expected + ", not " + JsonTypeName(v));
}

const Json* JsonReader::Find(std::string_view name, Presence presence) {
  if (error_) return nullptr;
  seen_.emplace(name);
  auto it = object_.find(std::string(name));
  if (it == object_.end() || it->is_null()) {
    if (presence != Presence::kOptional) Fail(name, PathOf(name) + " is required");
    return nullptr;
  }
  return &*it;
}

JsonReader& JsonReader::String(std::string_view name, std::string* out, Presence presence) {
  const Json* v = Find(name, presence);
  if (v == nullptr) return *this;
  if (!v->is_string()) {
    TypeError(name, *v, "a string");
    return *this;
  }
  const std::string& s = v->get_ref<const std::string&>();
  if (presence == Presence::kNonEmpty && s.empty()) {
    return Fail(name, PathOf(name) + " must not be empty");
  }
  *out = s;
  return *this;
}

JsonReader& JsonReader::String(std::string_view name, std::optional<std::string>* out) {
  std::string s;
  const bool present = Has(name);
  String(name, &s, Presence::kOptional);
  if (ok() && present) *out = std::move(s);
  return *this;
}

JsonReader& JsonReader::Int(std::string_view name, int64_t* out, Presence presence, int64_t lo,
                            int64_t hi) {
  const Json* v = Find(name, presence);
  if (v == nullptr) return *this;
  if (!v->is_number()) {
    TypeError(name, *v, "an integer");
    return *this;
  }
  std::optional<int64_t> i = AsInt64(*v);
  if (!i || *i < lo || *i > hi) {
    return Fail(name, PathOf(name) + " must be an integer between " + std::to_string(lo) +
                          " and " + std::to_string(hi) + ", got " + DumpJson(*v));
  }
  *out = *i;
  return *this;
}

JsonReader& JsonReader::Number(std::string_view name, double* out, Presence presence, double lo,
                               double hi) {
  const Json* v = Find(name, presence);
  if (v == nullptr) return *this;
  if (!v->is_number()) {
    TypeError(name, *v, "a number");
    return *this;
  }
  double d = v->get<double>();
  if (!(d >= lo && d <= hi)) {
    return Fail(name, PathOf(name) + " must be between " + DumpJson(Json(lo)) + " and " +
                          DumpJson(Json(hi)) + ", got " + DumpJson(*v));
  }
  *out = d;
  return *this;
}

JsonReader& JsonReader::Bool(std::string_view name, bool* out, Presence presence) {
  const Json* v = Find(name, presence);
  if (v == nullptr) return *this;
  if (!v->is_boolean()) {
    TypeError(name, *v, "true or false");
    return *this;
  }
  *out = v->get<bool>();
  return *this;
}

JsonReader& JsonReader::Object(std::string_view name, const Json** out, Presence presence) {
  *out = nullptr;
  const Json* v = Find(name, presence);
  if (v == nullptr) return *this;
  if (!v->is_object()) {
    TypeError(name, *v, "an object");
    return *this;
  }
  *out = v;
  return *this;
}

JsonReader& JsonReader::Array(std::string_view name, const Json** out, Presence presence) {
  *out = nullptr;
  const Json* v = Find(name, presence);
  if (v == nullptr) return *this;
  if (!v->is_array()) {
    TypeError(name, *v, "an array");
    return *this;
  }
  *out = v;
  return *this;
}

JsonReader& JsonReader::Any(std::string_view name, const Json** out) {
  *out = Find(name, Presence::kOptional);
  return *this;
}

JsonReader& JsonReader::NoOtherMembers() {
  if (error_) return *this;
  for (const auto& [key, value] : object_.items()) {
    if (!seen_.count(key)) return Fail(key, "unknown field '" + key + "'");
  }
  return *this;
}

const Json& MemberOrNull(const Json& object, std::string_view name) {
  if (!object.is_object()) return NullJson();
  auto it = object.find(std::string(name));
  return it == object.end() ? NullJson() : *it;
}

std::string StringOr(const Json& object, std::string_view name, std::string_view fallback) {
  const Json& v = MemberOrNull(object, name);
  return v.is_string() ? v.get<std::string>() : std::string(fallback);
}

int64_t IntOr(const Json& object, std::string_view name, int64_t fallback) {
  return AsInt64(MemberOrNull(object, name)).value_or(fallback);
}

bool BoolOr(const Json& object, std::string_view name, bool fallback) {
  const Json& v = MemberOrNull(object, name);
  return v.is_boolean() ? v.get<bool>() : fallback;
}

}  // namespace loom
