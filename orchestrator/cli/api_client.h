// How `loom` commands talk to loomd: JSON over HTTP with the bearer token, and
// errors turned into a message plus an exit code scripts can rely on.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

#include "common/json.h"
#include "orchestrator/cli/commands.h"
#include "orchestrator/http_client.h"

namespace loom::cli {

struct ApiReply {
  int exit_code = kExitOk;
  int http_status = 0;
  Json body;
  std::string error;  // set when exit_code != 0
};

// Calls loomd at global.server + path. Maps transport failures to
// kExitUnavailable, 401/403 to kExitAuth, 404 to kExitNotFound, 400/413/422 to
// kExitUsage and other failures to kExitError.
// `timeout`: for the whole exchange.
ApiReply CallApi(const GlobalOptions& global, const std::string& method, const std::string& path,
                 const Json* body = nullptr, const std::string& idempotency_key = "",
                 std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Paging through a list (docs/api.md, "Lists"): `limit` items a page, from the
// key `after`; with `all`, every page to the end.
struct PageOptions {
  int limit = 50;
  int64_t after = 0;
  bool all = true;
};

// GETs the list at `path` (with or without a query of its own) page by page.
// On success the reply's body is {"items": every page's items, "next_after": the
// last page's}; else the first failed reply.
ApiReply GetPages(const GlobalOptions& global, const std::string& path, const PageOptions& page);

// Under the human output of a list: how to ask for the next page, when there is one.
void PrintMore(const Json& body);

// Prints the error of a failed reply to stderr (or as JSON on stdout with --json)
// and returns its exit code.
int ReportFailure(const GlobalOptions& global, const ApiReply& reply);

// The common end of a command: a failed reply is reported and sets `exit_code`;
// a good one is printed as JSON under --json, else handed to `human`.
void PrintReply(const GlobalOptions& global, const ApiReply& reply, int& exit_code,
                const std::function<void(const Json&)>& human);

// A task event for people: one line, "[12] run_tests -> tests passed ...", or with
// `full` the event whole (every text uncut, other data as indented JSON).
std::string FormatEvent(const Json& event, bool full = false);

// Prints task `id`'s events after seq `after` (FormatEvent lines, or JSON lines
// under --json); with `follow`, keeps polling until the task is no longer
// queued, running or verifying. Returns the exit code.
int FollowTaskEvents(const GlobalOptions& global, int64_t id, int64_t after, bool follow,
                     bool full = false);

// `text` made safe to print on a terminal: control characters other than newline
// and tab (ESC, CR, BEL, DEL and the C1 range U+0080..U+009F) appear as \xNN or
// \u00NN, so what a reporter or a model wrote cannot move the cursor, recolour or
// retitle the terminal, or hide a line.
std::string TerminalSafe(std::string_view text);

// Field `name` of a reply object as text for people (TerminalSafe; other JSON as
// JSON); "" when absent or null.
std::string Str(const Json& j, const char* name);

// Percent-encodes a query parameter value.
std::string UrlEncode(const std::string& s);

}  // namespace loom::cli
