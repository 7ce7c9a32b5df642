#include "inference/model/model_config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <numbers>

#include "tests/inference/fixture_path.h"
#include "tests/support/temp_dir.h"

namespace loom::inference {
namespace {

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(ModelConfigTest, LoadsTheFixture) {
  Result<ModelConfig> c = LoadModelConfig(loom::testing::FixturePath("tiny-llama"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->model_type, "llama");
  EXPECT_EQ(c->vocab_size, 512);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->intermediate_size, 160);
  EXPECT_EQ(c->num_layers, 2);
  EXPECT_EQ(c->num_heads, 4);
  EXPECT_EQ(c->num_kv_heads, 2);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->max_position_embeddings, 512);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);  // from rope_parameters
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>{2});
}

constexpr const char* kQwen25 = R"({
  "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
  "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
  "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
  "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "rope_scaling": null, "tie_word_embeddings": true, "eos_token_id": 151645,
  "sliding_window": 32768, "use_sliding_window": false })";

TEST(ModelConfigTest, ParsesQwen25WithTopLevelRopeTheta) {
  Result<ModelConfig> c = ParseModelConfig(kQwen25, "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->model_type, "qwen2");
  EXPECT_EQ(c->head_dim, 64);  // 896 / 14
  EXPECT_DOUBLE_EQ(c->rope_theta, 1e6);
  EXPECT_TRUE(c->attention_bias);  // always for qwen2
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>{151645});
}

constexpr const char* kLlama32 = R"({
  "model_type": "llama", "vocab_size": 128256, "hidden_size": 2048,
  "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
  "num_key_value_heads": 8, "head_dim": 64, "max_position_embeddings": 131072,
  "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "tie_word_embeddings": true, "eos_token_id": [128001, 128008, 128009] })";

TEST(ModelConfigTest, ParsesLlama3RopeScalingAndEosList) {
  Result<ModelConfig> c = ParseModelConfig(kLlama32, "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 32.0);
  EXPECT_DOUBLE_EQ(c->rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c->rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
}

TEST(ModelConfigTest, ParsesLlama3ScalingInsideRopeParameters) {
  const char* text = R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 8,
    "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
    "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 8192}})";
  Result<ModelConfig> c = ParseModelConfig(text, "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->num_kv_heads, 2);  // defaults to num_attention_heads
  EXPECT_EQ(c->head_dim, 4);
}

// The reference: HF's _compute_llama3_parameters, in double.
TEST(ModelConfigTest, Llama3InverseFrequenciesMatchTheHfFormula) {
  Result<ModelConfig> c = ParseModelConfig(kLlama32, "config.json");
  ASSERT_TRUE(c.ok());
  std::vector<float> inv = RopeInverseFrequencies(*c);
  ASSERT_EQ(inv.size(), 32u);
  const double factor = 32, lo = 1, hi = 4, old = 8192;
  int scaled = 0, kept = 0, smoothed = 0;
  for (int i = 0; i < 32; ++i) {
    double f = 1.0 / std::pow(500000.0, 2.0 * i / 64.0);
    double wavelen = 2 * std::numbers::pi / f;
    double want;
    if (wavelen < old / hi) {
      want = f;
      ++kept;
    } else if (wavelen > old / lo) {
      want = f / factor;
      ++scaled;
    } else {
      double s = (old / wavelen - lo) / (hi - lo);
      want = (1 - s) * f / factor + s * f;
      ++smoothed;
    }
    EXPECT_NEAR(inv[i], want, 1e-6 * want + 1e-12) << i;
  }
  EXPECT_GT(scaled, 0);
  EXPECT_GT(kept, 0);
  EXPECT_GT(smoothed, 0);
}

TEST(ModelConfigTest, DefaultInverseFrequencies) {
  Result<ModelConfig> c = LoadModelConfig(loom::testing::FixturePath("tiny-llama"));
  ASSERT_TRUE(c.ok());
  std::vector<float> inv = RopeInverseFrequencies(*c);
  ASSERT_EQ(inv.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(inv[i], std::pow(1e4, -2.0 * i / 16), 1e-7);
}

TEST(ModelConfigTest, ErrorsNameTheFileAndTheKey) {
  Result<ModelConfig> c =
      ParseModelConfig(R"({"model_type": "llama", "vocab_size": 10})", "/m/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("/m/config.json"), std::string::npos);
  EXPECT_NE(c.status().message().find("hidden_size"), std::string::npos);

  c = ParseModelConfig(R"({"model_type": "llama", "vocab_size": "x"})", "/m/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("vocab_size"), std::string::npos);

  c = ParseModelConfig(R"({"model_type": "gpt2"})", "/m/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("model_type"), std::string::npos);

  c = ParseModelConfig("{not json", "/m/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("/m/config.json"), std::string::npos);
}

TEST(ModelConfigTest, RejectsUnsupportedRopeScalingAndBadHeads) {
  const std::string base = R"("model_type": "llama", "vocab_size": 10, "hidden_size": 8,
    "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2)";
  Result<ModelConfig> c = ParseModelConfig(
      "{" + base + R"(, "rope_scaling": {"type": "yarn", "factor": 4.0}})", "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("rope_scaling"), std::string::npos);

  c = ParseModelConfig("{" + base + R"(, "num_key_value_heads": 3})", "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("num_attention_heads"), std::string::npos);

  c = ParseModelConfig("{" + base + R"(, "use_sliding_window": true})", "config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("use_sliding_window"), std::string::npos);

  c = ParseModelConfig("{" + base + R"(, "rope_scaling": {"rope_type": "default"}})",
                       "config.json");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
}

TEST(ModelConfigTest, MergesEosIdsFromGenerationConfig) {
  loom::testing::TempDir dir;
  WriteText(dir.File("config.json"), R"({"model_type": "llama", "vocab_size": 200,
    "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
    "num_attention_heads": 2, "eos_token_id": 100})");
  WriteText(dir.File("generation_config.json"), R"({"eos_token_id": [101, 100, 102]})");
  Result<ModelConfig> c = LoadModelConfig(dir.path());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{100, 101, 102}));

  WriteText(dir.File("generation_config.json"), R"({"eos_token_id": "x"})");
  c = LoadModelConfig(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("generation_config.json"), std::string::npos);
  EXPECT_NE(c.status().message().find("eos_token_id"), std::string::npos);
}

TEST(ModelConfigTest, MissingDirectoryIsAnError) {
  Result<ModelConfig> c = LoadModelConfig("/nonexistent/model");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("/nonexistent/model/config.json"), std::string::npos);
}

}  // namespace
}  // namespace loom::inference
