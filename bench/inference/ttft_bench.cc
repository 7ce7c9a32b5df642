// Time to first token through the engine, cold vs prefix-cache hit.
//
// Builds a small Llama-shaped model with random weights (float32 safetensors in
// a temp dir, loaded by the CPU backend like any checkpoint), then for each run
// submits a fresh 2,000-token prompt (cold: nothing cached) and measures the
// time from Submit to the first token; then the same prompt again (hit: all but
// the last block comes from the prefix cache), and the prompt plus a new
// 50-token turn (what an agent sends next). Prints medians and hit / cold.
//
//   inference_ttft_bench [--threads N] [--runs N] [--prompt N]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "bench/inference/synthetic_model.h"
#include "common/json.h"
#include "inference/engine/engine.h"
#include "inference/model/cpu/cpu_backend.h"

namespace loom::inference {
namespace {

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Seconds from Submit to the first token of a one-token generation.
Result<double> Ttft(Engine& engine, std::vector<int32_t> prompt, int32_t* cached) {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Clock::time_point first;
  GenerationRequest req;
  req.prompt = std::move(prompt);
  req.sampling.temperature = 0;
  req.max_tokens = 1;
  auto t0 = Clock::now();
  auto id = engine.Submit(std::move(req), [&](const GenerationEvent& ev) {
    std::lock_guard lock(mu);
    if (!done) first = Clock::now();
    *cached = ev.cached_tokens;
    done = true;
    cv.notify_all();
    return true;
  });
  if (!id.ok()) return id.status();
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return done; });
  return std::chrono::duration<double>(first - t0).count();
}

std::vector<int32_t> RandomPrompt(int n, uint64_t seed, int64_t vocab) {
  std::vector<int32_t> p(n);
  for (int i = 0; i < n; ++i) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    p[i] = static_cast<int32_t>(3 + (seed >> 33) % uint64_t(vocab - 3));
  }
  return p;
}

int Main(int argc, char** argv) {
  int threads = 2, runs = 5, prompt_len = 2000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--runs")) runs = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--prompt")) prompt_len = std::atoi(argv[i + 1]);
  }
  bench::SyntheticShape shape;
  shape.vocab = 8192;
  shape.hidden = 384;
  shape.inter = 1024;
  shape.layers = 6;
  shape.heads = 6;
  shape.kv_heads = 2;
  shape.max_positions = 4096;
  shape.dtype = "F32";
  auto dir = std::filesystem::temp_directory_path() / ("loom-ttft-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  if (auto params = bench::WriteSyntheticModel(dir.string(), shape); !params.ok()) {
    std::fprintf(stderr, "%s\n", params.status().ToString().c_str());
    return 1;
  }
  CpuBackendOptions bo;
  bo.threads = threads;
  bo.block_size = 16;
  bo.num_kv_blocks = 1024;  // 16k tokens: every run's prompts stay cached
  auto backend = MakeCpuBackend(dir.string(), bo);
  std::filesystem::remove_all(dir);
  if (!backend.ok()) {
    std::fprintf(stderr, "%s\n", backend.status().ToString().c_str());
    return 1;
  }
  EngineOptions eo;  // defaults: 512-token step budget, prefix cache on
  auto engine = Engine::Start(std::move(backend).value(), std::move(eo));
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
    return 1;
  }
  std::printf("prompt %d tokens, %d threads, block 16, %d runs\n", prompt_len, threads, runs);
  std::vector<double> cold, hit, next_turn;
  for (int r = 0; r < runs; ++r) {
    auto prompt = RandomPrompt(prompt_len, 1000 + r, shape.vocab);
    int32_t c0 = 0, c1 = 0, c2 = 0;
    auto a = Ttft(**engine, prompt, &c0);
    auto b = Ttft(**engine, prompt, &c1);
    auto turn = prompt;
    auto extra = RandomPrompt(50, 5000 + r, shape.vocab);
    turn.insert(turn.end(), extra.begin(), extra.end());
    auto c = Ttft(**engine, turn, &c2);
    if (!a.ok() || !b.ok() || !c.ok()) {
      std::fprintf(stderr, "submit failed\n");
      return 1;
    }
    std::printf(
        "run %d: cold %.3f s (cached %d), hit %.4f s (cached %d), next turn %.4f s "
        "(cached %d)\n",
        r, *a, c0, *b, c1, *c, c2);
    cold.push_back(*a);
    hit.push_back(*b);
    next_turn.push_back(*c);
  }
  double mc = Median(cold), mh = Median(hit), mt = Median(next_turn);
  std::printf("median TTFT: cold %.3f s, hit %.4f s, next turn (+50 tokens) %.4f s\n", mc, mh, mt);
  std::printf("ratio hit/cold %.3f, next-turn/cold %.3f (goal <= 0.10)\n", mh / mc, mt / mc);
  auto st = (*engine)->Stats();
  std::printf("prefix-cache hit rate %.3f\n", st.prefix_hit_rate());
  return 0;
}

}  // namespace
}  // namespace loom::inference

int main(int argc, char** argv) { return loom::inference::Main(argc, argv); }
