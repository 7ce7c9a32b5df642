// A remote's credentials named in the secret store: the names are checked against
// the URL's transport, and resolved into the values libgit2 gets, on a real
// SecretStore (sealed in SQLite).
#include "orchestrator/remote_credentials.h"

#include <gtest/gtest.h>

#include "orchestrator/schema.h"
#include "tests/support/git_server.h"
#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"

namespace loom {
namespace {

class RemoteCredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(MigrateDatabase(DatabasePath(dir_.path())).ok());
    auto s = SecretStore::Open(DatabasePath(dir_.path()), dir_.path());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    secrets_ = std::move(*s);
    ASSERT_TRUE(secrets_->Put("FORGE_TOKEN", "ghp_example_token_value").ok());
    ASSERT_TRUE(secrets_
                    ->Put("DEPLOY_KEY",
                          "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n"
                          "-----END OPENSSH PRIVATE KEY-----")
                    .ok());
    ASSERT_TRUE(secrets_->Put("GIT_HOSTS", "git.example.com ssh-ed25519 AAAAC3Nza").ok());
  }

  testing::TempDir dir_;
  std::unique_ptr<SecretStore> secrets_;
};

TEST_F(RemoteCredentialsTest, ResolvesAnHttpsTokenAndAnSshKeyWithKnownHosts) {
  RemoteSecretNames https{"alice", "FORGE_TOKEN", "", "", "", false};
  auto c = ResolveRemoteCredentials(*secrets_, "https://git.example.com/app.git", https);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->username, "alice");
  EXPECT_EQ(c->password, "ghp_example_token_value");
  EXPECT_TRUE(c->ssh_private_key.empty());

  RemoteSecretNames ssh{"", "", "DEPLOY_KEY", "", "GIT_HOSTS", false};
  c = ResolveRemoteCredentials(*secrets_, "git@git.example.com:team/app.git", ssh);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->ssh_private_key.back(), '\n');  // the key's last line is ended
  EXPECT_EQ(c->known_hosts, "git.example.com ssh-ed25519 AAAAC3Nza\n");
  EXPECT_EQ(c->host_key_policy, repos::HostKeyPolicy::kRequireKnown);

  // A public repository needs nothing.
  EXPECT_TRUE(ResolveRemoteCredentials(*secrets_, "https://git.example.com/pub.git", {}).ok());
}

TEST_F(RemoteCredentialsTest, AMissingSecretIsNamedNeverShown) {
  RemoteSecretNames names{"alice", "NOT_STORED", "", "", "", false};
  auto c = ResolveRemoteCredentials(*secrets_, "https://git.example.com/app.git", names);
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_NE(c.status().message().find("NOT_STORED"), std::string::npos) << c.status().message();
}

TEST_F(RemoteCredentialsTest, RefusesSecretsThatDoNotFitTheTransport) {
  const std::string ssh = "ssh://git@git.example.com/app.git";
  const std::string https = "https://git.example.com/app.git";
  // SSH needs a key and known_hosts; host key checking is off only when asked.
  EXPECT_EQ(CheckRemoteSecretNames(ssh, {"", "", "DEPLOY_KEY", "", "", false}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckRemoteSecretNames(ssh, {"", "", "DEPLOY_KEY", "", "", true}).ok());
  EXPECT_EQ(CheckRemoteSecretNames(ssh, {"", "", "", "", "GIT_HOSTS", false}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(
      CheckRemoteSecretNames(ssh, {"", "FORGE_TOKEN", "DEPLOY_KEY", "", "GIT_HOSTS", false}).code(),
      StatusCode::kInvalidArgument);
  // HTTPS takes a user and a token together, and no SSH secret.
  EXPECT_EQ(CheckRemoteSecretNames(https, {"alice", "", "", "", "", false}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(
      CheckRemoteSecretNames(https, {"alice", "FORGE_TOKEN", "DEPLOY_KEY", "", "", false}).code(),
      StatusCode::kInvalidArgument);
  // A file:// remote takes none; names must be secret names.
  EXPECT_EQ(
      CheckRemoteSecretNames("file:///srv/app.git", {"", "FORGE_TOKEN", "", "", "", false}).code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckRemoteSecretNames(https, {"alice", "lower-case", "", "", "", false}).code(),
            StatusCode::kInvalidArgument);
}

// The whole path on a real SSH server: the key and known_hosts go into the secret
// store as the CLI stores a file (final newline dropped), come out by name, and
// clone; known_hosts naming another key is refused.
TEST_F(RemoteCredentialsTest, SecretsFromTheStoreCloneOverSsh) {
  if (std::string missing = testing::GitSshServer::Missing(); !missing.empty()) {
    GTEST_SKIP() << missing;
  }
  testing::GitSshServer server;
  ASSERT_TRUE(server.Start(dir_.path() + "/ssh")) << server.error();
  std::string upstream = dir_.path() + "/upstream.git";
  ASSERT_EQ(
      testing::RunCommand("git init -q --bare -b main " + upstream + " && git -C " + upstream +
                          " -c user.name=t -c user.email=t@e commit-tree "
                          "4b825dc642cb6eb9a060e54bf8d69288fbee4904 -m init "
                          "| xargs git -C " +
                          upstream + " update-ref refs/heads/main")
          .exit_code,
      0);
  auto chomp = [](std::string s) {
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  };
  ASSERT_TRUE(secrets_->Put("SSH_KEY", chomp(server.client_key())).ok());
  ASSERT_TRUE(secrets_->Put("SSH_HOSTS", chomp(server.known_hosts())).ok());
  ASSERT_TRUE(secrets_->Put("OTHER_HOSTS", chomp(server.wrong_known_hosts())).ok());

  std::string url = server.Url(upstream);
  auto creds =
      ResolveRemoteCredentials(*secrets_, url, {"", "", "SSH_KEY", "", "SSH_HOSTS", false});
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  auto head = repos::CloneBare(url, dir_.path() + "/clone.git", "main", *creds);
  ASSERT_TRUE(head.ok()) << head.status().ToString();

  auto other =
      ResolveRemoteCredentials(*secrets_, url, {"", "", "SSH_KEY", "", "OTHER_HOSTS", false});
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  EXPECT_EQ(repos::CloneBare(url, dir_.path() + "/other.git", "main", *other).status().code(),
            StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace loom
