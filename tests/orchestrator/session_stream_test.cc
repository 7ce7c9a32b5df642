// The dashboard's server side over loopback against an in-process loomd: sign-in
// with a token for an httpOnly SameSite=Strict cookie that the whole API accepts
// with the token's role, CSRF on every state change made with it, sign-out; and a
// task's event log as Server-Sent Events that resume after Last-Event-ID, send
// heartbeats and end cleanly when loomd stops.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "common/json.h"
#include "common/mutex.h"
#include "orchestrator/event_stream.h"
#include "orchestrator/stores.h"
#include "tests/support/daemon_fixture.h"

namespace loom {
namespace {

namespace net = boost::asio;
using std::chrono::milliseconds;

class SessionTest : public testing::DaemonFixture {
 protected:
  // Signs in with `token`: the cookie's value and the reply.
  std::pair<std::string, Json> SignIn(const std::string& token,
                                      std::map<std::string, std::string> headers = {}) {
    headers["Content-Type"] = "application/json";
    auto r = Call("POST", "/v1/session", "", DumpJson(Json{{"token", token}}), headers);
    EXPECT_EQ(r.status, 201) << r.body;
    std::string cookie = r.headers["Set-Cookie"];
    auto eq = cookie.find('='), semi = cookie.find(';');
    last_set_cookie_ = cookie;
    return {cookie.substr(eq + 1, semi - eq - 1), ParseJson(r.body).value_or(Json::object())};
  }
  testing::ClientResponse WithCookie(const std::string& method, const std::string& target,
                                     const std::string& session, const std::string& csrf = "",
                                     const std::string& body = "") {
    std::map<std::string, std::string> h{{"Cookie", "loom_session=" + session}};
    if (!csrf.empty()) h["X-Loom-CSRF"] = csrf;
    if (!body.empty()) h["Content-Type"] = "application/json";
    return Call(method, target, "", body, h);
  }
  std::string last_set_cookie_;
};

TEST_F(SessionTest, SignInSetsAnHttpOnlyStrictCookieSecureBehindHttps) {
  StartDaemon({{"agents", "0"}});
  auto [session, reply] = SignIn(engineer_);
  EXPECT_EQ(session.size(), 64u);
  EXPECT_NE(last_set_cookie_.find("HttpOnly"), std::string::npos) << last_set_cookie_;
  EXPECT_NE(last_set_cookie_.find("SameSite=Strict"), std::string::npos);
  EXPECT_NE(last_set_cookie_.find("Path=/"), std::string::npos);
  EXPECT_NE(last_set_cookie_.find("Max-Age=43200"), std::string::npos) << "12 h by default";
  EXPECT_EQ(last_set_cookie_.find("Secure"), std::string::npos) << "plain HTTP";
  EXPECT_EQ(reply["role"], "engineer");
  EXPECT_EQ(reply["csrf"].get<std::string>().size(), 64u);
  EXPECT_EQ(DumpJson(reply).find(session), std::string::npos) << "the body never holds the cookie";
  SignIn(engineer_, {{"X-Forwarded-Proto", "https"}});
  EXPECT_NE(last_set_cookie_.find("; Secure"), std::string::npos) << last_set_cookie_;

  auto shown = WithCookie("GET", "/v1/session", session);
  ASSERT_EQ(shown.status, 200) << shown.body;
  EXPECT_EQ(ParseJson(shown.body)->value("csrf", ""), reply["csrf"]);
  EXPECT_EQ(shown.headers["Cache-Control"], "no-store");
}

TEST_F(SessionTest, SignInRefusesBadTokensReportersAndOtherOrigins) {
  StartDaemon({{"agents", "0"}});
  auto bad = Call("POST", "/v1/session", "", R"({"token":"loom_nope"})");
  EXPECT_EQ(bad.status, 401);
  EXPECT_TRUE(bad.headers.count("Set-Cookie") == 0);
  EXPECT_EQ(Call("POST", "/v1/session", "", R"({})").status, 400);
  EXPECT_EQ(Call("POST", "/v1/session", "", DumpJson(Json{{"token", reporter_}})).status, 403);
  auto cross = Call("POST", "/v1/session", "", DumpJson(Json{{"token", engineer_}}),
                    {{"Origin", "https://evil.example"}});
  EXPECT_EQ(cross.status, 403);
  EXPECT_EQ(Call("GET", "/v1/session", "").status, 401);
}

TEST_F(SessionTest, TheCookieActsWithTheTokensRoleAcrossTheApi) {
  StartDaemon({{"agents", "0"}});
  auto [eng, eng_reply] = SignIn(engineer_);
  EXPECT_EQ(WithCookie("GET", "/v1/tasks", eng).status, 200);
  EXPECT_EQ(WithCookie("GET", "/v1/feedback", eng).status, 200);
  EXPECT_EQ(WithCookie("GET", "/v1/tokens", eng).status, 403) << "an engineer is not an admin";
  auto [adm, adm_reply] = SignIn(admin_);
  EXPECT_EQ(WithCookie("GET", "/v1/tokens", adm).status, 200);
  EXPECT_EQ(WithCookie("GET", "/v1/tasks", "0123").status, 401);
  // Another site's page cannot use the cookie (a browser would not even send it:
  // SameSite=Strict), and the origin check refuses it besides.
  auto cross = Call("GET", "/v1/tasks", "", "",
                    {{"Cookie", "loom_session=" + eng}, {"Origin", "https://evil.example"}});
  EXPECT_EQ(cross.status, 403);
}

TEST_F(SessionTest, EveryStateChangeWithTheCookieNeedsTheCsrfToken) {
  StartDaemon({{"agents", "0"}});
  auto [adm, reply] = SignIn(admin_);
  std::string csrf = reply["csrf"];
  std::string body = DumpJson(Json{{"role", "engineer"}, {"name", "made-by-cookie"}});
  auto tokens_before = ParseJson(Call("GET", "/v1/tokens", admin_).body)->at("items").size();
  EXPECT_EQ(WithCookie("POST", "/v1/tokens", adm, "", body).status, 403);
  EXPECT_EQ(WithCookie("POST", "/v1/tokens", adm, std::string(64, '0'), body).status, 403);
  EXPECT_EQ(ParseJson(Call("GET", "/v1/tokens", admin_).body)->at("items").size(), tokens_before)
      << "a refused request changed nothing";
  EXPECT_EQ(WithCookie("POST", "/v1/tokens", adm, csrf, body).status, 201);
  // The orchestrator's routes and the feedback intake alike.
  EXPECT_EQ(WithCookie("POST", "/v1/tasks/1/cancel", adm).status, 403);
  EXPECT_EQ(WithCookie("POST", "/v1/tasks/1/cancel", adm, csrf).status, 404);
  std::string fb = DumpJson(Json{{"kind", "bug"}, {"title", "t"}, {"body", "b"}});
  EXPECT_EQ(WithCookie("POST", "/v1/feedback", adm, "", fb).status, 403);
  EXPECT_EQ(WithCookie("POST", "/v1/feedback", adm, csrf, fb).status, 201);
  // Bearer requests are unchanged.
  EXPECT_EQ(Call("POST", "/v1/tokens", admin_, body).status, 201);
}

TEST_F(SessionTest, SignOutEndsTheSessionAndClearsTheCookie) {
  StartDaemon({{"agents", "0"}});
  auto [eng, reply] = SignIn(engineer_);
  EXPECT_EQ(WithCookie("DELETE", "/v1/session", eng).status, 403) << "sign-out needs CSRF too";
  auto out = WithCookie("DELETE", "/v1/session", eng, reply["csrf"]);
  ASSERT_EQ(out.status, 200) << out.body;
  EXPECT_NE(out.headers["Set-Cookie"].find("loom_session=;"), std::string::npos);
  EXPECT_NE(out.headers["Set-Cookie"].find("Max-Age=0"), std::string::npos);
  EXPECT_EQ(WithCookie("GET", "/v1/tasks", eng).status, 401);
  EXPECT_EQ(WithCookie("GET", "/v1/session", eng).status, 401);
  EXPECT_EQ(Call("GET", "/v1/tasks", engineer_).status, 200) << "the token itself goes on";
}

// A streaming reader of one HTTP response over a raw socket.
class StreamReader {
 public:
  StreamReader(uint16_t port, const std::string& target, const std::string& headers)
      : socket_(ioc_) {
    socket_.connect({net::ip::make_address("127.0.0.1"), port});
    std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + "\r\n";
    net::write(socket_, net::buffer(req));
  }
  // Reads until `text` has arrived (true) or the stream ends or `limit` passes.
  bool ReadUntil(const std::string& text, milliseconds limit = milliseconds(10'000)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    socket_.non_blocking(true);
    while (seen_.find(text) == std::string::npos) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      char buf[4096];
      boost::system::error_code ec;
      size_t n = socket_.read_some(net::buffer(buf), ec);
      if (ec == net::error::would_block) {
        std::this_thread::sleep_for(milliseconds(10));
        continue;
      }
      if (ec) {
        ended_ = true;
        return seen_.find(text) != std::string::npos;
      }
      seen_.append(buf, n);
    }
    return true;
  }
  const std::string& seen() const { return seen_; }
  bool ended() const { return ended_; }

 private:
  net::io_context ioc_;
  net::ip::tcp::socket socket_;
  std::string seen_;
  bool ended_ = false;
};

class StreamTest : public testing::DaemonFixture {
 protected:
  void SetUp() override {
    StartDaemon({{"agents", "0"}});
    RegisterCalc();
    Json body = {{"kind", "bug"}, {"title", "Crash on save"}, {"body", "b"}};
    ASSERT_EQ(Call("POST", "/v1/feedback", reporter_, DumpJson(body)).status, 201);
    auto stores = OrchestratorStores::Open(DatabasePath(dir_.path()));
    ASSERT_TRUE(stores.ok()) << stores.status().ToString();
    stores_ = std::move(*stores);
    auto created = stores_.tasks->Triage();
    ASSERT_TRUE(created.ok() && created->size() == 1u);
    task_ = (*created)[0];
  }
  int64_t Append(const std::string& text) {
    auto seq = stores_.tasks->AppendEvent(task_, EventType::kNote, {{"text", text}});
    EXPECT_TRUE(seq.ok());
    return seq.value_or(0);
  }
  std::string Target() const { return "/v1/tasks/" + std::to_string(task_) + "/stream"; }
  std::string Auth() const { return "Authorization: Bearer " + engineer_ + "\r\n"; }
  OrchestratorStores stores_;
  int64_t task_ = 0;
};

TEST_F(StreamTest, StreamsTheLogThenNewEventsAsTheyAreAppended) {
  int64_t first = Append("before the client came");
  StreamReader r(daemon_->port(), Target(), Auth());
  ASSERT_TRUE(r.ReadUntil("before the client came")) << r.seen();
  EXPECT_NE(r.seen().find("text/event-stream"), std::string::npos);
  EXPECT_NE(r.seen().find("id: " + std::to_string(first) + "\ndata: {"), std::string::npos);
  int64_t live = Append("while it watched");
  ASSERT_TRUE(r.ReadUntil("while it watched")) << r.seen();
  EXPECT_NE(r.seen().find("id: " + std::to_string(live) + "\n"), std::string::npos);
}

TEST_F(StreamTest, AReconnectResumesAfterLastEventIdMissingNothingAndRepeatingNothing) {
  std::vector<int64_t> seqs;
  for (int i = 0; i < 5; ++i) seqs.push_back(Append("event " + std::to_string(i)));
  StreamReader r(daemon_->port(), Target(),
                 Auth() + "Last-Event-ID: " + std::to_string(seqs[2]) + "\r\n");
  ASSERT_TRUE(r.ReadUntil("event 4")) << r.seen();
  EXPECT_EQ(r.seen().find("\"event 2\""), std::string::npos) << r.seen();
  EXPECT_EQ(r.seen().find("\"event 1\""), std::string::npos);
  EXPECT_NE(r.seen().find("\"event 3\""), std::string::npos);
  EXPECT_LT(r.seen().find("\"event 3\""), r.seen().find("\"event 4\""));
  StreamReader bad(daemon_->port(), Target(), Auth() + "Last-Event-ID: x\r\n");
  ASSERT_TRUE(bad.ReadUntil("\r\n\r\n"));
  EXPECT_EQ(bad.seen().rfind("HTTP/1.1 400", 0), 0u) << bad.seen();
}

TEST_F(StreamTest, NeedsAnEngineerAndAKnownTask) {
  StreamReader none(daemon_->port(), Target(), "");
  ASSERT_TRUE(none.ReadUntil("\r\n\r\n"));
  EXPECT_EQ(none.seen().rfind("HTTP/1.1 401", 0), 0u) << none.seen();
  StreamReader reporter(daemon_->port(), Target(), "Authorization: Bearer " + reporter_ + "\r\n");
  ASSERT_TRUE(reporter.ReadUntil("\r\n\r\n"));
  EXPECT_EQ(reporter.seen().rfind("HTTP/1.1 403", 0), 0u) << reporter.seen();
  StreamReader missing(daemon_->port(), "/v1/tasks/999/stream", Auth());
  ASSERT_TRUE(missing.ReadUntil("\r\n\r\n"));
  EXPECT_EQ(missing.seen().rfind("HTTP/1.1 404", 0), 0u) << missing.seen();
}

TEST_F(StreamTest, EndsCleanlyAndQuicklyWhenLoomdStops) {
  Append("one");
  StreamReader r(daemon_->port(), Target(), Auth());
  ASSERT_TRUE(r.ReadUntil("\"one\""));
  auto started = std::chrono::steady_clock::now();
  daemon_->Stop(milliseconds(10'000));
  EXPECT_LT(std::chrono::steady_clock::now() - started, milliseconds(5'000))
      << "the drain did not wait on the stream";
  EXPECT_TRUE(r.ReadUntil("0\r\n\r\n", milliseconds(3'000))) << "the last chunk ends it";
  daemon_.reset();
}

TEST_F(StreamTest, TheFleetShowsSlotsTheQueueTheModelAndTheSandbox) {
  Json fleet = Get("/v1/fleet");
  EXPECT_EQ(fleet["agents"]["slots"], 0);
  EXPECT_EQ(fleet["agents"]["working"], Json::array());
  EXPECT_EQ(fleet["queue"]["queued"], 1) << fleet.dump();
  EXPECT_EQ(fleet["queue"]["review"], 0);
  EXPECT_TRUE(fleet["model"]["healthy"].is_null()) << "no agents, nothing to probe";
  EXPECT_EQ(fleet["sandbox"]["kind"], "none (agents = 0)");
  EXPECT_EQ(Call("GET", "/v1/fleet", reporter_).status, 403);
}

// An exchange that records what is written to it.
class RecordingExchange : public HttpExchange {
 public:
  void Respond(HttpResponse r) override { status = r.status; }
  void StartStream(int s, std::string, std::vector<std::pair<std::string, std::string>>) override {
    status = s;
  }
  bool Write(std::string data) override {
    MutexLock lock(&mu);
    written += data;
    return !gone;
  }
  void Finish() override { finished = true; }
  bool ClientGone() const override { return gone; }
  std::string Written() {
    MutexLock lock(&mu);
    return written;
  }
  int status = 0;
  std::atomic<bool> gone{false}, finished{false};
  Mutex mu;
  std::string written GUARDED_BY(mu);
};

TEST_F(StreamTest, AQuietStreamGetsHeartbeatsAndAGoneClientIsDropped) {
  TaskEventStreams streams(stores_.tasks.get(), {milliseconds(10), milliseconds(50)});
  auto ex = std::make_shared<RecordingExchange>();
  streams.Add(task_, 0, ex);
  EXPECT_EQ(ex->status, 200);
  auto deadline = std::chrono::steady_clock::now() + milliseconds(5'000);
  while (ex->Written().find(": heartbeat\n\n") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_NE(ex->Written().find(": heartbeat\n\n"), std::string::npos) << ex->Written();
  EXPECT_EQ(streams.size(), 1u);
  ex->gone = true;
  while (streams.size() != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(streams.size(), 0u) << "nothing is kept for a client that has gone";
  auto late = std::make_shared<RecordingExchange>();
  streams.Close();
  streams.Add(task_, 0, late);
  EXPECT_EQ(late->status, 503) << "a stream asked for while stopping is refused";
}

}  // namespace
}  // namespace loom
