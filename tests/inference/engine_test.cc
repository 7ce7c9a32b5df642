#include "inference/engine/engine.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <limits>
#include <mutex>
#include <numeric>
#include <random>

#include "tests/fakes/fake_backend.h"

namespace loom::inference {
namespace {

using testing::FakeBackend;

struct Outcome {
  std::vector<int32_t> tokens;
  std::string text;
  FinishReason finish = FinishReason::kNone;
  Status error;
  int32_t cached_tokens = -1;
  int events = 0;
};

// Gathers one request's events; Wait() blocks until its last one.
class Collector {
 public:
  EventCallback Callback(int cancel_after_events = 0) {
    return [this, cancel_after_events](const GenerationEvent& ev) {
      std::lock_guard lock(mu_);
      out_.tokens.insert(out_.tokens.end(), ev.tokens.begin(), ev.tokens.end());
      out_.text += ev.text;
      out_.cached_tokens = ev.cached_tokens;
      ++out_.events;
      bool cancel = cancel_after_events > 0 && out_.events >= cancel_after_events;
      if (ev.finish != FinishReason::kNone || cancel) {
        out_.finish = ev.finish;
        out_.error = ev.error;
        done_ = true;
        cv_.notify_all();
      }
      return !cancel;
    };
  }
  Outcome Wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return done_; });
    return out_;
  }
  void WaitForEvents(int n) {
    std::unique_lock lock(mu_);
    while (out_.events < n && !done_) {
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      lock.lock();
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  Outcome out_;
  bool done_ = false;
};

// Stats are published after each step, a moment after the last event.
EngineStats IdleStats(const Engine& engine) {
  EngineStats st = engine.Stats();
  for (int i = 0; i < 1000 && (st.running != 0 || st.kv_blocks_used != 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    st = engine.Stats();
  }
  return st;
}

std::vector<int32_t> Prompt(int n, int salt = 0, int vocab = 64) {
  std::vector<int32_t> p(n);
  for (int i = 0; i < n; ++i) p[i] = (i * 7 + salt * 13 + 3) % vocab;
  return p;
}

GenerationRequest Greedy(std::vector<int32_t> prompt, int max_tokens) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0;
  r.max_tokens = max_tokens;
  return r;
}

struct Rig {
  explicit Rig(int32_t block_size = 4, int32_t blocks = 256, EngineOptions options = {},
               std::vector<int32_t> eos = {}) {
    auto b = std::make_unique<FakeBackend>(block_size, blocks, 64, 4096, std::move(eos));
    backend = b.get();
    auto e = Engine::Start(std::move(b), std::move(options));
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    engine = std::move(e).value();
  }
  Outcome Run(GenerationRequest req, int cancel_after = 0) {
    Collector c;
    auto id = engine->Submit(std::move(req), c.Callback(cancel_after));
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return c.Wait();
  }
  FakeBackend* backend;
  std::unique_ptr<Engine> engine;
};

TEST(EngineTest, GreedyTokensMatchTheUncachedReference) {
  Rig rig;
  auto prompt = Prompt(10);
  Outcome o = rig.Run(Greedy(prompt, 12));
  EXPECT_EQ(o.tokens, FakeBackend::Greedy(prompt, 12));
  EXPECT_EQ(o.finish, FinishReason::kLength);
  EXPECT_EQ(IdleStats(*rig.engine).kv_blocks_used, 0);
}

TEST(EngineTest, RequestsOfDifferentLengthsBatchedTogetherGiveTheirSoloTokens) {
  EngineOptions opts;
  opts.max_batch = 4;
  opts.max_step_tokens = 16;  // forces chunked prefill next to decodes
  Rig rig(4, 256, opts);
  rig.backend->set_step_delay(std::chrono::milliseconds(1));
  const std::vector<std::pair<int, int>> shapes = {{1, 20}, {37, 5}, {9, 17}, {64, 9},
                                                   {3, 30}, {22, 1}, {15, 12}};
  std::vector<std::unique_ptr<Collector>> cs;
  for (size_t i = 0; i < shapes.size(); ++i) {
    cs.push_back(std::make_unique<Collector>());
    auto id = rig.engine->Submit(Greedy(Prompt(shapes[i].first, int(i)), shapes[i].second),
                                 cs.back()->Callback());
    ASSERT_TRUE(id.ok());
  }
  for (size_t i = 0; i < shapes.size(); ++i) {
    Outcome o = cs[i]->Wait();
    EXPECT_EQ(o.tokens, FakeBackend::Greedy(Prompt(shapes[i].first, int(i)), shapes[i].second))
        << "request " << i;
  }
  EXPECT_GT(rig.backend->max_rows_seen(), 1);
  EXPECT_LE(rig.backend->max_rows_seen(), 4);
  EXPECT_EQ(IdleStats(*rig.engine).kv_blocks_used, 0);
}

TEST(EngineTest, LongPromptIsPrefilledInChunksOfTheStepBudget) {
  EngineOptions opts;
  opts.max_step_tokens = 16;
  Rig rig(4, 256, opts);
  auto prompt = Prompt(100);
  Outcome o = rig.Run(Greedy(prompt, 3));
  EXPECT_EQ(o.tokens, FakeBackend::Greedy(prompt, 3));
  EXPECT_EQ(rig.backend->forward_calls(), 7 + 2);  // ceil(100/16) prefill steps + 2 decodes
}

TEST(EngineTest, PrefixHitSkipsThePrefillAndGivesTheSameTokens) {
  Rig rig(4, 256);
  auto prompt = Prompt(40);
  Outcome cold = rig.Run(Greedy(prompt, 6));
  int64_t cold_tokens = rig.backend->tokens_computed();
  EXPECT_EQ(cold_tokens, 40 + 5);
  EXPECT_EQ(cold.cached_tokens, 0);

  Outcome warm = rig.Run(Greedy(prompt, 6));
  EXPECT_EQ(warm.tokens, cold.tokens);
  // (40 - 1) / 4 = 9 full blocks reused; the last block (with the last prompt
  // token) is recomputed for its logits.
  EXPECT_EQ(warm.cached_tokens, 36);
  EXPECT_EQ(rig.backend->tokens_computed() - cold_tokens, 4 + 5);
  auto stats = IdleStats(*rig.engine);
  EXPECT_EQ(stats.prompt_tokens_total, 80);
  EXPECT_EQ(stats.prefix_hit_tokens_total, 36);
  EXPECT_NEAR(stats.prefix_hit_rate(), 36.0 / 80.0, 1e-9);
}

TEST(EngineTest, PartialPrefixMatchReusesOnlyTheSharedFullBlocks) {
  Rig rig(4, 256);
  auto a = Prompt(30);
  ASSERT_EQ(rig.Run(Greedy(a, 4)).tokens, FakeBackend::Greedy(a, 4));
  auto b = a;
  b[13] = (b[13] + 1) % 64;  // diverges inside block 3
  Outcome o = rig.Run(Greedy(b, 4));
  EXPECT_EQ(o.cached_tokens, 12);
  EXPECT_EQ(o.tokens, FakeBackend::Greedy(b, 4));
}

TEST(EngineTest, GeneratedTokensArePrefixCachedForTheNextTurn) {
  Rig rig(4, 256);
  auto prompt = Prompt(10);
  Outcome first = rig.Run(Greedy(prompt, 14));
  auto next = prompt;
  next.insert(next.end(), first.tokens.begin(), first.tokens.end());
  next.push_back(5);  // the next user turn
  Outcome second = rig.Run(Greedy(next, 3));
  EXPECT_EQ(second.tokens, FakeBackend::Greedy(next, 3));
  // 10 + 14 = 24 tokens, of which 23 have K/V: 5 full blocks.
  EXPECT_EQ(second.cached_tokens, 20);
}

TEST(EngineTest, PromptOfWholeBlocksStillComputesItsLastToken) {
  Rig rig(4, 256);
  auto prompt = Prompt(8);
  Outcome cold = rig.Run(Greedy(prompt, 2));
  Outcome warm = rig.Run(Greedy(prompt, 2));
  EXPECT_EQ(warm.tokens, cold.tokens);
  EXPECT_EQ(warm.cached_tokens, 4);
}

TEST(EngineTest, TinyCachePreemptsAndRecomputesWithTheSameTokens) {
  EngineOptions opts;
  opts.max_batch = 4;
  Rig rig(2, 12, opts);  // 24 token slots for 4 requests of 16 tokens
  // Slow steps: all four are queued while the first one's prefill runs.
  rig.backend->set_step_delay(std::chrono::milliseconds(2));
  std::vector<std::unique_ptr<Collector>> cs;
  for (int i = 0; i < 4; ++i) {
    cs.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(rig.engine->Submit(Greedy(Prompt(6, i), 10), cs.back()->Callback()).ok());
  }
  for (int i = 0; i < 4; ++i) {
    Outcome o = cs[i]->Wait();
    EXPECT_EQ(o.finish, FinishReason::kLength);
    EXPECT_EQ(o.tokens, FakeBackend::Greedy(Prompt(6, i), 10)) << "request " << i;
  }
  auto stats = IdleStats(*rig.engine);
  EXPECT_GT(stats.preemptions_total, 0);
  EXPECT_EQ(stats.kv_blocks_used, 0);
}

TEST(EngineTest, SeededSamplingIsReproducibleAloneAndBatchedUnderPreemption) {
  auto sampled = [](int salt, uint64_t seed) {
    GenerationRequest r;
    r.prompt = Prompt(7, salt);
    r.max_tokens = 12;
    r.sampling.temperature = 1.0f;
    r.sampling.top_k = 20;
    r.sampling.top_p = 0.9f;
    r.sampling.seed = seed;
    return r;
  };
  Rig solo;
  Outcome a = solo.Run(sampled(0, 7));
  Outcome again = solo.Run(sampled(0, 7));
  EXPECT_EQ(a.tokens, again.tokens);
  EXPECT_NE(a.tokens, FakeBackend::Greedy(Prompt(7, 0), 12));  // it did sample

  EngineOptions opts;
  opts.max_batch = 3;
  Rig busy(2, 12, opts);
  std::vector<std::unique_ptr<Collector>> cs;
  for (int i = 0; i < 3; ++i) {
    cs.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(busy.engine->Submit(sampled(i, 7 + i), cs.back()->Callback()).ok());
  }
  EXPECT_EQ(cs[0]->Wait().tokens, a.tokens);
  for (int i = 1; i < 3; ++i) EXPECT_EQ(cs[i]->Wait().tokens, solo.Run(sampled(i, 7 + i)).tokens);
  Outcome other = solo.Run(sampled(0, 8));
  EXPECT_NE(other.tokens, a.tokens);
}

// A backend that answers greedy steps with a device argmax (as the CUDA one
// does) drops their logits rows: the engine must still pair every other row
// with its sequence, in a batch that mixes greedy and sampled requests.
TEST(EngineTest, DeviceArgmaxRowsAndLogitsRowsPairWithTheirSequences) {
  auto sampled = [](int salt) {
    GenerationRequest r;
    r.prompt = Prompt(9, salt);
    r.max_tokens = 10;
    r.sampling.temperature = 1.0f;
    r.sampling.seed = 11 + salt;
    return r;
  };
  std::vector<Outcome> expected;
  {
    Rig host;
    for (int i = 0; i < 4; ++i) {
      expected.push_back(i % 2 ? host.Run(sampled(i)) : host.Run(Greedy(Prompt(9, i), 10)));
    }
  }
  EngineOptions opts;
  opts.max_batch = 4;
  Rig rig(4, 256, opts);
  rig.backend->set_device_argmax(true);
  rig.backend->set_step_delay(std::chrono::milliseconds(1));
  std::vector<std::unique_ptr<Collector>> cs;
  for (int i = 0; i < 4; ++i) {
    cs.push_back(std::make_unique<Collector>());
    GenerationRequest r = i % 2 ? sampled(i) : Greedy(Prompt(9, i), 10);
    ASSERT_TRUE(rig.engine->Submit(std::move(r), cs.back()->Callback()).ok());
  }
  for (int i = 0; i < 4; ++i) EXPECT_EQ(cs[i]->Wait().tokens, expected[i].tokens) << i;
  EXPECT_EQ(expected[0].tokens, FakeBackend::Greedy(Prompt(9, 0), 10));
  EXPECT_GT(rig.backend->max_rows_seen(), 1);
}

// Token i decodes to "<i>".
Detokenizer Angle() {
  return [](std::span<const int32_t> ids) {
    std::string s;
    for (int32_t id : ids) s += "<" + std::to_string(id) + ">";
    return s;
  };
}

TEST(EngineTest, StopStringAcrossTokenBoundariesEndsTheTextBeforeIt) {
  EngineOptions opts;
  opts.detokenize = Angle();
  Rig rig(4, 256, opts);
  auto prompt = Prompt(5);
  auto ref = FakeBackend::Greedy(prompt, 20);
  std::string full = Angle()(ref);
  std::string t5 = Angle()(std::vector<int32_t>{ref[5]});
  std::string t6 = Angle()(std::vector<int32_t>{ref[6]});
  std::string stop = t5.substr(t5.size() - 2) + t6.substr(0, 2);  // e.g. "2><4"
  size_t at = full.find(stop);
  ASSERT_NE(at, std::string::npos);

  auto req = Greedy(prompt, 20);
  req.stop = {stop, "never-appears"};
  Outcome o = rig.Run(req);
  EXPECT_EQ(o.finish, FinishReason::kStop);
  EXPECT_EQ(o.text, full.substr(0, at));
  EXPECT_LT(o.tokens.size(), 20u);
}

TEST(EngineTest, TextStreamsAsTheConcatenationOfTokenPieces) {
  EngineOptions opts;
  opts.detokenize = Angle();
  Rig rig(4, 256, opts);
  auto prompt = Prompt(5);
  Outcome o = rig.Run(Greedy(prompt, 9));
  EXPECT_EQ(o.text, Angle()(FakeBackend::Greedy(prompt, 9)));
  EXPECT_EQ(o.events, 9);
}

TEST(EngineTest, MaxTokensEndsWithLength) {
  Rig rig;
  Outcome o = rig.Run(Greedy(Prompt(3), 1));
  EXPECT_EQ(o.tokens.size(), 1u);
  EXPECT_EQ(o.finish, FinishReason::kLength);
}

TEST(EngineTest, EosStopsUnlessIgnored) {
  auto prompt = Prompt(6);
  auto ref = FakeBackend::Greedy(prompt, 12);
  int32_t eos = ref[4];
  size_t first = std::find(ref.begin(), ref.end(), eos) - ref.begin();
  Rig rig(4, 256, {}, {eos});
  Outcome o = rig.Run(Greedy(prompt, 12));
  EXPECT_EQ(o.finish, FinishReason::kStop);
  EXPECT_EQ(o.tokens, std::vector<int32_t>(ref.begin(), ref.begin() + first + 1));

  auto req = Greedy(prompt, 12);
  req.ignore_eos = true;
  EXPECT_EQ(rig.Run(req).tokens, ref);

  auto by_id = Greedy(prompt, 12);
  by_id.ignore_eos = true;
  by_id.stop_token_ids = {ref[2]};
  Outcome s = rig.Run(by_id);
  EXPECT_EQ(s.finish, FinishReason::kStop);
  EXPECT_EQ(s.tokens.back(), ref[2]);
}

TEST(EngineTest, CancelEndsARunningRequest) {
  Rig rig;
  rig.backend->set_step_delay(std::chrono::milliseconds(1));
  Collector c;
  auto id = rig.engine->Submit(Greedy(Prompt(4), 4000), c.Callback());
  ASSERT_TRUE(id.ok());
  c.WaitForEvents(2);
  rig.engine->Cancel(*id);
  Outcome o = c.Wait();
  EXPECT_EQ(o.finish, FinishReason::kCancelled);
  EXPECT_EQ(o.error.code(), StatusCode::kCancelled);
  EXPECT_LT(o.tokens.size(), 4000u);
  rig.engine->Cancel(*id);  // already finished: ignored
  EXPECT_EQ(rig.Run(Greedy(Prompt(4), 2)).tokens, FakeBackend::Greedy(Prompt(4), 2));
}

TEST(EngineTest, CallbackReturningFalseCancels) {
  Rig rig;
  Outcome o = rig.Run(Greedy(Prompt(4), 50), /*cancel_after=*/3);
  EXPECT_EQ(o.events, 3);
  // The engine drops it: its blocks come back.
  EXPECT_EQ(IdleStats(*rig.engine).kv_blocks_used, 0);
}

TEST(EngineTest, RandomizedLoadWithSharedPrefixesAndATinyCacheMatchesTheReference) {
  EngineOptions opts;
  opts.max_batch = 6;
  opts.max_step_tokens = 24;
  Rig rig(4, 40, opts);  // 160 token slots
  std::mt19937 rng(1234);
  auto base = Prompt(80, 9);
  struct Case {
    std::vector<int32_t> prompt;
    int max_tokens;
    std::unique_ptr<Collector> c;
  };
  std::vector<Case> cases;
  for (int i = 0; i < 40; ++i) {
    int len = 1 + static_cast<int>(rng() % 70);
    std::vector<int32_t> p(base.begin(), base.begin() + len);
    if (rng() % 3 == 0) p.push_back(static_cast<int32_t>(rng() % 64));  // diverge at the end
    cases.push_back({p, 1 + static_cast<int>(rng() % 20), std::make_unique<Collector>()});
  }
  for (auto& c : cases) {
    ASSERT_TRUE(rig.engine->Submit(Greedy(c.prompt, c.max_tokens), c.c->Callback()).ok());
    if (rng() % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(cases[i].c->Wait().tokens, FakeBackend::Greedy(cases[i].prompt, cases[i].max_tokens))
        << "case " << i;
  }
  auto stats = IdleStats(*rig.engine);
  EXPECT_EQ(stats.kv_blocks_used, 0);
  EXPECT_GT(stats.prefix_hit_tokens_total, 0);
}

TEST(EngineTest, RejectsPromptsLongerThanTheContext) {
  Rig rig(4, 16);  // 64 token slots < 4096 positions
  EXPECT_EQ(rig.engine->max_context(), 64);
  Collector c;
  auto r = rig.engine->Submit(Greedy(Prompt(64), 1), c.Callback());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("context"), std::string::npos);
  EXPECT_FALSE(rig.engine->Submit(Greedy({}, 1), c.Callback()).ok());
  EXPECT_FALSE(rig.engine->Submit(Greedy({1, 64}, 1), c.Callback()).ok());
  // A prompt that fits runs up to the context and ends with length.
  Outcome o = rig.Run(Greedy(Prompt(60), 100));
  EXPECT_EQ(o.finish, FinishReason::kLength);
  EXPECT_EQ(o.tokens.size(), 4u);
}

TEST(EngineTest, ShutdownCancelsWhatIsQueued) {
  Collector c;
  {
    Rig rig;
    rig.backend->set_step_delay(std::chrono::milliseconds(1));
    ASSERT_TRUE(rig.engine->Submit(Greedy(Prompt(4), 4000), c.Callback()).ok());
  }
  Outcome o = c.Wait();
  EXPECT_EQ(o.finish, FinishReason::kCancelled);
}

// NaN counts as -inf, as in the CUDA argmax: a NaN first must not win.
TEST(ArgmaxTest, TakesTheLargestLowestIndexAndNeverANaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(Argmax(std::vector<float>{1, 3, 3, 2}), 1);
  EXPECT_EQ(Argmax(std::vector<float>{nan, -5, 2, nan, 1}), 2);
  EXPECT_EQ(Argmax(std::vector<float>{-1, nan}), 0);
  EXPECT_EQ(Argmax(std::vector<float>{nan, nan}), 0);
}

}  // namespace
}  // namespace loom::inference
