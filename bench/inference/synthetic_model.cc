#include "bench/inference/synthetic_model.h"

#include <cstdio>
#include <fstream>
#include <vector>

#include "common/json.h"
#include "inference/model/safetensors.h"

namespace loom::inference::bench {

SyntheticShape Llama1B(int64_t layers) {
  SyntheticShape s;
  s.hidden = 2048;
  s.inter = 8192;
  s.layers = layers;
  s.heads = 32;
  s.kv_heads = 8;
  s.tied = false;
  return s;
}

Result<int64_t> WriteSyntheticModel(const std::string& dir, const SyntheticShape& s) {
  Json config = {{"model_type", "llama"},
                 {"vocab_size", s.vocab},
                 {"hidden_size", s.hidden},
                 {"intermediate_size", s.inter},
                 {"num_hidden_layers", s.layers},
                 {"num_attention_heads", s.heads},
                 {"num_key_value_heads", s.kv_heads},
                 {"max_position_embeddings", s.max_positions},
                 {"rms_norm_eps", 1e-5},
                 {"rope_theta", 10000.0},
                 {"tie_word_embeddings", s.tied},
                 {"eos_token_id", 2}};
  std::ofstream(dir + "/config.json") << config.dump(2);

  struct T {
    std::string name;
    std::vector<int64_t> shape;
    float mean, scale;
  };
  const int64_t H = s.hidden, hd = s.head_dim();
  std::vector<T> ts = {{"model.embed_tokens.weight", {s.vocab, H}, 0, 0.02f},
                       {"model.norm.weight", {H}, 1, 0}};
  if (!s.tied) ts.push_back({"lm_head.weight", {s.vocab, H}, 0, 0.02f});
  for (int64_t l = 0; l < s.layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    ts.push_back({p + "input_layernorm.weight", {H}, 1, 0});
    ts.push_back({p + "post_attention_layernorm.weight", {H}, 1, 0});
    ts.push_back({p + "self_attn.q_proj.weight", {s.heads * hd, H}, 0, 0.03f});
    ts.push_back({p + "self_attn.k_proj.weight", {s.kv_heads * hd, H}, 0, 0.03f});
    ts.push_back({p + "self_attn.v_proj.weight", {s.kv_heads * hd, H}, 0, 0.03f});
    ts.push_back({p + "self_attn.o_proj.weight", {H, s.heads * hd}, 0, 0.03f});
    ts.push_back({p + "mlp.gate_proj.weight", {s.inter, H}, 0, 0.03f});
    ts.push_back({p + "mlp.up_proj.weight", {s.inter, H}, 0, 0.03f});
    ts.push_back({p + "mlp.down_proj.weight", {H, s.inter}, 0, 0.02f});
  }
  const bool bf16 = s.dtype == "BF16";
  if (!bf16 && s.dtype != "F32") return Status::InvalidArgument("dtype must be BF16 or F32");
  std::vector<std::vector<uint32_t>> data;  // F32 bits, or two BF16 per word
  std::vector<TensorToWrite> out;
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  int64_t params = 0;
  for (const T& t : ts) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    params += n;
    std::vector<uint32_t> v(static_cast<size_t>(bf16 ? (n + 1) / 2 : n));
    auto* h = reinterpret_cast<uint16_t*>(v.data());
    auto* f = reinterpret_cast<float*>(v.data());
    for (int64_t i = 0; i < n; ++i) {
      rng ^= rng << 13;
      rng ^= rng >> 7;
      rng ^= rng << 17;
      const float x = t.mean + t.scale * (float(rng >> 40) / float(1 << 24) * 2.0f - 1.0f);
      if (bf16) {
        h[i] = FloatToBf16(x);
      } else {
        f[i] = x;
      }
    }
    data.push_back(std::move(v));
    out.push_back({t.name, s.dtype, t.shape,
                   std::as_bytes(std::span<const uint32_t>(data.back()))
                       .first(static_cast<size_t>(n) * (bf16 ? 2 : 4))});
  }
  std::printf(
      "model: %.1fM parameters (hidden %lld, %lld layers, %lld/%lld heads, FFN %lld, vocab %lld, "
      "%s, %s)\n",
      double(params) / 1e6, (long long)H, (long long)s.layers, (long long)s.heads,
      (long long)s.kv_heads, (long long)s.inter, (long long)s.vocab, s.tied ? "tied" : "untied",
      s.dtype.c_str());
  LOOM_RETURN_IF_ERROR(WriteSafetensors(dir + "/model.safetensors", out));
  return params;
}

}  // namespace loom::inference::bench
