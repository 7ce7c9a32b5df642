// A blocking HTTP client on libcurl, for the `loom` CLI and (later) the LLM
// client. One HttpClient per thread (thread-compatible); it reuses connections.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace loom {

struct HttpResult {
  int status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

class HttpClient {
 public:
  HttpClient();
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Unavailable when the server cannot be reached, DeadlineExceeded on timeout;
  // any HTTP status (including 4xx/5xx) is a successful call.
  Result<HttpResult> Call(const std::string& method, const std::string& url,
                          const std::string& body,
                          const std::vector<std::pair<std::string, std::string>>& headers,
                          std::chrono::milliseconds timeout = std::chrono::seconds(30));

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom
