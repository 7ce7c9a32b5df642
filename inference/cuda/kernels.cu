// CUDA kernels of the forward pass (see kernels.h). Written for clarity first:
// each kernel is one plain loop nest; the two that carry the decode step, Gemv
// (weight streaming) and PagedAttention, are the ones shaped for the hardware.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "inference/cuda/kernels.h"

namespace loom::inference::cuda {
namespace {

constexpr int kWarp = 32;

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block; every thread gets the result. `scratch` holds one float per warp.
__device__ float BlockSum(float v, float* scratch) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int warps = (blockDim.x + kWarp - 1) / kWarp;
  v = WarpSum(v);
  __syncthreads();  // scratch may still be read from a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.0f;
  return WarpSum(v);
}

__global__ void EmbedKernel(const int32_t* tokens, const bf16* embed, int H, float* x) {
  const bf16* row = embed + static_cast<size_t>(tokens[blockIdx.x]) * H;
  float* out = x + static_cast<size_t>(blockIdx.x) * H;
  for (int i = threadIdx.x; i < H; i += blockDim.x) out[i] = __bfloat162float(row[i]);
}

__global__ void AddRmsNormKernel(float* x, const float* delta, const int32_t* rows, const bf16* w,
                                 float eps, int H, bool write_x, bf16* h) {
  __shared__ float scratch[kWarp];
  const int r = blockIdx.x;
  const size_t src = static_cast<size_t>(rows != nullptr ? rows[r] : r) * H;
  float* xr = x + src;
  const float* dr = delta != nullptr ? delta + src : nullptr;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    const float v = xr[i] + (dr != nullptr ? dr[i] : 0.0f);
    if (write_x) xr[i] = v;
    ss += v * v;
  }
  const float inv = rsqrtf(BlockSum(ss, scratch) / static_cast<float>(H) + eps);
  bf16* out = h + static_cast<size_t>(r) * H;
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    // Each thread reads back only the elements it wrote above.
    const float v = xr[i] + (dr != nullptr && !write_x ? dr[i] : 0.0f);
    out[i] = __float2bfloat16(v * inv * __bfloat162float(w[i]));
  }
}

// 8 bf16 of `w` dotted with 8 bf16 of `x`, added to acc.
__device__ __forceinline__ float Dot8(const uint4& w, const uint4& x, float acc) {
  const __nv_bfloat162* w2 = reinterpret_cast<const __nv_bfloat162*>(&w);
  const __nv_bfloat162* x2 = reinterpret_cast<const __nv_bfloat162*>(&x);
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const float2 a = __bfloat1622float2(w2[e]);
    const float2 b = __bfloat1622float2(x2[e]);
    acc = fmaf(a.x, b.x, acc);
    acc = fmaf(a.y, b.y, acc);
  }
  return acc;
}

constexpr int kGemvThreads = 256;
constexpr int kGemvRowsPerBlock = kGemvThreads / kWarp;

// One warp per output column n (a weight row); lanes stride over K in 16-byte
// vectors, four loads in flight per lane. Weights are read once (streaming
// loads that do not displace X from the cache).
template <int T>
__global__ void __launch_bounds__(kGemvThreads)
    GemvKernel(const bf16* __restrict__ W, const bf16* __restrict__ X, int N, int K,
               float* __restrict__ Y) {
  const int lane = threadIdx.x % kWarp;
  const int n = blockIdx.x * kGemvRowsPerBlock + threadIdx.x / kWarp;
  if (n >= N) return;
  const uint4* w = reinterpret_cast<const uint4*>(W + static_cast<size_t>(n) * K);
  const uint4* x = reinterpret_cast<const uint4*>(X);
  const int k8 = K / 8;
  float acc[T];
#pragma unroll
  for (int t = 0; t < T; ++t) acc[t] = 0.0f;
  int k = lane;
  for (; k + 3 * kWarp < k8; k += 4 * kWarp) {
    uint4 wv[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) wv[u] = __ldcs(w + k + u * kWarp);
#pragma unroll
    for (int t = 0; t < T; ++t) {
#pragma unroll
      for (int u = 0; u < 4; ++u) acc[t] = Dot8(wv[u], __ldg(x + t * k8 + k + u * kWarp), acc[t]);
    }
  }
  for (; k < k8; k += kWarp) {
    const uint4 wv = __ldcs(w + k);
#pragma unroll
    for (int t = 0; t < T; ++t) acc[t] = Dot8(wv, __ldg(x + t * k8 + k), acc[t]);
  }
#pragma unroll
  for (int t = 0; t < T; ++t) {
    const float v = WarpSum(acc[t]);
    if (lane == 0) Y[static_cast<size_t>(t) * N + n] = v;
  }
}

__global__ void RopeKvWriteKernel(float* qkv, const float* bias, const float* inv_freq,
                                  const int32_t* pos, const int32_t* slot, int nq, int nkv, int hd,
                                  bf16* k_cache, bf16* v_cache) {
  const int t = blockIdx.x, half = hd / 2;
  float* row = qkv + static_cast<size_t>(t) * (nq + 2 * nkv) * hd;
  const float p = static_cast<float>(pos[t]);
  const size_t base = static_cast<size_t>(slot[t]) * nkv * hd;
  for (int i = threadIdx.x; i < (nq + nkv) * half; i += blockDim.x) {
    const int head = i / half, j = i % half, c = head * hd + j;
    float a = row[c], b = row[c + half];
    if (bias != nullptr) {
      a += bias[c];
      b += bias[c + half];
    }
    double sd, cd;
    sincos(static_cast<double>(inv_freq[j] * p), &sd, &cd);
    const float cs = static_cast<float>(cd), sn = static_cast<float>(sd);
    const float ra = a * cs - b * sn, rb = b * cs + a * sn;
    if (head < nq) {
      row[c] = ra;
      row[c + half] = rb;
    } else {
      bf16* k = k_cache + base + static_cast<size_t>(head - nq) * hd;
      k[j] = __float2bfloat16(ra);
      k[j + half] = __float2bfloat16(rb);
    }
  }
  for (int i = threadIdx.x; i < nkv * hd; i += blockDim.x) {
    const int c = (nq + nkv) * hd + i;
    v_cache[base + i] = __float2bfloat16(row[c] + (bias != nullptr ? bias[c] : 0.0f));
  }
}

constexpr int kAttnThreads = 128;  // also the keys scored per chunk
// AttentionV2Kernel keeps G x HD floats of q, and as many per warp for its final
// sum, in static shared memory: up to 16 x 64 or 8 x 128.
constexpr int kMaxV2GroupDims = 1024;

// One thread block per (row t, KV head g, context part p): the G query heads
// that share KV head g are scored together, so each K/V row is read once for
// all of them. Keys are taken in chunks of kAttnThreads with an online softmax:
//   1. thread i scores key c0 + i against the G queries (16-byte K loads);
//   2. warp w folds heads w, w+4, ... into the running max and sum;
//   3. thread (d, slice) accumulates V[key][d] over every slice-th key.
// Slices are summed at the end; with one part the result is normalized and
// written, otherwise the part's (max, sum, unnormalized output) go to `work`.
template <int HD>
__global__ void __launch_bounds__(kAttnThreads)
    AttentionKernel(AttentionShape sh, const float* __restrict__ qkv,
                    const bf16* __restrict__ k_cache, const bf16* __restrict__ v_cache,
                    const int32_t* __restrict__ pos, const int32_t* __restrict__ seq,
                    const int32_t* __restrict__ tables, float* __restrict__ work,
                    bf16* __restrict__ out) {
  constexpr int kSlices = kAttnThreads / HD;
  constexpr int kG = kMaxQueryGroup;
  __shared__ float q_s[kG][HD];
  __shared__ float s_s[kG][kAttnThreads];
  __shared__ float m_s[kG], l_s[kG], c_s[kG];
  __shared__ float red[kSlices][kG][HD];

  const int t = blockIdx.x, g = blockIdx.y, part = blockIdx.z, tid = threadIdx.x;
  const int G = sh.nq / sh.nkv;
  const int ctx = pos[t] + 1;
  const int begin = part * sh.part_len;
  const int end = min(ctx, begin + sh.part_len);
  const int32_t* table = tables + static_cast<size_t>(seq[t]) * sh.width;
  const float scale = rsqrtf(static_cast<float>(HD));

  const float* q = qkv + static_cast<size_t>(t) * (sh.nq + 2 * sh.nkv) * HD + g * G * HD;
  for (int i = tid; i < G * HD; i += kAttnThreads) q_s[i / HD][i % HD] = q[i];
  if (tid < G) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.0f;
  }
  const int d = tid % HD, slice = tid / HD;
  float acc[kG];
#pragma unroll
  for (int h = 0; h < kG; ++h) acc[h] = 0.0f;
  __syncthreads();

  for (int c0 = begin; c0 < end; c0 += kAttnThreads) {
    const int n = min(kAttnThreads, end - c0);
    if (tid < n) {
      const int j = c0 + tid;
      const size_t row =
          (static_cast<size_t>(table[j / sh.block_size]) * sh.block_size + j % sh.block_size) *
              sh.nkv +
          g;
      const uint4* k = reinterpret_cast<const uint4*>(k_cache + row * HD);
      float dot[kG];
#pragma unroll
      for (int h = 0; h < kG; ++h) dot[h] = 0.0f;
#pragma unroll
      for (int v8 = 0; v8 < HD / 8; ++v8) {
        const uint4 kv = k[v8];
        const __nv_bfloat162* k2 = reinterpret_cast<const __nv_bfloat162*>(&kv);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 kf = __bfloat1622float2(k2[e]);
          const int dd = v8 * 8 + e * 2;
#pragma unroll
          for (int h = 0; h < kG; ++h) {
            if (h < G) dot[h] += q_s[h][dd] * kf.x + q_s[h][dd + 1] * kf.y;
          }
        }
      }
#pragma unroll
      for (int h = 0; h < kG; ++h) {
        if (h < G) s_s[h][tid] = dot[h] * scale;
      }
    }
    __syncthreads();
    const int warp = tid / kWarp, lane = tid % kWarp;
    for (int h = warp; h < G; h += kAttnThreads / kWarp) {
      float mx = -INFINITY;
      for (int i = lane; i < n; i += kWarp) mx = fmaxf(mx, s_s[h][i]);
      const float m_old = m_s[h], m_new = fmaxf(m_old, WarpMax(mx));
      float sum = 0.0f;
      for (int i = lane; i < n; i += kWarp) {
        const float e = expf(s_s[h][i] - m_new);
        s_s[h][i] = e;
        sum += e;
      }
      sum = WarpSum(sum);
      __syncwarp();
      if (lane == 0) {
        const float corr = expf(m_old - m_new);  // 0 on the first chunk (m_old = -inf)
        c_s[h] = corr;
        l_s[h] = l_s[h] * corr + sum;
        m_s[h] = m_new;
      }
    }
    __syncthreads();
#pragma unroll
    for (int h = 0; h < kG; ++h) {
      if (h < G) acc[h] *= c_s[h];
    }
    for (int i = slice; i < n; i += kSlices) {
      const int j = c0 + i;
      const size_t row =
          (static_cast<size_t>(table[j / sh.block_size]) * sh.block_size + j % sh.block_size) *
              sh.nkv +
          g;
      const float v = __bfloat162float(v_cache[row * HD + d]);
#pragma unroll
      for (int h = 0; h < kG; ++h) {
        if (h < G) acc[h] = fmaf(s_s[h][i], v, acc[h]);
      }
    }
    __syncthreads();  // s_s is rewritten by the next chunk
  }

#pragma unroll
  for (int h = 0; h < kG; ++h) {
    if (h < G) red[slice][h][d] = acc[h];
  }
  __syncthreads();
  for (int i = tid; i < G * HD; i += kAttnThreads) {
    const int h = i / HD, dd = i % HD;
    float sum = 0.0f;
#pragma unroll
    for (int s = 0; s < kSlices; ++s) sum += red[s][h][dd];
    const int head = g * G + h;
    if (sh.parts == 1) {
      out[static_cast<size_t>(t) * sh.nq * HD + head * HD + dd] = __float2bfloat16(sum / l_s[h]);
    } else {
      // work: m [T, nq, parts], l [T, nq, parts], then o [T, nq, parts, HD].
      const size_t part_index = (static_cast<size_t>(t) * sh.nq + head) * sh.parts + part;
      const size_t parts_total = static_cast<size_t>(sh.T) * sh.nq * sh.parts;
      if (dd == 0) {
        work[part_index] = m_s[h];  // -inf and 0 for a part past the context
        work[parts_total + part_index] = l_s[h];
      }
      work[2 * parts_total + part_index * HD + dd] = sum;
    }
  }
}

// The pipelined decode attention (AttentionShape::kernel == 2; review findings
// 7-10). One thread block per (row t, KV head g, context part p), as above, with
// the group size G a template parameter (no predicated lanes) and per chunk of
// kAttnThreads keys:
//   1. thread i finds key c0 + i's cache row once (kept in shared memory for the
//      V phase), loads its K row with 16-byte loads all issued before the first
//      FMA, and scores it against the G queries (q pre-scaled by 1/sqrt(HD));
//   2. warp w folds heads w, w+4, ... into the running max and sum;
//   3. thread (dim lane, key lane) owns 8 dims of keys kl, kl + kKeyLanes, ...:
//      its 16-byte V loads are issued in batches of up to 8 before their FMAs,
//      so a chunk's V rows are a few DRAM round trips, not one per key.
// Key lanes are summed with shuffles, then across warps in shared memory.
// Parts have a fixed length (the host picks it); a part past the row's context
// exits at once, and the last part of (t, g) to finish combines all of them
// (an atomic count per (t, g) in `counters`, reset by that block for the next
// launch), so no combine kernel follows.
template <int HD, int G>
__global__ void __launch_bounds__(kAttnThreads)
    AttentionV2Kernel(AttentionShape sh, const float* __restrict__ qkv,
                      const bf16* __restrict__ k_cache, const bf16* __restrict__ v_cache,
                      const int32_t* __restrict__ pos, const int32_t* __restrict__ seq,
                      const int32_t* __restrict__ tables, float* __restrict__ work,
                      int* __restrict__ counters, bf16* __restrict__ out) {
  constexpr int kLanesPerKey = HD / 8;  // threads sharing one key's V row, 8 dims each
  constexpr int kKeyLanes = kAttnThreads / kLanesPerKey;
  constexpr int kKeysPerThread = kAttnThreads / kKeyLanes;  // per chunk
  constexpr int kBatch = kKeysPerThread < 8 ? kKeysPerThread : 8;
  constexpr int kWarps = kAttnThreads / kWarp;
  static_assert(kLanesPerKey <= kWarp && kKeysPerThread % kBatch == 0);
  __shared__ float q_s[G][HD];
  __shared__ float s_s[G][kAttnThreads];
  __shared__ size_t row_s[kAttnThreads];
  __shared__ float m_s[G], l_s[G], c_s[G];
  __shared__ float red[kWarps][G][HD];
  __shared__ bool last_s;

  const int t = blockIdx.x, g = blockIdx.y, part = blockIdx.z, tid = threadIdx.x;
  const int ctx = pos[t] + 1;
  const int begin = part * sh.part_len;
  if (begin >= ctx) return;  // past this row's context: nothing to attend, not counted
  const int end = min(ctx, begin + sh.part_len);
  const int32_t* table = tables + static_cast<size_t>(seq[t]) * sh.width;
  const float scale = rsqrtf(static_cast<float>(HD));

  const float* q = qkv + static_cast<size_t>(t) * (sh.nq + 2 * sh.nkv) * HD + g * G * HD;
  for (int i = tid; i < G * HD; i += kAttnThreads) q_s[i / HD][i % HD] = q[i] * scale;
  if (tid < G) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.0f;
  }
  const int dl = tid % kLanesPerKey, kl = tid / kLanesPerKey;
  const int warp = tid / kWarp, lane = tid % kWarp;
  float acc[G][8];
#pragma unroll
  for (int h = 0; h < G; ++h) {
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[h][e] = 0.0f;
  }
  __syncthreads();

  for (int c0 = begin; c0 < end; c0 += kAttnThreads) {
    const int n = min(kAttnThreads, end - c0);
    if (tid < n) {
      const int j = c0 + tid;
      const size_t row =
          ((static_cast<size_t>(table[j / sh.block_size]) * sh.block_size + j % sh.block_size) *
               sh.nkv +
           g) *
          HD;
      row_s[tid] = row;
      const uint4* k = reinterpret_cast<const uint4*>(k_cache + row);
      uint4 kv[HD / 8];
#pragma unroll
      for (int v8 = 0; v8 < HD / 8; ++v8) kv[v8] = k[v8];
      float dot[G];
#pragma unroll
      for (int h = 0; h < G; ++h) dot[h] = 0.0f;
#pragma unroll
      for (int v8 = 0; v8 < HD / 8; ++v8) {
        const __nv_bfloat162* k2 = reinterpret_cast<const __nv_bfloat162*>(&kv[v8]);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 kf = __bfloat1622float2(k2[e]);
          const int dd = v8 * 8 + e * 2;
#pragma unroll
          for (int h = 0; h < G; ++h) dot[h] += q_s[h][dd] * kf.x + q_s[h][dd + 1] * kf.y;
        }
      }
#pragma unroll
      for (int h = 0; h < G; ++h) s_s[h][tid] = dot[h];
    }
    __syncthreads();
    for (int h = warp; h < G; h += kWarps) {
      float mx = -INFINITY;
      for (int i = lane; i < n; i += kWarp) mx = fmaxf(mx, s_s[h][i]);
      const float m_old = m_s[h], m_new = fmaxf(m_old, WarpMax(mx));
      float sum = 0.0f;
      for (int i = lane; i < n; i += kWarp) {
        const float e = expf(s_s[h][i] - m_new);
        s_s[h][i] = e;
        sum += e;
      }
      sum = WarpSum(sum);
      __syncwarp();
      if (lane == 0) {
        const float corr = expf(m_old - m_new);  // 0 on the first chunk (m_old = -inf)
        c_s[h] = corr;
        l_s[h] = l_s[h] * corr + sum;
        m_s[h] = m_new;
      }
    }
    __syncthreads();
#pragma unroll
    for (int h = 0; h < G; ++h) {
      const float corr = c_s[h];
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[h][e] *= corr;
    }
#pragma unroll
    for (int u0 = 0; u0 < kKeysPerThread; u0 += kBatch) {
      uint4 vv[kBatch];
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int i = kl + kKeyLanes * (u0 + b);
        vv[b] = i < n ? *reinterpret_cast<const uint4*>(v_cache + row_s[i] + dl * 8)
                      : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int i = kl + kKeyLanes * (u0 + b);
        if (i >= n) break;
        const __nv_bfloat162* v2 = reinterpret_cast<const __nv_bfloat162*>(&vv[b]);
        float vf[8];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 f = __bfloat1622float2(v2[e]);
          vf[2 * e] = f.x;
          vf[2 * e + 1] = f.y;
        }
#pragma unroll
        for (int h = 0; h < G; ++h) {
          const float p = s_s[h][i];
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[h][e] = fmaf(p, vf[e], acc[h][e]);
        }
      }
    }
    __syncthreads();  // s_s and row_s are rewritten by the next chunk
  }

  // Sum the key lanes: first within the warp, then over the warps.
#pragma unroll
  for (int off = kLanesPerKey; off < kWarp; off *= 2) {
#pragma unroll
    for (int h = 0; h < G; ++h) {
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[h][e] += __shfl_xor_sync(0xffffffffu, acc[h][e], off);
    }
  }
  if (lane < kLanesPerKey) {
#pragma unroll
    for (int h = 0; h < G; ++h) {
#pragma unroll
      for (int e = 0; e < 8; ++e) red[warp][h][dl * 8 + e] = acc[h][e];
    }
  }
  __syncthreads();
  const size_t parts_total = static_cast<size_t>(sh.T) * sh.nq * sh.parts;
  for (int i = tid; i < G * HD; i += kAttnThreads) {
    const int h = i / HD, dd = i % HD;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += red[w][h][dd];
    const int head = g * G + h;
    if (sh.parts == 1) {
      out[static_cast<size_t>(t) * sh.nq * HD + head * HD + dd] = __float2bfloat16(sum / l_s[h]);
    } else {
      // work: m [T, nq, parts], l [T, nq, parts], then o [T, nq, parts, HD].
      const size_t part_index = (static_cast<size_t>(t) * sh.nq + head) * sh.parts + part;
      if (dd == 0) {
        work[part_index] = m_s[h];
        work[parts_total + part_index] = l_s[h];
      }
      work[2 * parts_total + part_index * HD + dd] = sum;
    }
  }
  if (sh.parts == 1) return;

  // The last of this (t, g)'s parts to finish combines them.
  __threadfence();  // this part's results are visible to every block before it is counted
  __syncthreads();
  const int parts_here = (ctx + sh.part_len - 1) / sh.part_len;
  if (tid == 0) {
    int* counter = counters + static_cast<size_t>(t) * sh.nkv + g;
    last_s = atomicAdd(counter, 1) == parts_here - 1;
    if (last_s) *counter = 0;  // ready for the next launch
  }
  __syncthreads();
  if (!last_s) return;
  __threadfence();
  for (int i = tid; i < G * HD; i += kAttnThreads) {
    const int h = i / HD, dd = i % HD;
    const size_t first = (static_cast<size_t>(t) * sh.nq + g * G + h) * sh.parts;
    float mx = -INFINITY;
    for (int p = 0; p < parts_here; ++p) mx = fmaxf(mx, __ldcg(&work[first + p]));
    float l = 0.0f, o = 0.0f;
    for (int p = 0; p < parts_here; ++p) {
      const float e = expf(__ldcg(&work[first + p]) - mx);
      l += __ldcg(&work[parts_total + first + p]) * e;
      o += __ldcg(&work[2 * parts_total + (first + p) * HD + dd]) * e;
    }
    out[static_cast<size_t>(t) * sh.nq * HD + (g * G + h) * HD + dd] = __float2bfloat16(o / l);
  }
}

// out[t, head, d] = sum_p o_p[d] e^(m_p - M) / sum_p l_p e^(m_p - M), M = max_p m_p.
__global__ void CombinePartsKernel(AttentionShape sh, const float* __restrict__ work,
                                   bf16* __restrict__ out) {
  const int t = blockIdx.x, head = blockIdx.y, d = threadIdx.x;
  const size_t first = (static_cast<size_t>(t) * sh.nq + head) * sh.parts;
  const size_t parts_total = static_cast<size_t>(sh.T) * sh.nq * sh.parts;
  float mx = -INFINITY;
  for (int p = 0; p < sh.parts; ++p) mx = fmaxf(mx, work[first + p]);
  float l = 0.0f, o = 0.0f;
  for (int p = 0; p < sh.parts; ++p) {
    const float m = work[first + p];
    if (m == -INFINITY) continue;  // a part past the context
    const float e = expf(m - mx);
    l += work[parts_total + first + p] * e;
    o += work[2 * parts_total + (first + p) * sh.hd + d] * e;
  }
  out[static_cast<size_t>(t) * sh.nq * sh.hd + head * sh.hd + d] = __float2bfloat16(o / l);
}

__global__ void SiluMulKernel(const float* gu, int T, int inter, bf16* act) {
  const size_t n = static_cast<size_t>(T) * inter;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t t = i / inter, c = i % inter;
    const float g = gu[t * 2 * inter + c], u = gu[t * 2 * inter + inter + c];
    act[i] = __float2bfloat16(g / (1.0f + expf(-g)) * u);
  }
}

constexpr int kArgmaxThreads = 1024;

// (value, index) pairs: the larger value wins, the lower index on ties; NaN
// counts as -inf (as in the CPU's Argmax).
__device__ __forceinline__ void Better(float& v, int& i, float v2, int i2) {
  if (isnan(v2)) v2 = -INFINITY;
  if (i2 >= 0 && (i < 0 || v2 > v || (v2 == v && i2 < i))) {
    v = v2;
    i = i2;
  }
}

__global__ void __launch_bounds__(kArgmaxThreads)
    ArgmaxKernel(const float* logits, int V, int32_t* out) {
  __shared__ float vs[kArgmaxThreads / kWarp];
  __shared__ int is[kArgmaxThreads / kWarp];
  const float* row = logits + static_cast<size_t>(blockIdx.x) * V;
  float best = -INFINITY;
  int idx = -1;
  for (int i = threadIdx.x; i < V; i += kArgmaxThreads) Better(best, idx, row[i], i);
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) {
    const float v2 = __shfl_xor_sync(0xffffffffu, best, o);
    const int i2 = __shfl_xor_sync(0xffffffffu, idx, o);
    Better(best, idx, v2, i2);
  }
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  if (lane == 0) {
    vs[warp] = best;
    is[warp] = idx;
  }
  __syncthreads();
  if (warp == 0) {
    best = vs[lane];
    idx = is[lane];
#pragma unroll
    for (int o = kWarp / 2; o > 0; o /= 2) {
      const float v2 = __shfl_xor_sync(0xffffffffu, best, o);
      const int i2 = __shfl_xor_sync(0xffffffffu, idx, o);
      Better(best, idx, v2, i2);
    }
    if (lane == 0) out[blockIdx.x] = idx < 0 ? 0 : idx;
  }
}

unsigned Blocks(size_t n, int threads) {
  size_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 65535 * 16 ? b : 65535 * 16);
}

template <int HD>
void LaunchAttention(const AttentionShape& sh, const float* qkv, const bf16* k, const bf16* v,
                     const int32_t* pos, const int32_t* seq, const int32_t* tables, float* work,
                     int* counters, bf16* out, cudaStream_t s) {
  const dim3 grid(sh.T, sh.nkv, sh.parts);
  if (sh.kernel == 2 && AttentionV2Supported(HD, sh.nq / sh.nkv)) {
    switch (sh.nq / sh.nkv) {
#define LOOM_ATTENTION_V2_CASE(g)                                                               \
  case g:                                                                                       \
    if constexpr (g * HD <= kMaxV2GroupDims) {                                                  \
      AttentionV2Kernel<HD, g>                                                                  \
          <<<grid, kAttnThreads, 0, s>>>(sh, qkv, k, v, pos, seq, tables, work, counters, out); \
    }                                                                                           \
    return;
      LOOM_ATTENTION_V2_CASE(1)
      LOOM_ATTENTION_V2_CASE(2)
      LOOM_ATTENTION_V2_CASE(4)
      LOOM_ATTENTION_V2_CASE(8)
      LOOM_ATTENTION_V2_CASE(16)
#undef LOOM_ATTENTION_V2_CASE
      default:
        break;
    }
  }
  AttentionKernel<HD><<<grid, kAttnThreads, 0, s>>>(sh, qkv, k, v, pos, seq, tables, work, out);
  if (sh.parts > 1) CombinePartsKernel<<<dim3(sh.T, sh.nq), HD, 0, s>>>(sh, work, out);
}

}  // namespace

bool SupportedHeadDim(int hd) { return hd == 16 || hd == 32 || hd == 64 || hd == 128; }

void Embed(const int32_t* tokens, const bf16* embed, int T, int H, float* x, cudaStream_t s) {
  EmbedKernel<<<T, 256, 0, s>>>(tokens, embed, H, x);
}

void AddRmsNorm(float* x, const float* delta, const int32_t* rows, int R, const bf16* w, float eps,
                int H, bool write_x, bf16* h, cudaStream_t s) {
  AddRmsNormKernel<<<R, 256, 0, s>>>(x, delta, rows, w, eps, H, write_x, h);
}

void Gemv(const bf16* W, const bf16* X, int T, int N, int K, float* Y, cudaStream_t s) {
  const unsigned blocks = (N + kGemvRowsPerBlock - 1) / kGemvRowsPerBlock;
  switch (T) {
#define LOOM_GEMV_CASE(n)                                         \
  case n:                                                         \
    GemvKernel<n><<<blocks, kGemvThreads, 0, s>>>(W, X, N, K, Y); \
    break;
    LOOM_GEMV_CASE(1)
    LOOM_GEMV_CASE(2)
    LOOM_GEMV_CASE(3)
    LOOM_GEMV_CASE(4)
    LOOM_GEMV_CASE(5)
    LOOM_GEMV_CASE(6)
    LOOM_GEMV_CASE(7)
    LOOM_GEMV_CASE(8)
#undef LOOM_GEMV_CASE
    default:
      break;  // the caller uses cuBLAS above kMaxGemvRows
  }
}

void RopeKvWrite(float* qkv, const float* bias, const float* inv_freq, const int32_t* pos,
                 const int32_t* slot, int T, int nq, int nkv, int hd, bf16* k_cache, bf16* v_cache,
                 cudaStream_t s) {
  RopeKvWriteKernel<<<T, 128, 0, s>>>(qkv, bias, inv_freq, pos, slot, nq, nkv, hd, k_cache,
                                      v_cache);
}

bool AttentionV2Supported(int hd, int group) {
  return SupportedHeadDim(hd) &&
         (group == 1 || group == 2 || group == 4 || group == 8 || group == 16) &&
         group * hd <= kMaxV2GroupDims;
}

size_t AttentionWorkFloats(int T, int nq, int hd, int parts) {
  return parts <= 1 ? 0 : static_cast<size_t>(T) * nq * parts * (hd + 2);
}

void PagedAttention(const AttentionShape& sh, const float* qkv, const bf16* k_cache,
                    const bf16* v_cache, const int32_t* pos, const int32_t* seq,
                    const int32_t* block_tables, float* work, int* counters, bf16* out,
                    cudaStream_t s) {
  switch (sh.hd) {
    case 16:
      LaunchAttention<16>(sh, qkv, k_cache, v_cache, pos, seq, block_tables, work, counters, out,
                          s);
      break;
    case 32:
      LaunchAttention<32>(sh, qkv, k_cache, v_cache, pos, seq, block_tables, work, counters, out,
                          s);
      break;
    case 64:
      LaunchAttention<64>(sh, qkv, k_cache, v_cache, pos, seq, block_tables, work, counters, out,
                          s);
      break;
    case 128:
      LaunchAttention<128>(sh, qkv, k_cache, v_cache, pos, seq, block_tables, work, counters, out,
                           s);
      break;
    default:
      break;  // rejected at load (SupportedHeadDim)
  }
}

void SiluMul(const float* gu, int T, int inter, bf16* act, cudaStream_t s) {
  SiluMulKernel<<<Blocks(static_cast<size_t>(T) * inter, 256), 256, 0, s>>>(gu, T, inter, act);
}

void Argmax(const float* logits, int R, int V, int32_t* out, cudaStream_t s) {
  ArgmaxKernel<<<R, kArgmaxThreads, 0, s>>>(logits, V, out);
}

}  // namespace loom::inference::cuda
