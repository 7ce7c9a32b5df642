// The LLM client against the scripted model server on loopback.
#include "orchestrator/llm_client.h"

#include <gtest/gtest.h>

#include "orchestrator/replay_model.h"
#include "tests/support/subprocess.h"

namespace loom {
namespace {

Json Script() {
  return ParseJson(R"({"conversations": [
    {"match": "flaky", "replies": [
       {"fail": {"status": 503, "times": 2}, "message": {"content": "recovered"}}]},
    {"match": "garbage", "replies": [{"raw": "<html>oops</html>"}]},
    {"match": "hostile-json", "replies": [{"raw": "{\"choices\": [{\"message\": {\"content\": \"hi\"}, \"finish_reason\": 5}], \"usage\": {\"prompt_tokens\": \"x\", \"completion_tokens\": 1e300}}"}]},
    {"match": "hostile-sse", "replies": [{"raw": "data: {\"choices\": [{\"delta\": {\"content\": \"hi\", \"tool_calls\": [{\"index\": 1000000000, \"function\": {\"name\": \"f\"}}, {\"index\": \"x\"}, {\"index\": -1}]}}], \"usage\": {\"prompt_tokens\": \"x\"}}\n\ndata: [DONE]\n\n"}]},
    {"match": "slow", "replies": [{"delay_ms": 1500, "message": {"content": "late"}}]},
    {"replies": [
       {"message": {"content": "", "tool_calls": [{"name": "read_file", "arguments": {"path": "a.py"}}]}},
       {"message": {"content": "All done."}}]}]})")
      .value();
}

Json Messages(const std::string& user, int assistant_turns = 0) {
  Json m = Json::array(
      {{{"role", "system"}, {"content", "sys"}}, {{"role", "user"}, {"content", user}}});
  for (int i = 0; i < assistant_turns; ++i) {
    m.push_back({{"role", "assistant"}, {"content", "x"}});
    m.push_back({{"role", "user"}, {"content", "more"}});
  }
  return m;
}

class LlmClientTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    auto m = ReplayModel::Start(Script());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::move(m).value();
  }
  std::unique_ptr<LlmClient> Client(int retries = 3, int timeout_ms = 5000) {
    LlmOptions o;
    o.url = model_->url();
    o.max_retries = retries;
    o.backoff = std::chrono::milliseconds(10);
    o.timeout = std::chrono::milliseconds(timeout_ms);
    o.stream = GetParam();
    return MakeOpenAiClient(o);
  }
  std::unique_ptr<ReplayModel> model_;
};

TEST_P(LlmClientTest, ParsesToolCallsAndUsage) {
  auto r = Client()->Chat(Messages("fix it"), Json::array());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->tool_calls.size(), 1u);
  EXPECT_EQ(r->tool_calls[0].name, "read_file");
  EXPECT_EQ(ParseJson(r->tool_calls[0].arguments).value()["path"], "a.py");
  EXPECT_GT(r->prompt_tokens, 0);
  auto second = Client()->Chat(Messages("fix it", 1), Json::array());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->content, "All done.");
}

TEST_P(LlmClientTest, RetriesTransientFailures) {
  auto r = Client()->Chat(Messages("flaky"), Json::array());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->content, "recovered");
  EXPECT_EQ(r->attempts, 3);
}

TEST_P(LlmClientTest, GarbageIsCorruptionNotACrash) {
  auto r = Client()->Chat(Messages("garbage"), Json::array());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption) << r.status().ToString();
}

// The model server is as untrusted as the model: wrong types in usage and a
// streamed tool-call index of 10^9 are ignored, never thrown or allocated.
TEST_P(LlmClientTest, HostileFieldsFromTheServerAreIgnoredNotACrash) {
  auto r = Client()->Chat(Messages(GetParam() ? "hostile-sse" : "hostile-json"), Json::array());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->content, "hi");
  EXPECT_EQ(r->prompt_tokens, 0);
  EXPECT_LE(r->tool_calls.size(), 1u);
}

TEST_P(LlmClientTest, SlowServerTimesOutAsUnavailable) {
  auto r = Client(/*retries=*/0, /*timeout_ms=*/300)->Chat(Messages("slow"), Json::array());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
}

TEST_P(LlmClientTest, ServerDownIsUnavailableAfterRetries) {
  LlmOptions o;
  o.url = "http://127.0.0.1:" + std::to_string(testing::FreePort()) + "/v1";
  o.max_retries = 2;
  o.backoff = std::chrono::milliseconds(5);
  o.stream = GetParam();
  auto r = MakeOpenAiClient(o)->Chat(Messages("x"), Json::array());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("3 times"), std::string::npos) << r.status().message();
}

std::string DeadUrl() { return "http://127.0.0.1:" + std::to_string(testing::FreePort()) + "/v1"; }

// Replicas: a call whose replica cannot be reached goes on at once to the next
// in its conversation's order; that replica is marked down and later calls go
// straight to the next one; every reply comes from the first live replica of
// the conversation's order.
TEST_P(LlmClientTest, ACallGoesOnToTheNextReplicaWhenOneCannotBeReached) {
  auto second = ReplayModel::Start(Script());
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  const std::string dead = DeadUrl();
  LlmOptions o;
  o.max_retries = 0;  // failover needs no retry round
  o.stream = GetParam();
  ModelEndpointsOptions health;
  health.probe_interval = std::chrono::hours(1);
  health.down_backoff = std::chrono::hours(1);  // no probe brings `dead` back during the test
  o.endpoints = std::make_shared<ModelEndpoints>(
      std::vector<std::string>{model_->url(), dead, (*second)->url()},
      MakeModelProber(o, std::chrono::seconds(1)), health);
  auto client = MakeOpenAiClient(o);
  int went_on = 0;
  for (int task = 0; task < 24; ++task) {
    Json messages = Messages("fix it " + std::to_string(task));
    std::vector<size_t> order = o.endpoints->RendezvousOrder(AffinityKey(messages));
    size_t expected = order[0] == 1 ? order[1] : order[0];
    bool dead_first = order[0] == 1;
    bool dead_known = !o.endpoints->Snapshot()[1].up;
    for (int step = 0; step < 2; ++step) {
      auto r = client->Chat(Messages("fix it " + std::to_string(task), step), Json::array());
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(r->endpoint, o.endpoints->url(expected)) << "task " << task << " step " << step;
      bool tried_dead = dead_first && !dead_known && step == 0;
      EXPECT_EQ(r->attempts, tried_dead ? 2 : 1) << "task " << task << " step " << step;
      went_on += tried_dead ? 1 : 0;
    }
  }
  EXPECT_EQ(went_on, 1) << "the first call that met the dead replica marked it down";
  std::vector<EndpointStatus> state = o.endpoints->Snapshot();
  EXPECT_FALSE(state[1].up);
  EXPECT_EQ(state[1].failed_requests, 1);
  EXPECT_TRUE(state[0].up && state[2].up);
  EXPECT_EQ(state[0].requests + state[2].requests, 48);
  EXPECT_GT(state[0].requests, 0) << "the tasks spread over both live replicas";
  EXPECT_GT(state[2].requests, 0);
  (*second)->Stop();
}

TEST_P(LlmClientTest, EveryReplicaDownIsUnavailableNamingEachOne) {
  LlmOptions o;
  const std::string a = DeadUrl(), b = DeadUrl();
  o.url = a + "," + b;
  o.max_retries = 1;
  o.backoff = std::chrono::milliseconds(5);
  o.stream = GetParam();
  auto r = MakeOpenAiClient(o)->Chat(Messages("x"), Json::array());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find(a), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find(b), std::string::npos) << r.status().message();
  // Two rounds; the client's health thread may have found one down before the
  // first round, which then tries only the other: 3 or 4 attempts.
  EXPECT_TRUE(r.status().message().find("4 times in 2 rounds") != std::string::npos ||
              r.status().message().find("3 times in 2 rounds") != std::string::npos)
      << r.status().message();
}

// A replica that answers with an error is alive: the call goes on to the next
// one, but the replica is not marked down.
TEST_P(LlmClientTest, AReplicaThatAnswersAnErrorIsNotMarkedDown) {
  LlmOptions o;
  o.max_retries = 3;
  o.backoff = std::chrono::milliseconds(10);
  o.stream = GetParam();
  o.endpoints = std::make_shared<ModelEndpoints>(std::vector<std::string>{model_->url()},
                                                 MakeModelProber(o, std::chrono::seconds(1)));
  auto r = MakeOpenAiClient(o)->Chat(Messages("flaky"), Json::array());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->attempts, 3);
  EXPECT_TRUE(o.endpoints->Snapshot()[0].up);
  EXPECT_EQ(o.endpoints->Snapshot()[0].failed_requests, 0);
}

INSTANTIATE_TEST_SUITE_P(PlainAndStreaming, LlmClientTest, ::testing::Bool());

}  // namespace
}  // namespace loom
