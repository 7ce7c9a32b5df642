// The CPU backend against the Hugging Face reference (tiny-llama/golden.json),
// and against itself: chunked prefill, batching, copied blocks and tensor
// parallelism must not change the numbers beyond float32 rounding. A synthetic
// Qwen2-style checkpoint (q/k/v bias, tied embeddings) is also checked against
// a naive double-precision forward pass written here.
#include "inference/model/cpu/cpu_backend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "common/json.h"
#include "inference/model/safetensors.h"
#include "tests/inference/fixture_path.h"
#include "tests/support/temp_dir.h"

namespace loom::inference {
namespace {

constexpr double kTol = 1e-4;

struct GoldenCase {
  std::vector<int32_t> ids;
  std::vector<float> last_logits;
  std::vector<std::vector<float>> all_logits;
  std::vector<int32_t> greedy;
};

const std::vector<GoldenCase>& Golden() {
  static const std::vector<GoldenCase> cases = [] {
    std::ifstream in(loom::testing::FixturePath("tiny-llama/golden.json"));
    std::stringstream ss;
    ss << in.rdbuf();
    Result<Json> j = ParseJson(ss.str());
    std::vector<GoldenCase> out;
    if (!j.ok()) return out;
    for (const Json& c : (*j)["cases"]) {
      GoldenCase g;
      g.ids = c["ids"].get<std::vector<int32_t>>();
      g.last_logits = c["last_logits"].get<std::vector<float>>();
      g.greedy = c["greedy_24"].get<std::vector<int32_t>>();
      if (c.contains("all_logits"))
        g.all_logits = c["all_logits"].get<std::vector<std::vector<float>>>();
      out.push_back(std::move(g));
    }
    return out;
  }();
  return cases;
}

std::string FixtureModel() { return loom::testing::FixturePath("tiny-llama"); }

std::unique_ptr<Backend> Make(const std::string& dir, int tp = 1, int threads = 1,
                              int32_t block_size = 16, int32_t blocks = 64) {
  CpuBackendOptions o;
  o.tp = tp;
  o.threads = threads;
  o.block_size = block_size;
  o.num_kv_blocks = blocks;
  auto b = MakeCpuBackend(dir, o);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return b.ok() ? std::move(b).value() : nullptr;
}

double MaxAbsDiff(std::span<const float> a, std::span<const float> b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  }
  return m;
}

int32_t Argmax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

std::vector<int32_t> Blocks(int32_t first, int32_t n) {
  std::vector<int32_t> t(n);
  for (int32_t i = 0; i < n; ++i) t[i] = first + i;
  return t;
}

// A sequence driven through Forward: prefill (in chunks), then decode.
class Sequence {
 public:
  Sequence(Backend* b, std::vector<int32_t> block_table) : b_(b), table_(std::move(block_table)) {}

  // Feeds `ids` in chunks of `chunk` (0: all at once); returns the last logits,
  // or every position's when all_logits.
  std::vector<float> Feed(std::span<const int32_t> ids, size_t chunk = 0, bool all = false) {
    std::vector<float> result;
    if (chunk == 0) chunk = ids.size();
    for (size_t i = 0; i < ids.size(); i += chunk) {
      SeqStep s;
      s.tokens = ids.subspan(i, std::min(chunk, ids.size() - i));
      s.start_pos = pos_;
      s.block_table = table_;
      s.all_logits = all;
      StepOutput out;
      Status st = b_->Forward(std::span<const SeqStep>(&s, 1), &out);
      EXPECT_TRUE(st.ok()) << st.ToString();
      pos_ += static_cast<int32_t>(s.tokens.size());
      if (all) {
        result.insert(result.end(), out.logits.begin(), out.logits.end());
      } else {
        result = std::move(out.logits);
      }
    }
    return result;
  }

  // Greedy decoding of n tokens after the prompt.
  std::vector<int32_t> Greedy(std::span<const int32_t> prompt, int n, size_t chunk = 0,
                              std::vector<std::vector<float>>* logits = nullptr) {
    std::vector<float> l = Feed(prompt, chunk);
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) {
      if (logits) logits->push_back(l);
      int32_t next = Argmax(l);
      out.push_back(next);
      if (i + 1 < n) l = Feed(std::span<const int32_t>(&next, 1));
    }
    return out;
  }

 private:
  Backend* b_;
  std::vector<int32_t> table_;
  int32_t pos_ = 0;
};

TEST(CpuBackendTest, LastLogitsMatchTheReference) {
  ASSERT_EQ(Golden().size(), 6u);
  auto b = Make(FixtureModel());
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->config().vocab_size, 512);
  for (size_t c = 0; c < Golden().size(); ++c) {
    Sequence s(b.get(), Blocks(0, 8));
    std::vector<float> l = s.Feed(Golden()[c].ids);
    EXPECT_LT(MaxAbsDiff(l, Golden()[c].last_logits), kTol) << "case " << c;
  }
}

TEST(CpuBackendTest, AllLogitsOfCase0MatchAtEveryPosition) {
  auto b = Make(FixtureModel(), 1, 2);
  ASSERT_NE(b, nullptr);
  const GoldenCase& g = Golden()[0];
  ASSERT_EQ(g.all_logits.size(), g.ids.size());
  Sequence s(b.get(), Blocks(3, 4));
  std::vector<float> all = s.Feed(g.ids, 0, true);
  ASSERT_EQ(all.size(), g.ids.size() * 512);
  for (size_t p = 0; p < g.ids.size(); ++p) {
    EXPECT_LT(MaxAbsDiff(std::span(all).subspan(p * 512, 512), g.all_logits[p]), kTol) << p;
  }
}

TEST(CpuBackendTest, GreedyDecodingMatchesTheReference) {
  auto b = Make(FixtureModel(), 1, 2);
  ASSERT_NE(b, nullptr);
  for (size_t c = 0; c < Golden().size(); ++c) {
    Sequence s(b.get(), Blocks(10, 6));
    EXPECT_EQ(s.Greedy(Golden()[c].ids, 24), Golden()[c].greedy) << "case " << c;
  }
}

TEST(CpuBackendTest, ChunkedPrefillMatchesTheReference) {
  auto b = Make(FixtureModel());
  ASSERT_NE(b, nullptr);
  for (size_t c = 0; c < Golden().size(); ++c) {
    Sequence s(b.get(), Blocks(0, 6));
    std::vector<std::vector<float>> logits;
    EXPECT_EQ(s.Greedy(Golden()[c].ids, 24, 5, &logits), Golden()[c].greedy) << "case " << c;
    EXPECT_LT(MaxAbsDiff(logits[0], Golden()[c].last_logits), kTol) << "case " << c;
  }
  // All logits in chunks of 5 (chunks attend to cached tokens and to their own earlier ones).
  const GoldenCase& g = Golden()[0];
  Sequence s(b.get(), Blocks(20, 2));
  std::vector<float> all = s.Feed(g.ids, 5, true);
  ASSERT_EQ(all.size(), g.ids.size() * 512);
  for (size_t p = 0; p < g.ids.size(); ++p) {
    EXPECT_LT(MaxAbsDiff(std::span(all).subspan(p * 512, 512), g.all_logits[p]), kTol) << p;
  }
}

TEST(CpuBackendTest, SmallBlocksAndScatteredBlockTables) {
  // Block size 4 and a non-contiguous, shuffled table give the same answer.
  auto b = Make(FixtureModel(), 1, 1, 4, 64);
  ASSERT_NE(b, nullptr);
  std::vector<int32_t> table = Blocks(0, 64);
  std::mt19937 rng(7);
  std::shuffle(table.begin(), table.end(), rng);
  const GoldenCase& g = Golden()[5];  // the longest prompt
  Sequence s(b.get(), table);
  std::vector<std::vector<float>> logits;
  EXPECT_EQ(s.Greedy(g.ids, 24, 7, &logits), g.greedy);
  EXPECT_LT(MaxAbsDiff(logits[0], g.last_logits), kTol);
}

TEST(CpuBackendTest, BatchedSequencesMatchEachAlone) {
  auto b = Make(FixtureModel(), 1, 2);
  ASSERT_NE(b, nullptr);
  const auto& gs = Golden();
  // Prefill every case in ONE Forward, the odd ones asking for all logits.
  std::vector<std::vector<int32_t>> tables;
  for (size_t c = 0; c < gs.size(); ++c) tables.push_back(Blocks(static_cast<int32_t>(c * 6), 6));
  std::vector<SeqStep> steps(gs.size());
  for (size_t c = 0; c < gs.size(); ++c) {
    steps[c].tokens = gs[c].ids;
    steps[c].block_table = tables[c];
    steps[c].all_logits = c == 0;
  }
  StepOutput out;
  ASSERT_TRUE(b->Forward(steps, &out).ok());
  ASSERT_EQ(out.logits.size(), (gs[0].ids.size() + gs.size() - 1) * 512);
  size_t row = 0;
  for (size_t c = 0; c < gs.size(); ++c) {
    if (c == 0) {
      for (size_t p = 0; p < gs[0].ids.size(); ++p, ++row) {
        EXPECT_LT(MaxAbsDiff(std::span(out.logits).subspan(row * 512, 512), gs[0].all_logits[p]),
                  kTol);
      }
    } else {
      EXPECT_LT(MaxAbsDiff(std::span(out.logits).subspan(row * 512, 512), gs[c].last_logits), kTol)
          << "case " << c;
      ++row;
    }
  }
  // Then decode all of them together, one token each per step: greedy tokens exact.
  std::vector<std::vector<int32_t>> generated(gs.size());
  std::vector<int32_t> next(gs.size());
  row = 0;
  for (size_t c = 0; c < gs.size(); ++c) {
    size_t r = c == 0 ? gs[0].ids.size() - 1 : gs[0].ids.size() + c - 1;
    next[c] = Argmax(std::span(out.logits).subspan(r * 512, 512));
    generated[c].push_back(next[c]);
  }
  for (int i = 1; i < 24; ++i) {
    for (size_t c = 0; c < gs.size(); ++c) {
      steps[c].tokens = std::span<const int32_t>(&next[c], 1);
      steps[c].start_pos = static_cast<int32_t>(gs[c].ids.size()) + i - 1;
      steps[c].all_logits = false;
    }
    ASSERT_TRUE(b->Forward(steps, &out).ok());
    ASSERT_EQ(out.logits.size(), gs.size() * 512);
    for (size_t c = 0; c < gs.size(); ++c) {
      next[c] = Argmax(std::span(out.logits).subspan(c * 512, 512));
      generated[c].push_back(next[c]);
    }
  }
  for (size_t c = 0; c < gs.size(); ++c) EXPECT_EQ(generated[c], gs[c].greedy) << "case " << c;
}

TEST(CpuBackendTest, MixedPrefillAndDecodeInOneStep) {
  auto b = Make(FixtureModel());
  ASSERT_NE(b, nullptr);
  const GoldenCase& a = Golden()[1];
  const GoldenCase& c = Golden()[2];
  std::vector<int32_t> ta = Blocks(0, 4), tc = Blocks(4, 4);
  // Sequence a: prefill all but its last token alone.
  Sequence sa(b.get(), ta);
  sa.Feed(std::span(a.ids).first(a.ids.size() - 1));
  // One step: a's last prompt token (decode-like) + c's first 10 tokens (a prefill chunk).
  SeqStep steps[2];
  steps[0].tokens = std::span(a.ids).last(1);
  steps[0].start_pos = static_cast<int32_t>(a.ids.size()) - 1;
  steps[0].block_table = ta;
  steps[1].tokens = std::span(c.ids).first(10);
  steps[1].block_table = tc;
  StepOutput out;
  ASSERT_TRUE(b->Forward(steps, &out).ok());
  EXPECT_LT(MaxAbsDiff(std::span(out.logits).first(512), a.last_logits), kTol);
  // Finish c's prompt.
  steps[0].tokens = std::span(c.ids).subspan(10);
  steps[0].start_pos = 10;
  steps[0].block_table = tc;
  ASSERT_TRUE(b->Forward(std::span(steps, 1), &out).ok());
  EXPECT_LT(MaxAbsDiff(out.logits, c.last_logits), kTol);
}

TEST(CpuBackendTest, CopyBlockDuplicatesTheCache) {
  auto b = Make(FixtureModel(), 1, 1, 4, 16);
  ASSERT_NE(b, nullptr);
  const GoldenCase& g = Golden()[0];  // 16 tokens = blocks 0..3 at block size 4
  {
    Sequence s(b.get(), {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    s.Feed(g.ids);
  }
  // A copy of the partly shared last block lets a second sequence continue from it.
  ASSERT_TRUE(b->CopyBlock(3, 12).ok());
  SeqStep st;
  int32_t next = g.greedy[0];
  std::vector<int32_t> table = {0, 1, 2, 12, 13};
  st.tokens = std::span<const int32_t>(&next, 1);
  st.start_pos = static_cast<int32_t>(g.ids.size());
  st.block_table = table;
  StepOutput out;
  ASSERT_TRUE(b->Forward(std::span(&st, 1), &out).ok());
  EXPECT_EQ(Argmax(out.logits), g.greedy[1]);
  EXPECT_FALSE(b->CopyBlock(0, 16).ok());
  EXPECT_FALSE(b->CopyBlock(-1, 0).ok());
}

TEST(CpuBackendTest, RejectsBadSteps) {
  auto b = Make(FixtureModel(), 1, 1, 16, 4);
  ASSERT_NE(b, nullptr);
  std::vector<int32_t> ids = {5, 6, 7};
  std::vector<int32_t> bad_token = {5, 512};
  std::vector<int32_t> table = {0}, bad_table = {4}, empty;
  StepOutput out;
  auto run = [&](std::span<const int32_t> tokens, int32_t start, std::span<const int32_t> t) {
    SeqStep s;
    s.tokens = tokens;
    s.start_pos = start;
    s.block_table = t;
    return b->Forward(std::span(&s, 1), &out);
  };
  EXPECT_TRUE(run(ids, 0, table).ok());
  EXPECT_EQ(run(ids, 0, bad_table).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(run(ids, 14, table).code(), StatusCode::kInvalidArgument);  // needs 2 blocks
  EXPECT_EQ(run(bad_token, 0, table).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(run(empty, 0, table).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(run(ids, 511, table).code(), StatusCode::kInvalidArgument);  // past max positions
  EXPECT_TRUE(b->Forward({}, &out).ok());
  EXPECT_TRUE(out.logits.empty());
}

TEST(CpuBackendTest, TensorParallelMatchesSingleRank) {
  auto one = Make(FixtureModel(), 1, 1);
  ASSERT_NE(one, nullptr);
  // TP=4 with 2 KV heads: each rank holds the KV head of its query head (replicated).
  for (int tp : {2, 4}) {
    auto b = Make(FixtureModel(), tp, tp == 2 ? 4 : 2);  // TP=2: two matmul threads per rank
    ASSERT_NE(b, nullptr) << tp;
    for (size_t c = 0; c < Golden().size(); ++c) {
      Sequence s1(one.get(), Blocks(0, 6));
      Sequence sn(b.get(), Blocks(0, 6));
      std::vector<std::vector<float>> l1, ln;
      std::vector<int32_t> g1 = s1.Greedy(Golden()[c].ids, 24, 0, &l1);
      std::vector<int32_t> gn = sn.Greedy(Golden()[c].ids, 24, c % 2 ? 5 : 0, &ln);
      EXPECT_EQ(gn, g1) << "tp " << tp << " case " << c;
      EXPECT_EQ(gn, Golden()[c].greedy) << "tp " << tp << " case " << c;
      for (size_t i = 0; i < l1.size(); ++i) {
        EXPECT_LT(MaxAbsDiff(ln[i], l1[i]), kTol) << "tp " << tp << " case " << c << " step " << i;
      }
    }
  }
}

TEST(CpuBackendTest, RejectsTensorParallelThatDoesNotDivideHeads) {
  CpuBackendOptions o;
  o.tp = 3;
  auto b = MakeCpuBackend(FixtureModel(), o);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("tp=3"), std::string::npos);
  o.tp = 8;  // 4 heads
  EXPECT_FALSE(MakeCpuBackend(FixtureModel(), o).ok());
}

TEST(CpuBackendTest, MissingModelIsAnError) {
  auto b = MakeCpuBackend("/nonexistent/model", CpuBackendOptions{});
  EXPECT_FALSE(b.ok());
}

// --- A synthetic checkpoint, written with random weights, and a naive reference. ---

struct Synthetic {
  Json config;
  std::map<std::string, std::vector<float>> w;
  std::vector<int64_t> Shape(const std::string& name) const { return shapes.at(name); }
  std::map<std::string, std::vector<int64_t>> shapes;
};

Synthetic MakeSynthetic(const std::string& model_type, int64_t heads, int64_t kv_heads, bool tied,
                        bool bias, Json rope_scaling, uint32_t seed) {
  Synthetic s;
  const int64_t V = 96, H = 64, I = 128, L = 2, hd = H / heads;
  s.config = {{"model_type", model_type},
              {"vocab_size", V},
              {"hidden_size", H},
              {"intermediate_size", I},
              {"num_hidden_layers", L},
              {"num_attention_heads", heads},
              {"num_key_value_heads", kv_heads},
              {"max_position_embeddings", 256},
              {"rms_norm_eps", 1e-6},
              {"rope_theta", 10000.0},
              {"tie_word_embeddings", tied},
              {"attention_bias", bias},
              {"eos_token_id", 1}};
  if (!rope_scaling.is_null()) s.config["rope_scaling"] = rope_scaling;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.2f);
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float mean = 0.0f) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(n);
    for (float& x : v) x = mean + nd(rng);
    s.w[name] = std::move(v);
    s.shapes[name] = std::move(shape);
  };
  add("model.embed_tokens.weight", {V, H});
  if (!tied) add("lm_head.weight", {V, H});
  add("model.norm.weight", {H}, 1.0f);
  for (int64_t l = 0; l < L; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {H}, 1.0f);
    add(p + "post_attention_layernorm.weight", {H}, 1.0f);
    add(p + "self_attn.q_proj.weight", {heads * hd, H});
    add(p + "self_attn.k_proj.weight", {kv_heads * hd, H});
    add(p + "self_attn.v_proj.weight", {kv_heads * hd, H});
    add(p + "self_attn.o_proj.weight", {H, heads * hd});
    if (bias) {
      add(p + "self_attn.q_proj.bias", {heads * hd});
      add(p + "self_attn.k_proj.bias", {kv_heads * hd});
      add(p + "self_attn.v_proj.bias", {kv_heads * hd});
    }
    add(p + "mlp.gate_proj.weight", {I, H});
    add(p + "mlp.up_proj.weight", {I, H});
    add(p + "mlp.down_proj.weight", {H, I});
  }
  return s;
}

void WriteSynthetic(const Synthetic& s, const std::string& dir) {
  std::ofstream(dir + "/config.json") << s.config.dump();
  std::vector<TensorToWrite> ts;
  for (const auto& [name, v] : s.w) {
    ts.push_back({name, "F32", s.shapes.at(name), std::as_bytes(std::span<const float>(v))});
  }
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", ts).ok());
}

// The textbook forward pass in double, no cache: logits at every position.
std::vector<std::vector<double>> Reference(const Synthetic& s, const std::vector<int32_t>& ids) {
  Result<ModelConfig> cr = ParseModelConfig(s.config.dump(), "config.json");
  EXPECT_TRUE(cr.ok());
  const ModelConfig& c = *cr;
  const int64_t H = c.hidden_size, hd = c.head_dim, nh = c.num_heads, nkv = c.num_kv_heads;
  const int64_t I = c.intermediate_size, T = static_cast<int64_t>(ids.size());
  std::vector<float> inv = RopeInverseFrequencies(c);
  auto W = [&](const std::string& n) -> const std::vector<float>& { return s.w.at(n); };
  auto linear = [](const std::vector<double>& x, const std::vector<float>& w, int64_t out,
                   int64_t in) {
    std::vector<double> y(out);
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t i = 0; i < in; ++i) y[o] += w[o * in + i] * x[i];
    }
    return y;
  };
  auto norm = [&](const std::vector<double>& x, const std::vector<float>& w) {
    double ss = 0;
    for (double v : x) ss += v * v;
    double r = 1.0 / std::sqrt(ss / x.size() + c.rms_norm_eps);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = w[i] * x[i] * r;
    return y;
  };
  auto rope = [&](std::vector<double>& v, int64_t heads, int64_t p) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < hd / 2; ++i) {
        double a = v[h * hd + i], b = v[h * hd + i + hd / 2];
        double ang = static_cast<double>(inv[i]) * p;
        v[h * hd + i] = a * std::cos(ang) - b * std::sin(ang);
        v[h * hd + i + hd / 2] = b * std::cos(ang) + a * std::sin(ang);
      }
    }
  };
  std::vector<std::vector<double>> x(T, std::vector<double>(H));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < H; ++i) x[t][i] = W("model.embed_tokens.weight")[ids[t] * H + i];
  }
  for (int64_t l = 0; l < c.num_layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    std::vector<std::vector<double>> q(T), k(T), v(T);
    for (int64_t t = 0; t < T; ++t) {
      auto h = norm(x[t], W(p + "input_layernorm.weight"));
      q[t] = linear(h, W(p + "self_attn.q_proj.weight"), nh * hd, H);
      k[t] = linear(h, W(p + "self_attn.k_proj.weight"), nkv * hd, H);
      v[t] = linear(h, W(p + "self_attn.v_proj.weight"), nkv * hd, H);
      if (c.attention_bias) {
        for (int64_t i = 0; i < nh * hd; ++i) q[t][i] += W(p + "self_attn.q_proj.bias")[i];
        for (int64_t i = 0; i < nkv * hd; ++i) k[t][i] += W(p + "self_attn.k_proj.bias")[i];
        for (int64_t i = 0; i < nkv * hd; ++i) v[t][i] += W(p + "self_attn.v_proj.bias")[i];
      }
      rope(q[t], nh, t);
      rope(k[t], nkv, t);
    }
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> a(nh * hd);
      for (int64_t h = 0; h < nh; ++h) {
        int64_t g = h / (nh / nkv);
        std::vector<double> sc(t + 1);
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j <= t; ++j) {
          for (int64_t i = 0; i < hd; ++i) sc[j] += q[t][h * hd + i] * k[j][g * hd + i];
          sc[j] /= std::sqrt(static_cast<double>(hd));
          mx = std::max(mx, sc[j]);
        }
        for (double& e : sc) sum += (e = std::exp(e - mx));
        for (int64_t j = 0; j <= t; ++j) {
          for (int64_t i = 0; i < hd; ++i) a[h * hd + i] += sc[j] / sum * v[j][g * hd + i];
        }
      }
      auto o = linear(a, W(p + "self_attn.o_proj.weight"), H, nh * hd);
      for (int64_t i = 0; i < H; ++i) x[t][i] += o[i];
      auto h2 = norm(x[t], W(p + "post_attention_layernorm.weight"));
      auto gate = linear(h2, W(p + "mlp.gate_proj.weight"), I, H);
      auto up = linear(h2, W(p + "mlp.up_proj.weight"), I, H);
      for (int64_t i = 0; i < I; ++i) gate[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
      auto d = linear(gate, W(p + "mlp.down_proj.weight"), H, I);
      for (int64_t i = 0; i < H; ++i) x[t][i] += d[i];
    }
  }
  const auto& head = c.tie_word_embeddings ? W("model.embed_tokens.weight") : W("lm_head.weight");
  std::vector<std::vector<double>> logits;
  for (int64_t t = 0; t < T; ++t) {
    logits.push_back(linear(norm(x[t], W("model.norm.weight")), head, c.vocab_size, H));
  }
  return logits;
}

double MaxAbsDiff(std::span<const float> a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

void CheckSynthetic(const Synthetic& syn, const std::vector<int>& tps) {
  loom::testing::TempDir dir;
  WriteSynthetic(syn, dir.path());
  std::vector<int32_t> ids;
  std::mt19937 rng(3);
  for (int i = 0; i < 37; ++i) ids.push_back(static_cast<int32_t>(rng() % 96));
  std::vector<std::vector<double>> ref = Reference(syn, ids);

  auto one = Make(dir.path(), 1, 1, 8, 32);
  ASSERT_NE(one, nullptr);
  Sequence whole(one.get(), Blocks(0, 8));
  std::vector<float> all = whole.Feed(ids, 0, true);
  for (size_t p = 0; p < ids.size(); ++p) {
    EXPECT_LT(MaxAbsDiff(std::span(all).subspan(p * 96, 96), ref[p]), kTol) << p;
  }
  Sequence chunked(one.get(), Blocks(8, 8));
  std::vector<float> all_chunked = chunked.Feed(ids, 5, true);
  EXPECT_LT(MaxAbsDiff(all_chunked, all), kTol);
  for (int tp : tps) {
    auto b = Make(dir.path(), tp, 2, 8, 32);
    ASSERT_NE(b, nullptr) << tp;
    Sequence s1(one.get(), Blocks(16, 8));
    Sequence sn(b.get(), Blocks(0, 8));
    std::vector<std::vector<float>> l1, ln;
    EXPECT_EQ(sn.Greedy(ids, 16, 5, &ln), s1.Greedy(ids, 16, 0, &l1)) << tp;
    for (size_t i = 0; i < l1.size(); ++i) EXPECT_LT(MaxAbsDiff(ln[i], l1[i]), kTol) << tp;
  }
}

TEST(CpuBackendTest, Qwen2StyleCheckpointWithBiasAndTiedEmbeddings) {
  Synthetic syn = MakeSynthetic("qwen2", 8, 4, /*tied=*/true, /*bias=*/true, nullptr, 11);
  ASSERT_EQ(syn.w.count("lm_head.weight"), 0u);
  CheckSynthetic(syn, {2, 4});
}

TEST(CpuBackendTest, LlamaWithLlama3RopeScalingAndFourKvHeads) {
  Json scaling = {{"rope_type", "llama3"},
                  {"factor", 8.0},
                  {"low_freq_factor", 1.0},
                  {"high_freq_factor", 4.0},
                  {"original_max_position_embeddings", 16}};
  Synthetic syn = MakeSynthetic("llama", 4, 4, /*tied=*/false, /*bias=*/false, scaling, 12);
  CheckSynthetic(syn, {2, 4});
}

TEST(CpuBackendTest, Bf16ShardedCheckpointLoadsLikeF32) {
  Synthetic syn = MakeSynthetic("qwen2", 4, 2, /*tied=*/false, /*bias=*/true, nullptr, 13);
  for (auto& [name, v] : syn.w) {
    for (float& x : v) x = Bf16ToFloat(FloatToBf16(x));  // exactly representable in BF16
  }
  loom::testing::TempDir f32_dir, bf16_dir;
  WriteSynthetic(syn, f32_dir.path());
  // The same weights as BF16 in two shards with an index (odd tensors in the second).
  std::ofstream(bf16_dir.path() + "/config.json") << syn.config.dump();
  std::vector<std::vector<uint16_t>> halves;
  std::vector<TensorToWrite> shard[2];
  Json weight_map = Json::object();
  int i = 0;
  for (const auto& [name, v] : syn.w) {
    std::vector<uint16_t> h(v.size());
    for (size_t j = 0; j < v.size(); ++j) h[j] = FloatToBf16(v[j]);
    halves.push_back(std::move(h));
    const int which = i++ % 2;
    shard[which].push_back({name, "BF16", syn.shapes.at(name),
                            std::as_bytes(std::span<const uint16_t>(halves.back()))});
    weight_map[name] = which == 0 ? "a.safetensors" : "b.safetensors";
  }
  ASSERT_TRUE(WriteSafetensors(bf16_dir.File("a.safetensors"), shard[0]).ok());
  ASSERT_TRUE(WriteSafetensors(bf16_dir.File("b.safetensors"), shard[1]).ok());
  std::ofstream(bf16_dir.File("model.safetensors.index.json"))
      << Json{{"weight_map", weight_map}}.dump();

  auto a = Make(f32_dir.path());
  auto b = Make(bf16_dir.path());
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::vector<int32_t> ids = {5, 17, 3, 88, 42, 0, 61};
  Sequence sa(a.get(), Blocks(0, 1)), sb(b.get(), Blocks(0, 1));
  EXPECT_EQ(sa.Feed(ids, 0, true), sb.Feed(ids, 0, true));  // bit for bit
}

}  // namespace
}  // namespace loom::inference
