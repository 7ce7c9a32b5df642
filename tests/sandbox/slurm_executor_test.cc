// The Slurm executor through a real local Slurm (slurm_environment.h): every run is
// a job step in the executor's allocation, the runner's outcome comes back intact,
// secrets stay off environments, the munge socket stays out of the sandbox, cancel
// and a lost allocation work, and a run Slurm could not make is an error, never an
// outcome. Built with LOOM_TEST_SANDBOX_THROUGH_SLURM, so SandboxTest's executor_ is
// the Slurm one.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "sandbox/executor.h"
#include "tests/sandbox/sandbox_fixture.h"
#include "tests/sandbox/slurm_environment.h"
#include "tests/support/subprocess.h"

namespace loom::sandbox {
namespace {

using namespace std::chrono_literals;
using loom::testing::CommandOutput;
using loom::testing::ShellQuote;
using testing::ReadHostFile;
using testing::SandboxTest;
using testing::SlurmEnvironment;

class SlurmExecutorTest : public SandboxTest {
 protected:
  void SetUp() override {
    SandboxTest::SetUp();
    if (IsSkipped() || HasFailure()) return;
    std::string why;
    bool must_fail;
    cluster_ = SlurmEnvironment::Cluster(&why, &must_fail);
  }
  // A Slurm command on the test cluster; its stdout and stderr.
  std::string Slurm(const std::string& command) {
    return CommandOutput("SLURM_CONF=" + ShellQuote(cluster_->slurm_conf()) + " /usr/bin/" +
                         command);
  }
  // The executor's allocations ("loom-sandbox" jobs) that are running.
  std::string Allocations() {
    return Slurm("squeue --noheader --name=loom-sandbox --states=RUNNING --format=%i");
  }
  loom::testing::SlurmCluster* cluster_ = nullptr;
};

TEST_F(SlurmExecutorTest, TheOutcomeComesBackIntactFromAJobStep) {
  std::atomic<bool> done{false};
  std::string steps_seen;
  std::thread watch([&] {
    while (!done.load() && steps_seen.find("loom-run") == std::string::npos) {
      steps_seen += Slurm("squeue --noheader --steps --format=%j");
      std::this_thread::sleep_for(50ms);
    }
  });
  Outcome o = Sh("sleep 1; printf 'a\\377b'; echo err >&2; exit 3");
  done = true;
  watch.join();
  EXPECT_NE(steps_seen.find("loom-run"), std::string::npos) << "no step seen: " << steps_seen;
  EXPECT_EQ(o.exit_code, 3);
  EXPECT_FALSE(o.signal.has_value());
  EXPECT_EQ(o.limit, LimitHit::kNone);
  EXPECT_EQ(o.stdout_data,
            "a\xff"
            "b");
  EXPECT_EQ(o.stderr_data, "err\n");
  EXPECT_GE(o.wall_ms, 1000);
  EXPECT_GT(o.peak_memory_bytes, 0u);
}

TEST_F(SlurmExecutorTest, LimitsSignalsAndCpuTimeComeBack) {
  Outcome timeout = Sh("sleep 30", [](RunSpec& s) { s.limits.wall_time = 500ms; });
  EXPECT_EQ(timeout.limit, LimitHit::kTimeout);
  EXPECT_EQ(timeout.signal, SIGKILL);
  EXPECT_LT(timeout.wall_ms, 5000);

  Outcome killed = Sh("kill -TERM $$");
  EXPECT_EQ(killed.signal, SIGTERM);
  EXPECT_FALSE(killed.exit_code.has_value());

  Outcome busy = Sh("i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done");
  EXPECT_TRUE(busy.Succeeded());
  EXPECT_GT(busy.cpu_ms, 50);

  Outcome memory = Sh("exec python3 -c 'a = []\nwhile True: a.append(b\"x\" * (8 << 20))'",
                      [](RunSpec& s) { s.limits.memory_bytes = 256 << 20; });
  EXPECT_FALSE(memory.Succeeded());
  EXPECT_EQ(memory.limit, LimitHit::kMemory);

  Outcome output = Sh("yes", [](RunSpec& s) { s.limits.max_output_bytes = 1000; });
  EXPECT_EQ(output.limit, LimitHit::kOutput);
  EXPECT_EQ(output.stdout_data.size(), 1000u);
}

TEST_F(SlurmExecutorTest, SecretsNeverTravelInAnEnvironment) {
  // The runner is wrapped by a script that records the step's environment.
  std::string wrapper = bind_dir_ + "/runner-wrapper";
  std::string env_file = root_ + "/step-environ";
  // Quoted: the build may live under a path with spaces.
  std::ofstream(wrapper) << "#!/bin/sh\n/usr/bin/env > " << ShellQuote(env_file) << "\nexec "
                         << ShellQuote(std::string(LOOM_BIN_DIR) + "/loom-sandbox-runner") << "\n";
  chmod(wrapper.c_str(), 0755);
  setenv("LOOM_TEST_DAEMON_SECRET", "daemon-secret-5f1c", 1);
  executor_.reset();  // its allocation holds the node's CPUs
  SlurmOptions options = SlurmEnvironment::Options(options_);
  options.runner_path = wrapper;
  auto executor = MakeSlurmExecutor(options);
  unsetenv("LOOM_TEST_DAEMON_SECRET");
  ASSERT_TRUE(executor.ok()) << executor.status().ToString();
  RunSpec spec = Spec({"/bin/sh", "-c", "echo $TASK_SECRET"});
  spec.env.emplace_back("TASK_SECRET", "task-secret-9a2e");
  auto o = (*executor)->Run(spec);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->stdout_data, "task-secret-9a2e\n");  // the payload gets it
  std::string step_env = ReadHostFile(env_file);
  ASSERT_NE(step_env.find("SLURM_JOB_ID="), std::string::npos) << step_env;
  EXPECT_EQ(step_env.find("task-secret-9a2e"), std::string::npos) << step_env;
  EXPECT_EQ(step_env.find("daemon-secret-5f1c"), std::string::npos) << step_env;
  EXPECT_EQ(step_env.find("LOOM_TEST_MARKER"), std::string::npos) << step_env;
}

TEST_F(SlurmExecutorTest, TheMungeSocketIsInvisibleInTheSandbox) {
  std::string socket = cluster_->munge_socket();
  Outcome o = Sh("test -e " + ShellQuote(socket) +
                 " && echo VISIBLE; ls /run/munge /var/run/munge "
                 "2>/dev/null; echo done");
  EXPECT_EQ(o.stdout_data, "done\n");
  RunSpec bind = Spec({"true"});
  bind.read_only_paths.push_back(socket.substr(0, socket.rfind('/')));
  EXPECT_FALSE(executor_->Run(bind).ok()) << "binding the munge directory must be refused";
}

TEST_F(SlurmExecutorTest, CancelEndsTheStepAndSaysCancelled) {
  std::atomic<bool> cancel{false};
  std::thread canceller([&] {
    std::this_thread::sleep_for(700ms);
    cancel = true;
  });
  auto start = std::chrono::steady_clock::now();
  Outcome o = Sh("sleep 60", [&](RunSpec& s) { s.cancel = &cancel; });
  canceller.join();
  EXPECT_EQ(o.limit, LimitHit::kCancelled);
  EXPECT_FALSE(o.Succeeded());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 15s);
  EXPECT_EQ(Slurm("squeue --noheader --steps --format=%j | grep -c loom-run"), "0\n");
}

TEST_F(SlurmExecutorTest, ConcurrentRunsShareOneAllocation) {
  constexpr int kRuns = 4;
  std::vector<Outcome> outcomes(kRuns);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRuns; ++i) {
    threads.emplace_back([&, i] {
      auto o = executor_->Run(Spec({"/bin/sh", "-c", "sleep 0.5; echo " + std::to_string(i)}));
      if (o.ok()) outcomes[i] = *o;
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kRuns; ++i) {
    EXPECT_TRUE(outcomes[i].Succeeded()) << i;
    EXPECT_EQ(outcomes[i].stdout_data, std::to_string(i) + "\n");
  }
  std::string allocations = Allocations();
  EXPECT_EQ(std::count(allocations.begin(), allocations.end(), '\n'), 1) << allocations;
}

TEST_F(SlurmExecutorTest, ANewAllocationIsMadeWhenTheOldOneEnds) {
  std::string before = Allocations();
  ASSERT_EQ(std::count(before.begin(), before.end(), '\n'), 1) << before;
  Slurm("scancel " + before);
  for (int i = 0; i < 100 && !Allocations().empty(); ++i) std::this_thread::sleep_for(50ms);
  Outcome o = Sh("echo again");
  EXPECT_TRUE(o.Succeeded());
  EXPECT_EQ(o.stdout_data, "again\n");
  std::string after = Allocations();
  EXPECT_EQ(std::count(after.begin(), after.end(), '\n'), 1) << after;
  EXPECT_NE(after, before);
}

TEST_F(SlurmExecutorTest, TheAllocationIsReleasedWithTheExecutor) {
  ASSERT_FALSE(Allocations().empty());
  executor_.reset();
  for (int i = 0; i < 100 && !Allocations().empty(); ++i) std::this_thread::sleep_for(50ms);
  EXPECT_EQ(Allocations(), "");
}

// Its own cluster: the controller is stopped.
TEST_F(SlurmExecutorTest, AnUnreachableControllerIsUnavailableNeverAnOutcome) {
  loom::testing::TempDir dir;
  chmod(dir.path().c_str(), 0755);
  loom::testing::SlurmCluster second;
  ASSERT_TRUE(second.Start(dir.path())) << second.error();
  SlurmOptions options = SlurmEnvironment::Options(options_);
  options.slurm_conf = second.slurm_conf();
  options.start_timeout = 20s;
  options.start_attempts = 2;
  options.start_backoff = 100ms;
  auto executor = MakeSlurmExecutor(options);
  ASSERT_TRUE(executor.ok()) << executor.status().ToString();
  second.StopController();

  auto run = (*executor)->Run(Spec({"/bin/sh", "-c", "echo ran"}));
  ASSERT_FALSE(run.ok()) << "reported an outcome for a run that cannot have happened";
  EXPECT_EQ(run.status().code(), StatusCode::kUnavailable) << run.status().ToString();
  EXPECT_NE(run.status().message().find("the pool is down"), std::string::npos)
      << run.status().ToString();

  auto fresh = MakeSlurmExecutor(options);
  ASSERT_FALSE(fresh.ok());
  EXPECT_EQ(fresh.status().code(), StatusCode::kUnavailable) << fresh.status().ToString();
}

// Two warm allocations of one CPU each: both are made at start, two runs at once
// go one to each (their steps seen in squeue), and one that is cancelled is made
// again for the next runs.
TEST_F(SlurmExecutorTest, StepsSpreadOverTheWarmAllocationsAndALostOneIsMadeAgain) {
  executor_.reset();
  SlurmOptions options = SlurmEnvironment::Options(options_);
  options.concurrent_steps = 1;
  options.warm_allocations = 2;
  auto executor = MakeSlurmExecutor(options);
  ASSERT_TRUE(executor.ok()) << executor.status().ToString();
  std::string warm = Allocations();
  ASSERT_EQ(std::count(warm.begin(), warm.end(), '\n'), 2) << warm;

  auto run_two = [&](std::string* steps) {
    std::atomic<int> done{0};
    std::vector<Result<Outcome>> outcomes(2, Status::Internal("not run"));
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i) {
      threads.emplace_back([&, i] {
        outcomes[i] =
            (*executor)->Run(Spec({"/bin/sh", "-c", "sleep 2; echo " + std::to_string(i)}));
        ++done;
      });
    }
    while (done.load() < 2) {
      for (const std::string& line : [&] {
             std::vector<std::string> lines;
             std::istringstream in(Slurm("squeue --noheader --steps --name=loom-run --format=%i"));
             for (std::string l; std::getline(in, l);) lines.push_back(l);
             return lines;
           }()) {
        std::string job = line.substr(0, line.find('.'));
        if (steps->find(job + "\n") == std::string::npos) *steps += job + "\n";
      }
      std::this_thread::sleep_for(100ms);
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < 2; ++i) {
      ASSERT_TRUE(outcomes[i].ok()) << outcomes[i].status().ToString();
      EXPECT_EQ(outcomes[i]->stdout_data, std::to_string(i) + "\n");
    }
  };
  std::string jobs_used;
  run_two(&jobs_used);
  EXPECT_EQ(std::count(jobs_used.begin(), jobs_used.end(), '\n'), 2)
      << "both steps in one allocation: " << jobs_used;

  std::string lost = warm.substr(0, warm.find('\n'));
  Slurm("scancel " + lost);
  for (int i = 0; i < 100 && Allocations().find(lost + "\n") != std::string::npos; ++i) {
    std::this_thread::sleep_for(50ms);
  }
  std::string after_used;
  run_two(&after_used);
  EXPECT_EQ(std::count(after_used.begin(), after_used.end(), '\n'), 2) << after_used;
  EXPECT_EQ(after_used.find(lost + "\n"), std::string::npos) << after_used;
  std::string now = Allocations();
  EXPECT_EQ(std::count(now.begin(), now.end(), '\n'), 2) << now;
}

// An allocation with less time left than a run's wall time plus two minutes
// takes no new step: with allocation_minutes = 3 and runs of one minute, every
// run needs a fresh allocation. The one replaced while its step still runs is
// released only after that step, which finishes intact.
TEST_F(SlurmExecutorTest, AnAllocationNearItsEndIsReplacedAfterItsLastStep) {
  executor_.reset();
  SlurmOptions options = SlurmEnvironment::Options(options_);
  options.concurrent_steps = 1;
  options.warm_allocations = 2;  // two runs at once, one CPU each
  options.allocation_minutes = 3;
  auto executor = MakeSlurmExecutor(options);
  ASSERT_TRUE(executor.ok()) << executor.status().ToString();
  std::string first = Allocations();
  auto minute = [](RunSpec& s) { s.limits.wall_time = std::chrono::minutes(1); };
  Result<Outcome> slow = Status::Internal("not run");
  std::thread long_run([&] {
    RunSpec spec = Spec({"/bin/sh", "-c", "sleep 3; echo slow"});
    minute(spec);
    slow = (*executor)->Run(spec);
  });
  // Once the slow step runs (in a fresh allocation: the first one was too short).
  std::string during;
  for (int i = 0; i < 200; ++i) {
    during = Slurm("squeue --noheader --steps --name=loom-run --format=%i");
    if (!during.empty()) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_FALSE(during.empty());
  RunSpec quick = Spec({"/bin/sh", "-c", "echo quick"});
  minute(quick);
  auto q = (*executor)->Run(quick);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->stdout_data, "quick\n");
  std::string both = Allocations();
  EXPECT_EQ(std::count(both.begin(), both.end(), '\n'), 2)
      << "the slow step's allocation kept: " << both;
  long_run.join();
  ASSERT_TRUE(slow.ok()) << slow.status().ToString();
  EXPECT_EQ(slow->stdout_data, "slow\n");
  std::string left = Allocations();
  for (int i = 0; i < 100 && std::count(left.begin(), left.end(), '\n') != 1; ++i) {
    std::this_thread::sleep_for(50ms);
    left = Allocations();
  }
  EXPECT_EQ(std::count(left.begin(), left.end(), '\n'), 1) << left;
  std::istringstream firsts(first);
  for (std::string job; std::getline(firsts, job);) {
    EXPECT_EQ(left.find(job + "\n"), std::string::npos) << "allocation " << job << " was kept";
  }
}

// Its own cluster: slurmctld is down for longer than one srun waits for it (about
// 9 s with MessageTimeout=5), then comes back. The step that could not start is
// tried again after a backoff, in the allocation slurmctld recovered.
TEST_F(SlurmExecutorTest, AStepThatCouldNotStartIsTriedAgainAfterABackoff) {
  loom::testing::TempDir dir;
  chmod(dir.path().c_str(), 0755);
  loom::testing::SlurmCluster second;
  ASSERT_TRUE(second.Start(dir.path())) << second.error();
  executor_.reset();  // its allocation holds the node's CPUs
  SlurmOptions options = SlurmEnvironment::Options(options_);
  options.slurm_conf = second.slurm_conf();
  options.start_timeout = 20s;
  options.start_attempts = 6;
  options.start_backoff = 1s;
  auto executor = MakeSlurmExecutor(options);
  ASSERT_TRUE(executor.ok()) << executor.status().ToString();
  second.StopController();
  std::thread restart([&] {
    std::this_thread::sleep_for(14s);
    EXPECT_TRUE(second.StartController()) << second.error();
  });
  auto start = std::chrono::steady_clock::now();
  auto run = (*executor)->Run(Spec({"/bin/sh", "-c", "echo ran"}));
  auto took = std::chrono::steady_clock::now() - start;
  restart.join();
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_TRUE(run->Succeeded());
  EXPECT_EQ(run->stdout_data, "ran\n");
  EXPECT_GE(took, 14s) << "ran before slurmctld was back";
}

// A drained node grants no allocation: without a fallback that is Unavailable,
// with the local one the run happens on this machine (no allocation made), and
// once the node is resumed runs go through Slurm again.
TEST_F(SlurmExecutorTest, ADrainedNodeGoesToTheLocalFallbackWhenOneIsSet) {
  executor_.reset();
  std::string node = cluster_->node();
  Slurm("scontrol update nodename=" + node + " state=drain reason=loom-test");
  struct Resume {
    std::function<void()> f;
    ~Resume() { f(); }
  } resume{[&] { Slurm("scontrol update nodename=" + node + " state=resume"); }};
  SlurmOptions options = SlurmEnvironment::Options(options_);
  options.start_timeout = 3s;
  options.start_attempts = 2;
  options.start_backoff = 200ms;
  auto strict = MakeSlurmExecutor(options);
  ASSERT_FALSE(strict.ok()) << "allocated on a drained node";
  EXPECT_EQ(strict.status().code(), StatusCode::kUnavailable) << strict.status().ToString();

  auto local = MakeBwrapExecutor(options_);
  ASSERT_TRUE(local.ok()) << local.status().ToString();
  options.fallback = std::move(local).value();
  auto executor = MakeSlurmExecutor(options);
  ASSERT_TRUE(executor.ok()) << executor.status().ToString();
  auto run = (*executor)->Run(Spec({"/bin/sh", "-c", "echo here"}));
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_EQ(run->stdout_data, "here\n");
  EXPECT_EQ(Allocations(), "");

  Slurm("scontrol update nodename=" + node + " state=resume");
  auto again = (*executor)->Run(Spec({"/bin/sh", "-c", "echo there"}));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->stdout_data, "there\n");
  std::string allocations = Allocations();
  EXPECT_EQ(std::count(allocations.begin(), allocations.end(), '\n'), 1) << allocations;
}

}  // namespace
}  // namespace loom::sandbox

namespace loom::sandbox {
namespace {

using namespace std::chrono_literals;

// A run with GPUs (a person's grant) is a job of its own in the GPU partition with
// the grant's gres: seen in squeue while it runs. The test cluster's GPUs are a
// gres count over /dev/null and /dev/zero: the scheduling path is real, no GPU is.
TEST_F(SlurmExecutorTest, AGpuRunIsAJobInTheGpuPartitionWithTheGrantedGres) {
  executor_.reset();
  SlurmOptions options = SlurmEnvironment::Options(options_);
  options.concurrent_steps = 1;
  options.gpu_partition = "loomgpu";
  auto executor = MakeSlurmExecutor(options);
  ASSERT_TRUE(executor.ok()) << executor.status().ToString();
  std::atomic<bool> done{false};
  std::string seen;
  std::thread watch([&] {
    while (!done.load() && seen.empty()) {
      seen = Slurm("squeue --noheader --name=loom-gpu-run --format='%P %b %l'");
      std::this_thread::sleep_for(50ms);
    }
  });
  RunSpec spec = Spec({"/bin/sh", "-c", "sleep 1; echo on-gpu"});
  spec.limits.wall_time = 10min;  // Slurm's fence would be 12 min; the grant has 5 left
  spec.gpus = RunSpec::Gpus{"fake", 2, 5min};
  auto o = (*executor)->Run(spec);
  done = true;
  watch.join();
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->stdout_data, "on-gpu\n");
  EXPECT_NE(seen.find("loomgpu"), std::string::npos) << seen;
  EXPECT_NE(seen.find("gpu:fake:2"), std::string::npos) << seen;
  EXPECT_NE(seen.find("5:00"), std::string::npos) << "limited to the grant's time left: " << seen;

  // More GPUs than the pool has cannot start: Unavailable, never an outcome.
  spec.gpus = RunSpec::Gpus{"fake", 3, 5min};
  options.start_attempts = 1;
  auto strict = MakeSlurmExecutor(options);
  ASSERT_TRUE(strict.ok());
  auto too_many = (*strict)->Run(spec);
  ASSERT_FALSE(too_many.ok());
  EXPECT_EQ(too_many.status().code(), StatusCode::kUnavailable) << too_many.status().ToString();
  spec.gpus = RunSpec::Gpus{"fake;rm", 1, 5min};
  EXPECT_EQ((*executor)->Run(spec).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loom::sandbox
