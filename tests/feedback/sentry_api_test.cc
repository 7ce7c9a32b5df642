// The Sentry ingestion endpoints through a real loomd on loopback with a real
// SQLite file: DSNs, authentication, CORS, rate limits, and a hostile battery
// (bad keys, huge and malformed envelopes, wrong lengths, compression bombs,
// lying Content-Length) that must each get a clear 4xx and store nothing.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/json.h"
#include "tests/support/compress.h"
#include "tests/support/daemon_fixture.h"

namespace loom {
namespace {

// Sends `raw` bytes as they are and reads until the server closes or 3 s pass.
std::string RawExchange(uint16_t port, const std::string& raw, bool half_close) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return "";
  }
  timeval tv{3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)!write(fd, raw.data(), raw.size());
  if (half_close) shutdown(fd, SHUT_WR);
  std::string out;
  char buf[4096];
  while (true) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

class SentryApiTest : public testing::DaemonFixture {
 protected:
  void Start(std::vector<std::pair<std::string, std::string>> settings = {}) {
    settings.emplace_back("agents", "0");
    StartDaemon(settings);
    auto r = Call("POST", "/v1/sentry/dsns", admin_, R"({"repo":"app"})");
    ASSERT_EQ(r.status, 201) << r.body;
    dsn_ = ParseJson(r.body).value_or(Json());
    key_ = dsn_["public_key"];
    project_ = std::to_string(dsn_["project_id"].get<int64_t>());
  }

  static std::string Event(const std::string& type = "TypeError", const std::string& id = "") {
    Json e = {{"level", "error"},
              {"exception",
               {{"values", Json::array({{{"type", type},
                                         {"value", "boom"},
                                         {"stacktrace",
                                          {{"frames", Json::array({{{"function", "f"},
                                                                    {"filename", "a.js"},
                                                                    {"lineno", 3},
                                                                    {"in_app", true}}})}}}}})}}}};
    if (!id.empty()) e["event_id"] = id;
    return DumpJson(e);
  }
  static std::string Envelope(const std::string& event) {
    return "{}\n{\"type\":\"event\",\"length\":" + std::to_string(event.size()) + "}\n" + event +
           "\n";
  }

  testing::ClientResponse Send(const std::string& body, std::map<std::string, std::string> h = {},
                               const std::string& path = "") {
    if (!h.count("X-Sentry-Auth") && !h.count("no-auth")) {
      h["X-Sentry-Auth"] = "Sentry sentry_key=" + key_ + ", sentry_version=7, sentry_client=t/1";
    }
    h.erase("no-auth");
    return testing::HttpCall(daemon_->port(), "POST",
                             path.empty() ? "/api/" + project_ + "/envelope/" : path, body, h);
  }

  size_t Items() {
    auto r = Call("GET", "/v1/feedback?limit=500", admin_);
    return ParseJson(r.body).value_or(Json())["items"].size();
  }

  Json dsn_;
  std::string key_, project_;
};

TEST_F(SentryApiTest, AnAdminCreatesADsnInTheFormSdksTake) {
  Start();
  std::string dsn = dsn_["dsn"];
  EXPECT_EQ(dsn, "http://" + key_ + "@127.0.0.1/" + project_);
  EXPECT_EQ(Call("POST", "/v1/sentry/dsns", reporter_, R"({"repo":"app"})").status, 403);
  EXPECT_EQ(Call("POST", "/v1/sentry/dsns", engineer_, R"({"repo":"app"})").status, 403);
  EXPECT_EQ(Call("POST", "/v1/sentry/dsns", admin_, R"({"repo":7})").status, 400);
  EXPECT_EQ(Call("POST", "/v1/sentry/dsns", admin_, R"({"repo":"app","token_id":1})").status,
            400);  // token 1 is the admin's, not a reporter's
  auto list = ParseJson(Call("GET", "/v1/sentry/dsns", admin_).body).value_or(Json());
  ASSERT_EQ(list["items"].size(), 1u);
  EXPECT_EQ(list["items"][0]["repo"], "app");
}

TEST_F(SentryApiTest, AnEventIsStoredAndAnsweredWithItsId) {
  Start();
  std::string id(32, 'c');
  auto r = Send(Envelope(Event("TypeError", id)));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseJson(r.body).value_or(Json())["id"], id);
  // The key in the query, as the browser SDK sends it; gzip; the store endpoint.
  r = testing::HttpCall(daemon_->port(), "POST",
                        "/api/" + project_ + "/envelope/?sentry_key=" + key_ + "&sentry_version=7",
                        Envelope(Event()), {{"Content-Type", "text/plain;charset=UTF-8"}});
  EXPECT_EQ(r.status, 200) << r.body;
  r = Send(testing::ZlibCompress(Event()), {{"Content-Encoding", "gzip"}},
           "/api/" + project_ + "/store/");
  EXPECT_EQ(r.status, 200) << r.body;
  r = Send(testing::BrotliCompress(Envelope(Event())), {{"Content-Encoding", "br"}});
  EXPECT_EQ(r.status, 200) << r.body;
  // Only sessions: accepted, nothing filed.
  r = Send("{}\n{\"type\":\"session\"}\n{\"sid\":\"x\"}\n");
  EXPECT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(Items(), 1u);
  Json item = ParseJson(Call("GET", "/v1/feedback", admin_).body).value_or(Json())["items"][0];
  EXPECT_EQ(item["crash"]["occurrences"], 4);
  EXPECT_EQ(item["repo"], "app");
  EXPECT_EQ(item["title"], "TypeError: boom");
}

TEST_F(SentryApiTest, HostileRequestsGetClearErrorsAndStoreNothing) {
  Start({{"sentry.max_envelope_bytes", "262144"},
         {"sentry.max_event_bytes", "65536"},
         {"http.max_body_bytes", "131072"}});
  std::string good = Envelope(Event());
  std::string zeros(64 << 20, '\0');
  std::string gzip_bomb = testing::ZlibCompress(zeros);
  std::string brotli_bomb = testing::BrotliCompress(zeros, 1);
  zeros = std::string();
  std::string gz = testing::ZlibCompress(good);
  struct Case {
    std::string name;
    std::string body;
    std::map<std::string, std::string> headers;
    std::string path;
    int status;
  };
  std::string env = "/api/" + project_ + "/envelope/";
  std::vector<Case> cases = {
      {"no key", good, {{"no-auth", ""}}, "", 401},
      {"wrong key",
       good,
       {{"X-Sentry-Auth", "Sentry sentry_key=00112233445566778899aabbccddeeff"}},
       "",
       401},
      {"wrong key in query", good, {{"no-auth", ""}}, env + "?sentry_key=abc", 401},
      {"unknown project", good, {}, "/api/999/envelope/", 404},
      {"project not a number", good, {}, "/api/x1/envelope/", 404},
      {"body over http.max_body_bytes", std::string(200000, '{'), {}, "", 413},
      {"envelope over the decompressed cap",
       testing::ZlibCompress(std::string(300000, ' ')),
       {{"Content-Encoding", "gzip"}},
       "",
       413},
      {"event over sentry.max_event_bytes", Envelope(std::string(120000, ' ')), {}, "", 413},
      {"header not JSON", "nope\n" + good, {}, "", 400},
      {"item header not JSON", "{}\n{type:event}\n{}\n", {}, "", 400},
      {"item without type", "{}\n{\"length\":2}\n{}\n", {}, "", 400},
      {"length past the end", "{}\n{\"type\":\"event\",\"length\":5000}\n{}\n", {}, "", 400},
      {"length short of the payload",
       "{}\n{\"type\":\"event\",\"length\":3}\n" + Event() + "\n",
       {},
       "",
       400},
      {"event not an object", "{}\n{\"type\":\"event\"}\n[1,2]\n", {}, "", 400},
      {"a frame's line is text",
       "{}\n{\"type\":\"event\"}\n{\"exception\":{\"values\":[{\"stacktrace\":{\"frames\":[{"
       "\"lineno\":\"7\"}]}}]}}\n",
       {},
       "",
       400},
      {"two events", good + "{\"type\":\"event\"}\n" + Event() + "\n", {}, "", 400},
      {"nested too deep", "{}\n{\"type\":\"event\"}\n" + std::string(500, '[') + "\n", {}, "", 400},
      {"gzip bomb", gzip_bomb, {{"Content-Encoding", "gzip"}}, "", 413},
      {"brotli bomb", brotli_bomb, {{"Content-Encoding", "br"}}, "", 413},
      {"truncated gzip", gz.substr(0, gz.size() - 10), {{"Content-Encoding", "gzip"}}, "", 400},
      {"gzip that is not", good, {{"Content-Encoding", "gzip"}}, "", 400},
      {"unknown encoding", good, {{"Content-Encoding", "zstd"}}, "", 415},
  };
  for (const auto& c : cases) {
    auto r = Send(c.body, c.headers, c.path);
    EXPECT_EQ(r.status, c.status) << c.name << ": " << r.body.substr(0, 300);
    if (r.status >= 400 && r.status != 413) {
      Json err = ParseJson(r.body).value_or(Json());
      EXPECT_TRUE(err.contains("error") && err.contains("detail")) << c.name << ": " << r.body;
    }
  }
  EXPECT_EQ(Items(), 0u);

  // A Content-Length shorter than the body: the envelope is cut, and refused.
  std::string head = "POST " + env + "?sentry_key=" + key_ +
                     " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: ";
  std::string reply =
      RawExchange(daemon_->port(), head + std::to_string(good.size() - 20) + "\r\n\r\n" + good,
                  /*half_close=*/false);
  EXPECT_NE(reply.find("HTTP/1.1 400"), std::string::npos) << reply;
  // Longer than the body, and the client gives up: no answer is a success.
  reply = RawExchange(daemon_->port(), head + std::to_string(good.size() + 500) + "\r\n\r\n" + good,
                      /*half_close=*/true);
  EXPECT_EQ(reply.find("HTTP/1.1 200"), std::string::npos) << reply;
  EXPECT_EQ(Items(), 0u);

  // And the endpoint still works.
  EXPECT_EQ(Send(good).status, 200);
  EXPECT_EQ(Items(), 1u);
}

TEST_F(SentryApiTest, ARevokedDsnIsRefused) {
  Start();
  ASSERT_EQ(Call("DELETE", "/v1/sentry/dsns/" + project_, admin_).status, 200);
  auto r = Send(Envelope(Event()));
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(Items(), 0u);
}

TEST_F(SentryApiTest, OverTheRateTheAnswerIs429WithSentrysHeaders) {
  Start({{"sentry.rate_per_minute", "1"}, {"sentry.burst", "2"}});
  EXPECT_EQ(Send(Envelope(Event())).status, 200);
  EXPECT_EQ(Send(Envelope(Event())).status, 200);
  auto r = Send(Envelope(Event()));
  ASSERT_EQ(r.status, 429) << r.body;
  ASSERT_TRUE(r.headers.count("Retry-After"));
  int secs = std::stoi(r.headers["Retry-After"]);
  EXPECT_GT(secs, 0);
  EXPECT_EQ(r.headers["X-Sentry-Rate-Limits"], std::to_string(secs) + "::key");
}

TEST_F(SentryApiTest, BrowsersGetCorsHeadersAndListedOriginsOnly) {
  Start();
  auto pre = testing::HttpCall(
      daemon_->port(), "OPTIONS", "/api/" + project_ + "/envelope/", "",
      {{"Origin", "https://app.example"}, {"Access-Control-Request-Method", "POST"}});
  EXPECT_EQ(pre.status, 204);
  EXPECT_EQ(pre.headers["Access-Control-Allow-Origin"], "https://app.example");
  auto r = Send(Envelope(Event()), {{"Origin", "https://app.example"}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["Access-Control-Allow-Origin"], "https://app.example");
  EXPECT_NE(r.headers["Access-Control-Expose-Headers"].find("X-Sentry-Rate-Limits"),
            std::string::npos);
  // Once the DSN's token lists origins, other sites' pages are refused.
  std::string token = std::to_string(dsn_["token_id"].get<int64_t>());
  ASSERT_EQ(Call("PUT", "/v1/tokens/" + token + "/origins", admin_,
                 R"({"origins":["https://app.example"]})")
                .status,
            200);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // the lookup cache
  EXPECT_EQ(Send(Envelope(Event()), {{"Origin", "https://evil.example"}}).status, 403);
  EXPECT_EQ(Send(Envelope(Event()), {{"Origin", "https://app.example"}}).status, 200);
}

}  // namespace
}  // namespace loom
