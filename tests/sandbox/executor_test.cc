// The executor's contract with well-behaved commands: exit codes, signals, output,
// environment, the outcome's JSON, spec validation, probe errors, and the safe
// reader for files left in the worktree. The hostile battery is hostile_test.cc.
#include "sandbox/executor.h"

#include <grp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <map>
#include <sstream>
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

// Every rlimit the spec asks for is set, soft and hard, in the payload itself.
TEST_F(SandboxTest, RlimitsAreApplied) {
  Outcome o = Sh("cat /proc/self/limits", [](RunSpec& spec) {
    spec.limits.cpu_time = std::chrono::seconds(33);
    spec.limits.max_processes = 77;
    spec.limits.max_open_files = 100;
    spec.limits.max_file_size_bytes = 1 << 20;
    spec.limits.memory_bytes = uint64_t{3} << 30;
  });
  ASSERT_TRUE(o.Succeeded()) << o.stderr_data;
  auto limit = [&](const std::string& name) {
    auto pos = o.stdout_data.find(name);
    if (pos == std::string::npos) return std::string("missing");
    std::istringstream in(o.stdout_data.substr(pos + name.size()));
    std::string soft, hard;
    in >> soft >> hard;
    return soft + " " + hard;
  };
  EXPECT_EQ(limit("Max cpu time"), "33 34");  // SIGXCPU, then SIGKILL a second later
  EXPECT_EQ(limit("Max processes"), "77 77");
  EXPECT_EQ(limit("Max open files"), "100 100");
  EXPECT_EQ(limit("Max file size"), "1048576 1048576");
  EXPECT_EQ(limit("Max core file size"), "0 0");
  if (!HostPathExists("/sys/fs/cgroup/unified/loom/cgroup.subtree_control") ||
      ReadHostFile("/sys/fs/cgroup/unified/loom/cgroup.subtree_control").find("memory") ==
          std::string::npos) {
    // No memory controller: memory is bounded per process.
    EXPECT_EQ(limit("Max address space"), "3221225472 3221225472");
  }
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

// Every spec here is refused before anything runs or changes owner. (Refused
// worktree locations: worktree_test.cc and WorktreeOwnershipTest.)
TEST_F(SandboxTest, RejectsInvalidSpecs) {
  { std::ofstream(root_ + "/a-file") << "x"; }
  const std::string socket_path = root_ + "/sock";
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(sock, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_path.c_str());
  ASSERT_EQ(bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(mkdir((worktree_ + "/inside").c_str(), 0755), 0);
  const std::map<std::string, std::function<void(RunSpec&)>> cases = {
      {"no command", [](RunSpec& s) { s.argv.clear(); }},
      {"empty argv[0]", [](RunSpec& s) { s.argv = {""}; }},
      {"NUL in an argument", [](RunSpec& s) { s.argv.push_back(std::string("a\0b", 3)); }},
      {"relative worktree", [](RunSpec& s) { s.worktree = "relative/dir"; }},
      {"empty worktree", [](RunSpec& s) { s.worktree = ""; }},
      {"missing worktree", [this](RunSpec& s) { s.worktree = root_ + "/does-not-exist"; }},
      {"worktree is a file", [this](RunSpec& s) { s.worktree = root_ + "/a-file"; }},
      {"'=' in a variable name",
       [](RunSpec& s) {
         s.env.push_back({"A=B", "c"});
       }},
      {"empty variable name",
       [](RunSpec& s) {
         s.env.push_back({"", "c"});
       }},
      {"NUL in a value",
       [](RunSpec& s) {
         s.env.push_back({"A", std::string("b\0c", 3)});
       }},
      {"relative read-only path", [](RunSpec& s) { s.read_only_paths = {"usr/share"}; }},
      {"missing read-only path", [this](RunSpec& s) { s.read_only_paths = {root_ + "/nope"}; }},
      {"read-only /", [](RunSpec& s) { s.read_only_paths = {"/"}; }},
      {"read-only /run", [](RunSpec& s) { s.read_only_paths = {"/run"}; }},
      {"read-only /home", [](RunSpec& s) { s.read_only_paths = {"/home"}; }},
      {"read-only /var/lib", [](RunSpec& s) { s.read_only_paths = {"/var/lib"}; }},
      {"read-only /etc/../root", [](RunSpec& s) { s.read_only_paths = {"/etc/../root"}; }},
      {"read-only inside the worktree",
       [this](RunSpec& s) { s.read_only_paths = {worktree_ + "/inside"}; }},
      {"read-only socket", [&](RunSpec& s) { s.read_only_paths = {socket_path}; }},
      {"zero wall time", [](RunSpec& s) { s.limits.wall_time = {}; }},
      {"negative wall time",
       [](RunSpec& s) { s.limits.wall_time = std::chrono::milliseconds(-1); }},
      {"zero cpu time", [](RunSpec& s) { s.limits.cpu_time = {}; }},
      {"zero memory", [](RunSpec& s) { s.limits.memory_bytes = 0; }},
      {"zero processes", [](RunSpec& s) { s.limits.max_processes = 0; }},
      {"zero open files", [](RunSpec& s) { s.limits.max_open_files = 0; }},
      {"zero file size", [](RunSpec& s) { s.limits.max_file_size_bytes = 0; }},
      {"zero output", [](RunSpec& s) { s.limits.max_output_bytes = 0; }},
      {"zero /tmp size", [](RunSpec& s) { s.limits.tmp_size_bytes = 0; }},
      {"zero cpu percent", [](RunSpec& s) { s.limits.cpu_percent = 0; }},
  };
  for (const auto& [name, adjust] : cases) {
    RunSpec spec = Spec({"/bin/sh", "-c", "touch ran"});
    adjust(spec);
    Result<Outcome> r = executor_->Run(spec);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument)
        << name << ": " << r.status().ToString();
    EXPECT_FALSE(r.status().message().empty()) << name;
  }
  close(sock);
  EXPECT_FALSE(HostPathExists(worktree_ + "/ran"));
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

// bwrap leaves the sandbox's pid 1 unreaped; a zombie left to the host's init
// counts against the slot uid's RLIMIT_NPROC until init reaps it (on this host,
// slowly enough to make later runs fail with EAGAIN). Every process of a run,
// zombies included, is gone when Run() returns, after an exit or a kill.
TEST_F(SandboxTest, LeavesNoZombieBehind) {
  if (geteuid() != 0) GTEST_SKIP() << "needs a uid of the run's own to look for";
  auto processes_of_uid = [this] {
    std::vector<std::string> found;
    for (const auto& e : std::filesystem::directory_iterator("/proc")) {
      std::string status = ReadHostFile(e.path().string() + "/status");
      auto pos = status.find("\nUid:\t");
      if (pos != std::string::npos && std::stoul(status.substr(pos + 6)) == uid_) {
        found.push_back(e.path().filename().string() + " " + status.substr(0, status.find('\n')) +
                        " " + status.substr(status.find("State:"), 12));
      }
    }
    return found;
  };
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(Sh("true").Succeeded());
    EXPECT_EQ(processes_of_uid(), std::vector<std::string>{}) << "after run " << i;
  }
  Outcome o = Sh("sleep 60 & sleep 60",
                 [](RunSpec& spec) { spec.limits.wall_time = std::chrono::milliseconds(300); });
  EXPECT_EQ(o.limit, LimitHit::kTimeout);
  EXPECT_EQ(processes_of_uid(), std::vector<std::string>{}) << "after a timeout";
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

// A root caller lends the worktree to the sandbox uid for the run. What must not be
// lent is refused before anything changes owner; what is lent comes back to its
// owner, with everything the payload made. (Which paths are refused is checked
// without an executor in worktree_test.cc: pointing a root executor at / or /usr to
// see it refuse would, on a regression, give the host's files away.)
class WorktreeOwnershipTest : public SandboxTest {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "only a root caller lends its worktree";
    SandboxTest::SetUp();
  }

  // Runs `true` with `dir` as the worktree and returns the refusal (or OK). Expects
  // `dir` and `dir`/file to be owned by `owner` afterwards, refused or not.
  Status RunTrueIn(const std::string& dir, uid_t owner) {
    RunSpec spec = Spec({"true"});
    spec.worktree = dir;
    Result<Outcome> r = executor_->Run(spec);
    EXPECT_EQ(OwnerOf(dir), owner) << dir << " changed owner";
    EXPECT_EQ(OwnerOf(dir + "/file"), owner) << dir << "/file changed owner";
    return r.status();
  }

  // Makes `dir` (mode 0755) with a file in it, both owned by uid:gid `owner`.
  static void MakeTree(const std::string& dir, uid_t owner) {
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << dir;
    { std::ofstream(dir + "/file") << "x"; }
    ASSERT_EQ(lchown(dir.c_str(), owner, owner), 0);
    ASSERT_EQ(lchown((dir + "/file").c_str(), owner, owner), 0);
  }

  static uid_t OwnerOf(const std::string& path) {
    struct stat st;
    return lstat(path.c_str(), &st) == 0 ? st.st_uid : static_cast<uid_t>(-1);
  }

  // uid:gid:mode of every entry below `dir` (not following symlinks), by relative path.
  static std::map<std::string, std::string> Owners(const std::string& dir) {
    std::map<std::string, std::string> out;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
      struct stat st;
      if (lstat(e.path().c_str(), &st) != 0) continue;
      char mode[8];
      snprintf(mode, sizeof mode, "%o", st.st_mode & 07777);
      out[e.path().lexically_relative(dir).string()] =
          std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid) + ":" + mode;
    }
    return out;
  }
};

TEST_F(WorktreeOwnershipTest, RefusesATopLevelWorktree) {
  // The incident was `--dir /tmp`; this stand-in for /tmp is made at / by the test
  // itself, so that a regression damages nothing but the stand-in.
  char dir[] = "/loom-test-toplevel-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  { std::ofstream(std::string(dir) + "/file") << "x"; }
  Status s = RunTrueIn(dir, 0);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("top-level"), std::string::npos) << s.message();
  std::filesystem::remove_all(dir);
}

TEST_F(WorktreeOwnershipTest, RefusesAnotherUsersWorktree) {
  const std::string foreign = root_ + "/foreign";
  const uid_t other = uid_ + 2000;
  MakeTree(foreign, other);
  Status s = RunTrueIn(foreign, other);
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.ToString();
}

TEST_F(WorktreeOwnershipTest, AcceptsAWorktreeTheSandboxUidAlreadyOwns) {
  // What a run killed before it could give the tree back leaves behind.
  const std::string leftover = root_ + "/leftover";
  MakeTree(leftover, uid_);
  Status s = RunTrueIn(leftover, uid_);
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST_F(WorktreeOwnershipTest, GivesTheWorktreeBackToItsOwnerAfterARun) {
  umask(022);                       // the modes expected below
  const gid_t group = uid_ + 3000;  // the owner's group comes back too, not just root's
  const uid_t other = uid_ + 2000;
  ASSERT_EQ(chown(worktree_.c_str(), 0, group), 0);
  ASSERT_EQ(mkdir((worktree_ + "/src").c_str(), 0755), 0);
  ASSERT_EQ(chown((worktree_ + "/src").c_str(), 0, group), 0);
  { std::ofstream(worktree_ + "/src/main.c") << "int main;"; }
  ASSERT_EQ(chown((worktree_ + "/src/main.c").c_str(), 0, group), 0);
  { std::ofstream(worktree_ + "/theirs") << "someone else's"; }
  ASSERT_EQ(chown((worktree_ + "/theirs").c_str(), other, other), 0);
  const std::string canary = outside_ + "/canary";
  { std::ofstream(canary) << "outside"; }
  ASSERT_EQ(chown(canary.c_str(), other, other), 0);

  Outcome o = Sh("test \"$(stat -c %u . src src/main.c | sort -u)\" = " + std::to_string(uid_) +
                 " || { echo not lent; exit 1; }\n"
                 "echo more >> src/main.c && mkdir -p new/deep && echo made > new/deep/file && "
                 "ln -s " +
                 canary +
                 " new/escape && mkfifo fifo && "
                 "cp /bin/true suid && chmod 6755 suid && ln suid suid-link");
  ASSERT_TRUE(o.Succeeded()) << o.stdout_data << o.stderr_data;

  const std::string back = "0:" + std::to_string(group) + ":";
  std::map<std::string, std::string> expected = {
      {"src", back + "755"},
      {"src/main.c", back + "644"},
      {"theirs", std::to_string(other) + ":" + std::to_string(other) + ":644"},
      {"new", back + "755"},
      {"new/deep", back + "755"},
      {"new/deep/file", back + "644"},
      {"new/escape", back + "777"},
      {"fifo", back + "644"},
      {"suid", back + "755"},
      {"suid-link", back + "755"}};
  EXPECT_EQ(Owners(worktree_), expected);
  EXPECT_EQ(OwnerOf(worktree_), 0u);
  struct stat st;
  ASSERT_EQ(stat(worktree_.c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, group);
  EXPECT_EQ(OwnerOf(canary), other) << "the give-back followed a planted symlink";
}

TEST_F(WorktreeOwnershipTest, GivesTheWorktreeBackWhenALimitEndsTheRun) {
  Outcome o = Sh("touch made && sleep 60",
                 [](RunSpec& spec) { spec.limits.wall_time = std::chrono::milliseconds(500); });
  EXPECT_EQ(o.limit, LimitHit::kTimeout);
  EXPECT_EQ(OwnerOf(worktree_), 0u);
  EXPECT_EQ(OwnerOf(worktree_ + "/made"), 0u);
}

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

namespace loom::sandbox {
namespace {

// bwrap fails in its child, after reporting it: a worktree below a directory the
// sandbox uid cannot traverse. Not the command's exit 1: the run was never made.
TEST_F(SandboxTest, ASandboxBwrapCannotSetUpIsAnErrorThatSaysWhy) {
  if (geteuid() != 0) GTEST_SKIP() << "only a root caller runs the sandbox as another uid";
  ASSERT_EQ(chmod(root_.c_str(), 0700), 0);
  auto executor = MakeBwrapExecutor(options_);
  ASSERT_TRUE(executor.ok());
  auto outcome = (*executor)->Run(Spec({"true"}));
  chmod(root_.c_str(), 0755);
  ASSERT_FALSE(outcome.ok()) << "exit " << outcome->exit_code.value_or(-1);
  EXPECT_EQ(outcome.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(outcome.status().message().find("must be able to traverse"), std::string::npos)
      << outcome.status().ToString();
}

}  // namespace
}  // namespace loom::sandbox
