// The CPU reference forward pass (float32), following Hugging Face's
// LlamaForCausalLM / Qwen2ForCausalLM operation for operation:
//
//   x = embed[tokens]                                          [T, H]
//   per layer:  h = RMSNorm(x);  q,k,v = h·Wqkvᵀ (+ b);  RoPE(q, k) (rotate_half)
//               K/V of the new tokens -> paged cache; attention over the cache
//               (causal: token at position p sees positions 0..p of its sequence)
//               x += AllReduce(attn·Woᵀ)
//               h = RMSNorm(x);  x += AllReduce((silu(h·Wgᵀ) * h·Wuᵀ)·Wdᵀ)
//   logits = RMSNorm(x[rows])·Wlmᵀ (each rank a vocabulary slice, all-gathered)
//
// One step flattens every sequence's new tokens into T rows, so prefill chunks,
// decode steps and several sequences share each weight pass. Each tensor-
// parallel rank runs this on its own thread with its own matmul pool; ranks
// hold identical copies of x (the all-reduce gives every rank the same bits).
#include "inference/model/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "inference/model/communicator.h"
#include "inference/model/cpu/kernels.h"
#include "inference/model/cpu/thread_pool.h"
#include "inference/model/safetensors.h"

namespace loom::inference {
namespace {

using cpu::ThreadPool;

// One decoder layer's weights as held by one rank, and its share of the KV cache.
struct LayerShard {
  std::vector<float> attn_norm;  // [H]
  std::vector<float> wqkv;       // [(nq + 2*nkv) * hd, H]: this rank's q rows, then k, then v
  std::vector<float> bqkv;       // [(nq + 2*nkv) * hd], empty without attention bias
  std::vector<float> wo;         // [H, nq * hd]: the columns of this rank's heads
  std::vector<float> mlp_norm;   // [H]
  std::vector<float> wgate_up;   // [2 * inter, H]: gate rows, then up rows
  std::vector<float> wdown;      // [H, inter]
  std::vector<float> k_cache;    // [num_kv_blocks, block_size, nkv, hd]
  std::vector<float> v_cache;    // [num_kv_blocks, block_size, nkv, hd]
};

// One tensor-parallel shard: its heads, its slice of the MLP and vocabulary,
// its share of the KV cache, its communicator and its matmul pool.
struct Rank : TensorParallelShard {
  int index = 0;
  int64_t vocab_begin = 0;
  int64_t vocab_rows = 0;
  const float* lm_head = nullptr;  // [vocab_rows, H], inside the backend's shared array
  std::unique_ptr<Communicator> comm;
  std::unique_ptr<ThreadPool> pool;
  std::vector<LayerShard> layers;
};

// A step flattened into rows, built on the caller's thread before the ranks run.
struct Plan {
  std::span<const SeqStep> batch;
  int64_t rows = 0;                 // T: new tokens in all
  std::vector<int32_t> tokens;      // [T]
  std::vector<int32_t> pos;         // [T]
  std::vector<int32_t> seq;         // [T]: index into batch
  std::vector<float> cos, sin;      // [T, hd / 2]
  std::vector<int64_t> logit_rows;  // rows whose logits are returned, in output order
  int32_t max_context = 0;          // longest attended span
};

std::string LayerName(int64_t l, const char* suffix) {
  return "model.layers." + std::to_string(l) + "." + suffix;
}

float Silu(float v) { return v / (1.0f + std::exp(-v)); }

// Owns the shared tensors (embedding, lm_head, final norm) and one Rank per
// tensor-parallel shard. Thread-compatible: Forward and CopyBlock come from the
// engine thread; inside Forward the ranks run concurrently on gang_'s threads,
// each touching only its own Rank and the read-only shared tensors.
class CpuBackend final : public Backend {
 public:
  CpuBackend(ModelConfig config, CpuBackendOptions options)
      : config_(std::move(config)), options_(options) {}

  Status Load(const Checkpoint& ck);

  const ModelConfig& config() const override { return config_; }
  int32_t block_size() const override { return options_.block_size; }
  int32_t num_kv_blocks() const override { return options_.num_kv_blocks; }
  Status Forward(std::span<const SeqStep> batch, StepOutput* out) override;
  Status CopyBlock(int32_t src, int32_t dst) override;

 private:
  Status ValidateAndPlan(std::span<const SeqStep> batch, Plan* plan) const;
  Status RunRank(Rank& rank, const Plan& plan, float* logits);
  Status LoadRank(const Checkpoint& ck, Rank& rank);

  ModelConfig config_;
  CpuBackendOptions options_;
  std::vector<float> embed_;       // [V, H]
  std::vector<float> lm_head_;     // [V, H]; empty when tied to embed_
  std::vector<float> final_norm_;  // [H]
  std::vector<float> inv_freq_;    // [hd / 2]
  bool split_vocab_ = false;       // lm_head rows split over ranks (V % tp == 0)
  std::vector<std::unique_ptr<Rank>> ranks_;
  std::unique_ptr<ThreadPool> gang_;  // one thread per rank
};

Status CpuBackend::LoadRank(const Checkpoint& ck, Rank& r) {
  const ModelConfig& c = config_;
  const int64_t H = c.hidden_size, hd = c.head_dim;
  const int64_t tp = options_.tp;
  static_cast<TensorParallelShard&>(r) = ShardOf(c, static_cast<int>(tp), r.index);
  const int64_t qkv_rows = (r.nq + 2 * r.nkv) * hd;
  const Range all_h{0, H};
  const Range q_rows{r.q_begin * hd, (r.q_begin + r.nq) * hd};
  const Range kv_rows{r.kv_begin * hd, (r.kv_begin + r.nkv) * hd};
  const Range i_rows{r.index * r.inter, (r.index + 1) * r.inter};
  const size_t cache_floats = static_cast<size_t>(options_.num_kv_blocks) *
                              static_cast<size_t>(options_.block_size * r.nkv * hd);

  r.layers.resize(static_cast<size_t>(c.num_layers));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    LayerShard& L = r.layers[l];
    LOOM_ASSIGN_OR_RETURN(L.attn_norm, ck.ReadFloat32(LayerName(l, "input_layernorm.weight"), {H}));
    LOOM_ASSIGN_OR_RETURN(L.mlp_norm,
                          ck.ReadFloat32(LayerName(l, "post_attention_layernorm.weight"), {H}));
    LOOM_ASSIGN_OR_RETURN(auto wq, ck.ReadMatrixSlice(LayerName(l, "self_attn.q_proj.weight"),
                                                      c.num_heads * hd, H, q_rows, all_h));
    LOOM_ASSIGN_OR_RETURN(auto wk, ck.ReadMatrixSlice(LayerName(l, "self_attn.k_proj.weight"),
                                                      c.num_kv_heads * hd, H, kv_rows, all_h));
    LOOM_ASSIGN_OR_RETURN(auto wv, ck.ReadMatrixSlice(LayerName(l, "self_attn.v_proj.weight"),
                                                      c.num_kv_heads * hd, H, kv_rows, all_h));
    L.wqkv.reserve(static_cast<size_t>(qkv_rows * H));
    L.wqkv.insert(L.wqkv.end(), wq.begin(), wq.end());
    L.wqkv.insert(L.wqkv.end(), wk.begin(), wk.end());
    L.wqkv.insert(L.wqkv.end(), wv.begin(), wv.end());
    if (c.attention_bias) {
      LOOM_ASSIGN_OR_RETURN(
          auto bq, ck.ReadFloat32(LayerName(l, "self_attn.q_proj.bias"), {c.num_heads * hd}));
      LOOM_ASSIGN_OR_RETURN(
          auto bk, ck.ReadFloat32(LayerName(l, "self_attn.k_proj.bias"), {c.num_kv_heads * hd}));
      LOOM_ASSIGN_OR_RETURN(
          auto bv, ck.ReadFloat32(LayerName(l, "self_attn.v_proj.bias"), {c.num_kv_heads * hd}));
      L.bqkv.insert(L.bqkv.end(), bq.begin() + q_rows.begin, bq.begin() + q_rows.end);
      L.bqkv.insert(L.bqkv.end(), bk.begin() + kv_rows.begin, bk.begin() + kv_rows.end);
      L.bqkv.insert(L.bqkv.end(), bv.begin() + kv_rows.begin, bv.begin() + kv_rows.end);
    }
    LOOM_ASSIGN_OR_RETURN(L.wo, ck.ReadMatrixSlice(LayerName(l, "self_attn.o_proj.weight"), H,
                                                   c.num_heads * hd, all_h, q_rows));
    LOOM_ASSIGN_OR_RETURN(auto wg, ck.ReadMatrixSlice(LayerName(l, "mlp.gate_proj.weight"),
                                                      c.intermediate_size, H, i_rows, all_h));
    LOOM_ASSIGN_OR_RETURN(auto wu, ck.ReadMatrixSlice(LayerName(l, "mlp.up_proj.weight"),
                                                      c.intermediate_size, H, i_rows, all_h));
    L.wgate_up.reserve(wg.size() + wu.size());
    L.wgate_up.insert(L.wgate_up.end(), wg.begin(), wg.end());
    L.wgate_up.insert(L.wgate_up.end(), wu.begin(), wu.end());
    LOOM_ASSIGN_OR_RETURN(L.wdown, ck.ReadMatrixSlice(LayerName(l, "mlp.down_proj.weight"), H,
                                                      c.intermediate_size, all_h, i_rows));
    L.k_cache.assign(cache_floats, 0.0f);
    L.v_cache.assign(cache_floats, 0.0f);
  }
  const float* head = lm_head_.empty() ? embed_.data() : lm_head_.data();
  r.vocab_rows = split_vocab_ ? c.vocab_size / tp : c.vocab_size;
  r.vocab_begin = split_vocab_ ? r.index * r.vocab_rows : 0;
  r.lm_head = head + r.vocab_begin * H;
  return Status::Ok();
}

Status CpuBackend::Load(const Checkpoint& ck) {
  const ModelConfig& c = config_;
  const int tp = options_.tp;
  if (tp < 1) return Status::InvalidArgument("tp must be at least 1");
  if (options_.block_size < 1 || options_.num_kv_blocks < 1) {
    return Status::InvalidArgument("block_size and num_kv_blocks must be positive");
  }
  LOOM_RETURN_IF_ERROR(CheckTensorParallel(c, tp));
  const int64_t H = c.hidden_size, V = c.vocab_size;
  LOOM_ASSIGN_OR_RETURN(embed_, ck.ReadFloat32("model.embed_tokens.weight", {V, H}));
  LOOM_ASSIGN_OR_RETURN(final_norm_, ck.ReadFloat32("model.norm.weight", {H}));
  if (!c.tie_word_embeddings) {
    if (ck.Find("lm_head.weight") == nullptr) {
      return Status::NotFound(
          "checkpoint has no tensor \"lm_head.weight\" and config.json has "
          "tie_word_embeddings false");
    }
    LOOM_ASSIGN_OR_RETURN(lm_head_, ck.ReadFloat32("lm_head.weight", {V, H}));
  }
  inv_freq_ = RopeInverseFrequencies(c);
  split_vocab_ = tp > 1 && V % tp == 0;

  auto comms = MakeInProcessGroup(tp);
  const int per_rank = std::max(1, options_.threads / tp);
  for (int i = 0; i < tp; ++i) {
    auto r = std::make_unique<Rank>();
    r->index = i;
    r->comm = std::move(comms[i]);
    r->pool = std::make_unique<ThreadPool>(per_rank);
    LOOM_RETURN_IF_ERROR(LoadRank(ck, *r));
    ranks_.push_back(std::move(r));
  }
  gang_ = std::make_unique<ThreadPool>(tp);
  return Status::Ok();
}

Status CpuBackend::ValidateAndPlan(std::span<const SeqStep> batch, Plan* plan) const {
  plan->batch = batch;
  LOOM_RETURN_IF_ERROR(ValidateBatch(batch, config_, options_.block_size, options_.num_kv_blocks));
  for (size_t s = 0; s < batch.size(); ++s) {
    const SeqStep& st = batch[s];
    const int64_t end = static_cast<int64_t>(st.start_pos) + static_cast<int64_t>(st.tokens.size());
    plan->max_context = std::max<int32_t>(plan->max_context, static_cast<int32_t>(end));
    for (size_t i = 0; i < st.tokens.size(); ++i) {
      if (st.all_logits || i + 1 == st.tokens.size()) plan->logit_rows.push_back(plan->rows);
      plan->tokens.push_back(st.tokens[i]);
      plan->pos.push_back(st.start_pos + static_cast<int32_t>(i));
      plan->seq.push_back(static_cast<int32_t>(s));
      ++plan->rows;
    }
  }
  // RoPE angles as HF computes them: float32 inv_freq * float32 position.
  const size_t half = inv_freq_.size();
  plan->cos.resize(plan->rows * half);
  plan->sin.resize(plan->rows * half);
  for (int64_t t = 0; t < plan->rows; ++t) {
    for (size_t i = 0; i < half; ++i) {
      float angle = inv_freq_[i] * static_cast<float>(plan->pos[t]);
      plan->cos[t * half + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      plan->sin[t * half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
  return Status::Ok();
}

Status CpuBackend::RunRank(Rank& r, const Plan& plan, float* logits) {
  const ModelConfig& c = config_;
  const int64_t H = c.hidden_size, hd = c.head_dim, half = hd / 2, T = plan.rows;
  const int64_t bs = options_.block_size;
  const int64_t qkv_cols = (r.nq + 2 * r.nkv) * hd;
  const int64_t group = c.num_heads / c.num_kv_heads;  // query heads per KV head
  const auto eps = static_cast<float>(c.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  ThreadPool& pool = *r.pool;

  std::vector<float> x(T * H);             // [T, H] residual stream
  std::vector<float> h(T * H);             // [T, H] normed input
  std::vector<float> qkv(T * qkv_cols);    // [T, (nq + 2*nkv) * hd]
  std::vector<float> attn(T * r.nq * hd);  // [T, nq * hd]
  std::vector<float> o(T * H);             // [T, H] partial sums before the all-reduce
  std::vector<float> gu(T * 2 * r.inter);  // [T, 2 * inter]
  std::vector<float> act(T * r.inter);     // [T, inter]

  for (int64_t t = 0; t < T; ++t) {
    std::memcpy(&x[t * H], &embed_[static_cast<size_t>(plan.tokens[t]) * H], H * sizeof(float));
  }

  for (LayerShard& L : r.layers) {
    for (int64_t t = 0; t < T; ++t) cpu::RmsNorm(&x[t * H], L.attn_norm.data(), H, eps, &h[t * H]);
    cpu::MatMul(pool, h.data(), T, H, L.wqkv.data(), qkv_cols,
                L.bqkv.empty() ? nullptr : L.bqkv.data(), qkv.data());

    // RoPE on the q and k heads (rotate_half pairs i and i + hd/2), then K/V to the cache.
    for (int64_t t = 0; t < T; ++t) {
      const float* cs = &plan.cos[t * half];
      const float* sn = &plan.sin[t * half];
      for (int64_t head = 0; head < r.nq + r.nkv; ++head) {
        float* v = &qkv[t * qkv_cols + head * hd];
        for (int64_t i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half];
          v[i] = a * cs[i] - b * sn[i];
          v[i + half] = b * cs[i] + a * sn[i];
        }
      }
      const SeqStep& st = plan.batch[plan.seq[t]];
      const int64_t p = plan.pos[t];
      const int64_t slot =
          (static_cast<int64_t>(st.block_table[p / bs]) * bs + p % bs) * r.nkv * hd;
      std::memcpy(&L.k_cache[slot], &qkv[t * qkv_cols + r.nq * hd], r.nkv * hd * sizeof(float));
      std::memcpy(&L.v_cache[slot], &qkv[t * qkv_cols + (r.nq + r.nkv) * hd],
                  r.nkv * hd * sizeof(float));
    }

    // Attention, one (token, query head) per work item.
    pool.ParallelFor(T * r.nq, 1, [&](int64_t i0, int64_t i1) {
      std::vector<float> scores(plan.max_context);
      for (int64_t item = i0; item < i1; ++item) {
        const int64_t t = item / r.nq, hl = item % r.nq;
        const int64_t g = (r.q_begin + hl) / group - r.kv_begin;  // local KV head
        const float* q = &qkv[t * qkv_cols + hl * hd];
        const SeqStep& st = plan.batch[plan.seq[t]];
        const int64_t ctx = plan.pos[t] + 1;
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < ctx; ++j) {
          const int64_t off =
              ((static_cast<int64_t>(st.block_table[j / bs]) * bs + j % bs) * r.nkv + g) * hd;
          scores[j] = cpu::Dot(q, &L.k_cache[off], hd) * scale;
          mx = std::max(mx, scores[j]);
        }
        float sum = 0;
        for (int64_t j = 0; j < ctx; ++j) {
          scores[j] = std::exp(scores[j] - mx);
          sum += scores[j];
        }
        float* out = &attn[t * r.nq * hd + hl * hd];
        std::fill(out, out + hd, 0.0f);
        const float inv = 1.0f / sum;
        for (int64_t j = 0; j < ctx; ++j) {
          const int64_t off =
              ((static_cast<int64_t>(st.block_table[j / bs]) * bs + j % bs) * r.nkv + g) * hd;
          cpu::Axpy(scores[j] * inv, &L.v_cache[off], out, hd);
        }
      }
    });

    cpu::MatMul(pool, attn.data(), T, r.nq * hd, L.wo.data(), H, nullptr, o.data());
    LOOM_RETURN_IF_ERROR(r.comm->AllReduceSum(o.data(), o.size()));
    for (int64_t i = 0; i < T * H; ++i) x[i] += o[i];

    for (int64_t t = 0; t < T; ++t) cpu::RmsNorm(&x[t * H], L.mlp_norm.data(), H, eps, &h[t * H]);
    cpu::MatMul(pool, h.data(), T, H, L.wgate_up.data(), 2 * r.inter, nullptr, gu.data());
    for (int64_t t = 0; t < T; ++t) {
      const float* g = &gu[t * 2 * r.inter];
      for (int64_t i = 0; i < r.inter; ++i) act[t * r.inter + i] = Silu(g[i]) * g[r.inter + i];
    }
    cpu::MatMul(pool, act.data(), T, r.inter, L.wdown.data(), H, nullptr, o.data());
    LOOM_RETURN_IF_ERROR(r.comm->AllReduceSum(o.data(), o.size()));
    for (int64_t i = 0; i < T * H; ++i) x[i] += o[i];
  }

  const auto R = static_cast<int64_t>(plan.logit_rows.size());
  std::vector<float> xn(R * H);  // [R, H]
  for (int64_t i = 0; i < R; ++i) {
    cpu::RmsNorm(&x[plan.logit_rows[i] * H], final_norm_.data(), H, eps, &xn[i * H]);
  }
  const int64_t V = c.vocab_size, vr = r.vocab_rows;
  std::vector<float> local(R * vr);  // [R, vocab_rows]
  cpu::MatMul(pool, xn.data(), R, H, r.lm_head, vr, nullptr, local.data());
  if (!split_vocab_) {
    if (r.index == 0) std::memcpy(logits, local.data(), local.size() * sizeof(float));
    return Status::Ok();
  }
  const int64_t tp = options_.tp;
  std::vector<float> gathered(tp * R * vr);  // [tp, R, vocab_rows]
  LOOM_RETURN_IF_ERROR(r.comm->AllGather(local.data(), local.size(), gathered.data()));
  if (r.index == 0) {
    for (int64_t q = 0; q < tp; ++q) {
      for (int64_t i = 0; i < R; ++i) {
        std::memcpy(&logits[i * V + q * vr], &gathered[(q * R + i) * vr], vr * sizeof(float));
      }
    }
  }
  return Status::Ok();
}

Status CpuBackend::Forward(std::span<const SeqStep> batch, StepOutput* out) {
  if (out == nullptr) return Status::InvalidArgument("Forward: null output");
  Plan plan;
  LOOM_RETURN_IF_ERROR(ValidateAndPlan(batch, &plan));
  out->logits.assign(plan.logit_rows.size() * static_cast<size_t>(config_.vocab_size), 0.0f);
  if (plan.rows == 0) return Status::Ok();
  std::vector<Status> statuses(ranks_.size());
  gang_->RunOnEach([&](int i) { statuses[i] = RunRank(*ranks_[i], plan, out->logits.data()); });
  for (const Status& s : statuses) LOOM_RETURN_IF_ERROR(s);
  return Status::Ok();
}

Status CpuBackend::CopyBlock(int32_t src, int32_t dst) {
  if (src < 0 || dst < 0 || src >= options_.num_kv_blocks || dst >= options_.num_kv_blocks) {
    return Status::InvalidArgument("CopyBlock: block out of range");
  }
  if (src == dst) return Status::Ok();
  for (auto& r : ranks_) {
    const size_t n = static_cast<size_t>(options_.block_size * r->nkv * config_.head_dim);
    for (LayerShard& L : r->layers) {
      std::memcpy(&L.k_cache[dst * n], &L.k_cache[src * n], n * sizeof(float));
      std::memcpy(&L.v_cache[dst * n], &L.v_cache[src * n], n * sizeof(float));
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Backend>> MakeCpuBackend(const std::string& model_dir,
                                                const CpuBackendOptions& options) {
  LOOM_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir));
  LOOM_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> ck, Checkpoint::Open(model_dir));
  auto backend = std::make_unique<CpuBackend>(std::move(config), options);
  LOOM_RETURN_IF_ERROR(backend->Load(*ck));
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace loom::inference
