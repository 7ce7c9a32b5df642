// The one paging rule of every list in the HTTP API (docs/api.md, "Lists").
//
// A list is ordered by a key that only grows (an id, or an event's seq). A
// request names `after`, a key (an integer >= 0; 0, the default, is the start),
// and `limit`, the most items a page holds (1 to PageBounds::max_limit, default
// PageBounds::default_limit); the page is the items whose key is greater than
// `after`, in key order. The answer is
//   {"items": [...], "next_after": KEY | null}
// where next_after is the key of the page's last item when the page is full
// (pass it back as `after` for the next page) and null when it is not (the list
// ends there, for now). Stores read a page as keyset SQL on an index
// (`WHERE key > ? ... ORDER BY key LIMIT ?`), never OFFSET, so a page costs the
// same at the end of a long list as at its start.
#pragma once

#include <cstdint>
#include <variant>

#include "common/http_server.h"
#include "common/json.h"

namespace loom {

struct PageBounds {
  int default_limit = 50;
  int max_limit = 500;
};

struct Page {
  int64_t after = 0;
  int limit = 50;
};

// Reads `after` and `limit` from the query of `req`. A bad value (not an
// integer, negative, past the bounds) gives the 400 to answer, naming the field.
std::variant<Page, HttpResponse> ParsePage(const HttpRequest& req, PageBounds bounds = {});

// {"items": items, "next_after": ...}; `last_key` is the key of the last of
// `items` (unused when there are none).
Json PageJson(Json items, const Page& page, int64_t last_key);

}  // namespace loom
