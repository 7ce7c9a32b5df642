// An HTTP/1.1 server on loopback or any address, for loomd and loom-infer.
//
// Design: Boost.Beast behind a pimpl (this header includes no Asio). A few I/O
// threads run the connections: keep-alive, a header timeout, an idle timeout, a
// body-size limit answered with 413 before the body is read, and graceful
// shutdown that stops accepting and drains in-flight exchanges.
//
// The handler runs on an I/O thread and must not block for long: it either
// answers at once (exchange->Respond) or keeps the exchange and answers later
// from any thread — after a group commit, or token by token as a stream.
// HttpServer and HttpExchange are thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace loom {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // raw target: "/v1/feedback?kind=bug"
  std::string path;    // percent-decoded path without the query: "/v1/feedback"
  std::map<std::string, std::string> query;   // decoded query parameters
  std::map<std::string, std::string> params;  // filled by Router from "{name}" segments
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string remote_address;

  // Case-insensitive header lookup; empty when absent.
  std::string_view Header(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  static HttpResponse Json(int status, std::string body);
  static HttpResponse Text(int status, std::string body);
};

// One request/response exchange. Exactly one of Respond() or StartStream() must
// be called; if the last reference is dropped without either, the client gets 500.
class HttpExchange {
 public:
  virtual ~HttpExchange() = default;
  virtual void Respond(HttpResponse response) = 0;
  // Sends the status line and headers and switches to chunked transfer encoding.
  virtual void StartStream(int status, std::string content_type,
                           std::vector<std::pair<std::string, std::string>> headers = {}) = 0;
  // Queues one chunk; false once the client has gone (the producer should stop).
  virtual bool Write(std::string data) = 0;
  // Ends the stream.
  virtual void Finish() = 0;
  // True once the client has disconnected.
  virtual bool ClientGone() const = 0;
};

using HttpHandler =
    std::function<void(HttpRequest& request, std::shared_ptr<HttpExchange> exchange)>;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0 picks a free port; see HttpServer::port()
  int io_threads = 2;
  size_t max_body_bytes = 1 << 20;
  size_t max_header_bytes = 16 << 10;
  // Open connections at most; past it the server stops accepting until one closes.
  // 0: half the soft RLIMIT_NOFILE.
  size_t max_connections = 0;
  std::chrono::milliseconds header_timeout{10'000};  // to receive a whole request head
  std::chrono::milliseconds body_timeout{30'000};    // to receive the body after the head
  std::chrono::milliseconds idle_timeout{60'000};    // keep-alive wait for the next request
  // Called after every exchange with the route's label (see Router), status and
  // latency; for metrics. May be empty.
  std::function<void(const HttpRequest&, int status, std::chrono::nanoseconds latency)> on_complete;
};

class HttpServer {
 public:
  // Binds and starts the I/O threads. An Unavailable status names the address
  // when it cannot be bound.
  static Result<std::unique_ptr<HttpServer>> Start(HttpServerOptions options, HttpHandler handler);
  virtual ~HttpServer() = default;

  virtual uint16_t port() const = 0;
  // Stops accepting, lets in-flight exchanges finish for up to `drain`, then
  // closes every connection and joins the threads. Idempotent.
  virtual void Shutdown(std::chrono::milliseconds drain) = 0;
};

// Maps "METHOD /path/{param}" to handlers; answers 404 and 405 as JSON errors.
// Build it before the server starts; Dispatch is then thread-safe.
class Router {
 public:
  void Add(std::string method, std::string pattern, HttpHandler handler);
  void Dispatch(HttpRequest& request, std::shared_ptr<HttpExchange> exchange) const;
  // The pattern that matches `request` ("/v1/feedback/{id}"), for metrics labels;
  // "unmatched" when none does.
  std::string RouteLabel(const HttpRequest& request) const;
  // The method for metrics labels: a standard one, else "other" (a client picks the
  // method: taken raw, it would grow a label set without bound).
  static std::string MethodLabel(const HttpRequest& request);

 private:
  struct Route {
    std::string method;
    std::vector<std::string> segments;
    std::string pattern;
    HttpHandler handler;
  };
  const Route* Match(const HttpRequest& request, bool* path_matched,
                     std::map<std::string, std::string>* params) const;
  std::vector<Route> routes_;
};

// {"error": {"code": code, "message": message, "field": field?}}
std::string ErrorJson(std::string_view code, std::string_view message, std::string_view field = {});
// Maps a Status to its HTTP status and an ErrorJson body.
HttpResponse ErrorResponse(const Status& status, std::string_view field = {});
int HttpStatusFor(StatusCode code);

}  // namespace loom
