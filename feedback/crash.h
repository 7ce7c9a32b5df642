// Crash reports: what loomd keeps of an event an app's Sentry SDK sent
// (docs/crash-reports.md), after parsing (feedback/internal/envelope.h) and
// scrubbing (feedback/internal/scrub.h). Nothing here holds raw SDK payload:
// every string in a CrashReport was scrubbed, and the user is an opaque id.
//
// Crashes group by CrashFingerprint: the exception types and the in-app frames
// (function and module or file, never line numbers), so the same crash from a
// thousand users is one feedback item. Plain values: thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/json.h"

namespace loom::feedback {

struct CrashFrame {
  std::string filename;  // a URL's path only (no scheme, host or query)
  std::string module;
  std::string function;
  int64_t lineno = 0;  // 0: unknown
  int64_t colno = 0;
  bool in_app = false;
  std::string context_line;
  std::vector<std::string> pre_context, post_context;
};

struct CrashException {
  std::string type;
  std::string value;
  std::string module;
  std::string mechanism;           // "onunhandledrejection", "generic", ...; may be empty
  bool handled = false;            // the SDK's mechanism.handled; unhandled when absent
  std::vector<CrashFrame> frames;  // outermost call first, as Sentry sends them
};

struct CrashReport {
  std::string event_id;  // 32 lower-case hex digits
  std::string platform, level, message, release, environment, transaction;
  std::vector<CrashException> exceptions;  // the one raised first first, as Sentry orders them
  std::vector<std::pair<std::string, std::string>> tags;
  std::vector<std::string> breadcrumbs;  // the last few, oldest first, one line each
  std::string request_method, request_url;
  std::string user;  // an opaque id of the app's user (or of its address); empty if none
  // Filled by the ingestion endpoint from the DSN:
  int64_t project_id = 0;
  int64_t token_id = 0;
  std::string repo;
};

// The grouping key: 32 hex digits.
std::string CrashFingerprint(const CrashReport& report);
// "TypeError: x is undefined" (the last exception), or the message's first line.
std::string CrashTitle(const CrashReport& report);
// The exceptions with their frames, most recent exception last; in-app frames
// marked and shown with their source lines.
std::string FormatStackTrace(const CrashReport& report);
// The breadcrumbs, one per line.
std::string FormatBreadcrumbs(const CrashReport& report);
// What the report says beyond its trace: level, release, environment, request,
// tags, message.
std::string CrashBody(const CrashReport& report);
// The commit a release names, when it looks like one (7 to 40 hex digits, as
// the whole release or after its last '@' or '-'); empty otherwise.
std::string CommitOfRelease(const std::string& release);

}  // namespace loom::feedback
