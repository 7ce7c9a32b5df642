// common/posix.h: UniqueFd, the walk that never follows a symlink, and the
// ownership loan of a tree with its give-back and its reclaim after a crash, on
// trees no payload could build (a hard link to a file outside, .git, a tree deeper
// than PATH_MAX). The ownership tests need root; tests/sandbox checks the loan
// through real runs.
#include "common/posix.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

namespace loom {
namespace {

TEST(UniqueFdTest, ClosesWhatItOwnsAndHandsOverOnMove) {
  int raw = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(raw, 0);
  {
    UniqueFd a(raw);
    UniqueFd b = std::move(a);
    EXPECT_FALSE(a.valid());
    EXPECT_EQ(b.get(), raw);
    EXPECT_GE(fcntl(raw, F_GETFD), 0);
  }
  EXPECT_EQ(fcntl(raw, F_GETFD), -1) << "not closed";
  UniqueFd c(open("/dev/null", O_RDONLY | O_CLOEXEC));
  int released = c.Release();
  EXPECT_FALSE(c.valid());
  EXPECT_GE(fcntl(released, F_GETFD), 0);
  close(released);
}

TEST(VisitTreeBelowTest, VisitsEverythingButTopGitAndNeverFollowsSymlinks) {
  char tmpl[] = "/tmp/loom-walk-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string root = tmpl;
  ASSERT_EQ(mkdir((root + "/.git").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((root + "/a").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((root + "/a/.git").c_str(), 0755), 0);  // only the top one is skipped
  ASSERT_EQ(mkdir((root + "/outside").c_str(), 0755), 0);
  std::ofstream(root + "/outside/secret") << "x";
  std::ofstream(root + "/a/f") << "x";
  ASSERT_EQ(symlink((root + "/outside").c_str(), (root + "/a/link").c_str()), 0);
  UniqueFd fd(open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  std::set<std::string> seen;
  auto collect = [&](int, const char*, const struct stat&, const std::string& shown) {
    seen.insert(shown.substr(root.size()));
    return Status::Ok();
  };
  ASSERT_TRUE(VisitTreeBelow(fd.get(), root, TopGit::kSkip, collect).ok());
  EXPECT_EQ(seen, (std::set<std::string>{"/a", "/a/.git", "/a/f", "/a/link", "/outside",
                                         "/outside/secret"}));
  seen.clear();
  ASSERT_TRUE(VisitTreeBelow(fd.get(), root, TopGit::kVisit, collect).ok());
  EXPECT_TRUE(seen.count("/.git"));
  EXPECT_FALSE(seen.count("/a/link/secret")) << "followed a symlink";
  std::error_code ec;
  std::filesystem::remove_all(root, ec);
}

// A root-owned tree with what a real worktree may hold, and a canary outside it.
class OwnershipLoanTest : public ::testing::Test {
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

TEST_F(OwnershipLoanTest, LendsWhatTheOwnerOwnsAndNothingElse) {
  auto loan = OwnershipLoan::Lend(fd_, wt_, kSandbox);
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

TEST_F(OwnershipLoanTest, GivesBackWhatTheSandboxMadeWithoutSetUidBits) {
  ASSERT_EQ(chown(wt_.c_str(), 0, 4321), 0);
  {
    auto loan = OwnershipLoan::Lend(fd_, wt_, kSandbox);
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

TEST_F(OwnershipLoanTest, GivesBackADirectoryTreeDeeperThanPathMax) {
  auto loan = OwnershipLoan::Lend(fd_, wt_, kSandbox);
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

TEST_F(OwnershipLoanTest, RefusesAnotherUsersTreeAndChangesNothing) {
  ASSERT_EQ(chown(wt_.c_str(), kOther, kOther), 0);
  auto loan = OwnershipLoan::Lend(fd_, wt_, kSandbox);
  EXPECT_EQ(loan.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Stat(wt_).st_uid, kOther);
  EXPECT_EQ(Stat(wt_ + "/src/a.c").st_uid, 0u);
}

TEST_F(OwnershipLoanTest, ReclaimAfterACrashTakesBackAGiveBackCutShort) {
  auto loan = OwnershipLoan::Lend(fd_, wt_, kSandbox);
  ASSERT_TRUE(loan.ok()) << loan.status().ToString();
  // The process dies part way through giving back: some entries are back, the root
  // (given back last) is still lent.
  ASSERT_EQ(lchown((wt_ + "/src/a.c").c_str(), 0, 0), 0);
  std::ofstream(wt_ + "/src/new") << "made by the run";
  ASSERT_EQ(chown((wt_ + "/src/new").c_str(), kSandbox.uid, kSandbox.gid), 0);
  ASSERT_EQ(chmod((wt_ + "/src/new").c_str(), 04755), 0);
  Result<size_t> r = ReclaimTree(wt_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, 5u);  // the root, src, src/new, symlink, dirlink
  for (const char* p : {"", "/src", "/src/a.c", "/src/new", "/symlink", "/dirlink"}) {
    EXPECT_EQ(Stat(wt_ + p).st_uid, 0u) << p;
  }
  EXPECT_EQ(Stat(wt_ + "/src/new").st_mode & 07777, 0755u);
  EXPECT_EQ(Stat(wt_ + "/theirs").st_uid, kOther);
  EXPECT_EQ(*ReclaimTree(wt_), 0u);
  EXPECT_EQ(ReclaimTree(root_ + "/missing").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace loom
