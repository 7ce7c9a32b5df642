// HTTP/1.1 server on Boost.Beast.
//
// Each connection is a Session whose handlers all run on one strand, so a session
// needs no lock. A request is read in two phases: the head under header_timeout
// (a slow or silent client is cut off), then — after Content-Length is checked
// against max_body_bytes, answering 413 without reading the body — the body under
// body_timeout. The handler gets an Exchange that it may answer from any thread;
// the answer is posted back to the session's strand. While the handler works the
// session keeps one read outstanding, so it learns when the client goes away
// (ClientGone) and a streaming producer can stop.
//
// Shutdown: stop accepting, close idle connections, let in-flight exchanges
// finish (their responses carry "Connection: close") for up to `drain`, then stop
// the io_context and join.
#include "common/http_server.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <deque>
#include <set>
#include <thread>

#include "common/json.h"
#include "common/log.h"
#include "common/mutex.h"

namespace loom {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr size_t kDrainBufferBytes = 16 << 10;
constexpr auto kLinger = std::chrono::seconds(5);  // a staged close's longest drain
// Accept errors that more tries cannot fix at once (no fds, no memory): back off.
constexpr auto kAcceptBackoffMin = std::chrono::milliseconds(10);
constexpr auto kAcceptBackoffMax = std::chrono::milliseconds(1000);

std::string PercentDecode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%' && i + 2 < s.size()) {
      auto hex = [](char h) -> int {
        if (h >= '0' && h <= '9') return h - '0';
        if (h >= 'a' && h <= 'f') return h - 'a' + 10;
        if (h >= 'A' && h <= 'F') return h - 'A' + 10;
        return -1;
      };
      int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && c == '+' ? ' ' : c);
  }
  return out;
}

void SplitTarget(std::string_view target, std::string* path,
                 std::map<std::string, std::string>* query) {
  size_t q = target.find('?');
  *path = PercentDecode(target.substr(0, q), false);
  if (q == std::string_view::npos) return;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    size_t eq = pair.find('=');
    std::string key = PercentDecode(pair.substr(0, eq), true);
    std::string value =
        eq == std::string_view::npos ? "" : PercentDecode(pair.substr(eq + 1), true);
    if (!key.empty()) (*query)[key] = value;
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
}

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(x) == std::tolower(y);
         });
}

class ServerImpl;

// One TCP connection. All member functions run on the session's strand.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, ServerImpl* server);
  void Start() { ReadHead(); }
  // Closes the connection if it is between requests (used by shutdown).
  void CloseIfIdle();
  void ForceClose();

  // Called (via post) by Exchange.
  void SendResponse(HttpResponse response, std::chrono::steady_clock::time_point started,
                    const HttpRequest* request);
  void SendStreamHead(int status, std::string content_type,
                      std::vector<std::pair<std::string, std::string>> headers);
  void SendChunk(std::string data);
  void SendStreamEnd(std::chrono::steady_clock::time_point started, const HttpRequest* request);

  net::any_io_executor executor() { return stream_.get_executor(); }
  std::atomic<bool> client_gone{false};

 private:
  void ReadHead();
  void OnHead(beast::error_code ec);
  void OnBody(beast::error_code ec);
  void Dispatch();
  void WatchForHangup();
  void RejectAndClose(int status, std::string_view code, std::string_view message);
  void LingerClose();
  void Drain();
  void QueueWrite(std::string bytes, bool close_after);
  void WriteNext();
  void ResumeReading();
  void Finish(int status, std::chrono::steady_clock::time_point started,
              const HttpRequest* request);

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  ServerImpl* server_;
  bool in_exchange_ = false;
  bool keep_alive_ = true;
  bool closed_ = false;
  bool watching_ = false;
  bool first_request_ = true;
  std::deque<std::pair<std::string, bool>> writes_;  // bytes, close after
  bool writing_ = false;
  bool awaiting_watch_ = false;  // the next request waits for the hang-up watch read
  bool linger_ = false;          // unread request bytes may follow: close in stages
  std::unique_ptr<char[]> drain_buf_;
  net::steady_timer idle_timer_;
};

class ExchangeImpl : public HttpExchange {
 public:
  ExchangeImpl(std::shared_ptr<Session> session, HttpRequest request)
      : session_(std::move(session)),
        request_(std::move(request)),
        started_(std::chrono::steady_clock::now()) {}

  ~ExchangeImpl() override {
    if (state_ == State::kNew) {
      Respond(HttpResponse::Json(500, ErrorJson("internal", "the handler did not answer")));
    } else if (state_ == State::kStreaming) {
      Finish();
    }
  }

  HttpRequest& request() { return request_; }

  void Respond(HttpResponse response) override {
    if (state_ != State::kNew) return;
    state_ = State::kDone;
    auto req = RequestLine();
    net::post(session_->executor(),
              [s = session_, r = std::move(response), req, t = started_]() mutable {
                s->SendResponse(std::move(r), t, req.get());
              });
  }

  void StartStream(int status, std::string content_type,
                   std::vector<std::pair<std::string, std::string>> headers) override {
    if (state_ != State::kNew) return;
    state_ = State::kStreaming;
    net::post(session_->executor(), [s = session_, status, ct = std::move(content_type),
                                     h = std::move(headers)]() mutable {
      s->SendStreamHead(status, std::move(ct), std::move(h));
    });
  }

  bool Write(std::string data) override {
    if (state_ != State::kStreaming || session_->client_gone) return false;
    if (data.empty()) return true;
    net::post(session_->executor(),
              [s = session_, d = std::move(data)]() mutable { s->SendChunk(std::move(d)); });
    return true;
  }

  void Finish() override {
    if (state_ != State::kStreaming) return;
    state_ = State::kDone;
    auto req = RequestLine();
    net::post(session_->executor(),
              [s = session_, req, t = started_] { s->SendStreamEnd(t, req.get()); });
  }

  bool ClientGone() const override { return session_->client_gone; }

 private:
  // What on_complete needs to label the exchange, without copying the body.
  std::shared_ptr<HttpRequest> RequestLine() const {
    auto r = std::make_shared<HttpRequest>();
    r->method = request_.method;
    r->target = request_.target;
    r->path = request_.path;
    r->remote_address = request_.remote_address;
    return r;
  }

  enum class State { kNew, kStreaming, kDone };
  std::shared_ptr<Session> session_;
  HttpRequest request_;
  std::chrono::steady_clock::time_point started_;
  // Only one thread drives an exchange at a time (the handler's contract), so
  // state_ needs no lock; it is atomic to make misuse from two threads benign.
  std::atomic<State> state_{State::kNew};
};

class ServerImpl : public HttpServer {
 public:
  ServerImpl(HttpServerOptions options, HttpHandler handler)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        acceptor_(net::make_strand(ioc_)),
        accept_timer_(acceptor_.get_executor()),
        max_connections_(MaxConnections(options_.max_connections)) {}

  ~ServerImpl() override { Shutdown(std::chrono::milliseconds(0)); }

  Status Listen() {
    beast::error_code ec;
    auto address = net::ip::make_address(options_.host, ec);
    if (ec) return Status::InvalidArgument("bad listen address '" + options_.host + "'");
    tcp::endpoint endpoint(address, options_.port);
    std::string where = options_.host + ":" + std::to_string(options_.port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) return Status::Unavailable("cannot listen on " + where + ": " + ec.message());
    port_ = acceptor_.local_endpoint().port();
    Accept();
    int n = std::max(1, options_.io_threads);
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { ioc_.run(); });
    return Status::Ok();
  }

  uint16_t port() const override { return port_; }

  void Shutdown(std::chrono::milliseconds drain) override {
    MutexLock shutdown_lock(&shutdown_mu_);
    if (threads_.empty()) return;
    stopping_ = true;
    net::post(acceptor_.get_executor(), [this] {
      beast::error_code ec;
      acceptor_.close(ec);
      accept_timer_.cancel();
    });
    ForEachSession([](const std::shared_ptr<Session>& s) {
      net::post(s->executor(), [s] { s->CloseIfIdle(); });
    });
    {
      auto deadline = std::chrono::steady_clock::now() + drain;
      MutexLock lock(&mu_);
      while (in_flight_ > 0 && lock.WaitUntil(&drained_, deadline)) {
      }
    }
    ForEachSession([](const std::shared_ptr<Session>& s) {
      net::post(s->executor(), [s] { s->ForceClose(); });
    });
    // Give the force-closes a moment to run, then stop the loop.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ioc_.stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  const HttpServerOptions& options() const { return options_; }
  bool stopping() const { return stopping_; }

  void Handle(HttpRequest& req, std::shared_ptr<HttpExchange> ex) { handler_(req, std::move(ex)); }

  void ExchangeStarted() {
    MutexLock lock(&mu_);
    ++in_flight_;
  }
  void ExchangeFinished() {
    MutexLock lock(&mu_);
    if (--in_flight_ == 0) drained_.notify_all();
  }
  void Forget(Session* s) {
    MutexLock lock(&mu_);
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      auto sp = it->lock();
      if (!sp || sp.get() == s) {
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
    if (accept_paused_ && sessions_.size() < max_connections_ && !stopping_) {
      accept_paused_ = false;
      net::post(acceptor_.get_executor(), [this] {
        if (!stopping_) Accept();
      });
    }
  }

 private:
  // 0 means: half the soft open-files limit (the rest is for the database, the
  // sandbox and the model client), at least 16.
  static size_t MaxConnections(size_t configured) {
    if (configured > 0) return configured;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 4096;
    return std::max<size_t>(16, rl.rlim_cur / 2);
  }

  // The accept loop runs on the acceptor's executor (one accept outstanding at a
  // time). At max_connections it pauses until a session ends (Forget resumes it).
  // Out of fds or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), retrying at once would
  // spin and flood the log: it waits, doubling from 10 ms to 1 s, and logs once per
  // episode with the count of failures when it recovers.
  void Accept() {
    acceptor_.async_accept(net::make_strand(ioc_), [this](beast::error_code ec,
                                                          tcp::socket socket) {
      if (stopping_ || ec == net::error::operation_aborted) return;
      if (ec) {
        bool exhausted = ec == net::error::no_descriptors || ec == net::error::no_buffer_space ||
                         ec == net::error::no_memory || ec.value() == ENFILE;
        if (!exhausted) {
          LOOM_LOG(kWarning) << "accept failed: " << ec.message();
          return Accept();
        }
        if (accept_failures_++ == 0) {
          LOOM_LOG(kWarning) << "accept failed: " << ec.message()
                             << "; backing off until connections or files are released";
        }
        accept_backoff_ = std::clamp(accept_backoff_ * 2, kAcceptBackoffMin, kAcceptBackoffMax);
        accept_timer_.expires_after(accept_backoff_);
        accept_timer_.async_wait([this](beast::error_code wait_ec) {
          if (!wait_ec && !stopping_) Accept();
        });
        return;
      }
      if (accept_failures_ > 0) {
        LOOM_LOG(kInfo) << "accepting again after " << accept_failures_ << " failed accept(s)";
        accept_failures_ = 0;
        accept_backoff_ = std::chrono::milliseconds(0);
      }
      auto session = std::make_shared<Session>(std::move(socket), this);
      bool full;
      {
        MutexLock lock(&mu_);
        sessions_.push_back(session);
        full = sessions_.size() >= max_connections_;
        accept_paused_ = full;
      }
      session->Start();
      if (!full) Accept();
    });
  }

  void ForEachSession(const std::function<void(const std::shared_ptr<Session>&)>& fn) {
    std::vector<std::shared_ptr<Session>> live;
    {
      MutexLock lock(&mu_);
      for (auto& w : sessions_)
        if (auto s = w.lock()) live.push_back(std::move(s));
    }
    for (auto& s : live) fn(s);
  }

  HttpServerOptions options_;
  HttpHandler handler_;
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  net::steady_timer accept_timer_;               // accept loop only
  std::chrono::milliseconds accept_backoff_{0};  // accept loop only
  int64_t accept_failures_ = 0;                  // accept loop only
  const size_t max_connections_;
  uint16_t port_ = 0;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};
  Mutex shutdown_mu_;
  Mutex mu_;
  std::condition_variable drained_;
  int in_flight_ GUARDED_BY(mu_) = 0;
  std::vector<std::weak_ptr<Session>> sessions_ GUARDED_BY(mu_);
  bool accept_paused_ GUARDED_BY(mu_) = false;
};

Session::Session(tcp::socket socket, ServerImpl* server)
    : stream_(std::move(socket)), server_(server), idle_timer_(stream_.get_executor()) {}

void Session::ReadHead() {
  if (closed_) return;
  parser_.emplace();
  parser_->header_limit(static_cast<uint32_t>(server_->options().max_header_bytes));
  parser_->body_limit(server_->options().max_body_bytes);
  stream_.expires_after(first_request_ ? server_->options().header_timeout
                                       : server_->options().idle_timeout);
  http::async_read_header(
      stream_, buffer_, *parser_,
      [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHead(ec); });
}

void Session::OnHead(beast::error_code ec) {
  if (ec) {
    if (ec == http::error::header_limit) {
      return RejectAndClose(431, "header_too_large", "request header fields too large");
    }
    if (ec == http::error::body_limit) {
      return RejectAndClose(413, "body_too_large",
                            "request body exceeds the limit of " +
                                std::to_string(server_->options().max_body_bytes) + " bytes");
    }
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == net::error::operation_aborted || ec == net::error::connection_reset ||
        ec == net::error::eof) {
      return ForceClose();
    }
    return RejectAndClose(400, "bad_request", "malformed HTTP request: " + ec.message());
  }
  first_request_ = false;
  auto& head = parser_->get();
  if (parser_->content_length() && *parser_->content_length() > server_->options().max_body_bytes) {
    return RejectAndClose(413, "body_too_large",
                          "request body of " + std::to_string(*parser_->content_length()) +
                              " bytes exceeds the limit of " +
                              std::to_string(server_->options().max_body_bytes));
  }
  (void)head;
  if (parser_->is_done()) return Dispatch();
  stream_.expires_after(server_->options().body_timeout);
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, size_t) { self->OnBody(ec); });
}

void Session::OnBody(beast::error_code ec) {
  if (ec == http::error::body_limit) {
    return RejectAndClose(413, "body_too_large",
                          "request body exceeds the limit of " +
                              std::to_string(server_->options().max_body_bytes) + " bytes");
  }
  if (ec == beast::error::timeout) {
    return RejectAndClose(408, "timeout", "request body not received in time");
  }
  if (ec) return ForceClose();
  Dispatch();
}

void Session::Dispatch() {
  auto msg = parser_->release();
  HttpRequest req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  SplitTarget(req.target, &req.path, &req.query);
  for (const auto& field : msg) {
    req.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  req.body = std::move(msg.body());
  beast::error_code ec;
  auto remote = stream_.socket().remote_endpoint(ec);
  if (!ec) req.remote_address = remote.address().to_string();
  keep_alive_ = msg.keep_alive() && !server_->stopping();

  in_exchange_ = true;
  server_->ExchangeStarted();
  stream_.expires_never();
  auto exchange = std::make_shared<ExchangeImpl>(shared_from_this(), std::move(req));
  WatchForHangup();
  server_->Handle(exchange->request(), exchange);
}

// Keeps one read outstanding while the handler works: EOF or an error means the
// client left. Bytes that arrive (a pipelined request) stay in buffer_ for the
// next parser.
void Session::WatchForHangup() {
  // With a pipelined request already buffered the hang-up cannot be observed;
  // the buffered request is served next instead.
  if (watching_ || closed_ || buffer_.size() > 0) return;
  watching_ = true;
  stream_.async_read_some(buffer_.prepare(4096),
                          [self = shared_from_this()](beast::error_code ec, size_t n) {
                            self->watching_ = false;
                            if (ec) {
                              if (ec != net::error::operation_aborted) self->client_gone = true;
                              if (self->awaiting_watch_) self->ForceClose();
                              return;
                            }
                            // Stop watching once something arrived: reading more would buffer
                            // without bound.
                            self->buffer_.commit(n);
                            if (self->awaiting_watch_) {
                              self->awaiting_watch_ = false;
                              self->idle_timer_.cancel();
                              self->ReadHead();
                            }
                          });
}

// Starts reading the next request on a keep-alive connection. If the hang-up
// watch read is still pending, it becomes the read that waits for the next
// request, bounded by the idle timeout.
void Session::ResumeReading() {
  if (closed_ || in_exchange_) return;
  if (!watching_) return ReadHead();
  awaiting_watch_ = true;
  idle_timer_.expires_after(server_->options().idle_timeout);
  idle_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (!ec && self->awaiting_watch_) self->ForceClose();
  });
}

void Session::RejectAndClose(int status, std::string_view code, std::string_view message) {
  http::response<http::string_body> res{static_cast<http::status>(status), 11};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::connection, "close");
  res.body() = ErrorJson(code, message);
  res.prepare_payload();
  std::ostringstream os;
  os << res;
  linger_ = true;
  QueueWrite(os.str(), true);
}

// RFC 9112 §9.6: closing with the client's unread bytes in the receive buffer sends a
// reset, which can destroy the response before the client reads it; a client that
// sends its whole body before reading (urllib, requests) then sees a broken pipe
// instead of the 413. So: stop sending, read and discard until the client closes or
// kLinger has passed, then close.
void Session::LingerClose() {
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  if (ec) return ForceClose();
  drain_buf_ = std::make_unique<char[]>(kDrainBufferBytes);
  stream_.expires_after(kLinger);
  Drain();
}

void Session::Drain() {
  stream_.async_read_some(net::buffer(drain_buf_.get(), kDrainBufferBytes),
                          [self = shared_from_this()](beast::error_code ec, size_t) {
                            if (ec) return self->ForceClose();
                            self->Drain();
                          });
}

void Session::QueueWrite(std::string bytes, bool close_after) {
  if (closed_) return;
  writes_.emplace_back(std::move(bytes), close_after);
  if (!writing_) WriteNext();
}

void Session::WriteNext() {
  if (writes_.empty() || closed_) {
    writing_ = false;
    return;
  }
  writing_ = true;
  stream_.expires_after(server_->options().idle_timeout);
  auto buf = net::buffer(writes_.front().first);
  net::async_write(stream_, buf, [self = shared_from_this()](beast::error_code ec, size_t) {
    bool close_after = self->writes_.front().second;
    self->writes_.pop_front();
    if (ec) {
      self->client_gone = true;
      self->writes_.clear();
      self->writing_ = false;
      self->ForceClose();
      return;
    }
    if (close_after) {
      self->writing_ = false;
      if (self->linger_) return self->LingerClose();
      self->ForceClose();
      return;
    }
    self->WriteNext();
  });
}

void Session::Finish(int status, std::chrono::steady_clock::time_point started,
                     const HttpRequest* request) {
  if (server_->options().on_complete && request) {
    server_->options().on_complete(*request, status, std::chrono::steady_clock::now() - started);
  }
  if (in_exchange_) server_->ExchangeFinished();
  in_exchange_ = false;
  parser_.reset();
}

void Session::SendResponse(HttpResponse response, std::chrono::steady_clock::time_point started,
                           const HttpRequest* request) {
  bool keep = keep_alive_ && !server_->stopping() && !client_gone;
  http::response<http::string_body> res{static_cast<http::status>(response.status), 11};
  res.set(http::field::server, "loom");
  res.set(http::field::content_type, response.content_type);
  for (auto& [k, v] : response.headers) res.set(k, v);
  res.keep_alive(keep);
  res.body() = std::move(response.body);
  res.prepare_payload();
  std::ostringstream os;
  os << res;
  Finish(response.status, started, request);
  QueueWrite(os.str(), !keep);
  if (keep) ResumeReading();
}

void Session::SendStreamHead(int status, std::string content_type,
                             std::vector<std::pair<std::string, std::string>> headers) {
  http::response<http::empty_body> res{static_cast<http::status>(status), 11};
  res.set(http::field::server, "loom");
  res.set(http::field::content_type, content_type);
  res.set(http::field::cache_control, "no-cache");
  for (auto& [k, v] : headers) res.set(k, v);
  res.chunked(true);
  res.keep_alive(false);
  std::ostringstream os;
  os << res.base();
  QueueWrite(os.str(), false);
}

void Session::SendChunk(std::string data) {
  char len[32];
  std::snprintf(len, sizeof(len), "%zx\r\n", data.size());
  QueueWrite(std::string(len) + data + "\r\n", false);
}

void Session::SendStreamEnd(std::chrono::steady_clock::time_point started,
                            const HttpRequest* request) {
  Finish(200, started, request);
  QueueWrite("0\r\n\r\n", true);
}

void Session::CloseIfIdle() {
  if (!in_exchange_ && !writing_) ForceClose();
}

void Session::ForceClose() {
  if (closed_) return;
  closed_ = true;
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
  stream_.close();
  idle_timer_.cancel();
  if (in_exchange_) {
    client_gone = true;
    server_->ExchangeFinished();
    in_exchange_ = false;
  }
  server_->Forget(this);
}

}  // namespace

std::string_view HttpRequest::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (IEquals(k, name)) return v;
  }
  return {};
}

HttpResponse HttpResponse::Json(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

HttpResponse HttpResponse::Text(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::move(body);
  return r;
}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options,
                                                      HttpHandler handler) {
  auto server = std::make_unique<ServerImpl>(std::move(options), std::move(handler));
  LOOM_RETURN_IF_ERROR(server->Listen());
  return std::unique_ptr<HttpServer>(std::move(server));
}

std::string ErrorJson(std::string_view code, std::string_view message, std::string_view field) {
  Json err = {{"code", code}, {"message", message}};
  if (!field.empty()) err["field"] = field;
  return DumpJson(Json{{"error", err}});
}

int HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kUnauthenticated:
      return 401;
    case StatusCode::kPermissionDenied:
      return 403;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kAlreadyExists:
      return 409;
    case StatusCode::kFailedPrecondition:
      return 409;
    case StatusCode::kResourceExhausted:
      return 429;
    case StatusCode::kCancelled:
      return 499;
    case StatusCode::kUnimplemented:
      return 501;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

HttpResponse ErrorResponse(const Status& status, std::string_view field) {
  std::string code;
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
      code = "invalid_request";
      break;
    case StatusCode::kUnauthenticated:
      code = "unauthenticated";
      break;
    case StatusCode::kPermissionDenied:
      code = "forbidden";
      break;
    case StatusCode::kNotFound:
      code = "not_found";
      break;
    case StatusCode::kAlreadyExists:
      code = "conflict";
      break;
    case StatusCode::kFailedPrecondition:
      code = "failed_precondition";
      break;
    case StatusCode::kResourceExhausted:
      code = "rate_limited";
      break;
    case StatusCode::kUnavailable:
      code = "unavailable";
      break;
    case StatusCode::kDeadlineExceeded:
      code = "timeout";
      break;
    default:
      code = "internal";
      break;
  }
  return HttpResponse::Json(HttpStatusFor(status.code()), ErrorJson(code, status.message(), field));
}

// ---- Router ----

namespace {
std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) out.emplace_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}
}  // namespace

void Router::Add(std::string method, std::string pattern, HttpHandler handler) {
  routes_.push_back({std::move(method), SplitPath(pattern), pattern, std::move(handler)});
}

const Router::Route* Router::Match(const HttpRequest& request, bool* path_matched,
                                   std::map<std::string, std::string>* params) const {
  auto segs = SplitPath(request.path);
  *path_matched = false;
  for (const auto& r : routes_) {
    if (r.segments.size() != segs.size()) continue;
    std::map<std::string, std::string> p;
    bool ok = true;
    for (size_t i = 0; i < segs.size() && ok; ++i) {
      const auto& want = r.segments[i];
      if (want.size() > 2 && want.front() == '{' && want.back() == '}') {
        p[want.substr(1, want.size() - 2)] = segs[i];
      } else if (want != segs[i]) {
        ok = false;
      }
    }
    if (!ok) continue;
    *path_matched = true;
    if (r.method == request.method || (r.method == "GET" && request.method == "HEAD")) {
      if (params) *params = std::move(p);
      return &r;
    }
  }
  return nullptr;
}

void Router::Dispatch(HttpRequest& request, std::shared_ptr<HttpExchange> exchange) const {
  bool path_matched = false;
  const Route* route = Match(request, &path_matched, &request.params);
  if (route) return route->handler(request, std::move(exchange));
  if (path_matched) {
    return exchange->Respond(HttpResponse::Json(
        405,
        ErrorJson("method_not_allowed", request.method + " is not allowed on " + request.path)));
  }
  exchange->Respond(
      HttpResponse::Json(404, ErrorJson("not_found", "no route for " + request.path)));
}

std::string Router::MethodLabel(const HttpRequest& request) {
  for (const char* m : {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}) {
    if (request.method == m) return m;
  }
  return "other";
}

std::string Router::RouteLabel(const HttpRequest& request) const {
  bool path_matched = false;
  const Route* route = Match(request, &path_matched, nullptr);
  return route ? route->pattern : "unmatched";
}

}  // namespace loom
