// repos/remote.h against real git servers on loopback (tests/support/git_server.h):
// git-http-backend behind lighttpd with basic authentication, and sshd with a key.
// Clone, fetch after the upstream moved, push, fast-forward push, the lease
// refusal, deletion, and the failures a caller must tell apart: a wrong password or
// key (Unauthenticated), an unknown or changed host key (PermissionDenied), a
// server that is down (Unavailable). Skipped, saying what to install, only when a
// server binary is missing.
#include <gtest/gtest.h>

#include "repos/remote.h"
#include "test_repo.h"
#include "tests/support/git_server.h"
#include "tests/support/subprocess.h"

namespace loom::repos {
namespace {

using loom::testing::GitHttpServer;
using loom::testing::GitSshServer;

bool Has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

// A bare upstream repository at `path` holding the fixture's `main`, accepting pushes.
void MakeUpstream(const TempDir& tmp, const std::string& path) {
  std::string work = MakeFixtureRepo(tmp.path());
  Sh("git clone -q --bare " + work + " " + path + " && git -C " + path +
     " config http.receivepack true");
}

// The round trip every transport must support, from a fresh bare clone of `url`.
void CloneFetchPushLeaseDelete(const std::string& url, const std::string& upstream,
                               const std::string& clone, const RemoteCredentials& creds) {
  Result<std::string> head = CloneBare(url, clone, "main", creds);
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  EXPECT_EQ(*head, Git(upstream, "rev-parse main"));

  std::string before = *head;
  std::string moved = CommitOnBranch(upstream, "main", "main", "upstream moved");
  Result<FetchOutcome> f = FetchBranch(clone, "main", creds);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->commit, moved);
  EXPECT_EQ(f->previous_commit, before);
  EXPECT_EQ(Git(clone, "rev-parse main"), moved);

  std::string c1 = CommitOnBranch(clone, "loom/1-fix", "main", "agent work");
  Result<PushOutcome> p =
      PushBranch(clone, {"loom/1-fix", "", "", PushMode::kForceWithLease}, creds);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(Git(upstream, "rev-parse loom/1-fix"), c1);

  std::string c2 = CommitOnBranch(clone, "loom/1-fix", "loom/1-fix", "agent revision");
  p = PushBranch(clone, {"loom/1-fix", "", c1, PushMode::kFastForwardWithLease}, creds);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->previous_commit, c1);
  EXPECT_EQ(Git(upstream, "rev-parse loom/1-fix"), c2);

  // A reviewer pushes to the branch; Loom's next push (leased on c2) is refused.
  std::string theirs = CommitOnBranch(upstream, "loom/1-fix", "loom/1-fix", "reviewer fixup");
  CommitOnBranch(clone, "loom/1-fix", "loom/1-fix", "agent second revision");
  p = PushBranch(clone, {"loom/1-fix", "", c2, PushMode::kForceWithLease}, creds);
  EXPECT_EQ(p.status().code(), StatusCode::kFailedPrecondition) << p.status().ToString();
  EXPECT_TRUE(Has(p.status().message(), theirs)) << p.status().message();
  EXPECT_TRUE(Has(p.status().message(), c2)) << p.status().message();
  EXPECT_EQ(Git(upstream, "rev-parse loom/1-fix"), theirs);

  Result<std::string> d = DeleteRemoteBranch(clone, "loom/1-fix", theirs, creds);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(Trimmed(Sh("git -C " + upstream + " branch --list loom/1-fix")), "");
}

class HttpRemoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string missing = GitHttpServer::Missing(); !missing.empty()) GTEST_SKIP() << missing;
    ASSERT_TRUE(server_.Start(tmp_.path() + "/http", "alice", "token-1234")) << server_.error();
    upstream_ = server_.repos_dir() + "/app.git";
    MakeUpstream(tmp_, upstream_);
    creds_.username = "alice";
    creds_.password = "token-1234";
  }

  TempDir tmp_;
  GitHttpServer server_;
  std::string upstream_;
  RemoteCredentials creds_;
};

TEST_F(HttpRemoteTest, ClonesFetchesPushesAndDeletesWithBasicAuth) {
  CloneFetchPushLeaseDelete(server_.Url("app.git"), upstream_, tmp_.path() + "/loom.git", creds_);
}

TEST_F(HttpRemoteTest, AWrongPasswordIsAnAuthenticationErrorThatHidesThePassword) {
  RemoteCredentials wrong = creds_;
  wrong.password = "not-the-token";
  Result<std::string> c = CloneBare(server_.Url("app.git"), tmp_.path() + "/c.git", "main", wrong);
  EXPECT_EQ(c.status().code(), StatusCode::kUnauthenticated) << c.status().ToString();
  EXPECT_TRUE(Has(c.status().message(), "refused")) << c.status().message();
  EXPECT_TRUE(Has(c.status().message(), "alice")) << c.status().message();
  EXPECT_FALSE(Has(c.status().message(), "not-the-token")) << c.status().message();
  EXPECT_FALSE(Exists(tmp_.path() + "/c.git"));

  Result<std::string> none =
      CloneBare(server_.Url("app.git"), tmp_.path() + "/d.git", "main", RemoteCredentials{});
  EXPECT_EQ(none.status().code(), StatusCode::kUnauthenticated) << none.status().ToString();
}

TEST_F(HttpRemoteTest, AServerThatIsDownIsUnavailable) {
  std::string clone = tmp_.path() + "/loom.git";
  ASSERT_TRUE(CloneBare(server_.Url("app.git"), clone, "main", creds_).ok());
  server_.Stop();
  Result<FetchOutcome> f = FetchBranch(clone, "main", creds_);
  EXPECT_EQ(f.status().code(), StatusCode::kUnavailable) << f.status().ToString();
  CommitOnBranch(clone, "loom/2-x", "main", "work");
  Result<PushOutcome> p =
      PushBranch(clone, {"loom/2-x", "", "", PushMode::kForceWithLease}, creds_);
  EXPECT_EQ(p.status().code(), StatusCode::kUnavailable) << p.status().ToString();
}

TEST_F(HttpRemoteTest, RegistersAnHttpRemoteWithItsCredentials) {
  RepoRecord record{"app", tmp_.path() + "/data/app.git", "", "make test", RepoSettings{}};
  Result<RepoRecord> cloned = CloneRepository(server_.Url("app.git"), record, creds_);
  ASSERT_TRUE(cloned.ok()) << cloned.status().ToString();
  EXPECT_EQ(cloned->origin, server_.Url("app.git"));
  EXPECT_EQ(Git(cloned->path, "rev-parse main"), Git(upstream_, "rev-parse main"));
  EXPECT_TRUE(CheckRepository(*cloned).ok());

  record.path = tmp_.path() + "/data/other.git";
  RemoteCredentials wrong = creds_;
  wrong.password = "wrong-token";
  EXPECT_EQ(CloneRepository(server_.Url("app.git"), record, wrong).status().code(),
            StatusCode::kUnauthenticated);
  EXPECT_FALSE(Exists(record.path));
}

TEST_F(HttpRemoteTest, AMissingRepositoryIsNotFound) {
  Result<std::string> c =
      CloneBare(server_.Url("nope.git"), tmp_.path() + "/c.git", "main", creds_);
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound) << c.status().ToString();
}

class SshRemoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string missing = GitSshServer::Missing(); !missing.empty()) GTEST_SKIP() << missing;
    ASSERT_TRUE(server_.Start(tmp_.path() + "/ssh")) << server_.error();
    upstream_ = tmp_.path() + "/upstream.git";
    MakeUpstream(tmp_, upstream_);
    creds_.ssh_private_key = server_.client_key();
    creds_.known_hosts = "# made by the test\n" + server_.known_hosts();
  }

  TempDir tmp_;
  GitSshServer server_;
  std::string upstream_;
  RemoteCredentials creds_;
};

TEST_F(SshRemoteTest, ClonesFetchesPushesAndDeletesWithAKey) {
  CloneFetchPushLeaseDelete(server_.Url(upstream_), upstream_, tmp_.path() + "/loom.git", creds_);
}

TEST_F(SshRemoteTest, AnUnknownOrChangedHostKeyIsRefusedBeforeAnythingIsSent) {
  RemoteCredentials unknown = creds_;
  unknown.known_hosts = "";
  Result<std::string> c =
      CloneBare(server_.Url(upstream_), tmp_.path() + "/c.git", "main", unknown);
  EXPECT_EQ(c.status().code(), StatusCode::kPermissionDenied) << c.status().ToString();
  EXPECT_TRUE(Has(c.status().message(), "unknown")) << c.status().message();
  EXPECT_TRUE(Has(c.status().message(), "SHA256:")) << c.status().message();
  EXPECT_FALSE(Exists(tmp_.path() + "/c.git"));

  RemoteCredentials changed = creds_;
  changed.known_hosts = server_.wrong_known_hosts();
  c = CloneBare(server_.Url(upstream_), tmp_.path() + "/c.git", "main", changed);
  EXPECT_EQ(c.status().code(), StatusCode::kPermissionDenied) << c.status().ToString();
  EXPECT_TRUE(Has(c.status().message(), "does NOT match")) << c.status().message();

  // Checking can be turned off only explicitly.
  changed.host_key_policy = HostKeyPolicy::kAcceptAny;
  c = CloneBare(server_.Url(upstream_), tmp_.path() + "/c.git", "main", changed);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
}

TEST_F(SshRemoteTest, AKeyTheServerDoesNotKnowIsAnAuthenticationError) {
  RemoteCredentials other = creds_;
  other.ssh_private_key = ReadRaw(tmp_.path() + "/ssh/other_host_key");
  Result<std::string> c = CloneBare(server_.Url(upstream_), tmp_.path() + "/c.git", "main", other);
  EXPECT_EQ(c.status().code(), StatusCode::kUnauthenticated) << c.status().ToString();

  RemoteCredentials none = creds_;
  none.ssh_private_key = "";
  c = CloneBare(server_.Url(upstream_), tmp_.path() + "/c.git", "main", none);
  EXPECT_EQ(c.status().code(), StatusCode::kUnauthenticated) << c.status().ToString();
}

TEST_F(SshRemoteTest, AServerThatIsDownIsUnavailable) {
  std::string clone = tmp_.path() + "/loom.git";
  ASSERT_TRUE(CloneBare(server_.Url(upstream_), clone, "main", creds_).ok());
  server_.Stop();
  Result<FetchOutcome> f = FetchBranch(clone, "main", creds_);
  EXPECT_EQ(f.status().code(), StatusCode::kUnavailable) << f.status().ToString();
}

}  // namespace
}  // namespace loom::repos
