// Envelope framing (https://develop.sentry.dev/sdk/envelopes/): the header
// line, then for each item a header line and a payload of `length` bytes, or
// up to the next newline without one. Each JSON document goes through
// ParseJson (depth-limited) and a JsonReader, so a field of the wrong type is a
// 400 naming it, never an exception. The fields Sentry lets take several shapes
// (exception as a list or {values}, message as text or a logentry, tags as an
// object or pairs, user ids as numbers) are read in each. Strings are cut to
// bounded sizes and scrubbed as they are read: nothing unscrubbed leaves here.
#include "feedback/internal/envelope.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>

#include "common/crypto.h"
#include "common/json_reader.h"

namespace loom::feedback::internal {
namespace {

constexpr size_t kShort = 200;  // types, functions, file names, tags
constexpr size_t kText = 2000;  // exception values, messages, context lines
constexpr size_t kContext = 5;  // pre/post context lines kept per frame
constexpr size_t kMaxTags = 50;

// Cuts `s` to at most `max` bytes without splitting a UTF-8 sequence.
std::string Cut(std::string s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  s.resize(n);
  s += "…";
  return s;
}

// Seconds since the epoch (as SDKs send breadcrumbs' times) as ISO 8601 UTC;
// anything else as it came.
std::string FormatTimestamp(const std::string& t) {
  double secs = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), secs);
  if (ec != std::errc() || p != t.data() + t.size() || secs < 0 || secs > 1e11) return t;
  std::time_t whole = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&whole, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

class Reader {
 public:
  Reader(const EventLimits& limits) : limits_(limits) {}

  std::string Clean(std::string s, size_t max) const {
    return ScrubText(Cut(std::move(s), max), limits_.scrub);
  }

  // A string, number or bool member as text; "" when absent.
  Status Scalar(const Json& obj, const std::string& where, std::string_view name,
                std::string* out) const {
    JsonReader in(obj, where);
    const Json* v = nullptr;
    in.Any(name, &v);
    if (!in.ok()) return Status::InvalidArgument(in.error().field + ": " + in.error().message);
    if (v == nullptr) return Status::Ok();
    if (v->is_string()) {
      *out = v->get_ref<const std::string&>();
    } else if (v->is_number() || v->is_boolean()) {
      *out = DumpJson(*v);
    } else {
      return Status::InvalidArgument(in.PathOf(name) + ": expected a string or a number, got " +
                                     JsonTypeName(*v));
    }
    return Status::Ok();
  }

  // A list either bare or as {"values": [...]} (exception, breadcrumbs, threads).
  Result<const Json*> Values(const JsonReader& parent, const Json* member,
                             std::string_view name) const {
    if (member == nullptr) return nullptr;
    if (member->is_array()) return member;
    if (member->is_object()) {
      JsonReader in(*member, parent.PathOf(name));
      const Json* values = nullptr;
      in.Array("values", &values);
      if (!in.ok()) return in.status();
      return values;
    }
    return Status::InvalidArgument(parent.PathOf(name) + ": expected a list or an object with " +
                                   "\"values\", got " + JsonTypeName(*member));
  }

  Status StringList(const Json& frame, const std::string& where, std::string_view name,
                    bool keep_last, std::vector<std::string>* out) const {
    JsonReader in(frame, where);
    const Json* list = nullptr;
    in.Array(name, &list);
    if (!in.ok()) return in.status();
    if (list == nullptr) return Status::Ok();
    size_t n = list->size();
    size_t from = keep_last && n > kContext ? n - kContext : 0;
    for (size_t i = from; i < n && out->size() < kContext; ++i) {
      const Json& line = (*list)[i];
      if (line.is_null()) continue;
      if (!line.is_string()) {
        return Status::InvalidArgument(in.PathOf(name) + "[" + std::to_string(i) +
                                       "]: expected a string, got " + JsonTypeName(line));
      }
      out->push_back(Clean(line.get_ref<const std::string&>(), kText));
    }
    return Status::Ok();
  }

  Status Frame(const Json& j, const std::string& where, CrashFrame* f) const {
    JsonReader in(j, where);
    std::string filename, abs_path;
    std::optional<std::string> module, function, context_line;
    in.String("filename", &filename)
        .String("abs_path", &abs_path)
        .String("module", &module)
        .String("function", &function)
        .Int("lineno", &f->lineno, Presence::kOptional, 0, 1 << 30)
        .Int("colno", &f->colno, Presence::kOptional, 0, 1 << 30)
        .Bool("in_app", &f->in_app)
        .String("context_line", &context_line);
    if (!in.ok()) return in.status();
    std::string file = filename.empty() ? abs_path : filename;
    // A URL's path only: the host and port differ between deployments (and
    // query strings carry cache busters and tokens).
    if (size_t scheme = file.find("://"); scheme != std::string::npos) {
      size_t path = file.find('/', scheme + 3);
      file = path == std::string::npos ? "/" : file.substr(path);
    }
    if (size_t q = file.find_first_of("?#"); q != std::string::npos) file.resize(q);
    f->filename = Clean(file, kShort);
    f->module = Clean(module.value_or(""), kShort);
    f->function = Clean(function.value_or(""), kShort);
    f->context_line = Clean(context_line.value_or(""), kText);
    LOOM_RETURN_IF_ERROR(StringList(j, where, "pre_context", true, &f->pre_context));
    return StringList(j, where, "post_context", false, &f->post_context);
  }

  Status Frames(const JsonReader& parent, const Json* stacktrace, std::string_view name,
                std::vector<CrashFrame>* out) const {
    if (stacktrace == nullptr) return Status::Ok();
    JsonReader st(*stacktrace, parent.PathOf(name));
    const Json* frames = nullptr;
    st.Array("frames", &frames);
    if (!st.ok()) return st.status();
    if (frames == nullptr) return Status::Ok();
    size_t n = frames->size();
    size_t from = n > limits_.max_frames ? n - limits_.max_frames : 0;
    for (size_t i = from; i < n; ++i) {
      CrashFrame f;
      LOOM_RETURN_IF_ERROR(
          Frame((*frames)[i], st.PathOf("frames") + "[" + std::to_string(i) + "]", &f));
      out->push_back(std::move(f));
    }
    return Status::Ok();
  }

  Status Exception(const Json& j, const std::string& where, CrashException* e) const {
    JsonReader in(j, where);
    std::string type, module;
    const Json* stacktrace = nullptr;
    const Json* mechanism = nullptr;
    in.String("type", &type).String("module", &module).Object("stacktrace", &stacktrace);
    in.Object("mechanism", &mechanism);
    if (!in.ok()) return in.status();
    std::string value;
    LOOM_RETURN_IF_ERROR(Scalar(j, where, "value", &value));
    e->type = Clean(type, kShort);
    e->value = Clean(value, kText);
    e->module = Clean(module, kShort);
    if (mechanism != nullptr) {
      JsonReader m(*mechanism, in.PathOf("mechanism"));
      std::string mech_type;
      m.String("type", &mech_type).Bool("handled", &e->handled);
      if (!m.ok()) return m.status();
      e->mechanism = Clean(mech_type, kShort);
    }
    return Frames(in, stacktrace, "stacktrace", &e->frames);
  }

  Status Message(const JsonReader& in, const Json& event, std::string_view name,
                 std::string* out) const {
    const Json* v = nullptr;
    JsonReader r(event, "");
    r.Any(name, &v);
    if (v == nullptr) return Status::Ok();
    if (v->is_string()) {
      *out = Clean(v->get_ref<const std::string&>(), kText);
      return Status::Ok();
    }
    if (!v->is_object()) {
      return Status::InvalidArgument(in.PathOf(name) + ": expected a string or an object, got " +
                                     JsonTypeName(*v));
    }
    JsonReader m(*v, in.PathOf(name));
    std::string formatted, message;
    m.String("formatted", &formatted).String("message", &message);
    if (!m.ok()) return m.status();
    *out = Clean(formatted.empty() ? message : formatted, kText);
    return Status::Ok();
  }

  Status Tags(const Json* tags, const std::string& where, CrashReport* r) const {
    if (tags == nullptr) return Status::Ok();
    auto add = [&](std::string key, std::string value) {
      if (r->tags.size() >= kMaxTags) return;
      key = Clean(std::move(key), kShort);
      value = IsSecretFieldName(key) ? "[secret]" : Clean(std::move(value), kShort);
      r->tags.emplace_back(std::move(key), std::move(value));
    };
    if (tags->is_object()) {
      for (const auto& [key, v] : tags->items()) {
        std::string value;
        LOOM_RETURN_IF_ERROR(Scalar(*tags, where, key, &value));
        add(key, value);
      }
      return Status::Ok();
    }
    if (!tags->is_array()) {
      return Status::InvalidArgument(where + ": expected an object or a list of pairs, got " +
                                     JsonTypeName(*tags));
    }
    for (size_t i = 0; i < tags->size(); ++i) {
      const Json& pair = (*tags)[i];
      if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string() ||
          !(pair[1].is_string() || pair[1].is_number() || pair[1].is_boolean())) {
        return Status::InvalidArgument(where + "[" + std::to_string(i) +
                                       "]: expected a [key, value] pair of strings");
      }
      add(pair[0].get_ref<const std::string&>(),
          pair[1].is_string() ? pair[1].get_ref<const std::string&>() : DumpJson(pair[1]));
    }
    return Status::Ok();
  }

  Status Breadcrumbs(const Json* list, const std::string& where, CrashReport* r) const {
    if (list == nullptr) return Status::Ok();
    size_t n = list->size();
    size_t from = n > limits_.max_breadcrumbs ? n - limits_.max_breadcrumbs : 0;
    for (size_t i = 0; i < n; ++i) {
      // Every crumb is checked; only the last ones are kept.
      const Json& b = (*list)[i];
      std::string path = where + "[" + std::to_string(i) + "]";
      JsonReader in(b, path);
      std::string type, category, level, message;
      const Json* data = nullptr;
      in.String("type", &type)
          .String("category", &category)
          .String("level", &level)
          .String("message", &message)
          .Object("data", &data);
      if (!in.ok()) return in.status();
      std::string timestamp;
      LOOM_RETURN_IF_ERROR(Scalar(b, path, "timestamp", &timestamp));
      if (i < from) continue;
      timestamp = FormatTimestamp(timestamp);
      std::string line;
      if (!timestamp.empty()) line += "[" + timestamp + "] ";
      line += category.empty() ? (type.empty() ? "default" : type) : category;
      if (!level.empty()) line += " (" + level + ")";
      if (!message.empty()) line += ": " + message;
      if (data != nullptr && !data->empty()) {
        Json kept = Json::object();
        for (const auto& [key, v] : data->items()) {
          if (IsSecretFieldName(key)) {
            kept[key] = "[secret]";
          } else if (v.is_string() || v.is_number() || v.is_boolean()) {
            kept[key] = v;
          }
        }
        if (!kept.empty()) line += " " + DumpJson(kept);
      }
      r->breadcrumbs.push_back(Clean(line, kText));
    }
    return Status::Ok();
  }

  Status Request(const Json* req, const std::string& where, CrashReport* r) const {
    if (req == nullptr) return Status::Ok();
    // Kept: method and URL (query scrubbed). Dropped unread beyond their type:
    // headers, cookies, body (data), env: they carry credentials and PII.
    JsonReader in(*req, where);
    std::string url, method;
    in.String("url", &url).String("method", &method);
    if (!in.ok()) return in.status();
    std::string query;
    LOOM_RETURN_IF_ERROR(Scalar(*req, where, "query_string", &query));
    if (url.find('?') == std::string::npos && !query.empty()) url += "?" + query;
    // Query values named like secrets go whole.
    if (size_t q = url.find('?'); q != std::string::npos) {
      std::string rebuilt = url.substr(0, q + 1);
      std::string_view rest = std::string_view(url).substr(q + 1);
      while (!rest.empty()) {
        size_t amp = rest.find('&');
        std::string_view part = rest.substr(0, amp);
        size_t eq = part.find('=');
        std::string_view key = part.substr(0, eq);
        rebuilt += std::string(key);
        if (eq != std::string_view::npos) {
          rebuilt += "=";
          rebuilt += IsSecretFieldName(key) ? "[secret]" : std::string(part.substr(eq + 1));
        }
        if (amp == std::string_view::npos) break;
        rebuilt += "&";
        rest = rest.substr(amp + 1);
      }
      url = rebuilt;
    }
    r->request_url = Clean(url, 2048);
    r->request_method = Clean(method, 16);
    return Status::Ok();
  }

  Status User(const Json* user, const std::string& where, int64_t project_id,
              std::string_view remote_address, CrashReport* r) const {
    std::string id;
    if (user != nullptr) {
      for (const char* name : {"id", "email", "username", "ip_address"}) {
        std::string v;
        LOOM_RETURN_IF_ERROR(Scalar(*user, where, name, &v));
        if (v == "{{auto}}") v.clear();
        if (!v.empty()) {
          id = std::string(name) + ":" + v;
          break;
        }
      }
    }
    if (id.empty() && !remote_address.empty()) id = "address:" + std::string(remote_address);
    // Only a salted hash is kept: enough to count distinct users, nothing to
    // reach them by.
    if (!id.empty()) {
      r->user =
          Sha256Hex("loom-sentry-user:" + std::to_string(project_id) + ":" + id).substr(0, 24);
    }
    return Status::Ok();
  }

  Result<CrashReport> Event(std::string_view body, int64_t project_id,
                            std::string_view remote_address) const {
    if (body.size() > limits_.max_event_bytes) {
      return Status::ResourceExhausted("the event is " + std::to_string(body.size()) +
                                       " bytes; at most " +
                                       std::to_string(limits_.max_event_bytes) + " are accepted");
    }
    if (!IsValidUtf8(body)) return Status::InvalidArgument("the event is not valid UTF-8");
    LOOM_ASSIGN_OR_RETURN(Json event, ParseJson(body));
    if (!event.is_object()) {
      return Status::InvalidArgument(std::string("the event must be a JSON object, got ") +
                                     JsonTypeName(event));
    }
    CrashReport r;
    JsonReader in(event);
    std::string event_id, platform, level, release, environment, transaction;
    const Json *exception = nullptr, *stacktrace = nullptr, *tags = nullptr, *user = nullptr,
               *breadcrumbs = nullptr, *request = nullptr;
    in.String("event_id", &event_id)
        .String("platform", &platform)
        .String("level", &level)
        .String("release", &release)
        .String("environment", &environment)
        .String("transaction", &transaction)
        .Any("exception", &exception)
        .Object("stacktrace", &stacktrace)
        .Any("tags", &tags)
        .Object("user", &user)
        .Any("breadcrumbs", &breadcrumbs)
        .Object("request", &request);
    if (!in.ok()) return in.status();
    if (!event_id.empty()) {
      event_id.erase(std::remove(event_id.begin(), event_id.end(), '-'), event_id.end());
      bool hex = event_id.size() == 32 &&
                 std::all_of(event_id.begin(), event_id.end(),
                             [](unsigned char c) { return std::isxdigit(c) != 0; });
      if (!hex) return Status::InvalidArgument("event_id: expected 32 hexadecimal digits");
      std::transform(event_id.begin(), event_id.end(), event_id.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    } else {
      LOOM_ASSIGN_OR_RETURN(event_id, RandomHex(16));
    }
    r.event_id = event_id;
    // Set by the app's developers, not its users: cut, not scrubbed (a release
    // is often "name@version", which would read as an email address).
    r.platform = Cut(platform, kShort);
    r.level = Cut(level, 16);
    r.release = Cut(release, kShort);
    r.environment = Cut(environment, kShort);
    r.transaction = Clean(transaction, kShort);
    LOOM_RETURN_IF_ERROR(Message(in, event, "message", &r.message));
    if (r.message.empty()) LOOM_RETURN_IF_ERROR(Message(in, event, "logentry", &r.message));

    LOOM_ASSIGN_OR_RETURN(const Json* values, Values(in, exception, "exception"));
    if (values != nullptr) {
      size_t n = values->size();
      size_t from = n > limits_.max_exceptions ? n - limits_.max_exceptions : 0;
      for (size_t i = from; i < n; ++i) {
        CrashException e;
        LOOM_RETURN_IF_ERROR(Exception(
            (*values)[i], in.PathOf("exception") + ".values[" + std::to_string(i) + "]", &e));
        r.exceptions.push_back(std::move(e));
      }
    }
    if (stacktrace != nullptr) {
      // A message event with a trace attached: a pseudo exception holds it.
      CrashException e;
      LOOM_RETURN_IF_ERROR(Frames(in, stacktrace, "stacktrace", &e.frames));
      e.handled = true;
      if (r.exceptions.empty() && !e.frames.empty()) r.exceptions.push_back(std::move(e));
    }
    LOOM_RETURN_IF_ERROR(Tags(tags, in.PathOf("tags"), &r));
    LOOM_ASSIGN_OR_RETURN(const Json* crumbs, Values(in, breadcrumbs, "breadcrumbs"));
    LOOM_RETURN_IF_ERROR(Breadcrumbs(crumbs, in.PathOf("breadcrumbs"), &r));
    LOOM_RETURN_IF_ERROR(Request(request, in.PathOf("request"), &r));
    LOOM_RETURN_IF_ERROR(User(user, in.PathOf("user"), project_id, remote_address, &r));
    r.project_id = project_id;
    return r;
  }

 private:
  const EventLimits& limits_;
};

// Prefixes errors about item `index` with where it is.
Status AtItem(size_t index, std::string_view type, const Status& s) {
  return Status(s.code(), "envelope item " + std::to_string(index) +
                              (type.empty() ? "" : " (" + std::string(type) + ")") + ": " +
                              s.message());
}

}  // namespace

Result<CrashReport> ParseEvent(std::string_view body, const EventLimits& limits, int64_t project_id,
                               std::string_view remote_address) {
  return Reader(limits).Event(body, project_id, remote_address);
}

Result<ParsedEnvelope> ParseEnvelope(std::string_view body, const EventLimits& limits,
                                     int64_t project_id, std::string_view remote_address) {
  ParsedEnvelope out;
  size_t pos = 0;
  auto line = [&]() -> std::string_view {
    size_t nl = body.find('\n', pos);
    std::string_view l =
        body.substr(pos, nl == std::string_view::npos ? body.size() - pos : nl - pos);
    pos = nl == std::string_view::npos ? body.size() : nl + 1;
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    return l;
  };
  if (body.empty()) return Status::InvalidArgument("the envelope is empty");
  std::string_view header_line = line();
  if (!IsValidUtf8(header_line)) {
    return Status::InvalidArgument("the envelope header is not valid UTF-8");
  }
  auto header = ParseJson(header_line);
  if (!header.ok()) {
    return Status::InvalidArgument("the envelope header (its first line) is not JSON: " +
                                   header.status().message());
  }
  {
    JsonReader in(*header, "envelope header");
    in.String("event_id", &out.event_id);
    if (!in.ok()) return in.status();
  }
  Reader reader(limits);
  for (size_t index = 0; pos < body.size(); ++index) {
    std::string_view item_line = line();
    if (item_line.empty()) {
      if (pos >= body.size()) break;  // a trailing newline
      return Status::InvalidArgument("envelope item " + std::to_string(index) +
                                     ": an empty line where an item header was expected");
    }
    if (index >= limits.max_items) {
      return Status::ResourceExhausted("the envelope has more than " +
                                       std::to_string(limits.max_items) + " items");
    }
    auto item_header = ParseJson(item_line);
    if (!item_header.ok() || !IsValidUtf8(item_line)) {
      return AtItem(index, "",
                    Status::InvalidArgument("the item header is not JSON: " +
                                            (item_header.ok() ? std::string("invalid UTF-8")
                                                              : item_header.status().message())));
    }
    std::string type;
    int64_t length = -1;
    JsonReader in(*item_header, "item header");
    in.String("type", &type, Presence::kNonEmpty)
        .Int("length", &length, Presence::kOptional, 0, std::numeric_limits<int64_t>::max());
    if (!in.ok()) return AtItem(index, "", in.status());
    std::string_view payload;
    if (length >= 0) {
      if (static_cast<uint64_t>(length) > body.size() - pos) {
        return AtItem(index, type,
                      Status::InvalidArgument("the header says length " + std::to_string(length) +
                                              " but only " + std::to_string(body.size() - pos) +
                                              " bytes follow"));
      }
      payload = body.substr(pos, static_cast<size_t>(length));
      pos += static_cast<size_t>(length);
      if (pos < body.size()) {
        if (body[pos] != '\n') {
          return AtItem(index, type,
                        Status::InvalidArgument("the payload of length " + std::to_string(length) +
                                                " is not followed by a newline: wrong length?"));
        }
        ++pos;
      }
    } else {
      payload = line();
    }
    if (type == "event") {
      if (out.event) {
        return AtItem(index, type,
                      Status::InvalidArgument("an envelope carries at most one event"));
      }
      auto event = reader.Event(payload, project_id, remote_address);
      if (!event.ok()) return AtItem(index, type, event.status());
      out.event = std::move(*event);
    } else {
      ++out.dropped[Cut(type, 32)];
    }
  }
  if (out.event) {
    out.event_id = out.event->event_id;
  } else {
    // Echoed back to the SDK: only an id that looks like one.
    std::string id = out.event_id;
    id.erase(std::remove(id.begin(), id.end(), '-'), id.end());
    bool hex = id.size() == 32 && std::all_of(id.begin(), id.end(), [](unsigned char c) {
                 return std::isxdigit(c) != 0;
               });
    out.event_id = hex ? id : "";
  }
  return out;
}

}  // namespace loom::feedback::internal
