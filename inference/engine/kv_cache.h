// The bookkeeping of the paged KV cache: which physical blocks are free, which
// are referenced by running sequences, and which hold a cached prefix.
//
// A block that became full is "published" under a hash of its tokens chained
// with the hash of everything before it, so a later sequence whose first k
// blocks have the same chained hashes can take those blocks (refcount + 1)
// instead of recomputing them. Lookups verify the parent hash and the tokens
// too, so a 64-bit hash collision cannot hand a sequence the wrong keys.
// When the last reference to a published block is dropped it stays cached in an
// LRU list; Allocate() evicts from there only when no never-used block is left.
//
// The storage itself belongs to the Backend; this class only hands out indices.
// Thread-compatible: the engine thread is the only caller.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace loom::inference {

class KvBlockManager {
 public:
  // The hash of the (empty) prefix before the first block.
  static constexpr uint64_t kRootHash = 0x9e3779b97f4a7c15ull;

  KvBlockManager(int32_t num_blocks, int32_t block_size);

  int32_t num_blocks() const { return static_cast<int32_t>(blocks_.size()); }
  int32_t block_size() const { return block_size_; }

  // Chained hash of one full block of `tokens` after a prefix hashed `parent`.
  static uint64_t HashBlock(uint64_t parent, std::span<const int32_t> tokens);

  // A block with refcount 1: a never-used one if any, else the least recently
  // used cached block (whose hash is forgotten). nullopt when every block is
  // referenced.
  std::optional<int32_t> Allocate();

  // Drops one reference. At zero, a published block moves to the front of the
  // LRU (most recently used); an unpublished one becomes free.
  // REQUIRES: refcount(block) > 0.
  void Release(int32_t block);

  // The cached block for (`hash`, `parent`, `tokens`), with a new reference
  // taken, or nullopt.
  std::optional<int32_t> Lookup(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens);

  // Marks `block` (full, its K/V written) as holding `tokens` after `parent`.
  // When another block already holds that content, nothing changes: the
  // duplicate is freed normally when released. REQUIRES: refcount(block) > 0.
  void Publish(int32_t block, uint64_t hash, uint64_t parent, std::span<const int32_t> tokens);

  int32_t refcount(int32_t block) const { return blocks_[block].refcount; }
  bool is_published(int32_t block) const { return blocks_[block].published; }
  // Blocks with at least one reference.
  int32_t num_used() const { return num_used_; }
  // Blocks Allocate() can still hand out (free + cached but unreferenced).
  int32_t num_available() const { return num_blocks() - num_used_; }
  // Unreferenced blocks that still hold a cached prefix.
  int32_t num_cached_idle() const { return static_cast<int32_t>(lru_.size()); }

 private:
  struct Block {
    int32_t refcount = 0;
    bool published = false;
    uint64_t hash = 0;
    uint64_t parent = 0;
    std::vector<int32_t> tokens;          // when published
    std::list<int32_t>::iterator lru_it;  // valid when published && refcount == 0
  };

  void Unpublish(int32_t block);

  int32_t block_size_;
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;                      // never used or unpublished; LIFO
  std::list<int32_t> lru_;                         // front = most recently used
  std::unordered_map<uint64_t, int32_t> by_hash_;  // published blocks
  int32_t num_used_ = 0;
};

}  // namespace loom::inference
