// The dashboard's and the widget's files (web/*.html, *.css, *.js), embedded into
// the binary at build time (embed.cmake) and served by loomd: "/" is index.html,
// "/<name>" every file, "/widget.js" the feedback widget apps embed.
//
// Every answer carries the headers of SecurityHeaders() (a strict
// Content-Security-Policy without inline script or eval, nosniff, no framing)
// and an ETag, the file's content hash: with "Cache-Control: no-cache" a browser
// revalidates each use and gets a 304 without the body while the file is the
// same, so a new loomd is never mixed with cached files of an old one.
// Everything here is immutable after start: thread-safe.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/http_server.h"

namespace loom::web {

struct StaticFile {
  std::string_view name;          // "widget.js"
  std::string_view content_type;  // "text/javascript; charset=utf-8"
  std::string_view body;
  std::string_view etag;  // a quoted strong validator: "\"0123456789abcdef\""
};

// Every embedded file, by name.
std::span<const StaticFile> StaticFiles();
// nullptr when there is no file `name`.
const StaticFile* FindStaticFile(std::string_view name);

// The headers every page and file carries (see the top of this file).
std::vector<std::pair<std::string, std::string>> SecurityHeaders();

// The answer to a GET of `file`: 200 with the body, or 304 without it when the
// request's If-None-Match names its ETag.
HttpResponse ServeStaticFile(const StaticFile& file, const HttpRequest& request);

// Adds "GET /" (index.html) and "GET /<name>" for every file.
void RegisterStaticRoutes(Router& router);

namespace internal {
// What embed.cmake generates.
struct EmbeddedFile {
  const char* name;
  std::string_view body;
  const char* etag;
};
}  // namespace internal

}  // namespace loom::web
