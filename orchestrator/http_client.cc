#include "orchestrator/http_client.h"

#include <curl/curl.h>

#include <mutex>

namespace loom {
namespace {

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

struct Sink {
  std::string* body;
  const HttpClient::DataCallback* on_data;
  bool aborted = false;
};

size_t WriteBody(char* data, size_t size, size_t n, void* user) {
  auto* sink = static_cast<Sink*>(user);
  if (sink->on_data) {
    if (!(*sink->on_data)(std::string_view(data, size * n))) {
      sink->aborted = true;
      return 0;  // makes curl abort with CURLE_WRITE_ERROR
    }
  } else {
    sink->body->append(data, size * n);
  }
  return size * n;
}

size_t WriteHeader(char* data, size_t size, size_t n, void* user) {
  std::string line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ')) value.erase(0, 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.pop_back();
    static_cast<HttpResult*>(user)->headers.emplace_back(line.substr(0, colon), value);
  }
  return size * n;
}

}  // namespace

struct HttpClient::Impl {
  std::unique_ptr<CURL, CurlDeleter> curl;
};

HttpClient::HttpClient() : impl_(std::make_unique<Impl>()) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  impl_->curl.reset(curl_easy_init());
}

HttpClient::~HttpClient() = default;

Result<HttpResult> HttpClient::Call(const std::string& method, const std::string& url,
                                    const std::string& body,
                                    const std::vector<std::pair<std::string, std::string>>& headers,
                                    std::chrono::milliseconds timeout) {
  return Perform(method, url, body, headers, timeout, nullptr);
}

Result<HttpResult> HttpClient::Stream(
    const std::string& method, const std::string& url, const std::string& body,
    const std::vector<std::pair<std::string, std::string>>& headers,
    std::chrono::milliseconds timeout, const DataCallback& on_data) {
  return Perform(method, url, body, headers, timeout, &on_data);
}

Result<HttpResult> HttpClient::Perform(
    const std::string& method, const std::string& url, const std::string& body,
    const std::vector<std::pair<std::string, std::string>>& headers,
    std::chrono::milliseconds timeout, const DataCallback* on_data) {
  CURL* c = impl_->curl.get();
  if (!c) return Status::Internal("curl_easy_init failed");
  curl_easy_reset(c);
  HttpResult result;
  std::unique_ptr<curl_slist, SlistDeleter> list;
  for (const auto& [k, v] : headers) {
    list.reset(curl_slist_append(list.release(), (k + ": " + v).c_str()));
  }
  list.reset(curl_slist_append(list.release(), "Expect:"));
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method != "GET" || !body.empty()) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteBody);
  Sink sink{&result.body, on_data};
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, WriteHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &result);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    return Status::DeadlineExceeded(url + " did not answer within " +
                                    std::to_string(timeout.count()) + " ms");
  }
  if (sink.aborted) return Status::Cancelled("transfer from " + url + " stopped by the reader");
  if (rc != CURLE_OK) {
    return Status::Unavailable("cannot reach " + url + ": " + curl_easy_strerror(rc));
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  result.status = static_cast<int>(status);
  return result;
}

}  // namespace loom
