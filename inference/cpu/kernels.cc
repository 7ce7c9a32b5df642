// MatMul tiles 4 weight rows by 2 input rows (8 independent accumulators: the
// FMA latency is hidden and each loaded weight vector is used twice); decode
// (m = 1) is bound by streaming the weights, which the row split over threads
// spreads across cores.
#include "inference/cpu/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string_view>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace loom::inference::cpu {
namespace {

// Portable tile: out[r][c] = dot(w + r*k, x + c*k) for r < nr (<= 4), c < nc (<= 2).
void TilePortable(const float* x, int nc, const float* w, int nr, int64_t k, float out[4][2]) {
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
                                                  int64_t k, float out[4][2]) {
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
    // One input row: split k in two halves of accumulators for latency.
    for (; i + 16 <= k; i += 16) {
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

bool DetectAvx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#else
bool DetectAvx2() { return false; }
#endif

// LOOM_CPU_KERNELS=portable forces the portable path (tests run it on AVX2 machines).
bool ChooseAvx2() {
  const char* env = std::getenv("LOOM_CPU_KERNELS");
  if (env != nullptr && std::string_view(env) == "portable") return false;
  return DetectAvx2();
}

const bool kAvx2 = ChooseAvx2();

using TileFn = void (*)(const float*, int, const float*, int, int64_t, float[4][2]);

TileFn SelectTile() {
#if defined(__x86_64__)
  if (kAvx2) return TileAvx2;
#endif
  return TilePortable;
}

}  // namespace

bool UsingAvx2() { return kAvx2; }

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
  static const TileFn tile = SelectTile();
  // Chunks of whole 4-row tiles; at least ~64 KiB of weights per chunk so that a
  // dispatch is worth its wake-up.
  const int64_t tiles = (n + 3) / 4;
  const int64_t grain = std::max<int64_t>(1, (16 * 1024) / std::max<int64_t>(1, 4 * k));
  pool.ParallelFor(tiles, grain, [&](int64_t t0, int64_t t1) {
    float out[4][2];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r0 = 4 * t;
      const int nr = static_cast<int>(std::min<int64_t>(4, n - r0));
      for (int64_t c0 = 0; c0 < m; c0 += 2) {
        const int nc = static_cast<int>(std::min<int64_t>(2, m - c0));
        tile(x + c0 * k, nc, w + r0 * k, nr, k, out);
        for (int c = 0; c < nc; ++c) {
          float* yrow = y + (c0 + c) * n + r0;
          for (int r = 0; r < nr; ++r) yrow[r] = out[r][c] + (bias ? bias[r0 + r] : 0.0f);
        }
      }
    }
  });
}

}  // namespace loom::inference::cpu
