// The /v1/feedback API through a real loomd on loopback.
#include <gtest/gtest.h>

#include "common/json.h"
#include "tests/support/daemon_fixture.h"

namespace loom {
namespace {

class FeedbackApiTest : public testing::DaemonFixture {
 protected:
  static std::string Bug(const std::string& title) {
    return DumpJson({{"kind", "bug"}, {"title", title}, {"body", "steps"}});
  }
  Json Body(const testing::ClientResponse& r) { return ParseJson(r.body).value_or(Json()); }
  size_t CountItems() {
    return Body(Call("GET", "/v1/feedback?limit=500", admin_))["items"].size();
  }
};

TEST_F(FeedbackApiTest, SubmitReturns201WithIdAndStatus) {
  StartDaemon();
  auto r = Call("POST", "/v1/feedback", reporter_, Bug("Crash"));
  ASSERT_EQ(r.status, 201) << r.body;
  Json j = Body(r);
  EXPECT_GT(j["id"].get<int64_t>(), 0);
  EXPECT_EQ(j["status"], "new");
  EXPECT_FALSE(j.contains("duplicate_of"));
}

TEST_F(FeedbackApiTest, ADuplicateNamesTheOriginalOnlyToItsOwnerOrEngineers) {
  StartDaemon();
  int64_t first = Body(Call("POST", "/v1/feedback", reporter_, Bug("Crash 1")))["id"];
  // Someone else's item: the reporter hears "duplicate", not which item it is.
  auto r = Call("POST", "/v1/feedback", other_reporter_, Bug("crash 2"));
  EXPECT_EQ(Body(r)["status"], "duplicate") << r.body;
  EXPECT_FALSE(Body(r).contains("duplicate_of")) << r.body;
  int64_t dup = Body(r)["id"];
  EXPECT_FALSE(Body(Call("GET", "/v1/feedback/" + std::to_string(dup), other_reporter_))
                   .contains("duplicate_of"));
  EXPECT_EQ(Body(Call("GET", "/v1/feedback/" + std::to_string(dup), engineer_))["duplicate_of"],
            first);
  // Their own item, and an engineer filing: named.
  EXPECT_EQ(Body(Call("POST", "/v1/feedback", reporter_, Bug("crash 3")))["duplicate_of"], first);
  EXPECT_EQ(Body(Call("POST", "/v1/feedback", engineer_, Bug("crash 4")))["duplicate_of"], first);
  EXPECT_EQ(Body(Call("GET", "/v1/feedback/" + std::to_string(first), admin_))["reporter_count"],
            3);
}

TEST_F(FeedbackApiTest, MissingOrWrongTokenIs401AndNothingIsStored) {
  StartDaemon();
  auto r = Call("POST", "/v1/feedback", "", Bug("x"));
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(Body(r)["error"]["code"], "unauthenticated");
  EXPECT_EQ(Call("POST", "/v1/feedback", "loom_wrong", Bug("x")).status, 401);
  EXPECT_EQ(Call("GET", "/v1/feedback", "").status, 401);
  EXPECT_EQ(CountItems(), 0u);
}

TEST_F(FeedbackApiTest, ReporterCannotCreateTokens) {
  StartDaemon();
  EXPECT_EQ(Call("POST", "/v1/tokens", reporter_, R"({"role":"admin"})").status, 403);
  auto r = Call("POST", "/v1/tokens", admin_, R"({"role":"reporter","name":"app"})");
  ASSERT_EQ(r.status, 201);
  std::string fresh = Body(r)["token"];
  EXPECT_EQ(Call("POST", "/v1/feedback", fresh, Bug("via new token")).status, 201);
}

TEST_F(FeedbackApiTest, ReportersSeeOnlyTheirOwnItems) {
  StartDaemon();
  int64_t mine = Body(Call("POST", "/v1/feedback", reporter_, Bug("Mine")))["id"];
  int64_t theirs =
      Body(Call("POST", "/v1/feedback", other_reporter_, Bug("Theirs, different")))["id"];
  auto list = Body(Call("GET", "/v1/feedback", reporter_))["items"];
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["id"], mine);
  EXPECT_EQ(Call("GET", "/v1/feedback/" + std::to_string(theirs), reporter_).status, 404);
  EXPECT_EQ(Call("GET", "/v1/feedback/" + std::to_string(theirs), engineer_).status, 200);
  EXPECT_EQ(Body(Call("GET", "/v1/feedback", engineer_))["items"].size(), 2u);
}

TEST_F(FeedbackApiTest, EachBadInputGetsAClearErrorAndStoresNothing) {
  StartDaemon();
  struct Case {
    std::string body;
    std::string field;
  };
  std::vector<Case> cases = {
      {R"({"kind":"bug","title":"t",)", ""},                    // malformed JSON
      {R"({"kind":"bug","title":7,"body":"b"})", "title"},      // wrong type
      {R"({"kind":"bug","body":"b"})", "title"},                // missing field
      {R"({"kind":"praise","title":"t","body":"b"})", "kind"},  // unknown kind
      {R"({"kind":"bug","title":")" + std::string(400, 'x') + R"(","body":"b"})", "title"},  // long
      {"{\"kind\":\"bug\",\"title\":\"\xc3\x28\",\"body\":\"b\"}", ""},  // invalid UTF-8
      {R"({"kind":"bug","title":"t","body":"b","extra":1})", "extra"},   // unknown field
      {"", ""},                                                          // empty body
  };
  for (const auto& c : cases) {
    auto r = Call("POST", "/v1/feedback", reporter_, c.body);
    EXPECT_EQ(r.status, 400) << c.body.substr(0, 60);
    Json e = Body(r)["error"];
    EXPECT_EQ(e["code"], "invalid_request") << r.body;
    EXPECT_FALSE(e["message"].get<std::string>().empty());
    if (!c.field.empty()) {
      EXPECT_EQ(e.value("field", ""), c.field) << r.body;
    }
  }
  EXPECT_EQ(CountItems(), 0u);
  EXPECT_EQ(Call("GET", "/healthz", "").status, 200);
}

TEST_F(FeedbackApiTest, BodyOverTheLimitIs413) {
  StartDaemon({{"http.max_body_bytes", "4096"}});
  auto r = Call("POST", "/v1/feedback", reporter_,
                R"({"kind":"bug","title":"t","body":")" + std::string(8000, 'b') + "\"}");
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(Body(r)["error"]["code"], "body_too_large");
  EXPECT_EQ(CountItems(), 0u);
}

TEST_F(FeedbackApiTest, RateLimitAnswers429WithRetryAfter) {
  StartDaemon({{"feedback.rate_per_minute", "6"}, {"feedback.burst", "2"}});
  EXPECT_EQ(Call("POST", "/v1/feedback", reporter_, Bug("a")).status, 201);
  EXPECT_EQ(Call("POST", "/v1/feedback", reporter_, Bug("b different")).status, 201);
  auto r = Call("POST", "/v1/feedback", reporter_, Bug("c other"));
  EXPECT_EQ(r.status, 429);
  ASSERT_TRUE(r.headers.count("Retry-After"));
  EXPECT_GE(std::stoi(r.headers["Retry-After"]), 1);
  // Another token has its own bucket.
  EXPECT_EQ(Call("POST", "/v1/feedback", other_reporter_, Bug("d")).status, 201);
}

TEST_F(FeedbackApiTest, IdempotencyKeyMakesRetriesSafe) {
  StartDaemon();
  auto a = Call("POST", "/v1/feedback", reporter_, Bug("retry me"), {{"Idempotency-Key", "k1"}});
  auto b = Call("POST", "/v1/feedback", reporter_, Bug("retry me"), {{"Idempotency-Key", "k1"}});
  EXPECT_EQ(a.status, 201);
  EXPECT_EQ(b.status, 200);
  EXPECT_EQ(Body(a)["id"], Body(b)["id"]);
  EXPECT_EQ(CountItems(), 1u);
}

TEST_F(FeedbackApiTest, ListFiltersValidatesAndPages) {
  StartDaemon();
  for (int i = 0; i < 3; ++i) {
    Call("POST", "/v1/feedback", reporter_,
         DumpJson(
             {{"kind", "feature"}, {"title", "want " + std::string(i + 1, 'x')}, {"body", "b"}}));
  }
  Call("POST", "/v1/feedback", reporter_, Bug("bug"));
  EXPECT_EQ(Body(Call("GET", "/v1/feedback?kind=feature", admin_))["items"].size(), 3u);
  auto page = Body(Call("GET", "/v1/feedback?limit=2", admin_));
  EXPECT_EQ(page["items"].size(), 2u);
  int64_t next = page["next_after"];
  auto rest = Body(Call("GET", "/v1/feedback?limit=2&after=" + std::to_string(next), admin_));
  EXPECT_EQ(rest["items"].size(), 2u);
  EXPECT_EQ(Call("GET", "/v1/feedback?limit=0", admin_).status, 400);
  EXPECT_EQ(Call("GET", "/v1/feedback?after=abc", admin_).status, 400);
}

TEST_F(FeedbackApiTest, MetricsCountRequestsAndFeedback) {
  StartDaemon();
  Call("POST", "/v1/feedback", reporter_, Bug("m"));
  Call("POST", "/v1/feedback", "", Bug("m"));
  std::string m = Call("GET", "/metrics", "").body;
  EXPECT_NE(
      m.find(R"(loom_http_requests_total{method="POST",route="/v1/feedback",status="201"} 1)"),
      std::string::npos)
      << m;
  EXPECT_NE(m.find(R"(loom_feedback_submitted_total{kind="bug",status="new"} 1)"),
            std::string::npos);
  EXPECT_NE(m.find("loom_http_request_duration_seconds_bucket"), std::string::npos);
}

// A reporter token for the widget in https://app.example's pages, made by an admin
// through the API as `loom token create --origin` does; the token.
std::string WidgetToken(testing::DaemonFixture& f,
                        std::function<testing::ClientResponse(const std::string&)> post) {
  (void)f;
  auto r = post(R"({"role":"reporter","name":"app","origins":["https://App.Example"]})");
  EXPECT_EQ(r.status, 201) << r.body;
  Json body = ParseJson(r.body).value_or(Json::object());
  EXPECT_EQ(body["origins"], Json::array({"https://app.example"}));
  return body.value("token", std::string());
}

TEST_F(FeedbackApiTest, PreflightIsAnsweredForAnAllowedOriginOnly) {
  StartDaemon({{"agents", "0"}});
  WidgetToken(*this, [&](const std::string& b) { return Call("POST", "/v1/tokens", admin_, b); });
  std::map<std::string, std::string> preflight = {
      {"Origin", "https://app.example"},
      {"Access-Control-Request-Method", "POST"},
      {"Access-Control-Request-Headers", "authorization,content-type"}};
  for (const char* path : {"/v1/feedback", "/v1/feedback/7"}) {
    auto ok = Call("OPTIONS", path, "", "", preflight);
    EXPECT_EQ(ok.status, 204) << path;
    EXPECT_EQ(ok.headers["Access-Control-Allow-Origin"], "https://app.example") << path;
    EXPECT_NE(ok.headers["Access-Control-Allow-Headers"].find("Authorization"), std::string::npos);
    EXPECT_NE(ok.headers["Access-Control-Allow-Methods"].find("POST"), std::string::npos);
  }
  preflight["Origin"] = "https://evil.example";
  auto refused = Call("OPTIONS", "/v1/feedback", "", "", preflight);
  EXPECT_EQ(refused.status, 403);
  EXPECT_EQ(refused.headers.count("Access-Control-Allow-Origin"), 0u);
  EXPECT_NE(refused.body.find("https://evil.example"), std::string::npos) << refused.body;
}

TEST_F(FeedbackApiTest, AWidgetTokenFilesFromItsOriginAndIsRefusedFromAnyOther) {
  StartDaemon({{"agents", "0"}});
  std::string token = WidgetToken(
      *this, [&](const std::string& b) { return Call("POST", "/v1/tokens", admin_, b); });
  auto from = [&](const std::string& origin, const std::string& title) {
    return Call("POST", "/v1/feedback", token, Bug(title), {{"Origin", origin}});
  };
  auto ok = from("https://app.example", "Crash from the app");
  ASSERT_EQ(ok.status, 201) << ok.body;
  EXPECT_EQ(ok.headers["Access-Control-Allow-Origin"], "https://app.example");
  int64_t id = Body(ok)["id"];
  auto evil = from("https://evil.example", "Spam from elsewhere");
  EXPECT_EQ(evil.status, 403);
  EXPECT_EQ(evil.headers.count("Access-Control-Allow-Origin"), 0u);
  EXPECT_NE(evil.body.find("https://evil.example"), std::string::npos) << evil.body;
  EXPECT_EQ(CountItems(), 1u);
  // Reading is bound the same way.
  auto read = Call("GET", "/v1/feedback/" + std::to_string(id), token, "",
                   {{"Origin", "https://app.example"}});
  EXPECT_EQ(read.status, 200);
  EXPECT_EQ(read.headers["Access-Control-Allow-Origin"], "https://app.example");
  EXPECT_EQ(Call("GET", "/v1/feedback", token, "", {{"Origin", "https://evil.example"}}).status,
            403);
  // A bad token from an allowed origin is told why (readable by the widget).
  auto bad =
      Call("POST", "/v1/feedback", "loom_nope", Bug("x"), {{"Origin", "https://app.example"}});
  EXPECT_EQ(bad.status, 401);
  EXPECT_EQ(bad.headers["Access-Control-Allow-Origin"], "https://app.example");
}

TEST_F(FeedbackApiTest, EngineerAndAdminTokensAreRefusedFromOtherOrigins) {
  StartDaemon({{"agents", "0"}});
  for (const std::string& token : {engineer_, admin_}) {
    auto r = Call("GET", "/v1/feedback", token, "", {{"Origin", "https://app.example"}});
    EXPECT_EQ(r.status, 403);
    EXPECT_EQ(r.headers.count("Access-Control-Allow-Origin"), 0u);
  }
  auto r = Call("POST", "/v1/tokens", admin_,
                R"({"role":"engineer","name":"x","origins":["https://app.example"]})");
  EXPECT_EQ(r.status, 400) << r.body;
}

TEST_F(FeedbackApiTest, AnAdminSetsATokensOriginsLater) {
  StartDaemon({{"agents", "0"}});
  auto made = Body(Call("POST", "/v1/tokens", admin_, R"({"role":"reporter","name":"app"})"));
  std::string token = made["token"];
  std::string path = "/v1/tokens/" + std::to_string(made["id"].get<int64_t>()) + "/origins";
  auto call = [&] {
    return Call("POST", "/v1/feedback", token, Bug("later"), {{"Origin", "http://localhost:3000"}})
        .status;
  };
  EXPECT_EQ(call(), 403);
  EXPECT_EQ(Call("PUT", path, reporter_, R"({"origins":["http://localhost:3000"]})").status, 403);
  EXPECT_EQ(Call("PUT", path, admin_, R"({"origins":["localhost:3000"]})").status, 400);
  EXPECT_EQ(Call("PUT", path, admin_, R"({"origins":[3000]})").status, 400);
  auto set = Call("PUT", path, admin_, R"({"origins":["http://localhost:3000"]})");
  ASSERT_EQ(set.status, 200) << set.body;
  EXPECT_EQ(Body(set)["origins"], Json::array({"http://localhost:3000"}));
  EXPECT_EQ(call(), 201);
  EXPECT_EQ(Call("PUT", "/v1/tokens/999/origins", admin_, R"({"origins":[]})").status, 404);
}

}  // namespace
}  // namespace loom
