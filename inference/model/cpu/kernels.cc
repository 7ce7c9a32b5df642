// MatMul tiles 4 weight rows by 2 input rows with AVX2 (8 independent
// accumulators: the FMA latency is hidden and each loaded weight vector is used
// twice) or by 4 input rows with AVX-512 (16 accumulators); decode
// (m = 1) is bound by streaming the weights, which the row split over threads
// spreads across cores.
#include "inference/model/cpu/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string_view>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace loom::inference::cpu {
namespace {

enum class Isa { kPortable, kAvx2, kAvx512 };

// Tiles: out[r][c] = dot(w + r*k, x + c*k) for r < nr (<= 4), c < nc (<= the ISA's
// tile width: 2, or 4 with AVX-512).
void TilePortable(const float* x, int nc, const float* w, int nr, int64_t k, float out[4][4]) {
  constexpr int kL = 8;
  float acc[4][2][kL] = {};
  int64_t i = 0;
  for (; i + kL <= k; i += kL) {
    for (int r = 0; r < nr; ++r) {
      const float* wr = w + r * k + i;
      for (int c = 0; c < nc; ++c) {
        const float* xc = x + c * k + i;
        for (int l = 0; l < kL; ++l) acc[r][c][l] += wr[l] * xc[l];
      }
    }
  }
  for (int r = 0; r < nr; ++r) {
    for (int c = 0; c < nc; ++c) {
      float s = 0;
      for (int l = 0; l < kL; ++l) s += acc[r][c][l];
      for (int64_t j = i; j < k; ++j) s += w[r * k + j] * x[c * k + j];
      out[r][c] = s;
    }
  }
}

float DotPortable(const float* a, const float* b, int64_t n) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  }
  float s = 0;
  for (float v : acc) s += v;
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) inline float HSum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma"))) void TileAvx2(const float* x, int nc, const float* w, int nr,
                                                  int64_t k, float out[4][4]) {
  if (nr != 4 || nc < 1) {
    // Edge tiles: one row at a time.
    for (int r = 0; r < nr; ++r) {
      for (int c = 0; c < nc; ++c) {
        const float* a = w + r * k;
        const float* b = x + c * k;
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 16 <= k; i += 16) {
          acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
          acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        }
        for (; i + 8 <= k; i += 8) {
          acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        }
        float s = HSum(_mm256_add_ps(acc0, acc1));
        for (; i < k; ++i) s += a[i] * b[i];
        out[r][c] = s;
      }
    }
    return;
  }
  const float* w0 = w;
  const float* w1 = w + k;
  const float* w2 = w + 2 * k;
  const float* w3 = w + 3 * k;
  const float* x0 = x;
  const float* x1 = nc > 1 ? x + k : x;  // nc == 1: the second column is computed and dropped
  __m256 a00 = _mm256_setzero_ps(), a01 = _mm256_setzero_ps();
  __m256 a10 = _mm256_setzero_ps(), a11 = _mm256_setzero_ps();
  __m256 a20 = _mm256_setzero_ps(), a21 = _mm256_setzero_ps();
  __m256 a30 = _mm256_setzero_ps(), a31 = _mm256_setzero_ps();
  int64_t i = 0;
  if (nc > 1) {
    for (; i + 8 <= k; i += 8) {
      __m256 xa = _mm256_loadu_ps(x0 + i);
      __m256 xb = _mm256_loadu_ps(x1 + i);
      __m256 v = _mm256_loadu_ps(w0 + i);
      a00 = _mm256_fmadd_ps(v, xa, a00);
      a01 = _mm256_fmadd_ps(v, xb, a01);
      v = _mm256_loadu_ps(w1 + i);
      a10 = _mm256_fmadd_ps(v, xa, a10);
      a11 = _mm256_fmadd_ps(v, xb, a11);
      v = _mm256_loadu_ps(w2 + i);
      a20 = _mm256_fmadd_ps(v, xa, a20);
      a21 = _mm256_fmadd_ps(v, xb, a21);
      v = _mm256_loadu_ps(w3 + i);
      a30 = _mm256_fmadd_ps(v, xa, a30);
      a31 = _mm256_fmadd_ps(v, xb, a31);
    }
  } else {
    // One input row (decode): two accumulators per row for latency, and the next
    // tile's rows prefetched into L2 (one line per row per step), which keeps
    // more misses in flight than the hardware prefetcher alone.
    for (; i + 16 <= k; i += 16) {
      for (int r = 0; r < 4; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(w + r * k + i + 4 * k), _MM_HINT_T1);
      }
      __m256 xa = _mm256_loadu_ps(x0 + i);
      __m256 xb = _mm256_loadu_ps(x0 + i + 8);
      a00 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i), xa, a00);
      a01 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i + 8), xb, a01);
      a10 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i), xa, a10);
      a11 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i + 8), xb, a11);
      a20 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i), xa, a20);
      a21 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i + 8), xb, a21);
      a30 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i), xa, a30);
      a31 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i + 8), xb, a31);
    }
    for (; i + 8 <= k; i += 8) {
      __m256 xa = _mm256_loadu_ps(x0 + i);
      a00 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i), xa, a00);
      a10 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i), xa, a10);
      a20 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i), xa, a20);
      a30 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i), xa, a30);
    }
    a00 = _mm256_add_ps(a00, a01);
    a10 = _mm256_add_ps(a10, a11);
    a20 = _mm256_add_ps(a20, a21);
    a30 = _mm256_add_ps(a30, a31);
  }
  const float* ws[4] = {w0, w1, w2, w3};
  float s[4][2] = {{HSum(a00), HSum(a01)},
                   {HSum(a10), HSum(a11)},
                   {HSum(a20), HSum(a21)},
                   {HSum(a30), HSum(a31)}};
  for (int r = 0; r < 4; ++r) {
    for (int c = 0; c < nc; ++c) {
      const float* xc = c == 0 ? x0 : x1;
      float v = s[r][c];
      for (int64_t j = i; j < k; ++j) v += ws[r][j] * xc[j];
      out[r][c] = v;
    }
  }
}

__attribute__((target("avx2,fma"))) float DotAvx2(const float* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  }
  float s = HSum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Horizontal sum through memory: GCC 12's AVX-512 shuffle and reduce intrinsics
// trip -Wuninitialized inside its own headers.
__attribute__((target("avx512f,avx2,fma"))) inline float HSum512(__m512 v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  return HSum(_mm256_add_ps(_mm256_load_ps(t), _mm256_load_ps(t + 8)));
}

// 4 weight rows x NC input rows, 16 accumulators at most (of 32 zmm registers);
// the k tail is a masked load.
template <int NC>
__attribute__((target("avx512f"))) void Avx512Tile4(const float* x, const float* w, int64_t k,
                                                    float out[4][4]) {
  __m512 acc[4][NC];
#pragma GCC unroll 4
  for (int r = 0; r < 4; ++r) {
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    __m512 xv[NC];
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) xv[c] = _mm512_loadu_ps(x + c * k + i);
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) {
      if constexpr (NC == 1) {  // decode: prefetch the next tile (see TileAvx2)
        _mm_prefetch(reinterpret_cast<const char*>(w + r * k + i + 4 * k), _MM_HINT_T1);
      }
      __m512 wv = _mm512_loadu_ps(w + r * k + i);
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
    }
  }
  if (i < k) {
    const auto mask = static_cast<__mmask16>((1u << (k - i)) - 1);
    __m512 xv[NC];
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) xv[c] = _mm512_maskz_loadu_ps(mask, x + c * k + i);
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) {
      __m512 wv = _mm512_maskz_loadu_ps(mask, w + r * k + i);
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < 4; ++r) {
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) out[r][c] = HSum512(acc[r][c]);
  }
}

__attribute__((target("avx512f,avx2,fma"))) void TileAvx512(const float* x, int nc, const float* w,
                                                            int nr, int64_t k, float out[4][4]) {
  if (nr != 4) {  // the last rows of an n that is not a multiple of 4
    for (int c0 = 0; c0 < nc; c0 += 2) {
      float part[4][4];
      const int pc = std::min(2, nc - c0);
      TileAvx2(x + c0 * k, pc, w, nr, k, part);
      for (int r = 0; r < nr; ++r) {
        for (int c = 0; c < pc; ++c) out[r][c0 + c] = part[r][c];
      }
    }
    return;
  }
  switch (nc) {
    case 1:
      return Avx512Tile4<1>(x, w, k, out);
    case 2:
      return Avx512Tile4<2>(x, w, k, out);
    case 3:
      return Avx512Tile4<3>(x, w, k, out);
    default:
      return Avx512Tile4<4>(x, w, k, out);
  }
}

Isa DetectIsa() {
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma")) {
    return Isa::kAvx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
  return Isa::kPortable;
}
#else
Isa DetectIsa() { return Isa::kPortable; }
#endif

// LOOM_CPU_KERNELS=portable|avx2 caps the instruction set (tests run every path).
Isa ChooseIsa() {
  Isa best = DetectIsa();
  const char* env = std::getenv("LOOM_CPU_KERNELS");
  if (env == nullptr) return best;
  std::string_view want(env);
  if (want == "portable") return Isa::kPortable;
  if (want == "avx2" && best == Isa::kAvx512) return Isa::kAvx2;
  return best;
}

const Isa kIsa = ChooseIsa();
const bool kAvx2 = kIsa != Isa::kPortable;

using TileFn = void (*)(const float*, int, const float*, int, int64_t, float[4][4]);

struct Tile {
  TileFn fn;
  int cols;  // input rows per tile
};

Tile SelectTile() {
#if defined(__x86_64__)
  if (kIsa == Isa::kAvx512) return {TileAvx512, 4};
  if (kIsa == Isa::kAvx2) return {TileAvx2, 2};
#endif
  return {TilePortable, 2};
}

}  // namespace

const char* KernelIsa() {
  switch (kIsa) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kPortable:
      break;
  }
  return "portable";
}

float Dot(const float* a, const float* b, int64_t n) {
#if defined(__x86_64__)
  if (kAvx2) return DotAvx2(a, b, n);
#endif
  return DotPortable(a, b, n);
}

void Axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * inv);
}

void MatMul(ThreadPool& pool, const float* x, int64_t m, int64_t k, const float* w, int64_t n,
            const float* bias, float* y) {
  static const Tile tile = SelectTile();
  // Chunks of whole 4-row tiles; at least ~64 KiB of weights per chunk so that a
  // dispatch is worth its wake-up.
  const int64_t tiles = (n + 3) / 4;
  const int64_t grain = std::max<int64_t>(1, (16 * 1024) / std::max<int64_t>(1, 4 * k));
  // Prefill (large m): blocks of 16 tiles x 64 input rows (~200 KiB each at
  // k = 768) keep both operands in L2 while they are reused.
  constexpr int64_t kTileBlock = 16, kRowBlock = 64;
  pool.ParallelFor(tiles, grain, [&](int64_t t0, int64_t t1) {
    float out[4][4];
    for (int64_t tb = t0; tb < t1; tb += kTileBlock) {
      const int64_t tb_end = std::min(t1, tb + kTileBlock);
      for (int64_t mb = 0; mb < m; mb += kRowBlock) {
        const int64_t mb_end = std::min(m, mb + kRowBlock);
        for (int64_t t = tb; t < tb_end; ++t) {
          const int64_t r0 = 4 * t;
          const int nr = static_cast<int>(std::min<int64_t>(4, n - r0));
          for (int64_t c0 = mb; c0 < mb_end; c0 += tile.cols) {
            const int nc = static_cast<int>(std::min<int64_t>(tile.cols, mb_end - c0));
            tile.fn(x + c0 * k, nc, w + r0 * k, nr, k, out);
            for (int c = 0; c < nc; ++c) {
              float* yrow = y + (c0 + c) * n + r0;
              for (int r = 0; r < nr; ++r) yrow[r] = out[r][c] + (bias ? bias[r0 + r] : 0.0f);
            }
          }
        }
      }
    }
  });
}

}  // namespace loom::inference::cpu
