// Where a worktree may be, and the lend / give-back of a root caller's worktree,
// checked directly (no bubblewrap): the refusals on paths a root executor must never
// be pointed at in a test, and the ownership rules on trees no payload could build
// (a hard link to a file outside, .git). executor_test.cc checks the same through
// real runs.
#include "sandbox/internal/worktree.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace loom::sandbox::internal {
namespace {

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

// A root-owned tree with what a real worktree may hold, and a canary outside it.
class WorktreeLoanTest : public ::testing::Test {
 protected:
  static constexpr Owner kSandbox{64097, 64097};
  static constexpr uid_t kOther = 64098;

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "changing owners needs root";
    umask(022);
    char tmpl[] = "/tmp/loom-loan-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    wt_ = root_ + "/wt";
    outside_ = root_ + "/outside";
    ASSERT_EQ(mkdir(wt_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(outside_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir((wt_ + "/.git").c_str(), 0755), 0);
    Write(wt_ + "/.git/HEAD");
    ASSERT_EQ(mkdir((wt_ + "/src").c_str(), 0755), 0);
    Write(wt_ + "/src/a.c");
    Write(outside_ + "/secret");
    ASSERT_EQ(link((outside_ + "/secret").c_str(), (wt_ + "/hardlink").c_str()), 0);
    ASSERT_EQ(symlink((outside_ + "/secret").c_str(), (wt_ + "/symlink").c_str()), 0);
    ASSERT_EQ(symlink(outside_.c_str(), (wt_ + "/dirlink").c_str()), 0);
    Write(wt_ + "/theirs");
    ASSERT_EQ(chown((wt_ + "/theirs").c_str(), kOther, kOther), 0);
    fd_ = open(wt_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(fd_, 0);
  }

  void TearDown() override {
    if (fd_ >= 0) close(fd_);
    std::error_code ec;
    if (!root_.empty()) std::filesystem::remove_all(root_, ec);
  }

  static void Write(const std::string& path) { std::ofstream(path) << "data"; }

  static struct stat Stat(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
    return st;
  }

  std::string root_, wt_, outside_;
  int fd_ = -1;
};

TEST_F(WorktreeLoanTest, LendsWhatTheOwnerOwnsAndNothingElse) {
  auto loan = WorktreeLoan::Lend(fd_, wt_, kSandbox);
  ASSERT_TRUE(loan.ok()) << loan.status().ToString();
  for (const char* lent : {"", "/src", "/src/a.c", "/symlink", "/dirlink"}) {
    EXPECT_EQ(Stat(wt_ + lent).st_uid, kSandbox.uid) << lent;
    EXPECT_EQ(Stat(wt_ + lent).st_gid, kSandbox.gid) << lent;
  }
  EXPECT_EQ(Stat(wt_ + "/.git").st_uid, 0u);
  EXPECT_EQ(Stat(wt_ + "/.git/HEAD").st_uid, 0u);
  EXPECT_EQ(Stat(wt_ + "/hardlink").st_uid, 0u) << "a hard link to a file outside was lent";
  EXPECT_EQ(Stat(wt_ + "/theirs").st_uid, kOther);
  EXPECT_EQ(Stat(outside_).st_uid, 0u) << "followed a symlink";
  EXPECT_EQ(Stat(outside_ + "/secret").st_uid, 0u) << "followed a symlink";

  ASSERT_TRUE(loan->GiveBack().ok());
  for (const char* back : {"", "/src", "/src/a.c", "/symlink", "/dirlink", "/hardlink"}) {
    EXPECT_EQ(Stat(wt_ + back).st_uid, 0u) << back;
  }
  EXPECT_EQ(Stat(wt_ + "/theirs").st_uid, kOther);
}

TEST_F(WorktreeLoanTest, GivesBackWhatTheSandboxMadeWithoutSetUidBits) {
  ASSERT_EQ(chown(wt_.c_str(), 0, 4321), 0);
  {
    auto loan = WorktreeLoan::Lend(fd_, wt_, kSandbox);
    ASSERT_TRUE(loan.ok()) << loan.status().ToString();
    // What a payload running as the sandbox uid leaves behind.
    std::string deep = wt_ + "/made";
    ASSERT_EQ(mkdir(deep.c_str(), 0700), 0);
    Write(deep + "/suid");
    ASSERT_EQ(symlink("/etc/shadow", (deep + "/shadow").c_str()), 0);
    for (const char* p : {"", "/suid", "/shadow"}) {
      ASSERT_EQ(lchown((deep + p).c_str(), kSandbox.uid, kSandbox.gid), 0);
    }
    ASSERT_EQ(chmod((deep + "/suid").c_str(), 06755), 0);  // chown cleared the bits
    // Given back by the destructor.
  }
  for (const char* p : {"", "/made", "/made/suid", "/made/shadow", "/src/a.c"}) {
    EXPECT_EQ(Stat(wt_ + p).st_uid, 0u) << p;
    EXPECT_EQ(Stat(wt_ + p).st_gid, 4321u) << p;
  }
  EXPECT_EQ(Stat(wt_ + "/made/suid").st_mode & 07777, 0755u);
  EXPECT_EQ(Stat("/etc/shadow").st_uid, 0u);
}

TEST_F(WorktreeLoanTest, GivesBackADirectoryTreeDeeperThanPathMax) {
  auto loan = WorktreeLoan::Lend(fd_, wt_, kSandbox);
  ASSERT_TRUE(loan.ok()) << loan.status().ToString();
  // 300 levels of 20-character names: 6,300 bytes, beyond PATH_MAX (4,096).
  int dir = dup(fd_);
  for (int i = 0; i < 300; ++i) {
    const char* name = "dddddddddddddddddddd";
    ASSERT_EQ(mkdirat(dir, name, 0755), 0);
    ASSERT_EQ(fchownat(dir, name, kSandbox.uid, kSandbox.gid, AT_SYMLINK_NOFOLLOW), 0);
    int next = openat(dir, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(dir);
    ASSERT_GE(next, 0);
    dir = next;
  }
  struct stat st;
  ASSERT_EQ(fstat(dir, &st), 0);
  EXPECT_EQ(st.st_uid, kSandbox.uid);
  Status s = loan->GiveBack();
  EXPECT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(fstat(dir, &st), 0);
  close(dir);
  EXPECT_EQ(st.st_uid, 0u) << "the bottom of the tree stayed lent";
  EXPECT_EQ(Stat(wt_ + "/dddddddddddddddddddd").st_uid, 0u);
}

TEST_F(WorktreeLoanTest, RefusesAnotherUsersTreeAndChangesNothing) {
  ASSERT_EQ(chown(wt_.c_str(), kOther, kOther), 0);
  auto loan = WorktreeLoan::Lend(fd_, wt_, kSandbox);
  EXPECT_EQ(loan.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Stat(wt_).st_uid, kOther);
  EXPECT_EQ(Stat(wt_ + "/src/a.c").st_uid, 0u);
}

}  // namespace
}  // namespace loom::sandbox::internal
