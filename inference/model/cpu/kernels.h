// Float32 kernels of the CPU backend. Weights use Hugging Face's [out, in]
// layout, so a linear layer is y = x · Wᵀ with every output a dot product of
// two contiguous rows: the loops stream each weight row once per step and
// reuse it from L1 across the batch's rows.
//
// No -march is assumed: AVX2+FMA and AVX-512 versions are compiled with target
// attributes and chosen at run time; the portable version is written so that
// plain -O2 SSE2 code is decent. The two differ in summation order (results
// agree to float32 rounding, not bit for bit). Thread-safe (pure functions).
#pragma once

#include <cstdint>

#include "inference/model/cpu/thread_pool.h"

namespace loom::inference::cpu {

// y[m, n] = x[m, k] · w[n, k]ᵀ (+ bias[n] when bias is not null); rows of the
// output are split over the pool's threads. REQUIRES: y does not alias x or w.
void MatMul(ThreadPool& pool, const float* x, int64_t m, int64_t k, const float* w, int64_t n,
            const float* bias, float* y);

// Σ a[i] b[i].
float Dot(const float* a, const float* b, int64_t n);

// y[i] += alpha * x[i].
void Axpy(float alpha, const float* x, float* y, int64_t n);

// out[i] = x[i] / sqrt(mean(x²) + eps) * weight[i] (Llama RMSNorm); out may alias x.
void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);

// The instruction set in use: "avx512", "avx2" or "portable" (the environment
// variable LOOM_CPU_KERNELS=portable or =avx2 caps it).
const char* KernelIsa();

}  // namespace loom::inference::cpu
