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

}  // namespace
}  // namespace loom
