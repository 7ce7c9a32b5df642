// repos/remote.h on file:// remotes (libgit2's local transport, the same push and
// fetch logic as the network transports; tests/repos/remote_server_test.cc runs it
// against real HTTP and SSH servers): URL parsing, bare clone, fetch after the
// upstream moved, pushes with the lease, and deletion.
#include "repos/remote.h"

#include <gtest/gtest.h>

#include "test_repo.h"

namespace loom::repos {
namespace {

bool Has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

TEST(RemoteUrlTest, ParsesEveryAcceptedForm) {
  Result<RemoteUrl> https = ParseRemoteUrl("https://git.example.com/team/app.git");
  ASSERT_TRUE(https.ok()) << https.status().ToString();
  EXPECT_EQ(https->kind, RemoteKind::kHttps);
  EXPECT_EQ(https->host, "git.example.com");
  EXPECT_EQ(https->port, 0);
  EXPECT_EQ(https->path, "/team/app.git");

  Result<RemoteUrl> ssh = ParseRemoteUrl("ssh://git@127.0.0.1:2222/srv/app.git");
  ASSERT_TRUE(ssh.ok()) << ssh.status().ToString();
  EXPECT_EQ(ssh->kind, RemoteKind::kSsh);
  EXPECT_EQ(ssh->user, "git");
  EXPECT_EQ(ssh->host, "127.0.0.1");
  EXPECT_EQ(ssh->port, 2222);

  Result<RemoteUrl> scp = ParseRemoteUrl("git@github.com:team/app.git");
  ASSERT_TRUE(scp.ok()) << scp.status().ToString();
  EXPECT_EQ(scp->kind, RemoteKind::kSsh);
  EXPECT_EQ(scp->user, "git");
  EXPECT_EQ(scp->host, "github.com");
  EXPECT_EQ(scp->path, "team/app.git");

  Result<RemoteUrl> file = ParseRemoteUrl("file:///srv/app.git");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->kind, RemoteKind::kFile);
  EXPECT_EQ(file->path, "/srv/app.git");
  EXPECT_EQ(ParseRemoteUrl("/srv/app.git")->kind, RemoteKind::kLocalPath);
  EXPECT_EQ(ParseRemoteUrl("./dir:with/colon")->kind, RemoteKind::kLocalPath);
}

TEST(RemoteUrlTest, RefusesPasswordsInUrlsAndUnknownSchemes) {
  Result<RemoteUrl> pw = ParseRemoteUrl("https://me:hunter2@git.example.com/app.git");
  EXPECT_EQ(pw.status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(Has(pw.status().message(), "hunter2")) << pw.status().message();
  EXPECT_EQ(ParseRemoteUrl("ftp://host/app.git").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseRemoteUrl("https:///app.git").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseRemoteUrl("ssh://host:99999/app.git").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseRemoteUrl("file://relative").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseRemoteUrl("").status().code(), StatusCode::kInvalidArgument);
}

// Debian 12's libgit2 (1.5.1) is built with both network transports; the docs
// (docs/repos.md) say so, and this test keeps them honest on the CI image.
TEST(RemoteUrlTest, DebiansLibgit2HasHttpsAndSsh) {
  GitTransports t = AvailableTransports();
  EXPECT_TRUE(t.https);
  EXPECT_TRUE(t.ssh);
}

// An upstream bare repository with `main`, Loom's bare clone of it over file://,
// and a second clone standing for a person who pushes to the same upstream.
class FileRemoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string work = MakeFixtureRepo(tmp_.path());
    upstream_ = tmp_.path() + "/upstream.git";
    Sh("git clone -q --bare " + work + " " + upstream_);
    url_ = "file://" + upstream_;
    clone_ = tmp_.path() + "/loom.git";
    Result<std::string> head = CloneBare(url_, clone_, "main", creds_);
    ASSERT_TRUE(head.ok()) << head.status().ToString();
    ASSERT_EQ(*head, Git(upstream_, "rev-parse main"));
  }

  TempDir tmp_;
  std::string upstream_, url_, clone_;
  RemoteCredentials creds_;
};

TEST_F(FileRemoteTest, ClonesBareWithOriginAndTheTargetBranch) {
  EXPECT_EQ(Git(clone_, "rev-parse --is-bare-repository"), "true");
  EXPECT_EQ(Git(clone_, "config remote.origin.url"), url_);
  EXPECT_EQ(Git(clone_, "rev-parse refs/remotes/origin/main"), Git(upstream_, "rev-parse main"));
  EXPECT_EQ(CloneBare(url_, clone_, "main", creds_).status().code(), StatusCode::kAlreadyExists);
  Result<std::string> no_branch = CloneBare(url_, tmp_.path() + "/b.git", "release", creds_);
  EXPECT_EQ(no_branch.status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(Exists(tmp_.path() + "/b.git"));
  Result<std::string> missing =
      CloneBare("file://" + tmp_.path() + "/nope.git", tmp_.path() + "/c.git", "main", creds_);
  EXPECT_FALSE(missing.ok());
  EXPECT_FALSE(Exists(tmp_.path() + "/c.git"));
}

TEST_F(FileRemoteTest, FetchReportsTheNewHeadAfterUpstreamMoved) {
  std::string before = Git(upstream_, "rev-parse main");
  std::string moved = CommitOnBranch(upstream_, "main", "main", "upstream moved");
  Result<FetchOutcome> f = FetchBranch(clone_, "main", creds_);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->commit, moved);
  EXPECT_EQ(f->previous_commit, before);
  EXPECT_TRUE(f->local_updated);
  EXPECT_EQ(Git(clone_, "rev-parse main"), moved);

  // A local commit the upstream lacks (a merge made in Loom, not yet pushed)
  // keeps the local branch where it is.
  std::string local = CommitOnBranch(clone_, "main", "main", "merged in loom");
  std::string moved_again = CommitOnBranch(upstream_, "main", "main", "upstream again");
  f = FetchBranch(clone_, "main", creds_);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->commit, moved_again);
  EXPECT_FALSE(f->local_updated);
  EXPECT_EQ(Git(clone_, "rev-parse main"), local);
  EXPECT_EQ(Git(clone_, "rev-parse refs/remotes/origin/main"), moved_again);

  EXPECT_EQ(FetchBranch(clone_, "nope", creds_).status().code(), StatusCode::kNotFound);
}

TEST_F(FileRemoteTest, PushesFastForwardsAndIsUpToDateWhenNothingChanged) {
  std::string c1 = CommitOnBranch(clone_, "loom/1-fix", "main", "first");
  Result<PushOutcome> p =
      PushBranch(clone_, {"loom/1-fix", "", "", PushMode::kForceWithLease}, creds_);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->previous_commit, "");
  EXPECT_EQ(p->commit, c1);
  EXPECT_FALSE(p->up_to_date);
  EXPECT_EQ(Git(upstream_, "rev-parse loom/1-fix"), c1);
  EXPECT_EQ(Git(clone_, "rev-parse refs/remotes/origin/loom/1-fix"), c1);

  std::string c2 = CommitOnBranch(clone_, "loom/1-fix", "loom/1-fix", "second");
  p = PushBranch(clone_, {"loom/1-fix", "", c1, PushMode::kFastForwardWithLease}, creds_);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->previous_commit, c1);
  EXPECT_EQ(Git(upstream_, "rev-parse loom/1-fix"), c2);

  p = PushBranch(clone_, {"loom/1-fix", "", c2, PushMode::kForceWithLease}, creds_);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE(p->up_to_date);
}

TEST_F(FileRemoteTest, ARewrittenBranchIsForcePushedOnlyWhileTheLeaseHolds) {
  std::string c1 = CommitOnBranch(clone_, "loom/2-x", "main", "first");
  ASSERT_TRUE(PushBranch(clone_, {"loom/2-x", "", "", PushMode::kForceWithLease}, creds_).ok());
  // The agent's revision replaces the commit (not a fast-forward).
  std::string rewritten = CommitOnBranch(clone_, "loom/2-x", "main", "rewritten");
  Result<PushOutcome> ff =
      PushBranch(clone_, {"loom/2-x", "", c1, PushMode::kFastForwardWithLease}, creds_);
  EXPECT_EQ(ff.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Has(ff.status().message(), "fast-forward")) << ff.status().message();
  EXPECT_EQ(Git(upstream_, "rev-parse loom/2-x"), c1);

  Result<PushOutcome> forced =
      PushBranch(clone_, {"loom/2-x", "", c1, PushMode::kForceWithLease}, creds_);
  ASSERT_TRUE(forced.ok()) << forced.status().ToString();
  EXPECT_EQ(Git(upstream_, "rev-parse loom/2-x"), rewritten);
}

TEST_F(FileRemoteTest, RefusesToOverwriteABranchSomeoneElseMoved) {
  std::string c1 = CommitOnBranch(clone_, "loom/3-y", "main", "ours");
  ASSERT_TRUE(PushBranch(clone_, {"loom/3-y", "", "", PushMode::kForceWithLease}, creds_).ok());
  std::string theirs = CommitOnBranch(upstream_, "loom/3-y", "loom/3-y", "a reviewer fixup");
  CommitOnBranch(clone_, "loom/3-y", "loom/3-y", "our revision");

  Result<PushOutcome> p =
      PushBranch(clone_, {"loom/3-y", "", c1, PushMode::kForceWithLease}, creds_);
  EXPECT_EQ(p.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Has(p.status().message(), theirs)) << p.status().message();
  EXPECT_TRUE(Has(p.status().message(), c1)) << p.status().message();
  EXPECT_EQ(Git(upstream_, "rev-parse loom/3-y"), theirs);

  // Expecting no branch where there is one is refused the same way.
  CommitOnBranch(clone_, "loom/4-z", "main", "new");
  CommitOnBranch(upstream_, "loom/4-z", "main", "already there");
  EXPECT_EQ(
      PushBranch(clone_, {"loom/4-z", "", "", PushMode::kForceWithLease}, creds_).status().code(),
      StatusCode::kFailedPrecondition);
  EXPECT_EQ(PushBranch(clone_, {"loom/4-z", "", "abc", PushMode::kForceWithLease}, creds_)
                .status()
                .code(),
            StatusCode::kInvalidArgument);
}

TEST_F(FileRemoteTest, DeletesARemoteBranchOnlyWhereItWasLastSeen) {
  std::string c1 = CommitOnBranch(clone_, "loom/5-d", "main", "to delete");
  ASSERT_TRUE(PushBranch(clone_, {"loom/5-d", "", "", PushMode::kForceWithLease}, creds_).ok());
  std::string moved = CommitOnBranch(upstream_, "loom/5-d", "loom/5-d", "moved by someone");

  Result<std::string> refused = DeleteRemoteBranch(clone_, "loom/5-d", c1, creds_);
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Has(refused.status().message(), moved)) << refused.status().message();
  EXPECT_EQ(Git(upstream_, "rev-parse loom/5-d"), moved);

  Result<std::string> deleted = DeleteRemoteBranch(clone_, "loom/5-d", moved, creds_);
  ASSERT_TRUE(deleted.ok()) << deleted.status().ToString();
  EXPECT_EQ(*deleted, moved);
  EXPECT_EQ(Trimmed(Sh("git -C " + upstream_ + " branch --list loom/5-d")), "");
  EXPECT_EQ(Trimmed(Sh("git -C " + clone_ + " for-each-ref refs/remotes/origin/loom/5-d")), "");

  Result<std::string> again = DeleteRemoteBranch(clone_, "loom/5-d", moved, creds_);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, "");
}

TEST_F(FileRemoteTest, ARepositoryWithoutOriginIsExplained) {
  std::string work = tmp_.path() + "/origin";
  Result<FetchOutcome> f = FetchBranch(work, "main", creds_);
  EXPECT_EQ(f.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Has(f.status().message(), "no remote 'origin'")) << f.status().message();
}

}  // namespace
}  // namespace loom::repos
