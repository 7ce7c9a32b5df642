// Scale benchmark (issue 25): does loomd's cost per task stay flat as tasks pile
// up in review? N tasks go through a real loomd (its own process, real SQLite, a
// real 3-file git repository, bubblewrap verification of `true`) driven by an
// instant scripted model (ReplayModel, in this process: its CPU is not loomd's).
// Each task writes one file and finishes, so it waits in review with its worktree
// and its branch: the worktree count grows to N (the repository's policy lifts
// review.max_waiting to let it; --no-review-policy for a loomd from before that
// setting, which would refuse the key).
//
// Feedback is filed over HTTP as tasks finish, keeping 2 x agents outstanding, so
// intake is steady. loomd's own CPU (utime + stime of /proc/<pid>/stat, children
// excluded) is sampled with the count of finished tasks every 50 ms. Reported for
// the first and the last 10% of tasks: loomd CPU per task, set-up time (the task's
// lease, its `state` event to running, until its `prompt` event, just before the
// first model request; median) and throughput; and the ratio last / first, the
// baseline being the same run's first 10%. Goal (issue 25): ratios <= 1.2.
//
//   scale_bench [--tasks 500] [--agents 4] [--loomd PATH] [--keep] [--no-review-policy]
//
// --loomd runs another build (a baseline from before a change); the default is
// the loomd next to this binary. --keep leaves the scratch directory.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/auth.h"
#include "common/db.h"
#include "common/json_reader.h"
#include "common/log.h"
#include "orchestrator/event_type.h"
#include "orchestrator/http_client.h"
#include "orchestrator/replay_model.h"
#include "orchestrator/schema.h"
#include "orchestrator/stores.h"
#include "repos/workspace.h"

extern char** environ;

namespace loom {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

int Die(const std::string& what) {
  std::fprintf(stderr, "scale_bench: %s\n", what.c_str());
  return 1;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// loomd's own CPU time in seconds (utime + stime; its children are not counted).
double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(stat.substr(close + 2));
  std::string f;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && (fields >> f); ++i) {  // field 3 is the state
    if (i == 14) utime = std::strtoull(f.c_str(), nullptr, 10);
    if (i == 15) stime = std::strtoull(f.c_str(), nullptr, 10);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Distinct letters per task: feedback deduplication blanks numbers in titles.
std::string Letters(int i) {
  std::string s;
  do {
    s += static_cast<char>('a' + i % 26);
    i /= 26;
  } while (i > 0);
  return s;
}

uint16_t FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

pid_t Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

struct Sample {
  int64_t done;
  double cpu_s;
  double t_s;  // since the first submission
};

// The first sample with at least `k` tasks done.
const Sample& At(const std::vector<Sample>& samples, int64_t k) {
  for (const Sample& s : samples) {
    if (s.done >= k) return s;
  }
  return samples.back();
}

// The CPU loomd spent from `from` tasks done to `to` done, per task.
double CpuPerTask(const std::vector<Sample>& samples, int64_t from, int64_t to) {
  return (At(samples, to).cpu_s - At(samples, from).cpu_s) / static_cast<double>(to - from);
}

// Tasks finished per minute from `from` tasks done to `to` done.
double TasksPerMinute(const std::vector<Sample>& samples, int64_t from, int64_t to) {
  double span_s = At(samples, to).t_s - At(samples, from).t_s;
  return span_s > 0 ? static_cast<double>(to - from) * 60.0 / span_s : 0;
}

int Main(int argc, char** argv) {
  int tasks = 500, agents = 4;
  bool keep = false, review_policy = true;
  std::string loomd = (fs::path(argv[0]).parent_path() / "loomd").string();
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--keep") {
      keep = true;
    } else if (a == "--no-review-policy") {
      review_policy = false;
    } else if (i + 1 < argc && a == "--tasks") {
      tasks = std::atoi(argv[++i]);
    } else if (i + 1 < argc && a == "--agents") {
      agents = std::atoi(argv[++i]);
    } else if (i + 1 < argc && a == "--loomd") {
      loomd = argv[++i];
    } else {
      return Die(
          "usage: scale_bench [--tasks N] [--agents A] [--loomd PATH] [--keep] "
          "[--no-review-policy]");
    }
  }
  if (tasks < 20) return Die("--tasks must be at least 20");
  log::SetLevel(log::Level::kError);
  char tmpl[] = "/tmp/loom-scale-bench-XXXXXX";
  if (!mkdtemp(tmpl)) return Die("mkdtemp failed");
  const std::string dir = tmpl;
  ::chmod(dir.c_str(), 0711);  // the sandbox uid passes through to the worktrees

  // A 3-file repository.
  const std::string repo = dir + "/app";
  fs::create_directories(repo + "/tests");
  std::ofstream(repo + "/app.py") << "def add(a, b):\n    return a + b\n";
  std::ofstream(repo + "/README.md") << "# app\n";
  std::ofstream(repo + "/tests/test_app.py") << "import app\nassert app.add(1, 2) == 3\n";
  if (auto c = repos::InitRepository(repo, "main", "initial"); !c.ok()) {
    return Die(c.status().message());
  }

  // Every task: write one file, then finish (verified with `true`: review).
  Json replies = Json::array(
      {{{"message",
         {{"content", ""},
          {"tool_calls",
           {{{"name", "write_file"},
             {"arguments", {{"path", "NOTES.md"}, {"content", "a note\n"}}}}}}}}},
       {{"message",
         {{"content", ""},
          {"tool_calls", {{{"name", "finish"}, {"arguments", {{"summary", "Add a note"}}}}}}}}}});
  auto model = ReplayModel::Start({{"conversations", {{{"replies", replies}}}}});
  if (!model.ok()) return Die(model.status().message());

  const std::string data = dir + "/data", db_path = DatabasePath(data);
  fs::create_directories(data);
  if (review_policy) {
    // Every task waits in review: no bound, or the queue would stop at 200.
    fs::create_directories(data + "/policies");
    std::ofstream(data + "/policies/app.toml") << "[review]\nmax_waiting = 1000000\n";
  }
  if (Status s = MigrateDatabase(db_path); !s.ok()) return Die(s.message());
  std::string token;
  {
    auto stores = OrchestratorStores::Open(db_path);
    if (!stores.ok()) return Die(stores.status().message());
    repos::RepoRecord app;
    app.name = "app";
    app.path = repo;
    app.test_command = "true";
    if (auto r = stores->repos->Register(app); !r.ok()) return Die(r.status().message());
    auto tokens = TokenStore::Open(db_path);
    if (!tokens.ok()) return Die(tokens.status().message());
    auto t = (*tokens)->Create(Role::kReporter, "bench");
    if (!t.ok()) return Die(t.status().message());
    token = *t;
  }

  const uint16_t port = FreePort();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  pid_t pid = Spawn({loomd, "--data-dir", data, "--listen", "127.0.0.1:" + std::to_string(port),
                     "--llm-url", (*model)->url(), "--set", "agents=" + std::to_string(agents),
                     "--set", "llm.retries=0", "--set", "log.level=warning", "--set",
                     "feedback.rate_per_minute=1000000", "--set", "feedback.burst=100000"},
                    dir + "/loomd.log");
  if (pid <= 0) return Die("cannot start " + loomd);
  auto stop = [&] {
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
  };
  HttpClient http;
  for (auto deadline = Clock::now() + std::chrono::seconds(20);;) {
    auto r = http.Call("GET", base + "/healthz", "", {});
    if (r.ok() && r->status == 200) break;
    if (Clock::now() > deadline) {
      stop();
      return Die("loomd did not start; see " + dir + "/loomd.log");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  Db::Options ro;
  ro.read_only = true;
  auto db = Db::OpenMigrated(db_path, ro);
  if (!db.ok()) return Die(db.status().message());
  auto finished = [&]() -> int64_t {
    auto n = (*db)->QueryOne(
        "SELECT count(*) FROM tasks WHERE state NOT IN ('queued', 'running', 'verifying')", "",
        [](const Statement& row) { return row.Int(0); });
    return n.ok() ? *n : -1;
  };

  std::vector<Sample> samples{{0, ProcessCpuSeconds(pid), 0}};
  const auto t0 = Clock::now();
  int submitted = 0;
  int64_t done = 0;
  while (done < tasks) {
    while (submitted < tasks && submitted - done < 2 * agents) {
      Json item = {{"kind", "feature"},
                   {"title", "add a note " + Letters(submitted)},
                   {"body", "please add a note"},
                   {"repo", "app"}};
      auto r =
          http.Call("POST", base + "/v1/feedback", DumpJson(item),
                    {{"Authorization", "Bearer " + token}, {"Content-Type", "application/json"}});
      if (!r.ok() || r->status != 201) {
        stop();
        return Die("POST /v1/feedback failed: " +
                   (r.ok() ? std::to_string(r->status) + " " + r->body : r.status().message()));
      }
      ++submitted;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    done = finished();
    samples.push_back(
        {done, ProcessCpuSeconds(pid), std::chrono::duration<double>(Clock::now() - t0).count()});
    if (Clock::now() - t0 > std::chrono::hours(2)) {
      stop();
      return Die("timed out");
    }
  }
  const double wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  stop();

  auto stores = OrchestratorStores::Open(db_path);
  if (!stores.ok()) return Die(stores.status().message());
  auto all = stores->tasks->List(std::nullopt, 0, tasks + 1000);
  if (!all.ok()) return Die(all.status().message());
  int in_review = 0, failed = 0;
  std::vector<double> setups;  // ms, by task id: the order of intake
  for (const Task& task : *all) {
    in_review += task.state == TaskState::kReview;
    failed += task.state == TaskState::kFailed;
    auto events = stores->tasks->Events(task.id);
    if (!events.ok()) return Die(events.status().message());
    int64_t leased = 0, prompt = 0;
    for (const Event& e : *events) {
      if (e.type == EventType::kState && leased == 0 && StringOr(e.data, "to") == "running") {
        leased = e.created_at_ms;
      }
      if (e.type == EventType::kPrompt && prompt == 0) prompt = e.created_at_ms;
    }
    setups.push_back(leased > 0 && prompt > 0 ? static_cast<double>(prompt - leased) : -1);
  }
  const int64_t tenth = tasks / 10;
  auto setup = [&](size_t from, size_t to) {
    std::vector<double> v;
    for (size_t i = from; i < to && i < setups.size(); ++i) {
      if (setups[i] >= 0) v.push_back(setups[i]);
    }
    return Median(v);
  };
  const size_t n = setups.size();
  const double cpu_first = CpuPerTask(samples, 0, tenth);
  const double cpu_last = CpuPerTask(samples, tasks - tenth, tasks);
  const double setup_first = setup(0, static_cast<size_t>(tenth));
  const double setup_last = setup(n - static_cast<size_t>(tenth), n);
  const double rate_first = TasksPerMinute(samples, 0, tenth);
  const double rate_last = TasksPerMinute(samples, tasks - tenth, tasks);
  size_t worktrees = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(data + "/worktrees/app", ec);
       !ec && it != fs::directory_iterator(); ++it) {
    ++worktrees;
  }
  std::printf("loomd: %s\n", loomd.c_str());
  std::printf(
      "%d tasks on %d agent slots in %.0f s: %d in review, %d failed, %zu worktrees at the end; "
      "loomd CPU %.1f s in all\n",
      tasks, agents, wall_s, in_review, failed, worktrees, samples.back().cpu_s - samples[0].cpu_s);
  std::printf("%-28s %12s %12s %8s\n", "", "first 10%", "last 10%", "ratio");
  std::printf("%-28s %12.3f %12.3f %8.2f\n", "loomd CPU per task (s)", cpu_first, cpu_last,
              cpu_last / cpu_first);
  std::printf("%-28s %12.1f %12.1f %8.2f\n", "set-up, median (ms)", setup_first, setup_last,
              setup_last / setup_first);
  std::printf("%-28s %12.0f %12.0f %8.2f\n", "throughput (tasks/min)", rate_first, rate_last,
              rate_last / rate_first);
  (*model)->Stop();
  if (keep) {
    std::printf("kept %s\n", dir.c_str());
  } else {
    fs::remove_all(dir, ec);
  }
  return failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace loom

int main(int argc, char** argv) { return loom::Main(argc, argv); }
