// Grouping and rendering of crash reports (see crash.h). The fingerprint
// follows Sentry's default grouping: exception types plus the frames that are
// the app's own code (in_app), by function and module (or file), without line
// or column numbers, which move with every unrelated edit. When no frame is
// in-app (a minified bundle, an SDK that cannot tell), every frame counts; when
// there is no trace at all, the message with its numbers blanked does.
#include "feedback/crash.h"

#include <algorithm>
#include <cctype>

#include "common/crypto.h"

namespace loom::feedback {
namespace {

// Digits and hex runs blanked: "user 123 not found" ~ "user 456 not found".
std::string Blank(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (std::isdigit(static_cast<unsigned char>(s[i]))) {
      while (i < s.size() && std::isxdigit(static_cast<unsigned char>(s[i]))) ++i;
      out += '#';
    } else {
      out += s[i++];
    }
  }
  return out;
}

std::string FrameKey(const CrashFrame& f) {
  std::string where = f.module.empty() ? f.filename : f.module;
  return (f.function.empty() ? "?" : f.function) + "@" + where;
}

std::string Location(const CrashFrame& f) {
  std::string loc = f.filename.empty() ? f.module : f.filename;
  if (loc.empty()) loc = "?";
  if (f.lineno > 0) loc += ":" + std::to_string(f.lineno);
  if (f.lineno > 0 && f.colno > 0) loc += ":" + std::to_string(f.colno);
  return loc;
}

}  // namespace

std::string CrashFingerprint(const CrashReport& report) {
  std::string key = "crash\n";
  bool any_in_app = false;
  for (const auto& e : report.exceptions) {
    for (const auto& f : e.frames) any_in_app = any_in_app || f.in_app;
  }
  for (const auto& e : report.exceptions) {
    key += "type:" + e.type + "\n";
    for (const auto& f : e.frames) {
      if (f.in_app || !any_in_app) key += FrameKey(f) + "\n";
    }
  }
  bool no_frames = std::all_of(report.exceptions.begin(), report.exceptions.end(),
                               [](const CrashException& e) { return e.frames.empty(); });
  if (no_frames) {
    // Nothing to place it by but its words.
    const std::string& text =
        report.exceptions.empty() ? report.message : report.exceptions.back().value;
    key += "text:" + Blank(text) + "\n";
  }
  return Sha256Hex(key).substr(0, 32);
}

std::string CrashTitle(const CrashReport& report) {
  std::string title;
  if (!report.exceptions.empty()) {
    const CrashException& e = report.exceptions.back();
    title = e.type.empty() ? e.value : (e.value.empty() ? e.type : e.type + ": " + e.value);
  }
  if (title.empty()) title = report.message.substr(0, report.message.find('\n'));
  if (title.empty()) title = "A crash report without a message";
  if (title.size() > 280) {
    size_t n = 280;
    while (n > 0 && (static_cast<unsigned char>(title[n]) & 0xC0) == 0x80) --n;
    title = title.substr(0, n) + "…";
  }
  return title;
}

std::string FormatStackTrace(const CrashReport& report) {
  std::string s;
  for (size_t i = 0; i < report.exceptions.size(); ++i) {
    const CrashException& e = report.exceptions[i];
    if (i > 0) s += "\nThe above caused:\n";
    s += (e.type.empty() ? "Error" : e.type) + (e.value.empty() ? "" : ": " + e.value) + "\n";
    // Most recent call first, as JavaScript prints it.
    for (auto it = e.frames.rbegin(); it != e.frames.rend(); ++it) {
      const CrashFrame& f = *it;
      s += "    at " + (f.function.empty() ? "<anonymous>" : f.function) + " (" + Location(f) +
           ")" + (f.in_app ? "" : " [library]") + "\n";
      if (!f.in_app || f.context_line.empty()) continue;
      int64_t first = f.lineno - static_cast<int64_t>(f.pre_context.size());
      auto line = [&](int64_t n, const std::string& text, bool here) {
        s += std::string(here ? "      > " : "        ") + (n > 0 ? std::to_string(n) : "") +
             " | " + text + "\n";
      };
      for (size_t k = 0; k < f.pre_context.size(); ++k) {
        line(f.lineno > 0 ? first + static_cast<int64_t>(k) : 0, f.pre_context[k], false);
      }
      line(f.lineno, f.context_line, true);
      for (size_t k = 0; k < f.post_context.size(); ++k) {
        line(f.lineno > 0 ? f.lineno + 1 + static_cast<int64_t>(k) : 0, f.post_context[k], false);
      }
    }
  }
  return s;
}

std::string FormatBreadcrumbs(const CrashReport& report) {
  std::string s;
  for (const auto& b : report.breadcrumbs) s += b + "\n";
  return s;
}

std::string CrashBody(const CrashReport& report) {
  std::string s = "The app's crash reporter (a Sentry SDK) sent this";
  bool unhandled = std::any_of(report.exceptions.begin(), report.exceptions.end(),
                               [](const CrashException& e) { return !e.handled; });
  if (!report.exceptions.empty()) {
    s += unhandled ? " unhandled error" : " error, which the app caught and reported";
    const std::string& mech = report.exceptions.back().mechanism;
    if (!mech.empty()) s += " (" + mech + ")";
  } else {
    s += " message";
  }
  s += ".\n";
  auto add = [&](const char* label, const std::string& v) {
    if (!v.empty()) s += std::string(label) + ": " + v + "\n";
  };
  add("Message", report.message);
  add("Level", report.level);
  add("Platform", report.platform);
  add("Release", report.release);
  add("Environment", report.environment);
  add("Transaction", report.transaction);
  if (!report.request_url.empty()) {
    add("Request",
        (report.request_method.empty() ? "" : report.request_method + " ") + report.request_url);
  }
  if (!report.tags.empty()) {
    std::string tags;
    for (const auto& [k, v] : report.tags) tags += (tags.empty() ? "" : ", ") + k + "=" + v;
    add("Tags", tags);
  }
  add("First event", report.event_id);
  return s;
}

std::string CommitOfRelease(const std::string& release) {
  std::string_view r = release;
  if (size_t at = r.find_last_of("@-+"); at != std::string_view::npos) {
    std::string_view tail = r.substr(at + 1);
    if (tail.size() >= 7) r = tail;
  }
  if (r.size() < 7 || r.size() > 40) return "";
  bool hex = std::all_of(r.begin(), r.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  });
  bool has_letter = std::any_of(r.begin(), r.end(), [](char c) { return std::isalpha(c); });
  bool has_digit = std::any_of(r.begin(), r.end(), [](char c) { return std::isdigit(c); });
  if (!hex || !(has_letter && has_digit)) return "";
  std::string out(r);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace loom::feedback
