// Serving the embedded web/ files. The table is built once from what
// embed.cmake generated; the Content-Type comes from the name's extension (only
// .html, .css and .js are embedded, and nosniff keeps a browser to that type).
#include "web/static_files.h"

#include <algorithm>

namespace loom::web {
namespace internal {
extern const EmbeddedFile kEmbeddedFiles[];
extern const size_t kEmbeddedFileCount;
}  // namespace internal

namespace {

std::string_view ContentTypeFor(std::string_view name) {
  auto ends = [&](std::string_view ext) {
    return name.size() >= ext.size() && name.substr(name.size() - ext.size()) == ext;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  return "application/octet-stream";
}

std::vector<StaticFile> BuildTable() {
  std::vector<StaticFile> files;
  for (size_t i = 0; i < internal::kEmbeddedFileCount; ++i) {
    const auto& f = internal::kEmbeddedFiles[i];
    files.push_back({f.name, ContentTypeFor(f.name), f.body, f.etag});
  }
  return files;
}

const std::vector<StaticFile>& Table() {
  static const std::vector<StaticFile> kTable = BuildTable();
  return kTable;
}

// True when an If-None-Match header (a list of ETags, or "*") matches `etag`.
bool Matches(std::string_view if_none_match, std::string_view etag) {
  if (if_none_match == "*") return true;
  while (!if_none_match.empty()) {
    size_t comma = if_none_match.find(',');
    std::string_view tag = if_none_match.substr(0, comma);
    while (!tag.empty() && tag.front() == ' ') tag.remove_prefix(1);
    while (!tag.empty() && tag.back() == ' ') tag.remove_suffix(1);
    if (tag.starts_with("W/")) tag.remove_prefix(2);  // weak comparison (RFC 9110 13.1.2)
    if (tag == etag) return true;
    if (comma == std::string_view::npos) break;
    if_none_match.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

std::span<const StaticFile> StaticFiles() { return Table(); }

const StaticFile* FindStaticFile(std::string_view name) {
  const auto& table = Table();
  auto it =
      std::find_if(table.begin(), table.end(), [&](const StaticFile& f) { return f.name == name; });
  return it == table.end() ? nullptr : &*it;
}

std::vector<std::pair<std::string, std::string>> SecurityHeaders() {
  return {
      // Scripts, styles, images and requests from loomd's own origin only: no inline
      // script or style, no eval, no plugins, no <base> rewrite, no framing.
      {"Content-Security-Policy",
       "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'"},
      {"X-Content-Type-Options", "nosniff"},
      {"X-Frame-Options", "DENY"},
      {"Referrer-Policy", "no-referrer"},
      // widget.js is loaded by other origins' pages: allowed to be embedded as a
      // script, and nothing else of loomd's is readable cross-origin without CORS.
      {"Cross-Origin-Resource-Policy", "cross-origin"},
  };
}

HttpResponse ServeStaticFile(const StaticFile& file, const HttpRequest& request) {
  HttpResponse r;
  r.content_type = std::string(file.content_type);
  r.headers = SecurityHeaders();
  r.headers.emplace_back("ETag", std::string(file.etag));
  r.headers.emplace_back("Cache-Control", "no-cache");
  if (Matches(request.Header("If-None-Match"), file.etag)) {
    r.status = 304;
    return r;
  }
  r.status = 200;
  r.body = std::string(file.body);
  return r;
}

void RegisterStaticRoutes(Router& router) {
  for (const StaticFile& file : StaticFiles()) {
    auto serve = [&file](HttpRequest& r, std::shared_ptr<HttpExchange> ex) {
      ex->Respond(ServeStaticFile(file, r));
    };
    router.Add("GET", "/" + std::string(file.name), serve);
    if (file.name == "index.html") router.Add("GET", "/", serve);
  }
}

}  // namespace loom::web
