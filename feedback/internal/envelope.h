// Sentry's ingestion formats crossing the typed boundary: an envelope (a JSON
// header line, then items, each a JSON header line with an optional `length`
// and a payload) or the older store endpoint's bare event. Events are read into
// a scrubbed CrashReport; every other item type is counted and dropped.
//
// The whole body is parsed and checked before anything is returned, so an
// envelope with one bad item stores nothing. Errors: InvalidArgument naming the
// item and field; ResourceExhausted for a size limit (an HTTP 413).
// Thread-safe (no state).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "feedback/crash.h"
#include "feedback/internal/scrub.h"

namespace loom::feedback::internal {

struct EventLimits {
  size_t max_event_bytes = 1 << 20;  // an event item's payload (Sentry's limit: 1 MB)
  size_t max_items = 100;            // items in one envelope
  size_t max_breadcrumbs = 20;       // the last ones are kept
  size_t max_frames = 60;            // per exception; the innermost are kept
  size_t max_exceptions = 10;        // of a chain; the most recent are kept
  ScrubOptions scrub;
};

struct ParsedEnvelope {
  std::string event_id;                // the envelope's, or the event's
  std::optional<CrashReport> event;    // at most one per envelope
  std::map<std::string, int> dropped;  // item type -> how many were dropped
};

// `remote_address` stands in for the user when the event names none (it is
// only ever stored hashed, with `project_id`).
Result<ParsedEnvelope> ParseEnvelope(std::string_view body, const EventLimits& limits,
                                     int64_t project_id, std::string_view remote_address);
// The store endpoint's body: one event.
Result<CrashReport> ParseEvent(std::string_view body, const EventLimits& limits, int64_t project_id,
                               std::string_view remote_address);

}  // namespace loom::feedback::internal
