// Shared fixture of the sandbox tests: a temp directory holding the worktree and an
// "outside" canary directory, an executor running as a uid of its own (so that the
// survivor check can look for that uid), and a marker variable in every payload's
// environment. TearDown asserts that nothing the test started is still running.
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

inline std::string HelperPath() { return std::string(LOOM_BIN_DIR) + "/sandbox_hostile_helper"; }

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
    auto executor = MakeBwrapExecutor(options_);
    ASSERT_TRUE(executor.ok()) << executor.status().ToString();
    executor_ = std::move(executor).value();
  }

  void TearDown() override {
    if (root_.empty()) return;  // skipped before SetUp
    ExpectNoSurvivors();
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
    if (uid_lock_fd_ >= 0) close(uid_lock_fd_);
  }

  // The cgroup fallback fixture overrides this with "none".
  virtual std::string CgroupParent() const { return "auto"; }

  RunSpec Spec(std::vector<std::string> argv) {
    RunSpec spec;
    spec.argv = std::move(argv);
    spec.worktree = worktree_;
    spec.read_only_paths = {LOOM_BIN_DIR};
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

  std::string root_, worktree_, outside_, marker_;
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
