// A Llama-shaped checkpoint with random weights, written like a real one
// (config.json + model.safetensors), for the inference benchmarks.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace loom::inference::bench {

struct SyntheticShape {
  int64_t vocab = 32000, hidden = 768, inter = 2048, layers = 12, heads = 12, kv_heads = 4;
  int64_t max_positions = 2048;
  bool tied = true;            // lm_head is the embedding
  std::string dtype = "BF16";  // "BF16" or "F32" on disk
  int64_t head_dim() const { return hidden / heads; }
};

// The CUDA decode benchmark's shape: a Llama of 1.1B parameters (hidden 2048,
// 32/8 heads of 64, FFN 8192, vocab 32000, untied) with `layers` of its 16
// layers. The real-shape CPU-vs-CUDA test takes a few layers of it.
SyntheticShape Llama1B(int64_t layers = 16);

// Writes the checkpoint into `dir` and prints a one-line description; returns
// the number of parameters (lm_head counted once, even when tied).
Result<int64_t> WriteSyntheticModel(const std::string& dir, const SyntheticShape& shape);

}  // namespace loom::inference::bench
