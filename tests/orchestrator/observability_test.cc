// What an operator watches, through a real loomd: /readyz check by check, the
// request ids of X-Request-Id, and the metrics of a task worked end to end (real
// SQLite, git and bubblewrap, the replay model as the LLM).
#include "orchestrator/observability.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "common/json.h"
#include "orchestrator/replay_model.h"
#include "tests/support/daemon_fixture.h"
#include "tests/support/test_paths.h"

namespace loom {
namespace {

// The value of `series` (a name with its labels, as rendered) in a scrape; -1
// when it is not there.
double Sample(const std::string& scrape, const std::string& series) {
  std::istringstream lines(scrape);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

Json CalcDemo() {
  std::ifstream in(std::string(LOOM_SOURCE_DIR) + "/examples/calc-demo.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseJson(ss.str()).value_or(Json::object());
}

class ObservabilityTest : public testing::DaemonFixture {
 protected:
  // The replay model with the demo's script, loomd with one agent, calc registered.
  void StartWithAgent() {
    auto replay = ReplayModel::Start(CalcDemo()["replay"]);
    ASSERT_TRUE(replay.ok()) << replay.status().ToString();
    replay_ = std::move(*replay);
    StartDaemon({{"llm.url", replay_->url()}, {"llm.retries", "0"}, {"agents", "1"}});
    RegisterCalc();
  }
  std::string Scrape() {
    auto r = testing::HttpCall(daemon_->port(), "GET", "/metrics");
    EXPECT_EQ(r.status, 200);
    return r.body;
  }
  Json Ready(int expected_status) {
    auto r = testing::HttpCall(daemon_->port(), "GET", "/readyz");
    EXPECT_EQ(r.status, expected_status) << r.body;
    return ParseJson(r.body).value_or(Json::object());
  }

  std::unique_ptr<ReplayModel> replay_;
};

TEST_F(ObservabilityTest, ReadyzChecksTheDatabaseAndPoliciesWithoutAgents) {
  StartDaemon({{"agents", "0"}});
  Json ready = Ready(200);
  EXPECT_EQ(ready["status"], "ready");
  EXPECT_EQ(ready["checks"]["database"]["ok"], true);
  EXPECT_EQ(ready["checks"]["policies"]["ok"], true);
  EXPECT_FALSE(ready["checks"].contains("model")) << "no agent, no model needed";
}

TEST_F(ObservabilityTest, ReadyzSaysNotReadyWhenTheModelStopsAnswering) {
  StartWithAgent();
  Json ready = Ready(200);
  EXPECT_EQ(ready["checks"]["model"]["ok"], true) << ready.dump();
  EXPECT_EQ(ready["checks"]["sandbox"]["ok"], true) << ready.dump();

  replay_.reset();                                               // the model server goes away
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // past the reused answer
  Json down = Ready(503);
  EXPECT_EQ(down["status"], "not ready");
  EXPECT_EQ(down["checks"]["model"]["ok"], false);
  EXPECT_FALSE(down["checks"]["model"].value("error", "").empty());
  EXPECT_EQ(down["checks"]["database"]["ok"], true) << "the rest still says what it found";
  // The process is alive all the same.
  EXPECT_EQ(testing::HttpCall(daemon_->port(), "GET", "/healthz").status, 200);
}

TEST_F(ObservabilityTest, ReadyzSaysNotReadyAfterAPolicyReloadFails) {
  StartDaemon({{"agents", "0"}});
  std::filesystem::create_directories(dir_.path() + "/policies");
  std::ofstream(dir_.path() + "/policies/calc.toml") << "this is [not toml\n";
  EXPECT_FALSE(daemon_->ReloadPolicies().ok());  // what SIGHUP does
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  Json down = Ready(503);
  EXPECT_EQ(down["checks"]["policies"]["ok"], false) << down.dump();
}

TEST_F(ObservabilityTest, EveryAnswerNamesItsRequestId) {
  StartDaemon({{"agents", "0"}});
  auto given = testing::HttpCall(daemon_->port(), "GET", "/healthz", "",
                                 {{"X-Request-Id", "trace-42.a_b:c"}});
  EXPECT_EQ(given.headers["X-Request-Id"], "trace-42.a_b:c");
  auto made = Call("GET", "/v1/tasks", engineer_);
  std::string id = made.headers["X-Request-Id"];
  EXPECT_EQ(id.size(), 16u) << id;
  EXPECT_NE(Call("GET", "/v1/tasks", engineer_).headers["X-Request-Id"], id) << "one per request";
  // An implausible one (too long, odd characters) is replaced, not echoed.
  auto odd =
      testing::HttpCall(daemon_->port(), "GET", "/healthz", "", {{"X-Request-Id", "<script>"}});
  EXPECT_EQ(odd.headers["X-Request-Id"].size(), 16u);
  auto refused = Call("GET", "/v1/tasks", "");
  EXPECT_EQ(refused.status, 401);
  EXPECT_FALSE(refused.headers["X-Request-Id"].empty()) << "errors carry it too";
}

TEST_F(ObservabilityTest, ATaskWorkedEndToEndShowsInTheMetrics) {
  StartWithAgent();
  std::string before = Scrape();
  EXPECT_EQ(Sample(before, "loom_tasks{state=\"review\"}"), 0);
  EXPECT_EQ(Sample(before, "loom_agent_slots{state=\"idle\"}"), 1);

  Json demo = CalcDemo();
  Json fb = {{"kind", "bug"},
             {"title", demo["feedback"]["title"]},
             {"body", demo["feedback"]["body"]},
             {"repo", "calc"}};
  auto filed = Call("POST", "/v1/feedback", reporter_, DumpJson(fb));
  ASSERT_EQ(filed.status, 201) << filed.body;
  Json task = WaitSettled(ParseJson(filed.body)->value("id", int64_t{0}));
  ASSERT_EQ(task["state"], "review") << task.dump();

  std::string after = Scrape();
  EXPECT_EQ(Sample(after, "loom_tasks{state=\"review\"}"), 1);
  EXPECT_EQ(Sample(after, "loom_tasks{state=\"queued\"}"), 0);
  EXPECT_EQ(Sample(after, "loom_task_queue_oldest_age_seconds"), 0);
  EXPECT_EQ(Sample(after, "loom_task_events_total{type=\"created\"}"), 1);
  EXPECT_EQ(Sample(after, "loom_task_transitions_total{from=\"queued\",to=\"running\"}"), 1);
  EXPECT_GE(Sample(after, "loom_task_transitions_total{from=\"verifying\",to=\"review\"}"), 1);
  EXPECT_EQ(Sample(after, "loom_task_state_duration_seconds_count{state=\"queued\"}"), 1);
  // Eight model replies, and their tokens as the task counted them.
  EXPECT_EQ(Sample(after, "loom_model_requests_total{outcome=\"ok\"}"), 8);
  EXPECT_EQ(Sample(after, "loom_model_request_duration_seconds_count{outcome=\"ok\"}"), 8);
  EXPECT_EQ(Sample(after, "loom_model_prompt_tokens_total"), task["prompt_tokens"].get<int64_t>());
  // The demo's runs: its test failing before the fix, the suite passing after.
  EXPECT_GE(Sample(after, "loom_sandbox_runs_total{outcome=\"failed\"}"), 1);
  EXPECT_GE(Sample(after, "loom_sandbox_runs_total{outcome=\"passed\"}"), 1);
  EXPECT_EQ(Sample(after, "loom_escalations_open{kind=\"question\"}"), -1) << "none was raised";
  EXPECT_EQ(Sample(after, "loom_agent_slots{state=\"busy\"}"), 0);
  EXPECT_EQ(Sample(after, "loom_webhook_deliveries_pending"), 0);
}

TEST_F(ObservabilityTest, OpenEscalationsAreCountedByKindAndGoBackToZero) {
  Json script = {
      {"conversations",
       {{{"replies",
          {{{"message",
             {{"content", ""},
              {"tool_calls",
               {{{"name", "request_human"},
                 {"arguments", {{"kind", "question"}, {"summary", "Which rounding?"}}}}}}}}}}}}}}};
  auto replay = ReplayModel::Start(script);
  ASSERT_TRUE(replay.ok());
  replay_ = std::move(*replay);
  StartDaemon({{"llm.url", replay_->url()}, {"llm.retries", "0"}, {"agents", "1"}});
  RegisterCalc();
  Json fb = {{"kind", "bug"}, {"title", "rounding"}, {"body", "round it"}, {"repo", "calc"}};
  auto filed = Call("POST", "/v1/feedback", reporter_, DumpJson(fb));
  ASSERT_EQ(filed.status, 201);
  Json task = WaitSettled(ParseJson(filed.body)->value("id", int64_t{0}));
  ASSERT_EQ(task["state"], "blocked") << task.dump();
  std::string scrape = Scrape();
  EXPECT_EQ(Sample(scrape, "loom_escalations_open{kind=\"question\"}"), 1) << scrape;
  EXPECT_GE(Sample(scrape, "loom_escalation_oldest_open_age_seconds{kind=\"question\"}"), 0);
  EXPECT_EQ(Sample(scrape, "loom_tasks{state=\"blocked\"}"), 1);

  auto cancel = Call("POST", "/v1/tasks/" + std::to_string(task["id"].get<int64_t>()) + "/cancel",
                     admin_, "{}");
  ASSERT_EQ(cancel.status, 200) << cancel.body;
  EXPECT_EQ(Sample(Scrape(), "loom_escalations_open{kind=\"question\"}"), 0);
}

}  // namespace
}  // namespace loom
