#include "common/crypto.h"

#include <gtest/gtest.h>

namespace loom {
namespace {

TEST(CryptoTest, SealedTextOpensOnlyWithItsKeyAndUnaltered) {
  std::string key = Sha256Raw("passphrase"), other = Sha256Raw("another");
  auto sealed = SealAes256Gcm(key, "the value");
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(sealed->find("the value"), std::string::npos);
  EXPECT_NE(*sealed, *SealAes256Gcm(key, "the value")) << "a fresh nonce each time";
  EXPECT_EQ(*UnsealAes256Gcm(key, *sealed), "the value");
  EXPECT_EQ(UnsealAes256Gcm(other, *sealed).status().code(), StatusCode::kCorruption);
  std::string altered = *sealed;
  altered[30] = altered[30] == '0' ? '1' : '0';
  EXPECT_EQ(UnsealAes256Gcm(key, altered).status().code(), StatusCode::kCorruption);
  EXPECT_EQ(UnsealAes256Gcm(key, "zz").status().code(), StatusCode::kCorruption);
  EXPECT_EQ(SealAes256Gcm("short", "x").status().code(), StatusCode::kInvalidArgument);
}

// RFC 4231 test case 2, and the example of GitHub's "Validating webhook
// deliveries" page.
TEST(CryptoTest, HmacSha256MatchesPublishedVectors) {
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(HmacSha256Hex("It's a Secret to Everybody", "Hello, World!"),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
}

TEST(CryptoTest, ConstantTimeEqualsComparesWholeStrings) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
}

TEST(CryptoTest, ScryptKeysDependOnPassphraseAndSalt) {
  auto a = DeriveKeyScrypt("passphrase", "salt-one-16bytes");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->size(), 32u);
  EXPECT_EQ(*a, *DeriveKeyScrypt("passphrase", "salt-one-16bytes"));
  EXPECT_NE(*a, *DeriveKeyScrypt("passphrase", "salt-two-16bytes"));
  EXPECT_NE(*a, *DeriveKeyScrypt("passphrasf", "salt-one-16bytes"));
  EXPECT_NE(*a, Sha256Raw("passphrase"));
}

}  // namespace
}  // namespace loom
