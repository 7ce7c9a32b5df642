// The CPU kernels against naive double-precision loops, on shapes that exercise
// every tile edge (rows not a multiple of 4, inputs not a multiple of the tile
// width, k not a multiple of the vector length). ctest runs this binary once
// per instruction set (LOOM_CPU_KERNELS).
#include "inference/model/cpu/kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace loom::inference::cpu {
namespace {

TEST(KernelsTest, MatMulMatchesNaiveOnEveryEdge) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    for (int64_t m : {1, 2, 3, 4, 5, 7, 16, 130}) {
      for (int64_t k : {1, 5, 8, 15, 16, 17, 33, 100}) {
        for (int64_t n : {1, 3, 4, 5, 9, 64, 70}) {
          std::vector<float> x(m * k), w(n * k), b(n), y(m * n);
          for (float& v : x) v = u(rng);
          for (float& v : w) v = u(rng);
          for (float& v : b) v = u(rng);
          MatMul(pool, x.data(), m, k, w.data(), n, b.data(), y.data());
          for (int64_t i = 0; i < m; ++i) {
            for (int64_t j = 0; j < n; ++j) {
              double want = b[j];
              for (int64_t l = 0; l < k; ++l)
                want += static_cast<double>(x[i * k + l]) * w[j * k + l];
              ASSERT_NEAR(y[i * n + j], want, 1e-5 * (1 + k))
                  << KernelIsa() << " m=" << m << " k=" << k << " n=" << n << " at " << i << ","
                  << j;
            }
          }
        }
      }
    }
  }
}

TEST(KernelsTest, DotAxpyAndRmsNorm) {
  std::vector<float> a(37), b(37);
  for (int i = 0; i < 37; ++i) {
    a[i] = 0.1f * i - 1.0f;
    b[i] = 0.5f - 0.03f * i;
  }
  double want = 0;
  for (int i = 0; i < 37; ++i) want += static_cast<double>(a[i]) * b[i];
  EXPECT_NEAR(Dot(a.data(), b.data(), 37), want, 1e-5);
  std::vector<float> y = b;
  Axpy(2.0f, a.data(), y.data(), 37);
  for (int i = 0; i < 37; ++i) EXPECT_FLOAT_EQ(y[i], b[i] + 2.0f * a[i]);
  std::vector<float> w(37, 2.0f), out(37);
  RmsNorm(a.data(), w.data(), 37, 1e-6f, out.data());
  double ss = 0;
  for (float v : a) ss += static_cast<double>(v) * v;
  for (int i = 0; i < 37; ++i) EXPECT_NEAR(out[i], 2.0 * a[i] / std::sqrt(ss / 37 + 1e-6), 1e-5);
}

TEST(KernelsTest, ParallelForCoversEveryIndexOnce) {
  ThreadPool pool(3);
  for (int64_t n : {0, 1, 7, 100, 1001}) {
    std::vector<int> hits(n);
    pool.ParallelFor(n, 4, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) ++hits[i];
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i], 1) << n << " " << i;
  }
  std::vector<int> seen(3);
  pool.RunOnEach([&](int i) { seen[i] = 1; });
  EXPECT_EQ(seen, (std::vector<int>{1, 1, 1}));
}

}  // namespace
}  // namespace loom::inference::cpu
