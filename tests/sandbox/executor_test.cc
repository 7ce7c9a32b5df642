// The executor's contract with well-behaved commands: exit codes, signals, output,
// environment, the outcome's JSON, spec validation, probe errors, and the safe
// reader for files left in the worktree. The hostile battery is hostile_test.cc.
#include "sandbox/executor.h"

#include <grp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <thread>

#include "tests/sandbox/sandbox_fixture.h"

namespace loom::sandbox {
namespace {

using testing::HostPathExists;
using testing::ReadHostFile;
using testing::SandboxTest;

TEST_F(SandboxTest, ReportsExitCodeAndOutput) {
  Outcome o = Sh("echo out; echo err >&2; exit 7");
  EXPECT_EQ(o.exit_code, 7);
  EXPECT_FALSE(o.signal.has_value());
  EXPECT_EQ(o.limit, LimitHit::kNone);
  EXPECT_EQ(o.stdout_data, "out\n");
  EXPECT_EQ(o.stderr_data, "err\n");
  EXPECT_FALSE(o.Succeeded());
  EXPECT_GE(o.wall_ms, 0);
}

TEST_F(SandboxTest, SucceedsOnExitZero) {
  Outcome o = Sh("true");
  EXPECT_TRUE(o.Succeeded());
  EXPECT_EQ(o.exit_code, 0);
}

TEST_F(SandboxTest, ReportsTerminatingSignal) {
  Outcome o = Sh("kill -SEGV $$");
  EXPECT_EQ(o.signal, SIGSEGV);
  EXPECT_FALSE(o.exit_code.has_value());
  EXPECT_EQ(o.limit, LimitHit::kNone);
}

TEST_F(SandboxTest, EnvironmentIsExactlyTheExplicitVariables) {
  RunSpec spec = Spec({"/usr/bin/env"});
  spec.env = {{"ONLY", "this"}};
  Outcome o = Run(spec);
  // bwrap itself adds PWD for the working directory; nothing else appears.
  EXPECT_EQ(o.stdout_data, "ONLY=this\nPWD=" + worktree_ + "\n");
}

TEST_F(SandboxTest, StdinIsDevNullAndCwdIsTheWorktree) {
  Outcome o = Sh("cat; pwd; readlink /proc/self/fd/0");
  EXPECT_EQ(o.stdout_data, worktree_ + "\n/dev/null\n");
}

TEST_F(SandboxTest, WorktreeIsWritableAndWritesReachTheHost) {
  Outcome o = Sh("echo hello > result.txt && mkdir -p sub && echo x > sub/y");
  EXPECT_TRUE(o.Succeeded()) << o.stderr_data;
  EXPECT_EQ(ReadHostFile(worktree_ + "/result.txt"), "hello\n");
  EXPECT_EQ(ReadHostFile(worktree_ + "/sub/y"), "x\n");
}

TEST_F(SandboxTest, RunsAsAnUnprivilegedUidWhenCallerIsRoot) {
  if (geteuid() != 0) GTEST_SKIP() << "needs a root caller";
  Outcome o = Sh("id -u; grep ^Cap /proc/self/status");
  ASSERT_TRUE(o.Succeeded()) << o.stderr_data;
  EXPECT_EQ(o.stdout_data.substr(0, o.stdout_data.find('\n')), std::to_string(uid_));
  EXPECT_NE(o.stdout_data.find("CapEff:\t0000000000000000"), std::string::npos);
  EXPECT_NE(o.stdout_data.find("CapBnd:\t0000000000000000"), std::string::npos);
}

TEST_F(SandboxTest, WorksForAnUnprivilegedCaller) {
  if (geteuid() != 0)
    GTEST_SKIP() << "this run is already unprivileged: every other test covers it";
  const uid_t user = uid_ + 1000;
  ASSERT_EQ(chown(worktree_.c_str(), user, user), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setresgid(user, user, user) != 0 ||
        setresuid(user, user, user) != 0) {
      _exit(10);
    }
    BwrapOptions options;
    options.cgroup_parent = "none";
    auto executor = MakeBwrapExecutor(options);
    if (!executor.ok()) _exit(11);
    RunSpec spec = Spec({"/bin/sh", "-c", "id -u > who && exit 3"});
    auto outcome = (*executor)->Run(spec);
    if (!outcome.ok()) _exit(12);
    _exit(outcome->exit_code.value_or(13));
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3);
  EXPECT_EQ(ReadHostFile(worktree_ + "/who"), std::to_string(user) + "\n");
}

TEST_F(SandboxTest, OutcomeJsonHasEveryField) {
  Outcome o = Sh("printf 'ok'; exit 2");
  Json j = o.ToJson();
  EXPECT_EQ(j["exit_code"], 2);
  EXPECT_TRUE(j["signal"].is_null());
  EXPECT_TRUE(j["limit"].is_null());
  EXPECT_EQ(j["stdout"], "ok");
  EXPECT_EQ(j["stderr"], "");
  EXPECT_EQ(j["stdout_truncated"], false);
  EXPECT_EQ(j["stderr_truncated"], false);
  EXPECT_TRUE(j["wall_ms"].is_number());
  EXPECT_TRUE(j["cpu_ms"].is_number());
  EXPECT_TRUE(j["peak_memory_bytes"].is_number());
  EXPECT_FALSE(j.contains("stdout_lossy"));
}

TEST_F(SandboxTest, OutcomeJsonNamesTheLimit) {
  Outcome o;
  o.signal = SIGKILL;
  o.limit = LimitHit::kTimeout;
  Json j = o.ToJson();
  EXPECT_EQ(j["limit"], "timeout");
  EXPECT_EQ(j["signal"], SIGKILL);
  EXPECT_TRUE(j["exit_code"].is_null());
}

TEST_F(SandboxTest, RejectsInvalidSpecs) {
  RunSpec empty = Spec({});
  EXPECT_EQ(executor_->Run(empty).status().code(), StatusCode::kInvalidArgument);
  RunSpec relative = Spec({"true"});
  relative.worktree = "relative/dir";
  EXPECT_EQ(executor_->Run(relative).status().code(), StatusCode::kInvalidArgument);
  RunSpec missing = Spec({"true"});
  missing.worktree = root_ + "/does-not-exist";
  EXPECT_EQ(executor_->Run(missing).status().code(), StatusCode::kInvalidArgument);
  RunSpec system = Spec({"true"});
  system.worktree = "/usr";
  EXPECT_EQ(executor_->Run(system).status().code(), StatusCode::kInvalidArgument);
  RunSpec bad_env = Spec({"true"});
  bad_env.env.push_back({"A=B", "c"});
  EXPECT_EQ(executor_->Run(bad_env).status().code(), StatusCode::kInvalidArgument);
  RunSpec zero = Spec({"true"});
  zero.limits.max_processes = 0;
  EXPECT_EQ(executor_->Run(zero).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(SandboxTest, ConcurrentRunsAreIndependent) {
  std::string wt2 = root_ + "/wt2";
  ASSERT_EQ(mkdir(wt2.c_str(), 0755), 0);
  Result<Outcome> a = Status::Internal("not run");
  Result<Outcome> b = Status::Internal("not run");
  std::thread t1([&] {
    a = executor_->Run(Spec({"/bin/sh", "-c", "echo a > f; sleep 0.3; cat f"}));
  });
  std::thread t2([&] {
    RunSpec spec = Spec({"/bin/sh", "-c", "echo b > f; sleep 0.3; cat f"});
    spec.worktree = wt2;
    b = executor_->Run(spec);
  });
  t1.join();
  t2.join();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->stdout_data, "a\n");
  EXPECT_EQ(b->stdout_data, "b\n");
}

TEST_F(SandboxTest, RunCgroupIsRemovedAfterTheRun) {
  if (geteuid() != 0 || !HostPathExists("/sys/fs/cgroup/unified/cgroup.procs")) {
    GTEST_SKIP() << "no cgroup v2 tree to use";
  }
  Outcome o = Sh("cat /proc/self/cgroup");
  ASSERT_TRUE(o.Succeeded());
  // Inside its cgroup namespace the run sees itself at the root of its own cgroup.
  EXPECT_NE(o.stdout_data.find("0::/\n"), std::string::npos) << o.stdout_data;
  for (const auto& e : std::filesystem::directory_iterator("/sys/fs/cgroup/unified/loom")) {
    EXPECT_EQ(e.path().filename().string().find("run-" + std::to_string(getpid()) + "-"),
              std::string::npos)
        << "left behind: " << e.path();
  }
}

// The battery's survivor check is real: it finds a process carrying the marker.
TEST_F(SandboxTest, SurvivorCheckFindsALeftoverProcess) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::string env = "LOOM_TEST_MARKER=" + marker_;
    char* const argv[] = {const_cast<char*>("/bin/sleep"), const_cast<char*>("30"), nullptr};
    char* const envp[] = {env.data(), nullptr};
    execve("/bin/sleep", argv, envp);
    _exit(127);
  }
  for (int i = 0; i < 200 && Survivors().empty(); ++i) usleep(5000);
  EXPECT_EQ(Survivors().size(), 1u);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  EXPECT_TRUE(Survivors().empty());
}

TEST(BwrapProbeTest, ReportsMissingBubblewrap) {
  BwrapOptions options;
  options.bwrap_path = "/nonexistent/bwrap";
  Status s = ProbeBwrap(options);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("apt-get install bubblewrap"), std::string::npos) << s.message();
  EXPECT_FALSE(MakeBwrapExecutor(options).ok());
}

TEST(BwrapProbeTest, ReportsABwrapThatCannotCreateNamespaces) {
  // A stand-in for bwrap on a host without user namespaces: it fails the way bwrap does.
  char dir[] = "/tmp/loom-fake-bwrap-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  chmod(dir, 0755);
  std::string fake = std::string(dir) + "/bwrap";
  {
    std::ofstream out(fake);
    out << "#!/bin/sh\necho 'bwrap: No permissions to creating new namespace, likely because "
           "the kernel does not allow non-privileged user namespaces.' >&2\nexit 1\n";
  }
  chmod(fake.c_str(), 0755);
  BwrapOptions options;
  options.bwrap_path = fake;
  Status s = ProbeBwrap(options);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("cannot run sandboxes"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("non-privileged user namespaces"), std::string::npos) << s.message();
  std::filesystem::remove_all(dir);
}

TEST(BwrapProbeTest, RefusesToRunAsRootInsideTheSandbox) {
  if (geteuid() != 0) GTEST_SKIP() << "needs a root caller";
  BwrapOptions options;
  options.run_as_uid = 0;
  EXPECT_EQ(MakeBwrapExecutor(options).status().code(), StatusCode::kInvalidArgument);
}

TEST(BwrapProbeTest, SucceedsOnThisHost) { EXPECT_TRUE(ProbeBwrap({}).ok()); }

TEST_F(SandboxTest, ReadWorktreeFileReadsPlainFiles) {
  Outcome o = Sh("mkdir -p reports && printf '<xml/>' > reports/junit.xml");
  ASSERT_TRUE(o.Succeeded());
  auto text = ReadWorktreeFile(worktree_, "reports/junit.xml", 1 << 20);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(*text, "<xml/>");
  auto capped = ReadWorktreeFile(worktree_, "reports/junit.xml", 3);
  ASSERT_TRUE(capped.ok());
  EXPECT_EQ(*capped, "<xm");
}

TEST_F(SandboxTest, ReadWorktreeFileRefusesPlantedSymlinksFifosAndEscapes) {
  std::string secret = outside_ + "/secret";
  { std::ofstream(secret) << "host secret"; }
  Outcome o = Sh("ln -s " + secret +
                 " report.xml && ln -s /etc/shadow shadow.xml && "
                 "mkdir d && ln -s " +
                 outside_ + " dirlink && mkfifo fifo");
  ASSERT_TRUE(o.Succeeded()) << o.stderr_data;
  for (const char* planted :
       {"report.xml", "shadow.xml", "dirlink/secret", "fifo", "../outside/secret", "/etc/passwd"}) {
    auto r = ReadWorktreeFile(worktree_, planted, 1 << 20);
    EXPECT_FALSE(r.ok()) << planted;
    if (r.ok()) {
      EXPECT_EQ(r->find("host secret"), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace loom::sandbox
