// Shared fixture of the sandbox tests: a temp directory holding the worktree and an
// "outside" canary directory, an executor running as a uid of its own (so that the
// survivor check can look for that uid), and a marker variable in every payload's
// environment. TearDown asserts that nothing the test started is still running.
//
// Payloads that need files from the host (the hostile helper) find them in a per-test
// directory bound read-only. The executor refuses binds under /tmp, /var, /home, /root
// (rightly), and a root caller's sandbox uid must traverse every directory above, so
// that directory cannot simply be the build tree of a clone in /tmp or /root: it is
// made under the first of $LOOM_TEST_BIND_ROOT, the build directory, /srv, /opt and
// /mnt that the sandbox may see.
//
// Compiled with LOOM_TEST_SANDBOX_THROUGH_SLURM, the executor is the Slurm one on
// the binary's local cluster (slurm_environment.h): the same tests, every run a job step.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "sandbox/executor.h"
#include "tests/support/test_paths.h"
#ifdef LOOM_TEST_SANDBOX_THROUGH_SLURM
#include "tests/sandbox/slurm_environment.h"
#endif

namespace loom::sandbox::testing {

inline std::string ReadHostFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline bool HostPathExists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// True when the sandbox may bind `dir` read-only and (for a root caller) its uid can
// reach it: not under a host-state tree (the executor's kForbiddenReadOnlyPrefixes, which
// refuses the run otherwise), and every directory down to it world-searchable.
inline bool SandboxCanSee(const std::string& dir) {
  for (const char* prefix : {"/run", "/var", "/home", "/root", "/sys", "/proc", "/dev", "/tmp"}) {
    std::string p = prefix;
    if (dir == p || dir.rfind(p + "/", 0) == 0) return false;
  }
  if (geteuid() != 0) return true;  // the sandbox runs as the caller
  for (std::filesystem::path p = dir; !p.empty(); p = p.parent_path()) {
    struct stat st;
    if (stat(p.c_str(), &st) != 0 || (st.st_mode & S_IXOTH) == 0) return false;
    if (p == p.root_path()) break;
  }
  return true;
}

// A new directory, mode 0755, that the sandbox may bind (see the file comment), or ""
// with `why` saying what to change.
inline std::string MakeBindableDir(std::string* why) {
  std::vector<std::string> bases;
  if (const char* env = getenv("LOOM_TEST_BIND_ROOT"); env != nullptr && *env != '\0') {
    bases.push_back(env);
  }
  bases.push_back(std::filesystem::weakly_canonical(std::string(LOOM_BIN_DIR) + "/..").string());
  for (const char* b : {"/srv", "/opt", "/mnt"}) bases.push_back(b);
  for (const auto& base : bases) {
    if (!SandboxCanSee(base) || access(base.c_str(), W_OK) != 0) continue;
    std::string tmpl = base + "/loom-sbx-bind-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) continue;
    chmod(tmpl.c_str(), 0755);
    return tmpl;
  }
  *why =
      "no directory the sandbox may bind read-only: the build directory is under /tmp, /var, "
      "/home or /root (or not searchable by others), and /srv, /opt and /mnt are not writable; "
      "set LOOM_TEST_BIND_ROOT to a writable directory outside those trees";
  return "";
}

class SandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/loom-sbx-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    chmod(root_.c_str(), 0755);
    worktree_ = root_ + "/wt";
    outside_ = root_ + "/outside";
    ASSERT_EQ(mkdir(worktree_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(outside_.c_str(), 0755), 0);
    std::string why;
    bind_dir_ = MakeBindableDir(&why);
    ASSERT_FALSE(bind_dir_.empty()) << why;
    std::filesystem::copy_file(std::string(LOOM_BIN_DIR) + "/sandbox_hostile_helper", HelperPath());
    std::random_device rd;
    marker_ = "m" + std::to_string(rd()) + std::to_string(rd());
    // A uid no concurrently running test holds (ctest -j runs test processes in
    // parallel): the survivor check and RLIMIT_NPROC are per uid. An unprivileged
    // caller's sandbox runs as the caller.
    if (geteuid() != 0) uid_ = geteuid();
    for (uint32_t slot = 0; slot < 256 && uid_ == 0; ++slot) {
      std::string lock = "/tmp/loom-sbx-test-uid-" + std::to_string(slot) + ".lock";
      int fd = open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      if (fd < 0) continue;
      if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
        uid_lock_fd_ = fd;
        uid_ = 64100 + slot;
      } else {
        close(fd);
      }
    }
    ASSERT_NE(uid_, 0u) << "no free test uid";
    options_.run_as_uid = uid_;
    options_.run_as_gid = uid_;
    options_.cgroup_parent = CgroupParent();
#ifdef LOOM_TEST_SANDBOX_THROUGH_SLURM
    // The same battery with each run a Slurm job step (hostile_slurm_test).
    LOOM_REQUIRE_SLURM(cluster);
    (void)cluster;
    auto executor = MakeSlurmExecutor(SlurmEnvironment::Options(options_));
#else
    auto executor = MakeBwrapExecutor(options_);
#endif
    ASSERT_TRUE(executor.ok()) << executor.status().ToString();
    executor_ = std::move(executor).value();
  }

  void TearDown() override {
    if (root_.empty()) return;  // skipped before SetUp
    ExpectNoSurvivors();
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
    if (!bind_dir_.empty()) std::filesystem::remove_all(bind_dir_, ec);
    if (uid_lock_fd_ >= 0) close(uid_lock_fd_);
  }

  // The cgroup fallback fixture overrides this with "none".
  virtual std::string CgroupParent() const { return "auto"; }

  RunSpec Spec(std::vector<std::string> argv) {
    RunSpec spec;
    spec.argv = std::move(argv);
    spec.worktree = worktree_;
    spec.read_only_paths = {bind_dir_};
    spec.env = {{"PATH", "/usr/local/bin:/usr/bin:/bin"}, {"LOOM_TEST_MARKER", marker_}};
    spec.limits.wall_time = std::chrono::seconds(20);
    return spec;
  }

  Outcome Run(const RunSpec& spec) {
    auto outcome = executor_->Run(spec);
    EXPECT_TRUE(outcome.ok()) << outcome.status().ToString();
    return outcome.ok() ? std::move(outcome).value() : Outcome{};
  }

  Outcome Sh(const std::string& script, const std::function<void(RunSpec&)>& adjust = nullptr) {
    RunSpec spec = Spec({"/bin/sh", "-c", script});
    if (adjust) adjust(spec);
    return Run(spec);
  }

  Outcome Helper(const std::string& attack, const std::string& arg = "",
                 Network network = Network::kNone) {
    RunSpec spec = Spec({HelperPath(), attack, arg});
    spec.network = network;
    return Run(spec);
  }

  // Processes that carry this test's marker or run as its uid.
  std::vector<std::string> Survivors() {
    std::vector<std::string> found;
    DIR* proc = opendir("/proc");
    if (proc == nullptr) return found;
    while (dirent* e = readdir(proc)) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
      std::string dir = std::string("/proc/") + e->d_name;
      std::string environ = ReadHostFile(dir + "/environ");
      std::string status = ReadHostFile(dir + "/status");
      bool ours = environ.find(marker_) != std::string::npos;
      if (geteuid() == 0) {
        auto pos = status.find("\nUid:\t");
        if (pos != std::string::npos && std::stoul(status.substr(pos + 6)) == uid_) ours = true;
      }
      if (ours && status.find("State:\tZ") == std::string::npos) {
        found.push_back(std::string(e->d_name) + ": " + ReadHostFile(dir + "/comm"));
      }
    }
    closedir(proc);
    return found;
  }

  void ExpectNoSurvivors() {
    auto survivors = Survivors();
    EXPECT_TRUE(survivors.empty()) << "surviving process " << survivors.front();
  }

  std::string HelperPath() const { return bind_dir_ + "/sandbox_hostile_helper"; }

  std::string root_, worktree_, outside_, bind_dir_, marker_;
  uint32_t uid_ = 0;
  int uid_lock_fd_ = -1;
  BwrapOptions options_;
  std::unique_ptr<Executor> executor_;
};

// The same tests on a host that gives Loom no cgroup: killing relies on the pid
// namespace dying with bwrap's pid 1, limits on rlimits.
class NoCgroupSandboxTest : public SandboxTest {
 protected:
  std::string CgroupParent() const override { return "none"; }
};

}  // namespace loom::sandbox::testing
