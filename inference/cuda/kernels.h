// The CUDA kernels of the forward pass, as host functions that enqueue them on
// a stream. Activations that feed a GEMM are bf16, everything else (residual
// stream, GEMM outputs, q, logits) is float32; weights are bf16; every sum is
// accumulated in float32. No function here synchronizes or allocates, so all of
// them can be captured in a CUDA graph.
//
// Shapes use T for the rows of a step (new tokens of all sequences), R for the
// rows whose logits are computed, H for hidden_size, hd for head_dim.
// Compiled as C++17 by nvcc and included from C++20 host code.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace loom::inference::cuda {

using bf16 = __nv_bfloat16;

// The head sizes the attention kernel is instantiated for.
bool SupportedHeadDim(int hd);
// Query heads per KV head the attention kernel handles at most.
constexpr int kMaxQueryGroup = 16;
// Rows up to which Gemv beats cuBLAS (one weight pass for all rows).
constexpr int kMaxGemvRows = 8;

// x[t] = embed[tokens[t]] (as float), t < T.
void Embed(const int32_t* tokens, const bf16* embed, int T, int H, float* x, cudaStream_t s);

// For r < R, with src = rows ? rows[r] : r:  v = x[src] + delta[src] (delta may
// be null); x[src] = v when write_x; h[r] = bf16(v * rsqrt(mean(v^2) + eps) * w).
void AddRmsNorm(float* x, const float* delta, const int32_t* rows, int R, const bf16* w, float eps,
                int H, bool write_x, bf16* h, cudaStream_t s);

// Y[T, N] = X[T, K] . W[N, K]^T for T <= kMaxGemvRows: one warp per output
// column, W streamed once with 16-byte loads. REQUIRES: K % 8 == 0, W and X
// 16-byte aligned.
void Gemv(const bf16* W, const bf16* X, int T, int N, int K, float* Y, cudaStream_t s);

// qkv rows are [q heads (nq), k heads (nkv), v heads (nkv)] x hd, float32.
// Adds the bias (may be null), rotates q and k by RoPE at pos[t] (rotate_half,
// angle = inv_freq[i] * pos as float32, then cos/sin in double as the CPU
// backend does), leaves q in place and writes k and v as bf16 into the caches
// [slots, nkv, hd] at slot[t].
void RopeKvWrite(float* qkv, const float* bias, const float* inv_freq, const int32_t* pos,
                 const int32_t* slot, int T, int nq, int nkv, int hd, bf16* k_cache, bf16* v_cache,
                 cudaStream_t s);

// Causal attention of every row over its sequence's paged cache: row t (query
// heads from qkv) attends positions 0..pos[t] of sequence seq[t], whose blocks
// are block_tables[seq[t] * width + j]. Query head h uses KV head h / (nq / nkv).
// out[t, h * hd + d] in bf16. REQUIRES: SupportedHeadDim(hd), nq / nkv <= kMaxQueryGroup.
//
// With parts > 1 each row's context is split into `parts` ranges of part_len
// keys attended by separate thread blocks (flash-decoding: a batch-1 decode
// would otherwise run on nkv blocks of a 100+ SM GPU), whose partial softmax
// sums are then combined; `work` holds AttentionWorkFloats(T, nq, hd, parts).
// `counters` holds T x nkv ints, zero when it is first used; kernel 2 leaves
// them zero again.
//
// kernel 1 loads one V element per key at a time and combines the parts in a
// second kernel; kernel 2 (where AttentionV2Supported, else kernel 1 runs) is
// pipelined (16-byte K and V loads issued in batches, the group size compiled
// in) and combines the parts inside itself, so parts past a row's context cost
// nothing and part_len can be fixed.
struct AttentionShape {
  int T = 0, nq = 0, nkv = 0, hd = 0;
  int width = 0;       // entries per block-table row
  int block_size = 0;  // tokens per KV block
  int parts = 1, part_len = 0;
  int kernel = 1;  // 1 or 2, see above
};
size_t AttentionWorkFloats(int T, int nq, int hd, int parts);
bool AttentionV2Supported(int hd, int group);
void PagedAttention(const AttentionShape& shape, const float* qkv, const bf16* k_cache,
                    const bf16* v_cache, const int32_t* pos, const int32_t* seq,
                    const int32_t* block_tables, float* work, int* counters, bf16* out,
                    cudaStream_t s);

// act[t, i] = bf16(silu(gu[t, i]) * gu[t, inter + i]).
void SiluMul(const float* gu, int T, int inter, bf16* act, cudaStream_t s);

// out[r] = the index of the largest of logits[r, 0..V), the lowest on ties.
void Argmax(const float* logits, int R, int V, int32_t* out, cudaStream_t s);

}  // namespace loom::inference::cuda
