// Routing over model replicas (orchestrator/model_endpoints.h): affinity,
// spread, failover order and recovery, with an injected clock and a prober
// that answers from a set of live URLs. The LLM client over real servers is in
// llm_client_test.cc and model_replicas_test.cc.
#include "orchestrator/model_endpoints.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "orchestrator/llm_client.h"
#include "tests/fakes/fake_clock.h"

namespace loom {
namespace {

const std::vector<std::string> kUrls = {"http://gpu1:8000/v1", "http://gpu2:8000/v1",
                                        "http://gpu3:8000/v1"};

std::string Key(int task) { return "system prompt\nuser: task " + std::to_string(task); }

// Probes answer Ok for the URLs in `live`.
struct Replicas {
  explicit Replicas(std::vector<std::string> urls = kUrls,
                    std::chrono::milliseconds probe_interval = std::chrono::seconds(10)) {
    for (const auto& u : urls) live.insert(u);
    ModelEndpointsOptions o;
    o.probe_interval = probe_interval;
    o.down_backoff = std::chrono::seconds(1);
    o.max_down_backoff = std::chrono::seconds(8);
    o.clock = &clock;
    endpoints = std::make_unique<ModelEndpoints>(
        std::move(urls),
        [this](const std::string& url) {
          ++probes[url];
          return live.count(url) ? Status::Ok() : Status::Unavailable("cannot reach " + url);
        },
        o);
  }
  FakeClock clock;
  std::set<std::string> live;
  std::map<std::string, int> probes;
  std::unique_ptr<ModelEndpoints> endpoints;
};

TEST(ModelEndpointsTest, TheSameKeyGoesToTheSameReplicaAcrossCallsAndRestarts) {
  Replicas a, b;  // b: loomd after a restart
  for (int task = 0; task < 50; ++task) {
    std::vector<size_t> order = a.endpoints->Route(Key(task));
    ASSERT_EQ(order.size(), 3u);
    EXPECT_EQ(std::set<size_t>(order.begin(), order.end()).size(), 3u) << "a permutation";
    EXPECT_EQ(a.endpoints->Route(Key(task)), order);
    EXPECT_EQ(b.endpoints->Route(Key(task)), order);
  }
}

TEST(ModelEndpointsTest, KeysSpreadEvenlyOverTheReplicas) {
  Replicas r;
  std::map<size_t, int> first;
  for (int task = 0; task < 3000; ++task) ++first[r.endpoints->Route(Key(task))[0]];
  ASSERT_EQ(first.size(), 3u);
  for (const auto& [i, n] : first) {
    EXPECT_GT(n, 850) << r.endpoints->url(i);
    EXPECT_LT(n, 1150) << r.endpoints->url(i);
  }
}

// The order depends on the URLs, not on their place in the list: a list written
// in another order, or with one replica more, keeps most keys where they were.
TEST(ModelEndpointsTest, ReorderingOrAddingAReplicaMovesOnlyItsShare) {
  Replicas r;
  Replicas reordered({kUrls[2], kUrls[0], kUrls[1]});
  std::vector<std::string> four = kUrls;
  four.push_back("http://gpu4:8000/v1");
  Replicas grown(four);
  int moved = 0;
  for (int task = 0; task < 2000; ++task) {
    const std::string& home = r.endpoints->url(r.endpoints->Route(Key(task))[0]);
    EXPECT_EQ(reordered.endpoints->url(reordered.endpoints->Route(Key(task))[0]), home);
    const std::string& now = grown.endpoints->url(grown.endpoints->Route(Key(task))[0]);
    if (now != home) {
      EXPECT_EQ(now, "http://gpu4:8000/v1") << "a key only moves to the new replica";
      ++moved;
    }
  }
  EXPECT_GT(moved, 350);  // about a quarter
  EXPECT_LT(moved, 650);
}

TEST(ModelEndpointsTest, ADownReplicasKeysGoToTheirNextChoiceSpreadOverTheSurvivors) {
  Replicas r;
  r.endpoints->MarkDown(1, "connection refused");
  EXPECT_FALSE(r.endpoints->Snapshot()[1].up);
  EXPECT_EQ(r.endpoints->Snapshot()[1].failed_requests, 1);
  std::map<size_t, int> displaced;
  for (int task = 0; task < 600; ++task) {
    std::vector<size_t> full = r.endpoints->RendezvousOrder(Key(task));
    std::vector<size_t> route = r.endpoints->Route(Key(task));
    ASSERT_EQ(route.size(), 2u);
    EXPECT_EQ(std::count(route.begin(), route.end(), size_t{1}), 0);
    if (full[0] == 1) {
      EXPECT_EQ(route[0], full[1]) << "the next in the key's own order";
      ++displaced[route[0]];
    } else {
      EXPECT_EQ(route[0], full[0]) << "a survivor's keys stay where they were";
    }
  }
  EXPECT_GT(displaced[0], 50);
  EXPECT_GT(displaced[2], 50);
}

TEST(ModelEndpointsTest, WhenEveryReplicaIsDownEachIsTriedInTheKeysOrder) {
  Replicas r;
  for (size_t i = 0; i < 3; ++i) r.endpoints->MarkDown(i, "connection refused");
  EXPECT_EQ(r.endpoints->UpCount(), 0);
  for (int task = 0; task < 20; ++task) {
    EXPECT_EQ(r.endpoints->Route(Key(task)), r.endpoints->RendezvousOrder(Key(task)));
  }
  // One that answers a request is up again at once, before its probe.
  r.endpoints->MarkAnswered(2);
  EXPECT_EQ(r.endpoints->Route(Key(0)), std::vector<size_t>{2});
  EXPECT_EQ(r.endpoints->Snapshot()[2].requests, 1);
}

TEST(ModelEndpointsTest, ADownReplicaIsReprobedWithBackoffAndTakesItsKeysBackWhenItAnswers) {
  Replicas r(kUrls, std::chrono::hours(1));  // the up ones are not probed meanwhile
  EXPECT_EQ(r.endpoints->ProbeDue(), 3) << "every endpoint is probed at first";
  EXPECT_EQ(r.endpoints->ProbeDue(), 0);
  int task = 0;
  while (r.endpoints->Route(Key(task))[0] != 0) ++task;  // a key whose home is gpu1

  r.live.erase(kUrls[0]);
  r.endpoints->MarkDown(0, "connection reset");
  EXPECT_NE(r.endpoints->Route(Key(task))[0], 0u);
  // Probes at +1 s (down_backoff), then 2 s, 4 s, 8 s later (doubled, up to 8 s).
  for (int wait_ms : {1000, 2000, 4000, 8000, 8000}) {
    r.clock.AdvanceMs(wait_ms - 1);
    EXPECT_EQ(r.endpoints->ProbeDue(), 0) << "not yet due after " << wait_ms - 1 << " ms";
    r.clock.AdvanceMs(1);
    int before = r.probes[kUrls[0]];
    EXPECT_EQ(r.endpoints->ProbeDue(), 1) << "due after " << wait_ms << " ms";
    EXPECT_EQ(r.probes[kUrls[0]], before + 1);
    EXPECT_FALSE(r.endpoints->Snapshot()[0].up);
  }
  EXPECT_EQ(r.endpoints->Snapshot()[0].failed_probes, 5);
  EXPECT_NE(r.endpoints->Snapshot()[0].last_error.find("cannot reach"), std::string::npos);

  r.live.insert(kUrls[0]);  // the replica is back
  r.clock.AdvanceMs(8000);
  EXPECT_GE(r.endpoints->ProbeDue(), 1);
  EXPECT_TRUE(r.endpoints->Snapshot()[0].up);
  EXPECT_EQ(r.endpoints->Route(Key(task))[0], 0u) << "its keys come back to it";
  EXPECT_GE(r.endpoints->Snapshot()[0].probe_latency_ms, 0);
}

TEST(ModelEndpointsTest, AnUpReplicaIsProbedEveryIntervalAndAFailedProbeTakesItDown) {
  Replicas r;
  r.endpoints->ProbeDue();
  r.live.erase(kUrls[2]);
  r.clock.AdvanceMs(9999);
  EXPECT_EQ(r.endpoints->ProbeDue(), 0);
  r.clock.AdvanceMs(1);
  EXPECT_EQ(r.endpoints->ProbeDue(), 3);
  EXPECT_EQ(r.endpoints->UpCount(), 2);
  EXPECT_FALSE(r.endpoints->Snapshot()[2].up);
  EXPECT_GT(r.endpoints->Snapshot()[2].since_ms, 0);
}

// The real health thread with the real clock: a down endpoint comes back
// without anyone calling ProbeDue.
TEST(ModelEndpointsTest, TheHealthThreadBringsAReplicaBack) {
  std::atomic<bool> alive{false};
  ModelEndpointsOptions o;
  o.probe_interval = std::chrono::milliseconds(20);
  o.down_backoff = std::chrono::milliseconds(10);
  o.max_down_backoff = std::chrono::milliseconds(40);
  ModelEndpoints endpoints(
      {kUrls[0]},
      [&](const std::string&) { return alive ? Status::Ok() : Status::Unavailable("down"); }, o);
  endpoints.StartHealthChecks();
  auto wait_for = [&](int up) {
    for (int i = 0; i < 500 && endpoints.UpCount() != up; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return endpoints.UpCount() == up;
  };
  EXPECT_TRUE(wait_for(0));
  alive = true;
  EXPECT_TRUE(wait_for(1));
}

TEST(ModelEndpointsTest, TheUrlListIsCheckedWithWhatIsWrong) {
  auto urls = ModelEndpoints::ParseUrls(" http://a:1/v1/ , https://b/v1,http://c:2/v1");
  ASSERT_TRUE(urls.ok()) << urls.status().ToString();
  EXPECT_EQ(*urls, (std::vector<std::string>{"http://a:1/v1", "https://b/v1", "http://c:2/v1"}));
  EXPECT_EQ(ModelEndpoints::ParseUrls("http://a:1/v1")->size(), 1u);
  for (const char* bad : {"", "http://a/v1,", "http://a/v1,,http://b/v1", "http://a/v1,b:1/v1"}) {
    EXPECT_EQ(ModelEndpoints::ParseUrls(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
  Status twice = ModelEndpoints::ParseUrls("http://a/v1,http://a/v1/").status();
  EXPECT_NE(twice.message().find("twice"), std::string::npos) << twice.message();
}

Json Conversation(const std::string& task, int steps) {
  Json m = Json::array({{{"role", "system"}, {"content", "You are an agent."}},
                        {{"role", "user"}, {"content", task}}});
  for (int i = 0; i < steps; ++i) {
    m.push_back({{"role", "assistant"}, {"content", "step " + std::to_string(i)}});
    m.push_back({{"role", "tool"}, {"content", "result"}});
  }
  return m;
}

TEST(AffinityKeyTest, AConversationKeepsItsKeyAsItGrowsAndTasksDiffer) {
  std::string key = AffinityKey(Conversation("fix the crash on save", 0));
  EXPECT_FALSE(key.empty());
  EXPECT_EQ(AffinityKey(Conversation("fix the crash on save", 7)), key);
  EXPECT_NE(AffinityKey(Conversation("fix the average", 0)), key);
  EXPECT_EQ(AffinityKey(Json::object()), "");
}

}  // namespace
}  // namespace loom
