// loomd's LLM client over three real loom-infer replicas (the CPU backend and
// the tiny-llama fixture) on loopback, one of them killed with SIGKILL while
// conversations are calling: every call still succeeds, the survivors' tasks
// stay on their replica, and the dead one's tasks move to the next replica of
// their own rendezvous order and stay there.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>

#include "orchestrator/llm_client.h"
#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_paths.h"

namespace loom {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Replica {
  pid_t pid = -1;
  std::string url;
  std::string log;
};

// Starts loom-infer on a port of its choosing; the URL it says it serves on.
Replica StartLoomInfer(const std::string& log) {
  Replica r;
  r.log = log;
  r.pid = testing::Spawn({std::string(LOOM_BIN_DIR) + "/loom-infer", "--model",
                          std::string(LOOM_FIXTURES_DIR) + "/tiny-llama", "--port", "0",
                          "--threads", "1", "--served-model-name", "tiny"},
                         log);
  const std::regex serving(R"(serving \S+ on (http://127\.0\.0\.1:\d+))");
  std::smatch m;
  for (int i = 0; i < 800 && r.url.empty(); ++i) {
    std::string text = ReadAll(log);
    if (std::regex_search(text, m, serving)) {
      r.url = m[1].str() + "/v1";
    } else {
      ::usleep(25000);
    }
  }
  return r;
}

const char kSystem[] =
    "You are a coding agent working on a small Python project. Read the files you need, "
    "change as little as you can, and run the tests before you finish.";

Json Conversation(int task, int steps) {
  Json m = Json::array({{{"role", "system"}, {"content", kSystem}},
                        {{"role", "user"},
                         {"content", "Task " + std::to_string(task) +
                                         ": the report page shows a wrong average for list " +
                                         std::to_string(task * 7919)}}});
  for (int i = 0; i < steps; ++i) {
    m.push_back({{"role", "assistant"}, {"content", "step " + std::to_string(i)}});
    m.push_back({{"role", "user"}, {"content", "go on"}});
  }
  return m;
}

class ModelReplicasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) {
      replicas_.push_back(StartLoomInfer(dir_.File("infer" + std::to_string(i) + ".log")));
      ASSERT_FALSE(replicas_.back().url.empty()) << ReadAll(replicas_.back().log);
    }
  }
  void TearDown() override {
    for (Replica& r : replicas_) {
      if (r.pid > 0) testing::KillAndWait(r.pid, SIGTERM);
    }
  }
  testing::TempDir dir_;
  std::vector<Replica> replicas_;
};

struct Call {
  int step;
  bool after_kill;  // started after the victim was killed
  std::string endpoint;
};

TEST_F(ModelReplicasTest, EveryCallSucceedsWhenAReplicaIsKilledAndTheSurvivorsKeepTheirTasks) {
  constexpr int kTasks = 9;
  LlmOptions o;
  o.url = replicas_[0].url + "," + replicas_[1].url + "," + replicas_[2].url;
  o.max_tokens = 12;
  o.max_retries = 2;
  o.backoff = std::chrono::milliseconds(50);
  o.timeout = std::chrono::seconds(30);
  ModelEndpointsOptions health;
  // Only the requests find the dead replica: no probe beats them to it.
  health.probe_interval = std::chrono::hours(1);
  health.down_backoff = std::chrono::hours(1);
  auto urls = ModelEndpoints::ParseUrls(o.url);
  ASSERT_TRUE(urls.ok());
  o.endpoints =
      std::make_shared<ModelEndpoints>(*urls, MakeModelProber(o, std::chrono::seconds(2)), health);
  // Plain and streamed replies over the same replicas: even tasks, odd tasks.
  auto plain = MakeOpenAiClient(o);
  o.stream = true;
  auto streamed = MakeOpenAiClient(o);
  auto client = [&](int task) { return task % 2 ? streamed.get() : plain.get(); };

  // Each task's home: the first replica of its rendezvous order.
  std::vector<std::vector<size_t>> order(kTasks);
  std::map<size_t, int> homed;
  for (int t = 0; t < kTasks; ++t) {
    order[t] = o.endpoints->RendezvousOrder(AffinityKey(Conversation(t, 0)));
    ++homed[order[t][0]];
  }
  size_t victim = 0;
  for (const auto& [i, n] : homed) {
    if (n > homed[victim]) victim = i;
  }
  ASSERT_GE(homed[victim], 1);

  std::mutex mu;
  std::vector<std::vector<Call>> calls(kTasks);
  std::vector<std::string> errors;
  std::atomic<bool> killed{false};
  std::atomic<int> warmed{0};  // tasks that made a call before the kill
  std::vector<std::thread> threads;
  int64_t cached = 0;
  for (int t = 0; t < kTasks; ++t) {
    threads.emplace_back([&, t] {
      // Calls until three started after the kill; the conversation grows and
      // starts over (same task, same key) to stay within the model's context.
      int after = 0;
      for (int call = 0; call < 400 && after < 3; ++call) {
        int step = call % 6;
        bool after_kill = killed;
        auto r = client(t)->Chat(Conversation(t, step), Json::array());
        std::lock_guard<std::mutex> lock(mu);
        if (!r.ok()) {
          errors.push_back("task " + std::to_string(t) + ": " + r.status().ToString());
          return;
        }
        calls[t].push_back({step, after_kill, r->endpoint});
        cached += r->cached_tokens;
        if (call == 0) ++warmed;
        after += after_kill ? 1 : 0;
      }
    });
  }
  for (int i = 0; i < 12000 && warmed < kTasks; ++i) ::usleep(5000);  // up to 60 s
  ASSERT_EQ(warmed, kTasks);
  testing::KillAndWait(replicas_[victim].pid, SIGKILL);  // mid-run: calls are in flight
  replicas_[victim].pid = -1;
  killed = true;
  for (auto& th : threads) th.join();

  EXPECT_EQ(errors, std::vector<std::string>{}) << "no task fails because one replica did";
  for (int t = 0; t < kTasks; ++t) {
    SCOPED_TRACE("task " + std::to_string(t));
    ASSERT_FALSE(calls[t].empty());
    const std::string home = o.endpoints->url(order[t][0]);
    const std::string next = o.endpoints->url(order[t][1]);
    int after_kill = 0;
    for (const Call& c : calls[t]) {
      SCOPED_TRACE("step " + std::to_string(c.step));
      after_kill += c.after_kill ? 1 : 0;
      if (order[t][0] != victim) {
        EXPECT_EQ(c.endpoint, home) << "a survivor's task stays on its replica";
      } else if (c.after_kill) {
        EXPECT_EQ(c.endpoint, next) << "the dead replica's task goes to its next choice";
      } else if (c.endpoint != home) {
        EXPECT_EQ(c.endpoint, next);  // started before the kill, answered after it
      }
    }
    EXPECT_GE(after_kill, 3);
  }
  std::vector<EndpointStatus> state = o.endpoints->Snapshot();
  EXPECT_FALSE(state[victim].up);
  EXPECT_GE(state[victim].failed_requests, 1);
  for (size_t i = 0; i < 3; ++i) {
    if (i != victim) {
      EXPECT_TRUE(state[i].up) << state[i].url << ": " << state[i].last_error;
    }
  }
  EXPECT_GT(cached, 0) << "loom-infer's prefix cache answered part of the prompts";
}

}  // namespace
}  // namespace loom
