// Benchmark: a sandboxed run as a Slurm job step against the same run with the
// local bubblewrap executor, measured in one run (interleaved, so both see the same
// machine load), on a real single-node Slurm that this program starts on localhost
// (tests/support/slurm_cluster.h; needs root and slurm-wlm + munge). Then the
// throughput of M runs through one allocation from 1, 2, 4 and 8 callers at once,
// and from as many callers as CPUs over that many warm allocations of one CPU.
//
//   slurm_bench [--runs N] [--concurrent-runs M]
//
// The payload is `/bin/true`: what is measured is each backend's cost per run.
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "sandbox/executor.h"
#include "tests/support/slurm_cluster.h"
#include "tests/support/temp_dir.h"

namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))];
}

bool Timed(loom::sandbox::Executor& e, const loom::sandbox::RunSpec& spec, double* ms) {
  auto t0 = Clock::now();
  auto o = e.Run(spec);
  *ms = MsSince(t0);
  if (!o.ok() || !o->Succeeded()) {
    fprintf(stderr, "run failed: %s\n",
            o.ok() ? o->stderr_data.c_str() : o.status().ToString().c_str());
    return false;
  }
  return true;
}

// Runs per second of `total` runs made by `clients` threads at once; -1 on a failure.
double Throughput(loom::sandbox::Executor& e, const loom::sandbox::RunSpec& spec, int clients,
                  int total) {
  auto t0 = Clock::now();
  std::vector<std::thread> threads;
  std::atomic<int> next{0}, failed{0};
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&] {
      double m;
      while (next.fetch_add(1) < total) {
        if (!Timed(e, spec, &m)) failed.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  return failed.load() > 0 ? -1 : total * 1000.0 / MsSince(t0);
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 100, concurrent_runs = 40;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--runs")) runs = atoi(argv[i + 1]);
    if (!strcmp(argv[i], "--concurrent-runs")) concurrent_runs = atoi(argv[i + 1]);
  }
  std::string missing = loom::testing::SlurmCluster::Missing();
  if (!missing.empty()) {
    fprintf(stderr, "no local Slurm: %s\n", missing.c_str());
    return 1;
  }
  loom::testing::TempDir dir;
  chmod(dir.path().c_str(), 0755);
  loom::testing::SlurmCluster cluster;
  if (!cluster.Start(dir.path() + "/cluster")) {
    fprintf(stderr, "%s\n", cluster.error().c_str());
    return 1;
  }
  std::string worktree = dir.path() + "/wt";
  mkdir(worktree.c_str(), 0755);
  const std::string bin_dir = std::filesystem::canonical("/proc/self/exe").parent_path().string();

  loom::sandbox::BwrapOptions bwrap;
  bwrap.run_as_uid = bwrap.run_as_gid = 64051;
  auto local = loom::sandbox::MakeBwrapExecutor(bwrap);
  loom::sandbox::SlurmOptions options;
  options.slurm_conf = cluster.slurm_conf();
  options.runner_path = bin_dir + "/loom-sandbox-runner";
  options.concurrent_steps = static_cast<uint32_t>(cluster.cpus());
  options.memory_per_step_mb = 512;
  options.bwrap = bwrap;
  auto slurm = loom::sandbox::MakeSlurmExecutor(options);
  if (!local.ok() || !slurm.ok()) {
    fprintf(stderr, "%s\n", (local.ok() ? slurm.status() : local.status()).ToString().c_str());
    return 1;
  }
  loom::sandbox::RunSpec spec;
  spec.argv = {"/bin/true"};
  spec.worktree = worktree;
  spec.env = {{"PATH", "/usr/bin:/bin"}};
  double ms;
  Timed(**local, spec, &ms);  // warm-up
  Timed(**slurm, spec, &ms);
  std::vector<double> local_ms, slurm_ms;
  for (int i = 0; i < runs; ++i) {
    if (!Timed(**local, spec, &ms)) return 1;
    local_ms.push_back(ms);
    if (!Timed(**slurm, spec, &ms)) return 1;
    slurm_ms.push_back(ms);
  }
  double l50 = Percentile(local_ms, 0.5), s50 = Percentile(slurm_ms, 0.5);
  printf("per run, /bin/true, %d runs each, interleaved:\n", runs);
  printf("  local bwrap executor  median %8.2f ms  (p10 %.2f, p90 %.2f)\n", l50,
         Percentile(local_ms, 0.1), Percentile(local_ms, 0.9));
  printf("  slurm job step        median %8.2f ms  (p10 %.2f, p90 %.2f)\n", s50,
         Percentile(slurm_ms, 0.1), Percentile(slurm_ms, 0.9));
  printf("  slurm / local ratio   %.2f   (added per run %.2f ms)\n", s50 / l50, s50 - l50);

  // Throughput of `concurrent_runs` runs through one allocation of `cpus` CPUs,
  // from 1, 2, ... callers at once (more callers than CPUs wait for a step).
  printf("throughput, %d runs through one allocation of %d CPUs:\n", concurrent_runs,
         cluster.cpus());
  double one = 0;
  for (int clients : {1, 2, 4, 8}) {
    double rate = Throughput(**slurm, spec, clients, concurrent_runs);
    if (rate < 0) return 1;
    if (clients == 1) one = rate;
    printf("  %d at a time   %8.1f runs/s  (x%.2f)\n", clients, rate, rate / one);
  }
  // The same CPUs as warm allocations of one CPU each, runs spread over them.
  slurm->reset();
  options.concurrent_steps = 1;
  options.warm_allocations = static_cast<uint32_t>(cluster.cpus());
  auto spread = loom::sandbox::MakeSlurmExecutor(options);
  if (!spread.ok()) {
    fprintf(stderr, "%s\n", spread.status().ToString().c_str());
    return 1;
  }
  double rate = Throughput(**spread, spec, cluster.cpus(), concurrent_runs);
  if (rate < 0) return 1;
  printf("  %d at a time over %d warm allocations of 1 CPU   %8.1f runs/s  (x%.2f)\n",
         cluster.cpus(), cluster.cpus(), rate, rate / one);
  return 0;
}
