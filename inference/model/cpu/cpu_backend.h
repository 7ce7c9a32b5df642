// The CPU reference backend: float32, exact against the Hugging Face fixture
// (logits within 1e-4), for Llama and Qwen2 checkpoints.
//
// Tensor parallelism is Megatron-style inside the backend: each of `tp` ranks
// holds a column split of q/k/v (by heads) and gate/up, a row split of o_proj
// and down_proj, and its heads' share of the KV cache; an AllReduceSum over an
// in-process Communicator follows o_proj and down_proj, and lm_head is split
// by vocabulary rows and all-gathered. Ranks run on their own threads.
//
// Head rule: num_attention_heads % tp == 0, and either num_key_value_heads % tp
// == 0 (KV heads split) or tp % num_key_value_heads == 0 (each rank holds the
// one KV head its query heads use, replicated across tp / num_kv_heads ranks);
// intermediate_size % tp == 0. Other combinations are rejected at load.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "inference/model/backend.h"

namespace loom::inference {

struct CpuBackendOptions {
  int threads = 1;              // matmul threads in all, shared among the ranks (>= 1 each)
  int tp = 1;                   // tensor-parallel ranks (1, 2, 4, ...: see the head rule)
  int32_t block_size = 16;      // tokens per KV block
  int32_t num_kv_blocks = 256;  // physical KV blocks (per layer, each rank its heads' share)
};

// Loads `model_dir` (config.json, generation_config.json, model.safetensors or
// its index) and converts the weights to float32. The returned Backend is
// thread-compatible (the engine thread is its only caller).
Result<std::unique_ptr<Backend>> MakeCpuBackend(const std::string& model_dir,
                                                const CpuBackendOptions& options);

}  // namespace loom::inference
