// A blocking HTTP client on libcurl, for the `loom` CLI and (later) the LLM
// client. One HttpClient per thread (thread-compatible); it reuses connections.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
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

  // Like Call, but hands the body to `on_data` as it arrives (for server-sent
  // events) instead of collecting it; returning false from `on_data` aborts
  // the transfer (Cancelled). HttpResult::body stays empty.
  using DataCallback = std::function<bool(std::string_view)>;
  Result<HttpResult> Stream(const std::string& method, const std::string& url,
                            const std::string& body,
                            const std::vector<std::pair<std::string, std::string>>& headers,
                            std::chrono::milliseconds timeout, const DataCallback& on_data);

 private:
  Result<HttpResult> Perform(const std::string& method, const std::string& url,
                             const std::string& body,
                             const std::vector<std::pair<std::string, std::string>>& headers,
                             std::chrono::milliseconds timeout, const DataCallback* on_data);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom
