// The paging rule of the API's lists. See paging.h.
#include "common/paging.h"

#include <charconv>
#include <limits>
#include <optional>
#include <string>

namespace loom {
namespace {

// The query parameter `name` as an integer in [min, max]; nullopt when absent
// or empty; false in `*ok` when present and not such an integer.
std::optional<int64_t> QueryInteger(const HttpRequest& req, const char* name, int64_t min,
                                    int64_t max, bool* ok) {
  *ok = true;
  auto it = req.query.find(name);
  if (it == req.query.end() || it->second.empty()) return std::nullopt;
  const std::string& s = it->second;
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < min || v > max) {
    *ok = false;
    return std::nullopt;
  }
  return v;
}

}  // namespace

std::variant<Page, HttpResponse> ParsePage(const HttpRequest& req, PageBounds bounds) {
  Page page;
  page.limit = bounds.default_limit;
  bool ok = true;
  if (auto after = QueryInteger(req, "after", 0, std::numeric_limits<int64_t>::max(), &ok))
    page.after = *after;
  if (!ok) {
    return ErrorResponse(
        Status::InvalidArgument("after must be an integer >= 0: 0 (the default) for the first "
                                "page, else the next_after of the page before"),
        "after");
  }
  if (auto limit = QueryInteger(req, "limit", 1, bounds.max_limit, &ok)) {
    page.limit = static_cast<int>(*limit);
  }
  if (!ok) {
    return ErrorResponse(Status::InvalidArgument("limit must be an integer from 1 to " +
                                                 std::to_string(bounds.max_limit)),
                         "limit");
  }
  return page;
}

Json PageJson(Json items, const Page& page, int64_t last_key) {
  bool full = items.is_array() && items.size() == static_cast<size_t>(page.limit);
  return Json{{"items", std::move(items)}, {"next_after", full ? Json(last_key) : Json()}};
}

}  // namespace loom
