// SecretStore: sealed at rest with a salted, slow key from a passphrase; values
// sealed by version 1 (one unsalted SHA-256) still open, and are sealed again.
#include "orchestrator/secrets.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "common/crypto.h"
#include "orchestrator/schema.h"
#include "tests/fakes/fake_clock.h"
#include "tests/support/temp_dir.h"

namespace loom {
namespace {

class SecretStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ::setenv("LOOM_SECRET_KEY", "correct horse battery staple", 1); }
  void TearDown() override { ::unsetenv("LOOM_SECRET_KEY"); }

  std::unique_ptr<SecretStore> Open() {
    EXPECT_TRUE(MigrateDatabase(DatabasePath(dir_.path())).ok());
    auto s = SecretStore::Open(DatabasePath(dir_.path()), dir_.path());
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }

  // The sealed column of secret `name`, read with a connection of our own.
  std::string Sealed(const std::string& name) {
    auto db = Db::OpenMigrated(DatabasePath(dir_.path()));
    auto q = (*db)->Prepare("SELECT sealed FROM secrets WHERE name=?");
    (*q)->Bind(1, name);
    return *(*q)->Step() ? (*q)->Text(0) : "";
  }

  void WriteSealed(const std::string& name, const std::string& sealed) {
    auto db = Db::OpenMigrated(DatabasePath(dir_.path()));
    auto q = (*db)->Prepare("INSERT INTO secrets(name, sealed, updated_at) VALUES(?,?,0)");
    ASSERT_TRUE((*q)->BindAll(name, sealed).Run().ok());
  }

  testing::TempDir dir_;
};

TEST_F(SecretStoreTest, APassphraseKeyIsSaltedAndSlowAndVersioned) {
  auto store = Open();
  ASSERT_TRUE(store->Put("API_KEY", "value-of-the-key").ok());
  std::string sealed = Sealed("API_KEY");
  ASSERT_EQ(sealed.rfind("v2:", 0), 0u) << sealed;
  std::string salt = sealed.substr(3, sealed.find(':', 3) - 3);
  EXPECT_EQ(salt.size(), 32u) << sealed;
  std::string body = sealed.substr(sealed.find(':', 3) + 1);
  // Not the version 1 key, but scrypt of the passphrase with that salt.
  EXPECT_FALSE(UnsealAes256Gcm(Sha256Raw("correct horse battery staple"), body).ok());
  std::string raw_salt;
  for (size_t i = 0; i < salt.size(); i += 2)
    raw_salt += static_cast<char>(std::stoi(salt.substr(i, 2), nullptr, 16));
  auto key = DeriveKeyScrypt("correct horse battery staple", raw_salt);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(*UnsealAes256Gcm(*key, body), "value-of-the-key");
  // And it opens again after a restart (a new salt for new values, old ones kept).
  store.reset();
  store = Open();
  auto got = store->Get({"API_KEY"});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].second, "value-of-the-key");
}

TEST_F(SecretStoreTest, AVersionOneValueStillOpensAndIsSealedAgain) {
  { Open(); }  // the schema
  auto v1 = SealAes256Gcm(Sha256Raw("correct horse battery staple"), "sealed-by-version-1");
  ASSERT_TRUE(v1.ok());
  WriteSealed("OLD", *v1);
  auto store = Open();
  auto got = store->Get({"OLD"});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].second, "sealed-by-version-1");
  EXPECT_EQ(Sealed("OLD").rfind("v2:", 0), 0u) << "sealed again with the salted key";
  EXPECT_EQ(store->masker()->Mask("x sealed-by-version-1"), "x [secret OLD]");
}

TEST_F(SecretStoreTest, StampsUpdatesWithTheInjectedClock) {
  FakeClock clock;
  clock.AdvanceMs(7000);
  ASSERT_TRUE(MigrateDatabase(DatabasePath(dir_.path())).ok());
  auto s = SecretStore::Open(DatabasePath(dir_.path()), dir_.path(), &clock);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_TRUE((*s)->Put("API_TOKEN", "a-long-enough-secret-value").ok());
  auto db = Db::Open(DatabasePath(dir_.path()), LoomMigrations());
  auto q = (*db)->Prepare("SELECT updated_at FROM secrets WHERE name='API_TOKEN'");
  ASSERT_TRUE(*(*q)->Step());
  EXPECT_EQ((*q)->Int(0), clock.NowMs());
}

TEST_F(SecretStoreTest, AValueTooShortToMaskIsRefused) {
  auto store = Open();
  EXPECT_EQ(store->Put("PIN", "1234").code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(store->Put("PIN", "12345678").ok());
}

TEST_F(SecretStoreTest, TheMaskerKnowsEveryStoredValueFromTheStart) {
  ASSERT_TRUE(Open()->Put("A_KEY", "stored-before-restart").ok());
  auto store = Open();
  EXPECT_EQ(store->masker()->Mask("stored-before-restart"), "[secret A_KEY]");
}

}  // namespace
}  // namespace loom
