// Orchestrator overhead per agent step: an in-process loomd with N agent slots,
// N concurrent tasks, an instant scripted model (the replay server on loopback)
// and a trivial tool (list_files), so what is measured is the loop itself: the
// model call through libcurl, parsing, the durable appends of the reply and the
// tool result (SQLite WAL, synchronous=NORMAL), the tool and the bookkeeping.
//
// Baseline in the same run: the same model call alone (LlmClient::Chat on the
// same server from N threads), so the ratio says what the loop adds to it.
//
//   agent_step_bench [--tasks 32] [--steps 50]
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "common/auth.h"
#include "common/config.h"
#include "common/log.h"
#include "orchestrator/daemon.h"
#include "orchestrator/http_client.h"
#include "orchestrator/llm_client.h"
#include "orchestrator/replay_model.h"
#include "orchestrator/schema.h"
#include "orchestrator/stores.h"
#include "repos/workspace.h"

namespace loom {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

int Die(const std::string& what) {
  std::fprintf(stderr, "agent_step_bench: %s\n", what.c_str());
  return 1;
}

int Main(int argc, char** argv) {
  int tasks = 32, steps = 50;  // steps stay under the default policy's max_steps (60)
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--tasks")) tasks = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
  }
  log::SetLevel(log::Level::kError);
  char tmpl[] = "/tmp/loom-step-bench-XXXXXX";
  if (!mkdtemp(tmpl)) return Die("mkdtemp failed");
  std::string dir = tmpl;
  ::chmod(dir.c_str(), 0711);
  std::string repo = dir + "/calc";
  fs::copy(std::string(LOOM_SOURCE_DIR) + "/examples/calc", repo, fs::copy_options::recursive);
  if (auto c = repos::InitRepository(repo, "main", "bench"); !c.ok())
    return Die(c.status().message());

  // Alternating directories so that no call repeats its previous result (that
  // would be a stuck loop); the script then ends and each task parks.
  Json replies = Json::array();
  for (int i = 0; i < steps; ++i) {
    replies.push_back(
        {{"message",
          {{"content", ""},
           {"tool_calls",
            {{{"name", "list_files"}, {"arguments", {{"path", i % 2 ? "tests" : "."}}}}}}}}});
  }
  auto model = ReplayModel::Start({{"conversations", {{{"replies", replies}}}}});
  if (!model.ok()) return Die(model.status().message());

  // Baseline: the bare model call, from `tasks` threads at once.
  std::vector<double> bare_ms;
  {
    LlmOptions o;
    o.url = (*model)->url();
    o.max_retries = 0;
    auto client = MakeOpenAiClient(o);
    Json messages = Json::array({{{"role", "system"}, {"content", std::string(1500, 'x')}},
                                 {{"role", "user"}, {"content", "hello"}}});
    std::vector<std::thread> threads;
    std::vector<std::vector<double>> per(tasks);
    auto t0 = Clock::now();
    for (int t = 0; t < tasks; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < steps; ++i) {
          auto s = Clock::now();
          auto r = client->Chat(messages, Json::array());
          if (r.ok())
            per[t].push_back(std::chrono::duration<double, std::milli>(Clock::now() - s).count());
        }
      });
    }
    for (auto& th : threads) th.join();
    double wall = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    for (auto& v : per) bare_ms.insert(bare_ms.end(), v.begin(), v.end());
    std::printf(
        "baseline: %zu bare model calls from %d threads in %.0f ms: %.0f calls/s, "
        "median %.2f ms per call\n",
        bare_ms.size(), tasks, wall, bare_ms.size() / wall * 1000, Median(bare_ms));
  }

  Config config(DaemonConfigSchema());
  for (auto [k, v] :
       std::initializer_list<std::pair<const char*, std::string>>{{"data_dir", dir + "/data"},
                                                                  {"listen", "127.0.0.1:0"},
                                                                  {"agents", std::to_string(tasks)},
                                                                  {"llm.url", (*model)->url()},
                                                                  {"llm.retries", "0"}}) {
    if (Status s = config.Set(k, v, "bench"); !s.ok()) return Die(s.message());
  }
  auto daemon = Daemon::Start(config);
  if (!daemon.ok()) return Die(daemon.status().message());
  std::string db = DatabasePath(dir + "/data");
  auto stores = OrchestratorStores::Open(db);
  if (!stores.ok()) return Die("cannot open the stores");
  TaskStore* store = stores->tasks.get();
  repos::RepoRecord calc;
  calc.name = "calc";
  calc.path = repo;
  calc.test_command = "true";
  if (auto registered = stores->repos->Register(calc); !registered.ok())
    return Die(registered.status().message());
  // A token row for the items (feedback references one).
  auto tokens = TokenStore::Open(db);
  auto token = (*tokens)->Create(Role::kReporter, "bench");
  // Filed as a user files them, over HTTP: each stored item wakes triage.
  HttpClient http;
  std::string url = "http://127.0.0.1:" + std::to_string((*daemon)->port()) + "/v1/feedback";
  auto t0 = Clock::now();
  for (int t = 0; t < tasks; ++t) {
    Json item = {{"kind", "feature"},
                 {"title", "bench task " + std::string(1, static_cast<char>('a' + t % 26)) +
                               std::string(1, static_cast<char>('a' + t / 26))},
                 {"body", "x"},
                 {"repo", "calc"}};
    auto r =
        http.Call("POST", url, DumpJson(item),
                  {{"Authorization", "Bearer " + *token}, {"Content-Type", "application/json"}});
    if (!r.ok()) return Die(r.status().message());
    if (r->status != 201) return Die("POST /v1/feedback answered " + std::to_string(r->status));
  }
  // Wait until every task has made its steps (then it parks: the script ended).
  while (true) {
    auto blocked = store->List(TaskState::kBlocked, 0, 10000);
    auto failed = store->List(TaskState::kFailed, 0, 10000);
    if (blocked.ok() && failed.ok() &&
        blocked->size() + failed->size() >= static_cast<size_t>(tasks)) {
      if (!failed->empty()) return Die("a task failed: " + (*failed)[0].reason);
      break;
    }
    if (Clock::now() - t0 > std::chrono::minutes(5)) return Die("timed out");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  double wall = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  (*daemon)->Stop(std::chrono::milliseconds(100));

  // Per task: from its prompt to its last tool result, divided by its steps.
  std::vector<double> per_step;
  int64_t total_steps = 0, first = INT64_MAX, last = 0;
  auto all = store->List(std::nullopt, 0, 10000);
  for (const auto& task : *all) {
    auto events = store->Events(task.id);
    int64_t start = 0, end = 0;
    for (const auto& e : *events) {
      if (e.type == EventType::kPrompt) start = e.created_at_ms;
      if (e.type == EventType::kToolResult) end = e.created_at_ms;
    }
    total_steps += task.steps;
    first = std::min(first, start);
    last = std::max(last, end);
    if (task.steps > 0) per_step.push_back(static_cast<double>(end - start) / task.steps);
  }
  double span = static_cast<double>(last - first);
  double amortised = span / total_steps;
  std::printf(
      "loop: %d tasks x %d steps on %d slots: %lld steps in %.0f ms (%.0f ms end to end): "
      "%.0f steps/s\n",
      tasks, steps, tasks, static_cast<long long>(total_steps), span, wall,
      total_steps / span * 1000);
  std::printf(
      "per step: median %.2f ms per task (latency), %.3f ms amortised over all tasks "
      "(wall / steps)\n",
      Median(per_step), amortised);
  std::printf(
      "ratio: step latency / bare model call = %.2f; overhead per step beyond the "
      "model call = %.2f ms\n",
      Median(per_step) / Median(bare_ms), Median(per_step) - Median(bare_ms));
  (*model)->Stop();
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}

}  // namespace
}  // namespace loom

int main(int argc, char** argv) { return loom::Main(argc, argv); }
