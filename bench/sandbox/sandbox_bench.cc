// Benchmark: the sandbox's added cost per run against running the same command
// bare (fork + execve + waitpid), both measured in this one run, interleaved so
// that both see the same machine load. Two commands: `true` (pure start-up cost)
// and a 1-second CPU loop (start-up plus any slowdown the sandbox causes: seccomp
// on every syscall, cgroup accounting). The loop is this binary itself, re-executed
// with --spin-ms, spinning until it has used that much CPU time.
//
// Also measured, to show where the time goes: the executor without a cgroup
// (cgroup_parent "none") and bare bubblewrap (the same namespaces, no Loom).
//
//   sandbox_bench [--runs N] [--cpu-runs M] [--only true|cpu]
//
// Run it as root or as a normal user; never point it at a shared directory: the
// worktree is a fresh mkdtemp directory, removed at the end.
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "sandbox/executor.h"

namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

double CpuMs() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1000 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// The CPU loop: spins until this process has used `ms` of CPU time.
int Spin(double ms) {
  volatile uint64_t x = 0;
  while (CpuMs() < ms) {
    for (int i = 0; i < 100000; ++i) x = x + static_cast<uint64_t>(i);
  }
  return 0;
}

// fork + execve + waitpid, with an empty environment like the sandbox's payload.
// Returns false if the command did not exit 0.
bool RunBare(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  char* const env[] = {nullptr};
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    execve(args[0], args.data(), env);
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

enum class NetNamespace { kNew, kHost };

// Bare bubblewrap: the namespaces and the few mounts a command needs, none of
// Loom's other work (seccomp, rlimits, uid drop, /etc, cgroup, output capture).
// kHost keeps the host's network namespace: the difference is that namespace's cost.
std::function<bool()> BareBwrap(const std::string& bin_dir, const std::vector<std::string>& cmd,
                                NetNamespace net) {
  std::vector<std::string> argv = {"/usr/bin/bwrap", "--unshare-all"};
  if (net == NetNamespace::kHost) argv.push_back("--share-net");
  for (const char* a : {"--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr",
                        "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                        "--symlink", "usr/bin", "/bin", "--proc", "/proc", "--dev", "/dev"}) {
    argv.push_back(a);
  }
  argv.insert(argv.end(), {"--ro-bind", bin_dir, bin_dir, "--"});
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  return [argv] { return RunBare(argv); };
}

struct Series {
  std::string name;
  std::function<bool()> run;
  std::vector<double> ms;
};

// Runs every series `runs` times, round robin, after one warm-up round.
bool Measure(std::vector<Series>& series, int runs) {
  for (int r = -1; r < runs; ++r) {
    for (auto& s : series) {
      auto t0 = Clock::now();
      if (!s.run()) {
        fprintf(stderr, "%s: the command failed\n", s.name.c_str());
        return false;
      }
      if (r >= 0) s.ms.push_back(MsSince(t0));
    }
  }
  return true;
}

void Report(const char* title, const std::vector<Series>& series, int runs) {
  printf("\n%s (%d runs each, interleaved)\n", title, runs);
  printf("  %-34s %10s %10s %10s %12s %8s\n", "", "median ms", "p10 ms", "p90 ms", "added ms",
         "ratio");
  const double bare = Median(series[0].ms);
  for (const auto& s : series) {
    double m = Median(s.ms);
    printf("  %-34s %10.2f %10.2f %10.2f %12.2f %8.2f\n", s.name.c_str(), m, Percentile(s.ms, 0.1),
           Percentile(s.ms, 0.9), m - bare, m / bare);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 200, cpu_runs = 200;
  std::string only;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--spin-ms")) return Spin(atof(argv[i + 1]));
    if (!strcmp(argv[i], "--runs")) runs = atoi(argv[i + 1]);
    if (!strcmp(argv[i], "--cpu-runs")) cpu_runs = atoi(argv[i + 1]);
    if (!strcmp(argv[i], "--only")) only = argv[i + 1];
  }
  const std::string self = std::filesystem::canonical("/proc/self/exe").string();
  const std::string bin_dir = std::filesystem::path(self).parent_path().string();

  char tmpl[] = "/tmp/loom-sandbox-bench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    perror("mkdtemp");
    return 1;
  }
  const std::string worktree = tmpl;
  auto cleanup = [&] {
    std::error_code ec;
    std::filesystem::remove_all(worktree, ec);
  };

  loom::sandbox::BwrapOptions options;
  options.run_as_uid = options.run_as_gid = 64050;
  auto executor = loom::sandbox::MakeBwrapExecutor(options);
  options.cgroup_parent = "none";
  auto no_cgroup = loom::sandbox::MakeBwrapExecutor(options);
  if (!executor.ok() || !no_cgroup.ok()) {
    fprintf(stderr, "cannot sandbox: %s\n",
            (executor.ok() ? no_cgroup.status() : executor.status()).ToString().c_str());
    cleanup();
    return 1;
  }
  auto sandboxed = [&](loom::sandbox::Executor& ex, std::vector<std::string> cmd) {
    return [&ex, &worktree, &bin_dir, cmd] {
      loom::sandbox::RunSpec spec;
      spec.argv = cmd;
      spec.worktree = worktree;
      spec.read_only_paths = {bin_dir};
      auto o = ex.Run(spec);
      if (!o.ok()) fprintf(stderr, "%s\n", o.status().ToString().c_str());
      return o.ok() && o->Succeeded();
    };
  };
  printf("sandbox_bench: uid %d, load %s", static_cast<int>(geteuid()), [] {
    static char buf[128] = "?\n";
    if (FILE* f = fopen("/proc/loadavg", "r")) {
      if (fgets(buf, sizeof buf, f) == nullptr) strcpy(buf, "?\n");
      fclose(f);
    }
    return buf;
  }());

  int rc = 0;
  if (only.empty() || only == "true") {
    const std::vector<std::string> cmd = {"/bin/true"};
    std::vector<Series> series = {
        {"bare fork+exec /bin/true", [cmd] { return RunBare(cmd); }, {}},
        {"loom sandbox (cgroup auto)", sandboxed(**executor, cmd), {}},
        {"loom sandbox (no cgroup)", sandboxed(**no_cgroup, cmd), {}},
        {"bare bwrap --unshare-all", BareBwrap(bin_dir, cmd, NetNamespace::kNew), {}},
        {"bare bwrap --unshare-all --share-net", BareBwrap(bin_dir, cmd, NetNamespace::kHost), {}},
    };
    if (Measure(series, runs)) {
      Report("true", series, runs);
    } else {
      rc = 1;
    }
  }
  if (rc == 0 && cpu_runs > 0 && (only.empty() || only == "cpu")) {
    const std::vector<std::string> cmd = {self, "--spin-ms", "1000"};
    std::vector<Series> series = {
        {"bare 1-s CPU loop", [cmd] { return RunBare(cmd); }, {}},
        {"loom sandbox (cgroup auto)", sandboxed(**executor, cmd), {}},
    };
    if (Measure(series, cpu_runs)) {
      Report("1-second CPU loop", series, cpu_runs);
    } else {
      rc = 1;
    }
  }
  cleanup();
  return rc;
}
