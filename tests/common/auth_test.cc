// TokenStore: expiry, revocation through the store and behind its back, with an
// injected clock and a real SQLite file.
#include "common/auth.h"

#include <gtest/gtest.h>

#include "tests/fakes/fake_clock.h"
#include "tests/support/temp_dir.h"

namespace loom {
namespace {

class TokenStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The tokens table alone: its own migrations (loomd assembles every module's).
    ASSERT_TRUE(Db::Open(Path(), TokenMigrations()).ok());
    auto s = TokenStore::Open(Path(), &clock_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }
  std::string Path() const { return dir_.File("loom.db"); }
  testing::TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<TokenStore> store_;
};

TEST_F(TokenStoreTest, ATokenWithAnExpiryIsRefusedFromThatTimeOn) {
  auto token = store_->Create(Role::kEngineer, "ci", clock_.NowMs() + 60'000);
  ASSERT_TRUE(token.ok());
  auto p = store_->Lookup(*token);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->role, Role::kEngineer);
  clock_.AdvanceMs(59'000);
  EXPECT_TRUE(store_->Lookup(*token).ok());
  clock_.AdvanceMs(1'000);
  EXPECT_EQ(store_->Lookup(*token).status().code(), StatusCode::kUnauthenticated);
}

TEST_F(TokenStoreTest, RevokedIsRefusedAtOnceEvenWhenCached) {
  auto token = store_->Create(Role::kAdmin, "a");
  ASSERT_TRUE(token.ok());
  auto p = store_->Lookup(*token);
  ASSERT_TRUE(p.ok());
  auto revoked = store_->Revoke(p->token_id);
  ASSERT_TRUE(revoked.ok()) << revoked.status().ToString();
  EXPECT_TRUE(revoked->revoked_at_ms.has_value());
  EXPECT_EQ(store_->Lookup(*token).status().code(), StatusCode::kUnauthenticated);
  EXPECT_FALSE(*store_->HasAdmin());
  EXPECT_EQ(store_->Revoke(999).status().code(), StatusCode::kNotFound);
}

TEST_F(TokenStoreTest, ARowRevokedBehindTheStoresBackIsRefusedWithinTheCacheTtl) {
  auto token = store_->Create(Role::kReporter, "widget");
  ASSERT_TRUE(token.ok());
  auto p = store_->Lookup(*token);
  ASSERT_TRUE(p.ok());  // now cached
  // Another process (another loomd's store, sqlite3 by hand) revokes the row.
  auto other = TokenStore::Open(Path(), &clock_);
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE((*other)->Revoke(p->token_id).ok());
  clock_.AdvanceMs(TokenStore::kCacheTtlMs);
  EXPECT_EQ(store_->Lookup(*token).status().code(), StatusCode::kUnauthenticated);
}

TEST_F(TokenStoreTest, ListShowsEveryTokenWithoutTheTokenItself) {
  auto a = store_->Create(Role::kAdmin, "a");
  auto b = store_->Create(Role::kReporter, "b", clock_.NowMs() + 1000);
  ASSERT_TRUE(a.ok() && b.ok());
  auto all = store_->List();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].name, "a");
  EXPECT_FALSE((*all)[0].expires_at_ms.has_value());
  EXPECT_EQ((*all)[1].expires_at_ms, clock_.NowMs() + 1000);
}

TEST(NormalizeOriginTest, KeepsSchemeHostAndPortAsBrowsersSendThem) {
  EXPECT_EQ(*NormalizeOrigin("https://App.Example"), "https://app.example");
  EXPECT_EQ(*NormalizeOrigin("https://app.example:443/"), "https://app.example");
  EXPECT_EQ(*NormalizeOrigin("http://app.example:80"), "http://app.example");
  EXPECT_EQ(*NormalizeOrigin("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
  EXPECT_EQ(*NormalizeOrigin("https://[::1]:8443"), "https://[::1]:8443");
  for (const char* bad :
       {"*", "null", "app.example", "ftp://app.example", "https://", "https://app.example/path",
        "https://app.example?q", "https://u@h", "https://*.example", "https://h:0",
        "https://h:99999", "https://h:x", "https://h t"}) {
    EXPECT_EQ(NormalizeOrigin(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

HttpRequest WithOrigin(const std::string& token, const std::string& origin,
                       const std::string& host = "loom.example:7700") {
  HttpRequest r;
  r.headers = {{"Authorization", "Bearer " + token}, {"Host", host}};
  if (!origin.empty()) r.headers.emplace_back("Origin", origin);
  return r;
}

TEST_F(TokenStoreTest, AReporterTokenIsUsableFromItsOriginsOnly) {
  auto token = store_->Create(Role::kReporter, "app", std::nullopt, {"https://App.Example"});
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  EXPECT_TRUE(store_->Authenticate(WithOrigin(*token, "https://app.example")).ok());
  // No Origin (a server, the CLI) and loomd's own origin are not cross-origin.
  EXPECT_TRUE(store_->Authenticate(WithOrigin(*token, "")).ok());
  EXPECT_TRUE(store_->Authenticate(WithOrigin(*token, "http://loom.example:7700")).ok());
  for (const char* other :
       {"https://evil.example", "http://app.example", "null", "https://app.example.evil.example"}) {
    EXPECT_EQ(store_->Authenticate(WithOrigin(*token, other)).status().code(),
              StatusCode::kPermissionDenied)
        << other;
  }
  EXPECT_TRUE(*store_->AnyTokenAllows("https://app.example"));
  EXPECT_FALSE(*store_->AnyTokenAllows("https://evil.example"));
}

TEST_F(TokenStoreTest, OriginsAreForReporterTokensOnly) {
  for (Role role : {Role::kEngineer, Role::kAdmin}) {
    EXPECT_EQ(store_->Create(role, "x", std::nullopt, {"https://app.example"}).status().code(),
              StatusCode::kInvalidArgument);
  }
  auto engineer = store_->Create(Role::kEngineer, "eng");
  ASSERT_TRUE(engineer.ok());
  EXPECT_EQ(store_->Authenticate(WithOrigin(*engineer, "https://app.example")).status().code(),
            StatusCode::kPermissionDenied);
  int64_t id = store_->Lookup(*engineer)->token_id;
  EXPECT_EQ(store_->SetOrigins(id, {"https://app.example"}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(TokenStoreTest, SetOriginsTakesEffectAtOnceAndARevokedTokenAllowsNone) {
  auto token = store_->Create(Role::kReporter, "app");
  ASSERT_TRUE(token.ok());
  int64_t id = store_->Lookup(*token)->token_id;  // cached from here on
  EXPECT_EQ(store_->Authenticate(WithOrigin(*token, "https://app.example")).status().code(),
            StatusCode::kPermissionDenied);
  auto set = store_->SetOrigins(id, {"https://app.example", "https://app.example:443"});
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->origins, std::vector<std::string>{"https://app.example"});
  EXPECT_TRUE(store_->Authenticate(WithOrigin(*token, "https://app.example")).ok());
  EXPECT_EQ(store_->SetOrigins(id, {"https://a/b"}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Get(id)->origins, std::vector<std::string>{"https://app.example"});
  ASSERT_TRUE(store_->Revoke(id).ok());
  EXPECT_FALSE(*store_->AnyTokenAllows("https://app.example"));
  ASSERT_TRUE(store_->SetOrigins(id, {}).ok());
  EXPECT_TRUE(store_->Get(id)->origins.empty());
}

}  // namespace
}  // namespace loom
