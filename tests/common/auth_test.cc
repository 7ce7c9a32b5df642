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

namespace loom {
namespace {

class SessionStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Db::Open(Path(), TokenMigrations()).ok());
    auto s = TokenStore::Open(Path(), &clock_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }
  std::string Path() const { return dir_.File("loom.db"); }
  // A request as a browser sends it with the session cookie.
  static HttpRequest WithCookie(std::string method, std::string_view session,
                                std::string_view csrf = {}) {
    HttpRequest r;
    r.method = std::move(method);
    r.headers.emplace_back("Cookie", "theme=dark; loom_session=" + std::string(session));
    if (!csrf.empty()) r.headers.emplace_back("X-Loom-CSRF", std::string(csrf));
    return r;
  }
  testing::TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<TokenStore> store_;
};

TEST_F(SessionStoreTest, ASessionActsWithItsTokensRoleUntilItExpires) {
  auto token = store_->Create(Role::kEngineer, "ana");
  auto s = store_->CreateSession(*token, 60'000);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->principal.role, Role::kEngineer);
  EXPECT_EQ(s->expires_at_ms, clock_.NowMs() + 60'000);
  auto who = store_->Authenticate(WithCookie("GET", s->id));
  ASSERT_TRUE(who.ok()) << who.status().ToString();
  EXPECT_EQ(who->token_id, s->principal.token_id);
  clock_.AdvanceMs(60'000);
  EXPECT_EQ(store_->Authenticate(WithCookie("GET", s->id)).status().code(),
            StatusCode::kUnauthenticated);
}

TEST_F(SessionStoreTest, ASessionEndsNoLaterThanItsToken) {
  auto token = store_->Create(Role::kEngineer, "ana", clock_.NowMs() + 10'000);
  auto s = store_->CreateSession(*token, 60'000);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->expires_at_ms, clock_.NowMs() + 10'000);
  auto other = store_->Create(Role::kEngineer, "bo");
  auto s2 = store_->CreateSession(*other, 60'000);
  ASSERT_TRUE(store_->Revoke(s2->principal.token_id).ok());
  EXPECT_EQ(store_->LookupSession(s2->id).status().code(), StatusCode::kUnauthenticated)
      << "revoking the token ends its sessions";
}

TEST_F(SessionStoreTest, ACookieRequestThatChangesStateNeedsTheCsrfToken) {
  auto token = store_->Create(Role::kAdmin, "ana");
  auto s = store_->CreateSession(*token, 60'000);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->csrf, TokenStore::CsrfFor(s->id));
  EXPECT_NE(s->csrf, s->id);
  for (const char* method : {"POST", "PUT", "DELETE", "PATCH"}) {
    EXPECT_EQ(store_->Authenticate(WithCookie(method, s->id)).status().code(),
              StatusCode::kPermissionDenied)
        << method;
    EXPECT_EQ(store_->Authenticate(WithCookie(method, s->id, std::string(64, 'a'))).status().code(),
              StatusCode::kPermissionDenied)
        << method;
    EXPECT_TRUE(store_->Authenticate(WithCookie(method, s->id, s->csrf)).ok()) << method;
  }
  EXPECT_TRUE(store_->Authenticate(WithCookie("GET", s->id)).ok());
  // A bearer request needs no CSRF token.
  HttpRequest bearer;
  bearer.method = "POST";
  bearer.headers.emplace_back("Authorization", "Bearer " + *token);
  EXPECT_TRUE(store_->Authenticate(bearer).ok());
}

TEST_F(SessionStoreTest, SignOutEndsTheSessionAndOnlyItsHashIsStored) {
  auto token = store_->Create(Role::kEngineer, "ana");
  auto s = store_->CreateSession(*token, 60'000);
  auto other = store_->CreateSession(*token, 60'000);
  ASSERT_TRUE(s.ok() && other.ok());
  ASSERT_TRUE(store_->EndSession(s->id).ok());
  EXPECT_EQ(store_->LookupSession(s->id).status().code(), StatusCode::kUnauthenticated);
  EXPECT_TRUE(store_->LookupSession(other->id).ok()) << "other sessions go on";
  auto db = Db::Open(Path(), TokenMigrations());
  ASSERT_TRUE(db.ok());
  auto found = (*db)->QueryOptional(
      "SELECT 1 FROM sessions WHERE hash=?", [](const Statement&) { return true; }, other->id);
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value()) << "the cookie's value is never stored";
}

TEST_F(SessionStoreTest, AnUnknownOrBrokenCookieIsUnauthenticated) {
  EXPECT_EQ(store_->Authenticate(WithCookie("GET", "nope")).status().code(),
            StatusCode::kUnauthenticated);
  HttpRequest none;
  none.method = "GET";
  EXPECT_EQ(store_->Authenticate(none).status().code(), StatusCode::kUnauthenticated);
  HttpRequest r;
  r.headers.emplace_back("cookie", "loom_sessionx=1; a=b");
  EXPECT_EQ(CookieValue(r, "loom_session"), "");
  r.headers.emplace_back("Cookie", "loom_session=abc");
  EXPECT_EQ(CookieValue(r, "loom_session"), "abc");
}

}  // namespace
}  // namespace loom
