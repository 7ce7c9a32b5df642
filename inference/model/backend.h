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
#include "inference/model/model_config.h"

namespace loom::inference {

// One sequence's part of a step.
struct SeqStep {
  std::span<const int32_t> tokens;       // new tokens, at positions start_pos, start_pos+1, ...
  int32_t start_pos = 0;                 // tokens of this sequence already in the cache
  std::span<const int32_t> block_table;  // covers start_pos + tokens.size() positions
  // Return the logits of every new token (tests, scoring); otherwise only the last.
  bool all_logits = false;
  // Only the argmax of the last new token is wanted (greedy decoding): a backend
  // may return it in StepOutput::argmax instead of the logits row. Ignored with
  // all_logits.
  bool greedy = false;
};

struct StepOutput {
  // Row-major [rows, vocab_size]: for each SeqStep in order, one row (the last
  // new token), tokens.size() rows when all_logits, or no row when the backend
  // answered a greedy step in `argmax`.
  std::vector<float> logits;
  // Empty, or one entry per SeqStep: the argmax (lowest id among equal maxima)
  // of a greedy step's last row, computed by the backend; -1 where that step's
  // row is in `logits` instead. Backends that sample on the device (CUDA) fill it
  // so that a decode step copies one int per sequence to the host, not a row.
  std::vector<int32_t> argmax;
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

// Checks what Forward REQUIRES, for every backend: each step has tokens inside
// the vocabulary, positions below max_position_embeddings, and a block table
// that covers them with blocks below num_kv_blocks. Errors name the sequence.
Status ValidateBatch(std::span<const SeqStep> batch, const ModelConfig& config, int32_t block_size,
                     int32_t num_kv_blocks);

// The head rule of tensor parallelism, shared by the CPU and CUDA backends:
// num_attention_heads % tp == 0, and either num_key_value_heads % tp == 0 (KV
// heads split) or tp % num_key_value_heads == 0 (one replicated KV head per
// rank); intermediate_size % tp == 0.
Status CheckTensorParallel(const ModelConfig& config, int tp);

// What rank `rank` of `tp` holds under that rule.
struct TensorParallelShard {
  int64_t nq = 0, q_begin = 0;    // query heads held; the first one's global index
  int64_t nkv = 0, kv_begin = 0;  // KV heads held; the first one's global index
  int64_t inter = 0;              // intermediate columns held, from rank * inter
};
TensorParallelShard ShardOf(const ModelConfig& config, int tp, int rank);

}  // namespace loom::inference
