// A remote's credentials named in the secret store: the names are checked against
// the URL's transport, and resolved into the values libgit2 gets, on a real
// SecretStore (sealed in SQLite).
#include "orchestrator/remote_credentials.h"

#include <gtest/gtest.h>

#include "orchestrator/schema.h"
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

}  // namespace
}  // namespace loom
