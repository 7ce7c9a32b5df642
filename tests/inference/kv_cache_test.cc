#include "inference/engine/kv_cache.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

namespace loom::inference {
namespace {

TEST(KvBlockManagerTest, AllocatesEveryBlockOnceThenRunsOut) {
  KvBlockManager kv(4, 16);
  std::set<int32_t> got;
  for (int i = 0; i < 4; ++i) {
    auto b = kv.Allocate();
    ASSERT_TRUE(b.has_value());
    EXPECT_TRUE(got.insert(*b).second);
    EXPECT_EQ(kv.refcount(*b), 1);
  }
  EXPECT_FALSE(kv.Allocate().has_value());
  EXPECT_EQ(kv.num_used(), 4);
  EXPECT_EQ(kv.num_available(), 0);
  kv.Release(*got.begin());
  EXPECT_EQ(kv.num_available(), 1);
  EXPECT_EQ(kv.Allocate(), *got.begin());
}

TEST(KvBlockManagerTest, ChainedHashDependsOnPrefixAndTokens) {
  std::vector<int32_t> a = {1, 2, 3, 4}, b = {1, 2, 3, 5};
  uint64_t root = KvBlockManager::kRootHash;
  uint64_t ha = KvBlockManager::HashBlock(root, a);
  EXPECT_EQ(ha, KvBlockManager::HashBlock(root, a));
  EXPECT_NE(ha, KvBlockManager::HashBlock(root, b));
  // The same block after different prefixes hashes differently.
  EXPECT_NE(KvBlockManager::HashBlock(ha, a), KvBlockManager::HashBlock(root, a));
  EXPECT_NE(KvBlockManager::HashBlock(ha, a),
            KvBlockManager::HashBlock(KvBlockManager::HashBlock(root, b), a));
}

TEST(KvBlockManagerTest, PublishedBlockIsSharedWithRefcounts) {
  KvBlockManager kv(4, 4);
  std::vector<int32_t> toks = {7, 8, 9, 10};
  uint64_t h = KvBlockManager::HashBlock(KvBlockManager::kRootHash, toks);
  int32_t b = *kv.Allocate();
  kv.Publish(b, h, KvBlockManager::kRootHash, toks);
  auto hit = kv.Lookup(h, KvBlockManager::kRootHash, toks);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(*hit, b);
  EXPECT_EQ(kv.refcount(b), 2);
  kv.Release(b);
  kv.Release(b);
  EXPECT_EQ(kv.refcount(b), 0);
  EXPECT_EQ(kv.num_used(), 0);
  EXPECT_EQ(kv.num_cached_idle(), 1);
  // Still cached after its last reference is gone.
  auto again = kv.Lookup(h, KvBlockManager::kRootHash, toks);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, b);
  EXPECT_EQ(kv.num_cached_idle(), 0);
  EXPECT_EQ(kv.num_used(), 1);
}

TEST(KvBlockManagerTest, LookupMissesOnDifferentTokensOrParentEvenWithTheSameHash) {
  KvBlockManager kv(2, 2);
  std::vector<int32_t> toks = {1, 2}, other = {1, 3};
  int32_t b = *kv.Allocate();
  kv.Publish(b, 42, KvBlockManager::kRootHash, toks);
  EXPECT_FALSE(kv.Lookup(42, KvBlockManager::kRootHash, other).has_value());
  EXPECT_FALSE(kv.Lookup(42, 1234, toks).has_value());
  EXPECT_FALSE(kv.Lookup(43, KvBlockManager::kRootHash, toks).has_value());
  EXPECT_TRUE(kv.Lookup(42, KvBlockManager::kRootHash, toks).has_value());
}

TEST(KvBlockManagerTest, UnpublishedBlocksAreReusedBeforeCachedOnes) {
  KvBlockManager kv(2, 2);
  std::vector<int32_t> toks = {1, 2};
  int32_t cached = *kv.Allocate();
  int32_t plain = *kv.Allocate();
  kv.Publish(cached, 5, KvBlockManager::kRootHash, toks);
  kv.Release(cached);
  kv.Release(plain);
  EXPECT_EQ(*kv.Allocate(), plain);
  EXPECT_TRUE(kv.is_published(cached));
  // Only the cached block is left: allocating evicts it and forgets its hash.
  EXPECT_EQ(*kv.Allocate(), cached);
  EXPECT_FALSE(kv.is_published(cached));
  kv.Release(cached);
  EXPECT_FALSE(kv.Lookup(5, KvBlockManager::kRootHash, toks).has_value());
}

TEST(KvBlockManagerTest, EvictsLeastRecentlyUsedCachedBlockFirst) {
  KvBlockManager kv(3, 1);
  uint64_t root = KvBlockManager::kRootHash;
  std::vector<int32_t> blocks;
  for (int32_t t = 0; t < 3; ++t) {
    int32_t b = *kv.Allocate();
    std::vector<int32_t> toks = {t};
    kv.Publish(b, KvBlockManager::HashBlock(root, toks), root, toks);
    blocks.push_back(b);
  }
  // Released in the order 1, 0, 2; then 1 is touched again (hit + release).
  kv.Release(blocks[1]);
  kv.Release(blocks[0]);
  kv.Release(blocks[2]);
  std::vector<int32_t> t1 = {1};
  ASSERT_EQ(kv.Lookup(KvBlockManager::HashBlock(root, t1), root, t1), blocks[1]);
  kv.Release(blocks[1]);
  EXPECT_EQ(*kv.Allocate(), blocks[0]);
  EXPECT_EQ(*kv.Allocate(), blocks[2]);
  EXPECT_EQ(*kv.Allocate(), blocks[1]);
  EXPECT_FALSE(kv.Allocate().has_value());
}

TEST(KvBlockManagerTest, DuplicatePublishKeepsTheFirstBlock) {
  KvBlockManager kv(2, 2);
  std::vector<int32_t> toks = {1, 2};
  uint64_t h = KvBlockManager::HashBlock(KvBlockManager::kRootHash, toks);
  int32_t a = *kv.Allocate();
  int32_t b = *kv.Allocate();
  kv.Publish(a, h, KvBlockManager::kRootHash, toks);
  kv.Publish(b, h, KvBlockManager::kRootHash, toks);
  EXPECT_TRUE(kv.is_published(a));
  EXPECT_FALSE(kv.is_published(b));
  kv.Release(b);  // the duplicate is simply free again
  EXPECT_EQ(kv.num_cached_idle(), 0);
  EXPECT_EQ(kv.num_available(), 1);
}

}  // namespace
}  // namespace loom::inference
