// The shape of a Llama-family checkpoint, read from a Hugging Face config.json.
//
// Families: "llama" (GQA, optional rope_scaling of type llama3, untied or tied
// embeddings) and "qwen2" (q/k/v bias, usually tied embeddings). Other
// checkpoints of these families with other head counts, biases and tying load
// without code changes: everything the forward pass needs is a field here.
// Value type, thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace loom::inference {

struct RopeScaling {
  enum class Type { kNone, kLlama3 };
  Type type = Type::kNone;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string model_type;  // "llama" | "qwen2"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_heads unless config.json says otherwise
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;  // top level, or rope_parameters.rope_theta (transformers 5)
  RopeScaling rope_scaling;
  bool attention_bias = false;  // q/k/v bias (always true for qwen2)
  bool tie_word_embeddings = false;
  std::vector<int32_t> eos_token_ids;  // config.json + generation_config.json, deduplicated
};

// Parses `dir`/config.json and, when present, `dir`/generation_config.json.
// Errors name the file and the key.
Result<ModelConfig> LoadModelConfig(const std::string& dir);

// The same from JSON text (for tests); `path` only names the source in errors.
Result<ModelConfig> ParseModelConfig(const std::string& json_text, const std::string& path);

// RoPE inverse frequencies [head_dim / 2], as Hugging Face computes them in float32:
// 1 / theta^(2i / head_dim), then the llama3 adjustment when rope_scaling asks for it.
// Every backend uses this one function so that they rotate identically.
std::vector<float> RopeInverseFrequencies(const ModelConfig& config);

}  // namespace loom::inference
