// An engineer's request for changes: a general comment and line comments on
// files of the task's branch. One shape for every way a request arrives — the
// API (`POST /v1/reviews/{id}/request-changes`), the CLI, and a forge's review
// webhook — stored in the task's "review_comment" event and rendered into the
// agent's next turn from there.
//
// Pure functions over values; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/json_reader.h"
#include "common/status.h"

namespace loom {

// A comment on one line of a file in the task's branch.
struct LineComment {
  std::string path;  // relative to the repository root, '/'-separated
  int64_t line = 0;  // 1-based, in the branch's version of the file
  std::string body;
};

// Limits on what a request may carry (what a person can usefully say in one
// review; the HTTP body limit bounds the rest).
inline constexpr size_t kMaxLineComments = 200;
inline constexpr size_t kMaxLineCommentBody = 16 * 1024;
inline constexpr size_t kMaxLineCommentPath = 1024;
inline constexpr int64_t kMaxLineCommentLine = 10'000'000;

// Checks one line comment: a relative path inside the repository (no leading
// '/', no ".." component, no NUL or control character), a line in
// [1, kMaxLineCommentLine], a non-empty body within kMaxLineCommentBody.
// InvalidArgument names what is wrong.
Status ValidateLineComment(const LineComment& comment);

// Reads member `name` (an array of {"path", "line", "body"} objects, no other
// members) of a request into *out, validated; errors name the element's field
// ("comments[1].line"). Absent or null leaves *out empty.
JsonReader& ReadLineComments(JsonReader& in, std::string_view name, std::vector<LineComment>* out);

// [{"path", "line", "body"}, ...] as stored in the "review_comment" event.
Json LineCommentsToJson(const std::vector<LineComment>& comments);

// The agent's next user turn from a stored "review_comment" event's data
// ({"comment", "comments"}): the general comment, then each line comment as
// `path:line` followed by its text. Tolerant of whatever was stored (an older
// event, a hand edit): members of the wrong shape are left out.
std::string ReviewTurnText(const Json& event_data);

}  // namespace loom
