// CUDA decode throughput against the HBM-bandwidth bound (issue 8's benchmark).
//
// Writes a random-weight Llama-shaped model of ~1.1B parameters (hidden 2048,
// 16 layers, 32 heads, 8 KV heads, FFN 8192, vocab 32000, untied, BF16), loads
// it with the CUDA backend and, for batch 1, 16 and 64, prefills 512-token
// prompts and decodes 128 new tokens greedily, two ways:
//   backend: a bare loop of Backend::Forward steps (argmax on the GPU), like the
//            PyTorch peers in ../shared/peers;
//   engine:  the same requests through the Engine (continuous batching,
//            scheduling, sampling, detokenizer-free events): what loom-infer serves.
// Decode tokens/s counts the tokens generated after the last prefill (the
// backend loop: every sequence's tokens after its first; the engine: the tokens
// that arrived after every request had its first) over that time. In the same run it measures the
// device's copy bandwidth (cudaMemcpy D2D, read + written bytes) and prints the bound: weight bytes
// (all parameters x 2) / bandwidth, against the measured and the nominal HBM bandwidth, and each
// batch's ratio to it. Medians of --runs.
// --attention 1,2 runs it all once per attention kernel (CudaBackendOptions::
// attention_kernel), each loaded afresh, so that both are timed in one run.
//
//   inference_cuda_decode_bench [--runs N] [--batches 1,16,64] [--attention 1,2]
//                               [--json FILE] [--dir DIR]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/inference/synthetic_model.h"
#include "common/json.h"
#include "inference/cuda/cuda_backend.h"
#include "inference/engine/engine.h"

namespace loom::inference {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kPrompt = 512, kNew = 128;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

std::vector<int32_t> RandomPrompt(int n, uint64_t seed, int64_t vocab) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> p(n);
  for (auto& t : p) t = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab - 3)) + 3;
  return p;
}

// Lends a backend to an Engine (which owns what it is given) without giving it away.
class Borrowed final : public Backend {
 public:
  explicit Borrowed(Backend* b) : b_(b) {}
  const ModelConfig& config() const override { return b_->config(); }
  int32_t block_size() const override { return b_->block_size(); }
  int32_t num_kv_blocks() const override { return b_->num_kv_blocks(); }
  Status Forward(std::span<const SeqStep> batch, StepOutput* out) override {
    return b_->Forward(batch, out);
  }
  Status CopyBlock(int32_t src, int32_t dst) override { return b_->CopyBlock(src, dst); }

 private:
  Backend* b_;
};

// Read + written bytes per second of a 1 GiB device-to-device copy.
double CopyBandwidth() {
  const size_t n = size_t{1} << 30;
  void *a = nullptr, *b = nullptr;
  if (cudaMalloc(&a, n) != cudaSuccess || cudaMalloc(&b, n) != cudaSuccess) return 0;
  cudaMemset(a, 1, n);
  std::vector<double> rates;
  for (int rep = 0; rep < 6; ++rep) {
    cudaDeviceSynchronize();
    auto t0 = Clock::now();
    cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice);
    cudaDeviceSynchronize();
    if (rep > 0) rates.push_back(2.0 * double(n) / Seconds(t0, Clock::now()));
  }
  cudaFree(a);
  cudaFree(b);
  return Median(rates);
}

// Prefills `batch` prompts (8 per step), then times kNew - 1 greedy decode steps.
Result<double> BackendRun(Backend& b, int batch, int seed) {
  const int32_t bs = b.block_size();
  const int32_t per_seq = (kPrompt + kNew + bs - 1) / bs;
  std::vector<std::vector<int32_t>> tables(batch), tokens(batch);
  for (int s = 0; s < batch; ++s) {
    for (int32_t i = 0; i < per_seq; ++i) tables[s].push_back(s * per_seq + i);
    tokens[s] = RandomPrompt(kPrompt, seed * 1000 + s, b.config().vocab_size);
  }
  StepOutput out;
  std::vector<int32_t> next(batch);
  for (int s0 = 0; s0 < batch; s0 += 8) {
    std::vector<SeqStep> st;
    for (int s = s0; s < std::min(batch, s0 + 8); ++s) {
      SeqStep x;
      x.tokens = tokens[s];
      x.block_table = tables[s];
      x.greedy = true;
      st.push_back(x);
    }
    LOOM_RETURN_IF_ERROR(b.Forward(st, &out));
    for (size_t i = 0; i < st.size(); ++i) next[s0 + i] = out.argmax[i];
  }
  std::vector<SeqStep> st(batch);
  auto t0 = Clock::now();
  for (int i = 0; i < kNew - 1; ++i) {
    for (int s = 0; s < batch; ++s) {
      st[s].tokens = std::span<const int32_t>(&next[s], 1);
      st[s].start_pos = kPrompt + i;
      st[s].block_table = tables[s];
      st[s].greedy = true;
    }
    LOOM_RETURN_IF_ERROR(b.Forward(st, &out));
    if (out.argmax.size() != size_t(batch)) return Status::Internal("no device argmax");
    std::copy(out.argmax.begin(), out.argmax.end(), next.begin());
  }
  return double(batch) * (kNew - 1) / Seconds(t0, Clock::now());
}

// The same through the Engine: decode tokens/s after every request's first token.
Result<double> EngineRun(Engine& engine, int batch, int seed, int64_t vocab) {
  std::mutex mu;
  std::condition_variable cv;
  int first = 0, done = 0;
  int64_t after = 0;  // tokens generated after every request had its first one
  Clock::time_point all_first;
  for (int s = 0; s < batch; ++s) {
    GenerationRequest r;
    r.prompt = RandomPrompt(kPrompt, seed * 1000 + s, vocab);
    r.max_tokens = kNew;
    r.ignore_eos = true;
    r.sampling.temperature = 0;
    auto got_first = std::make_shared<bool>(false);
    auto id = engine.Submit(std::move(r), [&, got_first](const GenerationEvent& ev) {
      std::lock_guard lock(mu);
      if (first == batch) after += static_cast<int64_t>(ev.tokens.size());
      if (!*got_first && !ev.tokens.empty()) {
        *got_first = true;
        if (++first == batch) all_first = Clock::now();
      }
      if (ev.finish != FinishReason::kNone) {
        ++done;
        cv.notify_all();
      }
      return true;
    });
    LOOM_RETURN_IF_ERROR(id.status());
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return done == batch; });
  // Only what was generated in the timed span: the requests admitted first have
  // decoded some tokens before the last one got its first.
  return double(after) / Seconds(all_first, Clock::now());
}

double NominalBandwidth(const std::string& name) {
  if (name.find("H200") != std::string::npos) return 4.8e12;
  if (name.find("H100") != std::string::npos) return 3.35e12;
  return 0;
}

int Main(int argc, char** argv) {
  int runs = 3;
  std::vector<int> batches = {1, 16, 64}, kernels = {1};
  std::string json_path, dir;
  auto list = [](const char* arg) {
    std::vector<int> out;
    std::stringstream ss(arg);
    for (std::string b; std::getline(ss, b, ',');) out.push_back(std::atoi(b.c_str()));
    return out;
  };
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--runs")) runs = std::max(1, std::atoi(argv[i + 1]));
    if (!std::strcmp(argv[i], "--json")) json_path = argv[i + 1];
    if (!std::strcmp(argv[i], "--dir")) dir = argv[i + 1];
    if (!std::strcmp(argv[i], "--batches")) batches = list(argv[i + 1]);
    if (!std::strcmp(argv[i], "--attention")) kernels = list(argv[i + 1]);
  }
  if (kernels.empty() ||
      std::any_of(kernels.begin(), kernels.end(), [](int k) { return k != 1 && k != 2; })) {
    std::fprintf(stderr, "inference_cuda_decode_bench: --attention takes 1, 2 or 1,2\n");
    return 2;
  }
  if (batches.empty() || *std::min_element(batches.begin(), batches.end()) < 1) {
    std::fprintf(stderr,
                 "inference_cuda_decode_bench: --batches takes positive sizes, e.g. 1,16,64\n");
    return 2;
  }
  if (CudaDeviceCount() == 0) {
    std::fprintf(stderr, "inference_cuda_decode_bench: no CUDA device\n");
    return 1;
  }
  const bool own_dir = dir.empty();
  if (own_dir) {
    dir = (std::filesystem::temp_directory_path() / "loom-cuda-bench").string();
  }
  std::filesystem::create_directories(dir);
  struct Cleanup {  // the 2.2 GB checkpoint goes on every way out
    std::string d;
    ~Cleanup() {
      std::error_code ec;
      if (!d.empty()) std::filesystem::remove_all(d, ec);
    }
  } cleanup{own_dir ? dir : std::string()};

  const bench::SyntheticShape shape = bench::Llama1B();
  auto t0 = Clock::now();
  Result<int64_t> params = bench::WriteSyntheticModel(dir, shape);
  if (!params.ok()) {
    std::fprintf(stderr, "%s\n", params.status().ToString().c_str());
    return 1;
  }
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  const double weight_bytes = double(*params) * 2;
  Json results = Json::object();
  results["params"] = *params;
  for (int kernel : kernels) {
    CudaBackendOptions opt;
    opt.num_kv_blocks = (max_batch + 1) * ((kPrompt + kNew + 15) / 16);
    opt.attention_kernel = kernel;
    auto t1 = Clock::now();
    auto loaded = MakeCudaBackend(dir, opt);
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", loaded.status().ToString().c_str());
      return 1;
    }
    std::unique_ptr<CudaBackend> backend = std::move(loaded).value();
    const std::string gpu = backend->device_name();
    std::printf("\nattention kernel %d: setup (write + load) %.1f s on %s\n", kernel,
                Seconds(kernel == kernels.front() ? t0 : t1, Clock::now()), gpu.c_str());
    if (kernel == kernels.front()) {
      const double bw = CopyBandwidth(), nominal = NominalBandwidth(gpu);
      std::printf("device copy bandwidth: %.0f GB/s (nominal HBM %.0f GB/s)\n", bw / 1e9,
                  nominal / 1e9);
      std::printf(
          "weights per decode step: %.3f GB -> bound %.0f tok/s (measured bw), %.0f tok/s "
          "(nominal)\n",
          weight_bytes / 1e9, bw / weight_bytes, nominal / weight_bytes);
      results["gpu"] = gpu;
      results["copy_bandwidth_GBps"] = bw / 1e9;
      results["bound_tok_s_measured_bw"] = bw / weight_bytes;
      results["bound_tok_s_nominal_bw"] = nominal > 0 ? nominal / weight_bytes : 0;
    }
    const double bound = results["bound_tok_s_nominal_bw"].get<double>() > 0
                             ? results["bound_tok_s_nominal_bw"].get<double>()
                             : results["bound_tok_s_measured_bw"].get<double>();
    std::printf("\n%-6s %14s %14s %12s\n", "batch", "backend tok/s", "engine tok/s", "b1 / bound");
    for (int batch : batches) {
      std::vector<double> direct, through;
      for (int r = 0; r < runs; ++r) {
        auto d = BackendRun(*backend, batch, r + 1);
        if (!d.ok()) {
          std::fprintf(stderr, "backend run: %s\n", d.status().ToString().c_str());
          return 1;
        }
        direct.push_back(*d);
      }
      EngineOptions eo;
      eo.max_batch = batch;
      eo.max_step_tokens = 4096;
      eo.prefix_cache = false;  // every run's prompts are new anyway
      auto engine = Engine::Start(std::make_unique<Borrowed>(backend.get()), eo);
      if (!engine.ok()) {
        std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
        return 1;
      }
      for (int r = 0; r < runs; ++r) {
        auto e = EngineRun(**engine, batch, 100 + r, shape.vocab);
        if (!e.ok()) {
          std::fprintf(stderr, "engine run: %s\n", e.status().ToString().c_str());
          return 1;
        }
        through.push_back(*e);
      }
      engine->reset();
      const double md = Median(direct), me = Median(through);
      std::printf("%-6d %14.0f %14.0f %12.2f\n", batch, md, me, batch == 1 ? md / bound : 0.0);
      Json row = {{"batch", batch},
                  {"attention_kernel", kernel},
                  {"backend_tok_s", md},
                  {"engine_tok_s", me}};
      results["batches"].push_back(row);
    }
    const CudaBackendStats st = backend->stats();
    std::printf("graphs: %lld captured, %lld replayed, %lld eager steps\n",
                (long long)st.graph_captures, (long long)st.graph_replays,
                (long long)st.eager_steps);
  }
  if (!json_path.empty()) std::ofstream(json_path) << results.dump(2) << "\n";
  return 0;
}

}  // namespace
}  // namespace loom::inference

int main(int argc, char** argv) { return loom::inference::Main(argc, argv); }
