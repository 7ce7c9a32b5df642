// Where a worktree may be, and taking back one a crash left lent, checked directly
// (no bubblewrap): the refusals on paths a root executor must never be pointed at in
// a test. The loan itself is tests/common/posix_test.cc; executor_test.cc checks it
// through real runs.
#include "sandbox/internal/worktree.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "sandbox/executor.h"

namespace loom::sandbox {
namespace {

using internal::CheckWorktreeLocation;

TEST(CheckWorktreeLocationTest, RefusesRootTopLevelAndSystemTrees) {
  for (const char* path : {"/",
                           "/tmp",
                           "/home",
                           "/root",
                           "/srv",
                           "/opt",
                           "/mnt",
                           "/media",
                           "/work",
                           "/var",
                           "/usr",
                           "/usr/src/project",
                           "/usr/local/src/x",
                           "/bin/x",
                           "/sbin/x",
                           "/lib/x",
                           "/lib64/x",
                           "/etc/ssl",
                           "/proc/1",
                           "/proc/self/cwd",
                           "/sys/fs/cgroup",
                           "/dev/shm/x",
                           "/run/user/0",
                           "/run/lock/x",
                           "/boot/efi",
                           "/var/lib",
                           "/var/lib/dpkg",
                           "/var/lib/loom",
                           "/var/tmp",
                           "/var/log/x",
                           "/var/cache/apt",
                           "/var/spool/cron",
                           "/var/mail/root",
                           "relative/dir",
                           ""}) {
    Status s = CheckWorktreeLocation(path);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << "'" << path << "' was accepted";
    EXPECT_FALSE(s.message().empty());
  }
}

TEST(CheckWorktreeLocationTest, AcceptsADirectoryOfItsOwn) {
  for (const char* path : {"/tmp/loom-abc", "/tmp/a/b/c", "/home/alice/project", "/root/project",
                           "/srv/loom/wt/1", "/var/tmp/loom-x", "/var/lib/loom/worktrees/repo/42",
                           "/usrx/project", "/variety/x", "/work/main/build/wt"}) {
    EXPECT_TRUE(CheckWorktreeLocation(path).ok())
        << path << ": " << CheckWorktreeLocation(path).ToString();
  }
}

// A crash during a root caller's run left the worktree lent to the sandbox uid:
// ReclaimWorktree gives it all back (not .git, which was never lent), and refuses
// places no worktree may be.
TEST(ReclaimWorktreeTest, TakesBackATreeACrashLeftLent) {
  if (geteuid() != 0) GTEST_SKIP() << "changing owners needs root";
  char tmpl[] = "/tmp/loom-reclaim-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string wt = tmpl;
  ASSERT_EQ(mkdir((wt + "/.git").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((wt + "/src").c_str(), 0755), 0);
  std::ofstream(wt + "/src/a.c") << "data";
  std::ofstream(wt + "/.git/HEAD") << "ref";
  for (const char* p : {"/src/a.c", "/src", ""}) {
    ASSERT_EQ(lchown((wt + p).c_str(), 64000, 64000), 0);
  }
  Result<size_t> r = ReclaimWorktree(wt);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, 3u);
  struct stat st;
  for (const char* p : {"", "/src", "/src/a.c", "/.git", "/.git/HEAD"}) {
    ASSERT_EQ(lstat((wt + p).c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 0u) << p;
  }
  EXPECT_EQ(*ReclaimWorktree(wt), 0u);  // nothing lent any more
  std::error_code ec;
  std::filesystem::remove_all(wt, ec);
  EXPECT_EQ(ReclaimWorktree(wt).status().code(), StatusCode::kNotFound);
}

TEST(ReclaimWorktreeTest, RefusesPlacesNoWorktreeMayBe) {
  for (const char* path : {"/", "/tmp", "/etc", "/usr/lib", "relative/path"}) {
    EXPECT_EQ(ReclaimWorktree(path).status().code(), StatusCode::kInvalidArgument) << path;
  }
}

}  // namespace
}  // namespace loom::sandbox
