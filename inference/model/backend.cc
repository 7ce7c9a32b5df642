// Shared by every backend: what Backend::Forward REQUIRES of a batch.
#include "inference/model/backend.h"

#include <string>

namespace loom::inference {

Status ValidateBatch(std::span<const SeqStep> batch, const ModelConfig& config, int32_t block_size,
                     int32_t num_kv_blocks) {
  for (size_t s = 0; s < batch.size(); ++s) {
    const SeqStep& st = batch[s];
    const std::string where = "Forward: sequence " + std::to_string(s) + ": ";
    if (st.tokens.empty()) return Status::InvalidArgument(where + "no new tokens");
    if (st.start_pos < 0) return Status::InvalidArgument(where + "negative start_pos");
    const int64_t end = static_cast<int64_t>(st.start_pos) + static_cast<int64_t>(st.tokens.size());
    if (end > config.max_position_embeddings) {
      return Status::InvalidArgument(where + "positions up to " + std::to_string(end) +
                                     " exceed max_position_embeddings (" +
                                     std::to_string(config.max_position_embeddings) + ")");
    }
    const int64_t blocks = (end + block_size - 1) / block_size;
    if (static_cast<int64_t>(st.block_table.size()) < blocks) {
      return Status::InvalidArgument(where + "block_table has " +
                                     std::to_string(st.block_table.size()) + " blocks, " +
                                     std::to_string(blocks) + " needed");
    }
    for (int64_t b = 0; b < blocks; ++b) {
      if (st.block_table[b] < 0 || st.block_table[b] >= num_kv_blocks) {
        return Status::InvalidArgument(where + "block " + std::to_string(st.block_table[b]) +
                                       " is not below num_kv_blocks");
      }
    }
    for (int32_t t : st.tokens) {
      if (t < 0 || t >= config.vocab_size) {
        return Status::InvalidArgument(where + "token id " + std::to_string(t) +
                                       " is outside the vocabulary");
      }
    }
  }
  return Status::Ok();
}

Status CheckTensorParallel(const ModelConfig& config, int tp) {
  if (tp < 1) return Status::InvalidArgument("tp must be at least 1");
  if (config.num_heads % tp != 0 ||
      (config.num_kv_heads % tp != 0 && tp % config.num_kv_heads != 0) ||
      config.intermediate_size % tp != 0) {
    return Status::InvalidArgument(
        "tp=" + std::to_string(tp) + " does not divide the model: need num_attention_heads (" +
        std::to_string(config.num_heads) + ") and intermediate_size (" +
        std::to_string(config.intermediate_size) + ") divisible by tp, and num_key_value_heads (" +
        std::to_string(config.num_kv_heads) + ") divisible by tp or dividing it");
  }
  return Status::Ok();
}

TensorParallelShard ShardOf(const ModelConfig& config, int tp, int rank) {
  TensorParallelShard s;
  s.nq = config.num_heads / tp;
  s.q_begin = rank * s.nq;
  if (config.num_kv_heads % tp == 0) {
    s.nkv = config.num_kv_heads / tp;
    s.kv_begin = rank * s.nkv;
  } else {  // tp % num_kv_heads == 0: one replicated KV head per rank
    s.nkv = 1;
    s.kv_begin = rank / (tp / config.num_kv_heads);
  }
  s.inter = config.intermediate_size / tp;
  return s;
}

}  // namespace loom::inference
