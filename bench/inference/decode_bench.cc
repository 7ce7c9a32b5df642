// CPU decode throughput against the memory-bandwidth bound.
//
// Builds a Llama-shaped model of ~100M parameters with random weights (written
// as a BF16 safetensors checkpoint in a temp dir and loaded like any other, so
// weights are float32 in memory), then measures decode tokens/s at batch 1 and
// batch 16 (32-token prompts, 64 new tokens, median of runs). Before each run
// it measures STREAM-style copy bandwidth (read + written bytes, 2 x 256 MiB);
// at batch 1 every step must stream all weights once, so bound = bandwidth /
// weight bytes per token, and the printed fraction is measured / bound.
//
//   inference_decode_bench [--threads N] [--runs N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/inference/synthetic_model.h"
#include "common/json.h"
#include "inference/model/cpu/cpu_backend.h"
#include "inference/model/cpu/kernels.h"

namespace loom::inference {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// STREAM "copy" (a[i] = b[i]) over `threads` threads: bytes read + written per second.
double CopyBandwidth(int threads) {
  const size_t n = size_t{64} << 20;  // 64M floats = 256 MiB per array
  std::vector<float> a(n, 1.0f), b(n, 2.0f);
  std::vector<double> rates;
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = Clock::now();
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        size_t lo = n * t / threads, hi = n * (t + 1) / threads;
        std::memcpy(&a[lo], &b[lo], (hi - lo) * sizeof(float));
      });
    }
    for (auto& t : ts) t.join();
    rates.push_back(2.0 * n * sizeof(float) / Seconds(t0, Clock::now()));
  }
  return Median(rates);
}

// Prefills `batch` 32-token prompts, then times 64 decode steps; returns tokens/s.
Result<double> DecodeRun(Backend& b, int batch, int prompt, int steps) {
  const int32_t bs = b.block_size();
  const int32_t blocks_per_seq = (prompt + steps + bs - 1) / bs;
  std::vector<std::vector<int32_t>> tables(batch), prompts(batch);
  std::vector<int32_t> next(batch);
  for (int s = 0; s < batch; ++s) {
    for (int32_t i = 0; i < blocks_per_seq; ++i) tables[s].push_back(s * blocks_per_seq + i);
    for (int i = 0; i < prompt; ++i) prompts[s].push_back((s * 131 + i * 17 + 3) % 32000);
  }
  std::vector<SeqStep> st(batch);
  for (int s = 0; s < batch; ++s) {
    st[s].tokens = prompts[s];
    st[s].block_table = tables[s];
  }
  StepOutput out;
  LOOM_RETURN_IF_ERROR(b.Forward(st, &out));
  const int64_t V = b.config().vocab_size;
  auto t0 = Clock::now();
  for (int i = 0; i < steps; ++i) {
    for (int s = 0; s < batch; ++s) {
      const float* row = &out.logits[s * V];
      next[s] = static_cast<int32_t>(std::max_element(row, row + V) - row);
      st[s].tokens = std::span<const int32_t>(&next[s], 1);
      st[s].start_pos = prompt + i;
    }
    LOOM_RETURN_IF_ERROR(b.Forward(st, &out));
  }
  return batch * steps / Seconds(t0, Clock::now());
}

int Main(int argc, char** argv) {
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int runs = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--threads") == 0) threads = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--runs") == 0) runs = std::max(1, std::atoi(argv[i + 1]));
  }
  std::string tmpl = (std::filesystem::temp_directory_path() / "loom-bench-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string dir = tmpl;
  struct Cleanup {
    std::string d;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(d, ec);
    }
  } cleanup{dir};

  bench::SyntheticShape shape;  // ~100M parameters, tied, BF16 on disk
  auto t0 = Clock::now();
  Result<int64_t> params = bench::WriteSyntheticModel(dir, shape);
  if (!params.ok()) {
    std::fprintf(stderr, "%s\n", params.status().ToString().c_str());
    return 1;
  }
  const double weight_bytes_per_step = static_cast<double>(*params) * sizeof(float);
  CpuBackendOptions opt;
  opt.threads = threads;
  opt.num_kv_blocks = 16 * 6;  // 16 sequences x 96 tokens
  auto backend = MakeCpuBackend(dir, opt);
  if (!backend.ok()) {
    std::fprintf(stderr, "%s\n", backend.status().ToString().c_str());
    return 1;
  }
  std::printf("setup (write + load): %.1f s, threads %d, kernels %s\n", Seconds(t0, Clock::now()),
              threads, cpu::KernelIsa());

  std::printf("weights streamed per decode step: %.1f MB (float32)\n", weight_bytes_per_step / 1e6);

  {  // Prefill of one 512-token prompt, for scale (compute-bound, not part of the ratio).
    std::vector<int32_t> ids(512), table(32);
    for (int i = 0; i < 512; ++i) ids[i] = (i * 37 + 11) % 32000;
    for (int i = 0; i < 32; ++i) table[i] = i;
    SeqStep st;
    st.tokens = ids;
    st.block_table = table;
    StepOutput out;
    auto p0 = Clock::now();
    Status s = (*backend)->Forward(std::span(&st, 1), &out);
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
    std::printf("prefill 512 tokens: %.1f tokens/s\n", 512 / Seconds(p0, Clock::now()));
  }
  // The machine is shared: the copy bandwidth is measured right before every
  // decode run, and the fraction is taken per run (median reported), so a
  // neighbour's load changes both sides of the ratio alike.
  for (int batch : {1, 16}) {
    std::vector<double> rates, bws, fractions;
    for (int r = 0; r < runs; ++r) {
      const double bw = CopyBandwidth(threads);
      Result<double> tps = DecodeRun(**backend, batch, 32, 64);
      if (!tps.ok()) {
        std::fprintf(stderr, "%s\n", tps.status().ToString().c_str());
        return 1;
      }
      rates.push_back(*tps);
      bws.push_back(bw);
      fractions.push_back(*tps / (bw / weight_bytes_per_step));
    }
    const double med = Median(rates), bw = Median(bws);
    std::printf("batch %2d: %.2f tokens/s (median of %d; %.1f ms/step); copy bandwidth %.2f GB/s",
                batch, med, runs, 1e3 * batch / med, bw / 1e9);
    if (batch == 1) {
      std::printf("; bound %.2f tokens/s; fraction %.2f (median of per-run fractions)",
                  bw / weight_bytes_per_step, Median(fractions));
    } else {
      std::printf("; %.2fx the batch-1 bound", Median(fractions));
    }
    std::printf("\n");
  }
  return 0;
}

}  // namespace
}  // namespace loom::inference

int main(int argc, char** argv) { return loom::inference::Main(argc, argv); }
