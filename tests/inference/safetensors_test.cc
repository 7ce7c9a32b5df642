#include "inference/model/safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "tests/inference/fixture_path.h"
#include "tests/support/temp_dir.h"

namespace loom::inference {
namespace {

std::span<const std::byte> Bytes(const std::vector<float>& v) {
  return std::as_bytes(std::span<const float>(v));
}
std::span<const std::byte> Bytes(const std::vector<uint16_t>& v) {
  return std::as_bytes(std::span<const uint16_t>(v));
}

// A file whose header is `header` (raw JSON) followed by `data_bytes` zero bytes.
void WriteRaw(const std::string& path, const std::string& header, size_t data_bytes) {
  std::ofstream out(path, std::ios::binary);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << header << std::string(data_bytes, '\0');
}

bool Mentions(const Status& s, const std::string& what) {
  return s.message().find(what) != std::string::npos;
}

TEST(SafetensorsTest, OpensTheFixture) {
  auto ck = Checkpoint::Open(loom::testing::FixturePath("tiny-llama"));
  ASSERT_TRUE(ck.ok()) << ck.status().ToString();
  const TensorInfo* t = (*ck)->Find("model.embed_tokens.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::kF32);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ((*ck)->Find("no.such.tensor"), nullptr);
  EXPECT_EQ((*ck)->TensorNames().size(), 2u + 9u * 2u + 1u);  // embed, lm_head, 9/layer, norm
}

TEST(SafetensorsTest, RoundTripsF32AndReadsSlices) {
  loom::testing::TempDir dir;
  std::vector<float> a(3 * 4);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) * 0.5f - 1.0f;
  std::vector<float> b = {7.0f};
  std::vector<TensorToWrite> ts = {{"a", "F32", {3, 4}, Bytes(a)}, {"b", "F32", {1}, Bytes(b)}};
  ASSERT_TRUE(WriteSafetensors(dir.File("model.safetensors"), ts).ok());

  auto ck = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ck.ok()) << ck.status().ToString();
  auto full = (*ck)->ReadFloat32("a", {3, 4});
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  EXPECT_EQ(*full, a);
  auto slice = (*ck)->ReadMatrixSlice("a", 3, 4, Range{1, 3}, Range{1, 3});
  ASSERT_TRUE(slice.ok()) << slice.status().ToString();
  EXPECT_EQ(*slice, (std::vector<float>{a[5], a[6], a[9], a[10]}));

  auto wrong = (*ck)->ReadFloat32("a", {4, 3});
  ASSERT_FALSE(wrong.ok());
  EXPECT_TRUE(Mentions(wrong.status(), "\"a\""));
  EXPECT_TRUE(Mentions(wrong.status(), "[3, 4]"));
  auto missing = (*ck)->ReadFloat32("c", {1});
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(Mentions(missing.status(), "\"c\""));
}

TEST(SafetensorsTest, ConvertsBf16AndF16) {
  loom::testing::TempDir dir;
  // bf16: 1.0, -2.5, 0x3e80 = 0.25, +inf.
  std::vector<uint16_t> bf = {0x3f80, 0xc020, 0x3e80, 0x7f80};
  // f16: 1.0, -2.0, 65504 (max), 2^-24 (smallest subnormal), 0x0200 = 2^-15 (subnormal), -0.
  std::vector<uint16_t> hf = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x0200, 0x8000};
  std::vector<TensorToWrite> ts = {{"bf", "BF16", {4}, Bytes(bf)},
                                   {"hf", "F16", {2, 3}, Bytes(hf)}};
  ASSERT_TRUE(WriteSafetensors(dir.File("model.safetensors"), ts).ok());
  auto ck = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ck.ok()) << ck.status().ToString();
  auto b = (*ck)->ReadFloat32("bf", {4});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)[0], 1.0f);
  EXPECT_EQ((*b)[1], -2.5f);
  EXPECT_EQ((*b)[2], 0.25f);
  EXPECT_EQ((*b)[3], std::numeric_limits<float>::infinity());
  auto h = (*ck)->ReadFloat32("hf", {2, 3});
  ASSERT_TRUE(h.ok());
  EXPECT_EQ((*h)[0], 1.0f);
  EXPECT_EQ((*h)[1], -2.0f);
  EXPECT_EQ((*h)[2], 65504.0f);
  EXPECT_EQ((*h)[3], std::ldexp(1.0f, -24));
  EXPECT_EQ((*h)[4], std::ldexp(1.0f, -15));
  EXPECT_EQ((*h)[5], 0.0f);
  EXPECT_TRUE(std::signbit((*h)[5]));
  auto hs = (*ck)->ReadMatrixSlice("hf", 2, 3, Range{1, 2}, Range{0, 2});
  ASSERT_TRUE(hs.ok());
  EXPECT_EQ(*hs, (std::vector<float>{std::ldexp(1.0f, -24), std::ldexp(1.0f, -15)}));
}

TEST(SafetensorsTest, FloatToHalfRoundTrips) {
  for (float f : {0.0f, 1.0f, -3.140625f, 65504.0f, std::ldexp(1.0f, -24), std::ldexp(3.0f, -20),
                  0.1f, -1e-3f}) {
    EXPECT_NEAR(F16ToFloat(FloatToF16(f)), f, std::abs(f) * 1e-3 + 1e-7) << f;
    EXPECT_NEAR(Bf16ToFloat(FloatToBf16(f)), f, std::abs(f) * 8e-3) << f;
  }
  EXPECT_EQ(FloatToF16(1e6f), 0x7c00);  // overflow -> inf
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
}

TEST(SafetensorsTest, RejectsTruncatedFile) {
  loom::testing::TempDir dir;
  std::vector<float> a(64, 1.0f);
  std::vector<TensorToWrite> ts = {{"weight", "F32", {8, 8}, Bytes(a)}};
  std::string path = dir.File("model.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, ts).ok());
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 4);
  auto ck = Checkpoint::OpenFile(path);
  ASSERT_FALSE(ck.ok());
  EXPECT_TRUE(Mentions(ck.status(), path));
  EXPECT_TRUE(Mentions(ck.status(), "\"weight\""));
  EXPECT_TRUE(Mentions(ck.status(), "truncated"));

  std::filesystem::resize_file(path, 5);
  ck = Checkpoint::OpenFile(path);
  ASSERT_FALSE(ck.ok());
  EXPECT_TRUE(Mentions(ck.status(), "truncated"));

  std::filesystem::resize_file(path, 20);  // header length points past the end
  ck = Checkpoint::OpenFile(path);
  ASSERT_FALSE(ck.ok());
  EXPECT_TRUE(Mentions(ck.status(), path));
}

TEST(SafetensorsTest, RejectsBadHeaders) {
  loom::testing::TempDir dir;
  std::string path = dir.File("x.safetensors");
  struct Case {
    std::string header;
    size_t data;
    std::string mention;
  };
  const Case cases[] = {
      {"{not json", 0, "bad header"},
      {"[1, 2]", 0, "not a JSON object"},
      {R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", 8, "\"w\""},
      {R"({"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}})", 8, "Q4"},
      {R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8, "\"w\""},
      {R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", 8, "dtype"},
      // sizes: 3 floats declared in 8 bytes
      {R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 12, "needs 12"},
      // offsets beyond the data
      {R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})", 16, "outside"},
      // two tensors overlapping
      {R"({"u": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
           "w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
       12, "overlaps"},
  };
  for (const Case& c : cases) {
    WriteRaw(path, c.header, c.data);
    auto ck = Checkpoint::OpenFile(path);
    ASSERT_FALSE(ck.ok()) << c.header;
    EXPECT_TRUE(Mentions(ck.status(), path)) << ck.status().ToString();
    EXPECT_TRUE(Mentions(ck.status(), c.mention)) << ck.status().ToString();
  }
  // A valid header with an unsupported but well-formed dtype opens; reading it fails clearly.
  WriteRaw(path, R"({"ids": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}})", 16);
  auto ck = Checkpoint::OpenFile(path);
  ASSERT_TRUE(ck.ok()) << ck.status().ToString();
  auto r = (*ck)->ReadFloat32("ids", {2});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Mentions(r.status(), "\"ids\""));
  EXPECT_TRUE(Mentions(r.status(), "I64"));
}

TEST(SafetensorsTest, OpensShardedIndex) {
  loom::testing::TempDir dir;
  std::vector<float> a = {1, 2, 3, 4};
  std::vector<float> b = {5, 6};
  std::vector<TensorToWrite> s1 = {{"a", "F32", {2, 2}, Bytes(a)}};
  std::vector<TensorToWrite> s2 = {{"b", "F32", {2}, Bytes(b)}};
  ASSERT_TRUE(WriteSafetensors(dir.File("model-00001-of-00002.safetensors"), s1).ok());
  ASSERT_TRUE(WriteSafetensors(dir.File("model-00002-of-00002.safetensors"), s2).ok());
  std::ofstream(dir.File("model.safetensors.index.json"))
      << R"({"metadata": {"total_size": 24}, "weight_map": {
            "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}})";
  auto ck = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ck.ok()) << ck.status().ToString();
  EXPECT_EQ(*(*ck)->ReadFloat32("a", {2, 2}), a);
  EXPECT_EQ(*(*ck)->ReadFloat32("b", {2}), b);

  // An index naming a tensor that its shard does not hold.
  std::ofstream(dir.File("model.safetensors.index.json"))
      << R"({"weight_map": {"a": "model-00002-of-00002.safetensors"}})";
  ck = Checkpoint::Open(dir.path());
  ASSERT_FALSE(ck.ok());
  EXPECT_TRUE(Mentions(ck.status(), "\"a\""));

  // An index escaping the model directory.
  std::ofstream(dir.File("model.safetensors.index.json"))
      << R"({"weight_map": {"a": "../evil.safetensors"}})";
  ck = Checkpoint::Open(dir.path());
  ASSERT_FALSE(ck.ok());
  EXPECT_TRUE(Mentions(ck.status(), "evil"));

  // A missing shard.
  std::ofstream(dir.File("model.safetensors.index.json"))
      << R"({"weight_map": {"a": "model-00003-of-00002.safetensors"}})";
  ck = Checkpoint::Open(dir.path());
  ASSERT_FALSE(ck.ok());
  EXPECT_TRUE(Mentions(ck.status(), "model-00003-of-00002.safetensors"));
}

TEST(SafetensorsTest, MissingCheckpointIsNotFound) {
  loom::testing::TempDir dir;
  auto ck = Checkpoint::Open(dir.path());
  ASSERT_FALSE(ck.ok());
  EXPECT_EQ(ck.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace loom::inference
