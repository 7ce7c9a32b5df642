// The interface between the engine and the hardware: one forward step over a
// batch of sequences whose keys and values live in a paged KV cache.
//
// The engine owns the cache's bookkeeping (which physical blocks belong to which
// sequence, the prefix cache); the backend owns the storage: per layer, K and V
// arrays of [num_kv_blocks, block_size, num_kv_heads, head_dim]. Token t of a
// sequence lives in block block_table[t / block_size], slot t % block_size.
//
// A step may mix prefill chunks (many new tokens) and decode steps (one token):
// continuous batching happens above this interface. CPU (float32, the reference)
// and CUDA (bf16) backends implement it; tensor parallelism is internal to a
// backend (it shards the weights and runs a Communicator among its ranks).
//
// Thread-compatible: the engine thread is the only caller.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "inference/model_config.h"

namespace loom::inference {

// One sequence's part of a step.
struct SeqStep {
  std::span<const int32_t> tokens;       // new tokens, at positions start_pos, start_pos+1, ...
  int32_t start_pos = 0;                 // tokens of this sequence already in the cache
  std::span<const int32_t> block_table;  // covers start_pos + tokens.size() positions
  // Return the logits of every new token (tests, scoring); otherwise only the last.
  bool all_logits = false;
};

struct StepOutput {
  // Row-major [rows, vocab_size]: for each SeqStep in order, one row (the last
  // new token) or tokens.size() rows when all_logits.
  std::vector<float> logits;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual const ModelConfig& config() const = 0;
  virtual int32_t block_size() const = 0;     // tokens per KV block
  virtual int32_t num_kv_blocks() const = 0;  // physical blocks available

  // Runs the new tokens of every sequence through the model, writes their K/V
  // into the cache and returns the requested logits. REQUIRES: every block in a
  // block_table is < num_kv_blocks(); positions < max_position_embeddings.
  virtual Status Forward(std::span<const SeqStep> batch, StepOutput* out) = 0;

  // Copies the K/V of physical block `src` into `dst` (all layers): the engine
  // uses it when a shared, partly filled block must be written.
  virtual Status CopyBlock(int32_t src, int32_t dst) = 0;
};

}  // namespace loom::inference
