// A forge's REST API on loopback for tests: records every request (method,
// target, lower-cased headers, body) and answers from a script, in order (a
// 500 when the script has run out). Thread-safe.
#pragma once

#include <gtest/gtest.h>

#include <cctype>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/http_server.h"

namespace loom::testing {

struct Seen {
  std::string method, target, body;
  std::map<std::string, std::string> headers;  // lower-case names
};

struct Reply {
  int status;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers = {};
};

class FakeForge {
 public:
  FakeForge() {
    auto s = HttpServer::Start({}, [this](HttpRequest& req, std::shared_ptr<HttpExchange> ex) {
      Seen seen{req.method, req.target, req.body, {}};
      for (const auto& [k, v] : req.headers) {
        std::string lower = k;
        for (char& c : lower) c = static_cast<char>(std::tolower(c));
        seen.headers[lower] = v;
      }
      Reply reply{500, R"({"message": "no reply scripted"})"};
      {
        std::lock_guard lock(mu_);
        seen_.push_back(seen);
        if (!script_.empty()) {
          reply = script_.front();
          script_.pop_front();
        }
      }
      HttpResponse r = HttpResponse::Json(reply.status, reply.body);
      r.headers = reply.headers;
      ex->Respond(std::move(r));
    });
    EXPECT_TRUE(s.ok());
    server_ = std::move(*s);
  }
  ~FakeForge() { server_->Shutdown(std::chrono::milliseconds(100)); }
  std::string url(const std::string& path = "") const {
    return "http://127.0.0.1:" + std::to_string(server_->port()) + path;
  }
  void Then(Reply r) {
    std::lock_guard lock(mu_);
    script_.push_back(std::move(r));
  }
  std::vector<Seen> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }

 private:
  std::mutex mu_;
  std::deque<Reply> script_;
  std::vector<Seen> seen_;
  std::unique_ptr<HttpServer> server_;
};

}  // namespace loom::testing
