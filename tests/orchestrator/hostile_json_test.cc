// The JSON boundary of loomd, attacked over loopback: every route with a body
// gets every field of the wrong type, overflowing numbers, deep nesting and
// broken documents; every answer must be a 4xx in the {"error": {code, message,
// field}} shape (or a success), and loomd must still answer afterwards. The
// reproductions of issue 13 are here by name.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/json.h"
#include "orchestrator/stores.h"
#include "tests/support/daemon_fixture.h"

namespace loom {
namespace {

std::string Deep(int n) { return std::string(n, '[') + std::string(n, ']'); }

// Values of every JSON type, numbers at and past the edges, deep nesting. Each
// is the text of one JSON value (1e400 is only valid as text).
const std::vector<std::string>& HostileValues() {
  static const std::vector<std::string> kValues = {
      "null", "true", "false", "0", "-1", "1.5", "1e308", "1e400", "-1e400",
      "18446744073709551615", "-9223372036854775809", "\"\"", "\"x\"", "\"\\u0000\"", "[]",
      "{}", "[\"x\"]", "{\"k\": 1e400}", Deep(150000), Deep(200), "{\"a\":" + Deep(130) + "}"};
  return kValues;
}

// Whole bodies that are not a good document.
const std::vector<std::string>& HostileBodies() {
  static const std::vector<std::string> kBodies = {
      "", "{", "[]", "5", "null", "\"s\"", "{\"a\": 1e400}", Deep(150000), "{\"a\":\"\xff\"}",
      std::string(100000, '{'), "{\"x\": " + std::string(60000, '[')};
  return kBodies;
}

struct Route {
  std::string method, target;
  std::vector<std::string> fields;
};

class HostileJsonTest : public testing::DaemonFixture {
 protected:
  void SetUp() override { StartDaemon({{"agents", "0"}}); }

  void ExpectAlive(const std::string& after) {
    auto r = Call("GET", "/healthz", "");
    ASSERT_EQ(r.status, 200) << "loomd died after " << after;
  }

  // An answer to a hostile request: a success, or a 4xx in the error shape.
  void ExpectHandled(const testing::ClientResponse& r, const std::string& what) {
    ASSERT_NE(r.status, 0) << "no answer (loomd died?) to " << what.substr(0, 200);
    EXPECT_LT(r.status, 500) << what.substr(0, 200) << " -> " << r.body;
    if (r.status >= 400) {
      auto j = ParseJson(r.body);
      ASSERT_TRUE(j.ok()) << r.body;
      ASSERT_TRUE(j->contains("error") && (*j)["error"].is_object()) << r.body;
      const Json& e = (*j)["error"];
      EXPECT_TRUE(e.contains("code") && e["code"].is_string()) << r.body;
      EXPECT_TRUE(e.contains("message") && e["message"].is_string()) << r.body;
    }
  }

  int64_t OpenEscalation() {
    auto stores = OrchestratorStores::Open(DatabasePath(dir_.path()));
    EXPECT_TRUE(stores.ok());
    auto id = stores->escalations->Escalate(std::nullopt, "question", "which way?", "orchestrator");
    EXPECT_TRUE(id.ok());
    return id.ok() ? *id : 0;
  }
};

// --- the reproductions ---------------------------------------------------------

TEST_F(HostileJsonTest, FeedbackContextWithAnOverflowingNumberIsA400) {
  auto r = Call("POST", "/v1/feedback", reporter_,
                R"({"kind": "bug", "title": "t", "body": "b", "context": {"k": 1e400}})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("number overflow"), std::string::npos) << r.body;
  ExpectAlive("context 1e400");
}

TEST_F(HostileJsonTest, FeedbackContextNestedDeeplyIsA400) {
  std::string ctx = std::string(150000, '[');
  auto r = Call("POST", "/v1/feedback", reporter_,
                R"({"kind": "bug", "title": "t", "body": "b", "context": {"k": )" + ctx +
                    std::string(150000, ']') + "}}");
  EXPECT_EQ(r.status, 400) << r.body.substr(0, 300);
  EXPECT_NE(r.body.find("nested deeper"), std::string::npos) << r.body.substr(0, 300);
  ExpectAlive("deep context");
}

TEST_F(HostileJsonTest, EscalationAnswerWithAWrongTypeNamesTheField) {
  int64_t id = OpenEscalation();
  auto r = Call("POST", "/v1/escalations/" + std::to_string(id) + "/answer", engineer_,
                R"({"approve": "yes"})");
  EXPECT_EQ(r.status, 400) << r.body;
  auto j = ParseJson(r.body);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ((*j)["error"]["field"], "approve") << r.body;
  EXPECT_EQ((*j)["error"]["code"], "invalid_request") << r.body;
  ExpectAlive("approve: yes");
  // The escalation is still open and answerable.
  r = Call("POST", "/v1/escalations/" + std::to_string(id) + "/answer", engineer_,
           R"({"approve": true})");
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST_F(HostileJsonTest, SecretOfAWrongTypeNamesTheNestedField) {
  int64_t id = OpenEscalation();
  auto r = Call("POST", "/v1/escalations/" + std::to_string(id) + "/answer", engineer_,
                R"({"secret": {"name": "API_KEY", "value": 5}})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ((*ParseJson(r.body))["error"]["field"], "secret.value") << r.body;
}

TEST_F(HostileJsonTest, TokenNameOfAWrongTypeIsA400) {
  auto r = Call("POST", "/v1/tokens", admin_, R"({"role": "reporter", "name": 5})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ((*ParseJson(r.body))["error"]["field"], "name") << r.body;
  ExpectAlive("name: 5");
  r = Call("POST", "/v1/tokens", admin_, R"({"role": "reporter", "name": "ok"})");
  EXPECT_EQ(r.status, 201) << r.body;
}

// --- every route x every field x every hostile value ----------------------------

TEST_F(HostileJsonTest, EveryRouteSurvivesEveryHostileValueInEveryField) {
  int64_t esc = OpenEscalation();
  std::string e = std::to_string(esc);
  const std::vector<Route> routes = {
      {"POST", "/v1/feedback",
       {"kind", "title", "body", "context", "reporter", "app_version", "commit", "url", "logs",
        "stack_trace", "repo"}},
      {"POST", "/v1/tokens", {"role", "name"}},
      {"POST", "/v1/repos", {"name", "path", "test_command", "branch"}},
      {"POST", "/v1/escalations/" + e + "/answer",
       {"text", "approve", "deny", "reason", "secret"}},
      {"POST", "/v1/reviews/1/request-changes", {"comment", "comments"}},
      {"POST", "/v1/reviews/1/reject", {"reason"}},
      {"POST", "/v1/reviews/1/approve", {}},
      {"POST", "/v1/reviews/1/merge", {}},
  };
  // A valid-looking base for each route, so the hostile field is what is judged.
  const Json base = {{"kind", "bug"}, {"title", "t"}, {"body", "b"}, {"role", "reporter"},
                     {"name", "n"},   {"path", "/nonexistent"},      {"test_command", "true"},
                     {"text", "t"}};
  int requests = 0;
  for (const auto& route : routes) {
    for (const auto& body : HostileBodies()) {
      ExpectHandled(Call(route.method, route.target, admin_, body), route.target + " " + body);
      ++requests;
    }
    for (const auto& field : route.fields) {
      for (const auto& value : HostileValues()) {
        // Built as text: 1e400 and deep nesting cannot be a Json value here.
        Json rest = base;
        rest.erase(field);
        std::string text = DumpJson(rest);
        text = "{\"" + field + "\": " + value + (rest.empty() ? "}" : ", " + text.substr(1));
        ExpectHandled(Call(route.method, route.target, admin_, text),
                      route.target + " " + field + "=" + value);
        ++requests;
        if (::testing::Test::HasFatalFailure()) return;
      }
      // The nested secret too.
      if (field == "secret") {
        for (const char* sub : {"name", "value"}) {
          for (const auto& value : HostileValues()) {
            std::string text = std::string("{\"secret\": {\"") + sub + "\": " + value + "}}";
            ExpectHandled(Call(route.method, route.target, admin_, text), text);
            ++requests;
          }
        }
      }
    }
    ExpectAlive(route.target);
  }
  // Paths and queries of the GET routes.
  for (std::string target :
       {"/v1/tasks?limit=1e400", "/v1/tasks?after=-1", "/v1/tasks?state=%00",
        "/v1/tasks/99999999999999999999", "/v1/tasks/1e400/events", "/v1/tasks/1/events?limit=x",
        "/v1/tasks/0/diff", "/v1/reviews/-1", "/v1/escalations/%5B%5B",
        "/v1/escalations?state=1e400", "/v1/feedback?limit=99999999999999999999",
        "/v1/feedback/1e400", "/v1/feedback?after=%7B"}) {
    ExpectHandled(Call("GET", target, admin_), target);
    ++requests;
  }
  ExpectAlive("the walk");
  EXPECT_GT(requests, 500);
}

}  // namespace
}  // namespace loom
