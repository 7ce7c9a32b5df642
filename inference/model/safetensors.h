// Reading (and, for tests and benchmarks, writing) Hugging Face safetensors
// checkpoints: one `model.safetensors`, or shards listed by
// `model.safetensors.index.json`.
//
// Files are memory-mapped read-only; the header of every file is validated when
// it is opened (offsets inside the file, byte size = shape x dtype size, no two
// tensors overlapping), so a later read cannot run off the mapping. Tensors are
// converted to float32 on read (F32, BF16, F16). Errors name the file and the
// tensor. A Checkpoint is immutable after Open: thread-safe for concurrent reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace loom::inference {

enum class DType { kF32, kF16, kBF16, kOther };

// Bytes per element of a safetensors dtype name ("F32", "BF16", "I64", ...); 0 if unknown.
size_t DTypeSize(const std::string& name);

struct TensorInfo {
  std::string name;
  std::string file;        // the file that holds it (for messages)
  std::string dtype_name;  // as written in the header
  DType dtype = DType::kOther;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;  // inside the mapping; valid while the Checkpoint lives
  size_t nbytes = 0;
  int64_t numel() const;
};

// Half-open index range [begin, end).
struct Range {
  int64_t begin = 0;
  int64_t end = 0;
};

class MappedFile;  // defined in safetensors.cc

class Checkpoint {
 public:
  // Opens `dir`/model.safetensors.index.json if it exists, else `dir`/model.safetensors.
  static Result<std::unique_ptr<Checkpoint>> Open(const std::string& dir);
  // Opens one safetensors file.
  static Result<std::unique_ptr<Checkpoint>> OpenFile(const std::string& path);

  // Only Open/OpenFile construct (the key is private).
  class Key {
    friend class Checkpoint;
    Key() = default;
  };
  explicit Checkpoint(Key);
  ~Checkpoint();
  Checkpoint(const Checkpoint&) = delete;
  Checkpoint& operator=(const Checkpoint&) = delete;

  // nullptr when there is no such tensor.
  const TensorInfo* Find(const std::string& name) const;
  std::vector<std::string> TensorNames() const;  // sorted

  // The whole tensor as float32, after checking that its shape is `expected_shape`.
  Result<std::vector<float>> ReadFloat32(const std::string& name,
                                         const std::vector<int64_t>& expected_shape) const;

  // Rows `rows` and columns `cols` of a 2-D tensor of shape [expected_rows,
  // expected_cols], as a row-major [rows.size(), cols.size()] float32 array (the
  // shard of one tensor-parallel rank).
  Result<std::vector<float>> ReadMatrixSlice(const std::string& name, int64_t expected_rows,
                                             int64_t expected_cols, Range rows, Range cols) const;

 private:
  Status AddFile(const std::string& path);

  std::vector<std::unique_ptr<MappedFile>> files_;
  std::map<std::string, TensorInfo, std::less<>> tensors_;
};

// One tensor to write: `data` holds numel x DTypeSize bytes, little-endian.
struct TensorToWrite {
  std::string name;
  std::string dtype_name;  // "F32", "BF16", "F16"
  std::vector<int64_t> shape;
  std::span<const std::byte> data;
};

// Writes a safetensors file (tensors in the given order). For tests, tools and benchmarks.
Status WriteSafetensors(const std::string& path, std::span<const TensorToWrite> tensors);

// float32 -> bf16 / f16 bit patterns (round to nearest even), for writing test checkpoints.
uint16_t FloatToBf16(float f);
uint16_t FloatToF16(float f);
// The conversions used on read.
float Bf16ToFloat(uint16_t h);
float F16ToFloat(uint16_t h);

}  // namespace loom::inference
