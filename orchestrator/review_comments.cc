// Line comments of a request for changes: validated once at the boundary
// (request or webhook), stored as plain JSON in the "review_comment" event, and
// read back tolerantly when the conversation is rebuilt, since replay must
// survive whatever was stored.
#include "orchestrator/review_comments.h"

#include <sstream>

namespace loom {

Status ValidateLineComment(const LineComment& comment) {
  const std::string& p = comment.path;
  if (p.empty()) return Status::InvalidArgument("path must not be empty");
  if (p.size() > kMaxLineCommentPath) {
    return Status::InvalidArgument("path is longer than " + std::to_string(kMaxLineCommentPath) +
                                   " characters");
  }
  for (unsigned char c : p) {
    if (c < 0x20 || c == 0x7f) {
      return Status::InvalidArgument("path must not contain control characters");
    }
  }
  if (p.front() == '/') {
    return Status::InvalidArgument("path must be relative to the repository root: " + p);
  }
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string::npos) end = p.size();
    if (p.compare(start, end - start, "..") == 0) {
      return Status::InvalidArgument("path must stay inside the repository (no ..): " + p);
    }
    start = end + 1;
  }
  if (comment.line < 1 || comment.line > kMaxLineCommentLine) {
    return Status::InvalidArgument("line must be between 1 and " +
                                   std::to_string(kMaxLineCommentLine));
  }
  if (comment.body.empty()) return Status::InvalidArgument("body must not be empty");
  if (comment.body.size() > kMaxLineCommentBody) {
    return Status::InvalidArgument("body is longer than " + std::to_string(kMaxLineCommentBody) +
                                   " bytes");
  }
  return Status::Ok();
}

JsonReader& ReadLineComments(JsonReader& in, std::string_view name, std::vector<LineComment>* out) {
  const Json* array = nullptr;
  in.Array(name, &array);
  if (!in.ok() || array == nullptr) return in;
  if (array->size() > kMaxLineComments) {
    return in.Fail(name, "at most " + std::to_string(kMaxLineComments) + " line comments");
  }
  std::vector<LineComment> comments;
  for (size_t i = 0; i < array->size(); ++i) {
    std::string where = in.PathOf(name) + "[" + std::to_string(i) + "]";
    JsonReader item((*array)[i], where);
    LineComment c;
    item.String("path", &c.path, Presence::kNonEmpty)
        .Int("line", &c.line, Presence::kRequired, 1, kMaxLineCommentLine)
        .String("body", &c.body, Presence::kNonEmpty)
        .NoOtherMembers();
    if (!item.ok()) {
      in.Include(item);
      return in;
    }
    if (Status s = ValidateLineComment(c); !s.ok()) {
      std::string field = s.message().rfind("path", 0) == 0   ? "path"
                          : s.message().rfind("line", 0) == 0 ? "line"
                                                              : "body";
      item.Fail(field, where + "." + s.message());
      in.Include(item);
      return in;
    }
    comments.push_back(std::move(c));
  }
  *out = std::move(comments);
  return in;
}

Json LineCommentsToJson(const std::vector<LineComment>& comments) {
  Json out = Json::array();
  for (const auto& c : comments) {
    out.push_back({{"path", c.path}, {"line", c.line}, {"body", c.body}});
  }
  return out;
}

std::string ReviewTurnText(const Json& event_data) {
  std::ostringstream text;
  text << "An engineer reviewed your branch and requested changes:\n";
  std::string comment = StringOr(event_data, "comment");
  if (!comment.empty()) text << comment << "\n";
  const Json& comments = MemberOrNull(event_data, "comments");
  if (comments.is_array() && !comments.empty()) {
    text << "Comments on lines of your branch (path:line, then the comment):\n";
    for (const Json& c : comments) {
      std::string path = StringOr(c, "path");
      int64_t line = IntOr(c, "line", 0);
      std::string body = StringOr(c, "body");
      if (path.empty() || line < 1 || body.empty()) continue;
      text << "- " << path << ":" << line << "\n";
      std::istringstream lines(body);
      for (std::string l; std::getline(lines, l);) text << "    " << l << "\n";
    }
  }
  text << "Make them, run the tests and call finish again.";
  return text.str();
}

}  // namespace loom
