// The engine over the real CPU backend and tokenizer on the tiny-llama fixture:
// greedy tokens must equal the Hugging Face reference exactly, alone, batched
// all together, and again with the prefix cache warm.
#include <gtest/gtest.h>

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/json.h"
#include "inference/engine/engine.h"
#include "inference/model/cpu/cpu_backend.h"
#include "inference/text/tokenizer.h"
#include "tests/inference/fixture_path.h"

namespace loom::inference {
namespace {

struct GoldenCase {
  std::string text;
  std::vector<int32_t> ids;
  std::vector<int32_t> greedy;
};

std::vector<GoldenCase> LoadGolden() {
  std::ifstream in(loom::testing::FixturePath("tiny-llama/golden.json"));
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = ParseJson(ss.str());
  EXPECT_TRUE(j.ok()) << j.status().ToString();
  std::vector<GoldenCase> out;
  if (!j.ok()) return out;
  for (const auto& c : (*j)["cases"]) {
    out.push_back({c["text"].get<std::string>(), c["ids"].get<std::vector<int32_t>>(),
                   c["greedy_24"].get<std::vector<int32_t>>()});
  }
  return out;
}

// Waits for one request's tokens.
class Waiter {
 public:
  EventCallback Callback() {
    return [this](const GenerationEvent& ev) {
      std::lock_guard lock(mu_);
      tokens_.insert(tokens_.end(), ev.tokens.begin(), ev.tokens.end());
      if (ev.finish != FinishReason::kNone) {
        finish_ = ev.finish;
        cached_ = ev.cached_tokens;
        done_ = true;
        cv_.notify_all();
      }
      return true;
    };
  }
  std::vector<int32_t> Wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return done_; });
    return tokens_;
  }
  int32_t cached() {
    std::lock_guard lock(mu_);
    return cached_;
  }
  FinishReason finish() {
    std::lock_guard lock(mu_);
    return finish_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int32_t> tokens_;
  FinishReason finish_ = FinishReason::kNone;
  int32_t cached_ = 0;
  bool done_ = false;
};

// Forwards to a real backend; the first step is slowed down so that requests
// submitted together are all queued before the engine admits any.
class SlowStartBackend : public Backend {
 public:
  explicit SlowStartBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {}
  const ModelConfig& config() const override { return inner_->config(); }
  int32_t block_size() const override { return inner_->block_size(); }
  int32_t num_kv_blocks() const override { return inner_->num_kv_blocks(); }
  Status Forward(std::span<const SeqStep> batch, StepOutput* out) override {
    if (first_) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    first_ = false;
    return inner_->Forward(batch, out);
  }
  Status CopyBlock(int32_t src, int32_t dst) override { return inner_->CopyBlock(src, dst); }

 private:
  std::unique_ptr<Backend> inner_;
  bool first_ = true;
};

GenerationRequest Greedy24(const std::vector<int32_t>& ids) {
  GenerationRequest r;
  r.prompt = ids;
  r.sampling.temperature = 0;
  r.max_tokens = 24;
  r.ignore_eos = true;  // the reference decodes 24 tokens without stopping
  return r;
}

class EngineCpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    golden_ = LoadGolden();
    ASSERT_FALSE(golden_.empty());
    auto tok = Tokenizer::Load(loom::testing::FixturePath("tiny-llama"));
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    tokenizer_ = std::move(tok).value();
  }

  std::unique_ptr<Engine> MakeEngine(int32_t block_size, int32_t blocks, int32_t max_batch) {
    CpuBackendOptions bo;
    bo.threads = 2;
    bo.block_size = block_size;
    bo.num_kv_blocks = blocks;
    auto backend = MakeCpuBackend(loom::testing::FixturePath("tiny-llama"), bo);
    EXPECT_TRUE(backend.ok()) << backend.status().ToString();
    if (!backend.ok()) return nullptr;
    EngineOptions eo;
    eo.max_batch = max_batch;
    eo.max_step_tokens = 64;
    const Tokenizer* t = tokenizer_.get();
    eo.detokenize = [t](std::span<const int32_t> ids) { return t->Decode(ids); };
    auto engine = Engine::Start(std::make_unique<SlowStartBackend>(std::move(backend).value()),
                                std::move(eo));
    EXPECT_TRUE(engine.ok()) << engine.status().ToString();
    return engine.ok() ? std::move(engine).value() : nullptr;
  }

  std::vector<GoldenCase> golden_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(EngineCpuTest, TokenizerGivesTheGoldenIds) {
  for (const auto& c : golden_) EXPECT_EQ(tokenizer_->Encode(c.text), c.ids) << c.text;
}

TEST_F(EngineCpuTest, GreedyOfEveryCaseAloneEqualsTheReference) {
  auto engine = MakeEngine(16, 64, 1);
  ASSERT_NE(engine, nullptr);
  for (const auto& c : golden_) {
    Waiter w;
    ASSERT_TRUE(engine->Submit(Greedy24(c.ids), w.Callback()).ok());
    EXPECT_EQ(w.Wait(), c.greedy) << c.text;
    EXPECT_EQ(w.finish(), FinishReason::kLength);
  }
}

TEST_F(EngineCpuTest, AllCasesBatchedTogetherAndAgainWithAWarmPrefixCache) {
  auto engine = MakeEngine(4, 256, 8);  // small blocks: most of each prompt is cacheable
  ASSERT_NE(engine, nullptr);
  for (int round = 0; round < 2; ++round) {
    std::vector<std::unique_ptr<Waiter>> ws;
    for (const auto& c : golden_) {
      ws.push_back(std::make_unique<Waiter>());
      ASSERT_TRUE(engine->Submit(Greedy24(c.ids), ws.back()->Callback()).ok());
    }
    for (size_t i = 0; i < golden_.size(); ++i) {
      EXPECT_EQ(ws[i]->Wait(), golden_[i].greedy) << "round " << round << ": " << golden_[i].text;
      int32_t expect_cached =
          round == 0 ? 0 : (static_cast<int32_t>(golden_[i].ids.size()) - 1) / 4 * 4;
      EXPECT_EQ(ws[i]->cached(), expect_cached) << golden_[i].text;
    }
  }
  EXPECT_GT(engine->Stats().prefix_hit_tokens_total, 0);
}

TEST_F(EngineCpuTest, TinyCacheWithPreemptionStillEqualsTheReference) {
  // 12 blocks of 8 = 96 slots for 6 sequences of up to 82 tokens.
  auto engine = MakeEngine(8, 12, 6);
  ASSERT_NE(engine, nullptr);
  std::vector<std::unique_ptr<Waiter>> ws;
  for (const auto& c : golden_) {
    ws.push_back(std::make_unique<Waiter>());
    ASSERT_TRUE(engine->Submit(Greedy24(c.ids), ws.back()->Callback()).ok());
  }
  for (size_t i = 0; i < golden_.size(); ++i) {
    EXPECT_EQ(ws[i]->Wait(), golden_[i].greedy) << golden_[i].text;
  }
  EXPECT_GT(engine->Stats().preemptions_total, 0);
}

}  // namespace
}  // namespace loom::inference
