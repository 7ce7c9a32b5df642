// KvBlockManager: a free list (LIFO, so recently freed blocks are reused while
// warm), an LRU list of unreferenced published blocks, and a hash map from the
// chained block hash to the block that holds it. Every operation is O(1) except
// the token comparison in Lookup (one block's tokens).
#include "inference/engine/kv_cache.h"

#include <algorithm>
#include <cassert>

namespace loom::inference {

KvBlockManager::KvBlockManager(int32_t num_blocks, int32_t block_size)
    : block_size_(block_size), blocks_(num_blocks) {
  free_.reserve(num_blocks);
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

uint64_t KvBlockManager::HashBlock(uint64_t parent, std::span<const int32_t> tokens) {
  // splitmix64-style mixing of each token into the running value: cheap, and
  // every bit of every token reaches every bit of the result.
  uint64_t h = parent ^ (0xbf58476d1ce4e5b9ull * (tokens.size() + 1));
  for (int32_t t : tokens) {
    h += 0x9e3779b97f4a7c15ull + static_cast<uint32_t>(t);
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    h ^= h >> 31;
  }
  return h;
}

std::optional<int32_t> KvBlockManager::Allocate() {
  int32_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {
    b = lru_.back();  // least recently used
    Unpublish(b);
  } else {
    return std::nullopt;
  }
  assert(blocks_[b].refcount == 0);
  blocks_[b].refcount = 1;
  ++num_used_;
  return b;
}

void KvBlockManager::Release(int32_t block) {
  Block& blk = blocks_[block];
  assert(blk.refcount > 0);
  if (--blk.refcount > 0) return;
  --num_used_;
  if (blk.published) {
    lru_.push_front(block);
    blk.lru_it = lru_.begin();
  } else {
    free_.push_back(block);
  }
}

std::optional<int32_t> KvBlockManager::Lookup(uint64_t hash, uint64_t parent,
                                              std::span<const int32_t> tokens) {
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return std::nullopt;
  Block& blk = blocks_[it->second];
  if (blk.parent != parent ||
      !std::equal(tokens.begin(), tokens.end(), blk.tokens.begin(), blk.tokens.end())) {
    return std::nullopt;  // a hash collision: treat as a miss
  }
  if (blk.refcount++ == 0) {
    lru_.erase(blk.lru_it);
    ++num_used_;
  }
  return it->second;
}

void KvBlockManager::Publish(int32_t block, uint64_t hash, uint64_t parent,
                             std::span<const int32_t> tokens) {
  Block& blk = blocks_[block];
  assert(blk.refcount > 0);
  if (blk.published || by_hash_.contains(hash)) return;
  blk.published = true;
  blk.hash = hash;
  blk.parent = parent;
  blk.tokens.assign(tokens.begin(), tokens.end());
  by_hash_[hash] = block;
}

void KvBlockManager::Unpublish(int32_t block) {
  Block& blk = blocks_[block];
  lru_.erase(blk.lru_it);
  by_hash_.erase(blk.hash);
  blk.published = false;
  blk.tokens.clear();
}

}  // namespace loom::inference
