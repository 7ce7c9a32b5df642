// What prefix-affine routing buys over round-robin: N real loom-infer replicas
// (CPU backend) on loopback, T agent-like conversations that each grow by one
// turn per step, worked step by step in interleaved order (as concurrent agent
// slots would), and the share of prompt tokens the replicas' prefix caches
// answered (usage.prompt_tokens_details.cached_tokens).
//
// Two runs, each on freshly started replicas (cold caches):
//   round-robin (baseline): call n goes to replica n mod N;
//   affinity: loomd's LLM client over the same URLs (model_endpoints.h).
// T should not be a multiple of N, or round-robin sends each task to one
// replica by accident.
//
//   replica_affinity_bench [--replicas 3] [--tasks 8] [--steps 8] [--model DIR]
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "orchestrator/llm_client.h"

extern char** environ;

namespace loom {
namespace {

namespace fs = std::filesystem;

int Die(const std::string& what) {
  std::fprintf(stderr, "replica_affinity_bench: %s\n", what.c_str());
  return 1;
}

struct Replica {
  pid_t pid = -1;
  std::string url;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Starts loom-infer on a port of its choosing and waits for its "serving" line.
Result<Replica> StartReplica(const std::string& binary, const std::string& model,
                             const std::string& log) {
  std::vector<std::string> argv = {
      binary, "--model", model, "--port", "0", "--threads", "1", "--served-model-name", "bench"};
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  Replica r;
  int rc = posix_spawn(&r.pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return Status::Unavailable("cannot start " + binary + ": " + std::strerror(rc));
  const std::regex serving(R"(serving \S+ on (http://127\.0\.0\.1:\d+))");
  std::smatch m;
  for (int i = 0; i < 1200; ++i) {
    std::string text = ReadAll(log);
    if (std::regex_search(text, m, serving)) {
      r.url = m[1].str() + "/v1";
      return r;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ::kill(r.pid, SIGKILL);
  ::waitpid(r.pid, nullptr, 0);
  return Status::Unavailable("loom-infer did not start; its log: " + ReadAll(log));
}

void StopReplicas(std::vector<Replica>& replicas) {
  for (Replica& r : replicas) {
    ::kill(r.pid, SIGTERM);
    ::waitpid(r.pid, nullptr, 0);
  }
  replicas.clear();
}

const char kSystem[] =
    "You are a coding agent working on a Python project in a git worktree. Work only "
    "through the tools: read the files you need, change as little as you can, run the "
    "tests with run_tests, and call finish with a summary when the change is complete.";

// Task `task` after `steps` turns: the fixed prefix, then the turns so far.
Json Conversation(int task, int steps) {
  Json m = Json::array(
      {{{"role", "system"}, {"content", kSystem}},
       {{"role", "user"},
        {"content", "Feedback #" + std::to_string(100 + task) +
                        ": the report page shows a wrong average when the list of orders " +
                        std::to_string(task * 7919) + " is empty."}}});
  for (int i = 0; i < steps; ++i) {
    m.push_back({{"role", "assistant"}, {"content", "read line " + std::to_string(10 * i)}});
    m.push_back({{"role", "user"}, {"content", "xs = []"}});
  }
  return m;
}

struct RunResult {
  int64_t prompt = 0, cached = 0, calls = 0;
  double seconds = 0;
  double hit_rate() const { return prompt ? double(cached) / double(prompt) : 0; }
};

enum class Routing { kRoundRobin, kAffinity };

Result<RunResult> Run(Routing routing, int n, int tasks, int steps, const std::string& binary,
                      const std::string& model, const std::string& dir) {
  std::vector<Replica> replicas;
  for (int i = 0; i < n; ++i) {
    auto r = StartReplica(binary, model, dir + "/replica" + std::to_string(i) + ".log");
    if (!r.ok()) {
      StopReplicas(replicas);
      return r.status();
    }
    replicas.push_back(*r);
  }
  LlmOptions o;
  o.max_tokens = 4;
  o.max_retries = 0;
  std::vector<std::unique_ptr<LlmClient>> clients;
  if (routing == Routing::kRoundRobin) {
    for (const Replica& r : replicas) {
      o.url = r.url;
      clients.push_back(MakeOpenAiClient(o));
    }
  } else {
    o.url.clear();
    for (const Replica& r : replicas) o.url += (o.url.empty() ? "" : ",") + r.url;
    clients.push_back(MakeOpenAiClient(o));
  }
  RunResult out;
  auto started = std::chrono::steady_clock::now();
  Status failed;
  for (int step = 0; step < steps && failed.ok(); ++step) {
    for (int task = 0; task < tasks && failed.ok(); ++task) {
      LlmClient* client = clients[routing == Routing::kRoundRobin ? out.calls % n : 0].get();
      auto reply = client->Chat(Conversation(task, step), Json::array());
      if (!reply.ok()) {
        failed = reply.status();
        break;
      }
      out.prompt += reply->prompt_tokens;
      out.cached += reply->cached_tokens;
      ++out.calls;
    }
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  StopReplicas(replicas);
  if (!failed.ok()) return failed;
  return out;
}

int Main(int argc, char** argv) {
  int n = 3, tasks = 8, steps = 8;
  std::string model = std::string(LOOM_SOURCE_DIR) + "/tests/fixtures/tiny-llama";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--replicas")) n = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--tasks")) tasks = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--model")) model = argv[i + 1];
  }
  if (n < 2 || tasks < 1 || steps < 1)
    return Die("--replicas must be 2 or more, the rest 1 or more");
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return Die("cannot find this program's directory");
  std::string binary = (self.parent_path() / "loom-infer").string();
  if (!fs::exists(binary)) return Die(binary + " is missing: build the loom-infer target");
  std::string dir =
      (fs::temp_directory_path() / ("replica-bench-" + std::to_string(getpid()))).string();
  fs::create_directories(dir);
  log::SetLevel(log::Level::kError);

  std::printf("%d loom-infer replicas (CPU, %s), %d conversations x %d steps, interleaved\n", n,
              fs::path(model).filename().c_str(), tasks, steps);
  std::printf("%-12s %8s %14s %14s %9s %8s\n", "routing", "calls", "prompt tokens", "cached tokens",
              "hit rate", "seconds");
  RunResult results[2];
  const char* names[2] = {"round-robin", "affinity"};
  for (int r = 0; r < 2; ++r) {
    auto res = Run(r == 0 ? Routing::kRoundRobin : Routing::kAffinity, n, tasks, steps, binary,
                   model, dir);
    if (!res.ok()) {
      fs::remove_all(dir, ec);
      return Die(std::string(names[r]) + ": " + res.status().ToString());
    }
    results[r] = *res;
    std::printf("%-12s %8lld %14lld %14lld %8.1f%% %8.2f\n", names[r],
                static_cast<long long>(res->calls), static_cast<long long>(res->prompt),
                static_cast<long long>(res->cached), 100 * res->hit_rate(), res->seconds);
  }
  fs::remove_all(dir, ec);
  int64_t computed_rr = results[0].prompt - results[0].cached;
  int64_t computed_aff = results[1].prompt - results[1].cached;
  std::printf("prompt tokens computed: round-robin %lld, affinity %lld (ratio %.2f)\n",
              static_cast<long long>(computed_rr), static_cast<long long>(computed_aff),
              computed_aff ? double(computed_rr) / double(computed_aff) : 0.0);
  return 0;
}

}  // namespace
}  // namespace loom

int main(int argc, char** argv) { return loom::Main(argc, argv); }
