// safetensors layout: an 8-byte little-endian header length N, N bytes of JSON
// ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}),
// then the data; offsets are relative to the start of the data.
//
// Every file is mmapped once (read-only, MAP_PRIVATE) and its header validated
// completely at open time, so reads are plain pointer arithmetic afterwards.
// Data may be unaligned (the header length is arbitrary): elements are memcpy'd.
#include "inference/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/json.h"
#include "common/posix.h"

namespace loom::inference {

// An open file descriptor and its read-only mapping, released together.
class MappedFile {
 public:
  MappedFile(std::string path, UniqueFd fd, void* addr, size_t size)
      : path_(std::move(path)), fd_(std::move(fd)), addr_(addr), size_(size) {}

  static Result<std::unique_ptr<MappedFile>> Open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno(errno, "cannot open " + path);
    UniqueFd owned(fd);
    struct stat st {};
    if (::fstat(fd, &st) != 0) return Status::FromErrno(errno, "cannot stat " + path);
    if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(path + ": not a regular file");
    auto size = static_cast<size_t>(st.st_size);
    void* addr = nullptr;
    if (size > 0) {
      addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (addr == MAP_FAILED) return Status::FromErrno(errno, "cannot mmap " + path);
    }
    return std::make_unique<MappedFile>(path, std::move(owned), addr, size);
  }

  ~MappedFile() {
    if (addr_ != nullptr) ::munmap(addr_, size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return static_cast<const std::byte*>(addr_); }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  UniqueFd fd_;
  void* addr_;
  size_t size_;
};

namespace {

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // the format's own limit

DType DTypeFromName(const std::string& name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  return DType::kOther;
}

Status TensorError(const std::string& file, const std::string& tensor, const std::string& what) {
  return Status::Corruption(file + ": tensor \"" + tensor + "\": " + what);
}

// Converts `n` elements of `src` (dtype `t`) to float32.
void ConvertToFloat(DType t, const std::byte* src, size_t n, float* dst) {
  switch (t) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = Bf16ToFloat(h);
      }
      return;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = F16ToFloat(h);
      }
      return;
    case DType::kOther:
      break;
  }
}

Status CheckShape(const TensorInfo& t, const std::vector<int64_t>& expected) {
  if (t.shape == expected) return Status::Ok();
  auto fmt = [](const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
  };
  return Status::InvalidArgument(t.file + ": tensor \"" + t.name + "\" has shape " + fmt(t.shape) +
                                 ", expected " + fmt(expected) +
                                 " (does config.json match the weights?)");
}

Status CheckConvertible(const TensorInfo& t) {
  if (t.dtype != DType::kOther) return Status::Ok();
  return Status::Unimplemented(t.file + ": tensor \"" + t.name + "\" has dtype " + t.dtype_name +
                               "; only F32, BF16 and F16 weights are supported");
}

}  // namespace

size_t DTypeSize(const std::string& name) {
  static const std::map<std::string, size_t, std::less<>> kSizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8},     {"F64", 8}};
  auto it = kSizes.find(name);
  return it == kSizes.end() ? 0 : it->second;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

float Bf16ToFloat(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float F16ToFloat(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      mant &= 0x3ff;
      bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // nan
  uint32_t rounding = 0x7fff + ((bits >> 16) & 1);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

uint16_t FloatToF16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00;      // nan
  if (abs >= 0x477ff000u) return sign | 0x7c00;     // overflow (rounds to >= 65520) -> inf
  if (abs < 0x38800000u) {                          // below the smallest normal: subnormal
    if (abs < 0x33000000u) return sign;             // < 2^-25 rounds to zero
    uint32_t mant = (abs & 0x7fffff) | 0x800000;    // implicit 1
    int shift = 126 - static_cast<int>(abs >> 23);  // 14 + (112 - exp) ... in [14, 24]
    uint32_t half = mant >> (shift);
    uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return sign | static_cast<uint16_t>(half);
  }
  uint32_t e = (abs >> 23) - 127 + 15;
  uint32_t mant = abs & 0x7fffff;
  uint32_t h = (e << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
  return sign | static_cast<uint16_t>(h);
}

Checkpoint::Checkpoint(Key) {}
Checkpoint::~Checkpoint() = default;

Status Checkpoint::AddFile(const std::string& path) {
  LOOM_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  const size_t size = file->size();
  if (size < 8) {
    return Status::Corruption(path + ": truncated (" + std::to_string(size) +
                              " bytes; a safetensors file starts with an 8-byte header length)");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {
    header_len = (header_len << 8) | static_cast<uint8_t>(file->data()[i]);
  }
  if (header_len > kMaxHeaderBytes || header_len > size - 8) {
    return Status::Corruption(path + ": header length " + std::to_string(header_len) +
                              " exceeds the file (" + std::to_string(size) +
                              " bytes): truncated or not a safetensors file");
  }
  std::string_view header_text(reinterpret_cast<const char*>(file->data() + 8), header_len);
  Result<Json> header = ParseJson(header_text);
  if (!header.ok()) return Status::Corruption(path + ": bad header: " + header.status().message());
  if (!header->is_object()) return Status::Corruption(path + ": bad header: not a JSON object");

  const std::byte* data = file->data() + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  struct Span {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Span> spans;
  std::vector<TensorInfo> infos;
  for (const auto& [name, entry] : header->items()) {
    if (name == "__metadata__") continue;
    if (!entry.is_object()) return TensorError(path, name, "header entry is not an object");
    auto dt = entry.find("dtype");
    auto sh = entry.find("shape");
    auto off = entry.find("data_offsets");
    if (dt == entry.end() || !dt->is_string()) return TensorError(path, name, "no dtype");
    if (sh == entry.end() || !sh->is_array()) return TensorError(path, name, "no shape");
    if (off == entry.end() || !off->is_array() || off->size() != 2 ||
        !(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned()) {
      return TensorError(path, name, "data_offsets must be two non-negative integers");
    }
    TensorInfo t;
    t.name = name;
    t.file = path;
    t.dtype_name = dt->get<std::string>();
    t.dtype = DTypeFromName(t.dtype_name);
    size_t elem = DTypeSize(t.dtype_name);
    if (elem == 0) return TensorError(path, name, "unknown dtype \"" + t.dtype_name + "\"");
    uint64_t numel = 1;
    for (const Json& d : *sh) {
      if (!d.is_number_unsigned()) return TensorError(path, name, "shape must be non-negative");
      auto v = d.get<uint64_t>();
      if (v != 0 && numel > (uint64_t{1} << 62) / v) return TensorError(path, name, "too large");
      numel *= v;
      t.shape.push_back(static_cast<int64_t>(v));
    }
    auto begin = (*off)[0].get<uint64_t>();
    auto end = (*off)[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return TensorError(path, name,
                         "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                             "] lie outside the data (" + std::to_string(data_size) +
                             " bytes): the file is truncated or corrupt");
    }
    if (end - begin != numel * elem) {
      return TensorError(path, name,
                         "holds " + std::to_string(end - begin) + " bytes but shape x " +
                             t.dtype_name + " needs " + std::to_string(numel * elem));
    }
    t.data = data + begin;
    t.nbytes = end - begin;
    infos.push_back(std::move(t));
  }
  for (const TensorInfo& t : infos) {
    auto b = static_cast<uint64_t>(t.data - data);
    spans.push_back({b, b + t.nbytes, &t.name});
  }
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].begin < spans[i - 1].end) {
      return TensorError(path, *spans[i].name, "overlaps tensor \"" + *spans[i - 1].name + "\"");
    }
  }
  for (TensorInfo& t : infos) {
    if (tensors_.count(t.name) != 0) {
      return Status::Corruption(path + ": tensor \"" + t.name + "\" also appears in " +
                                tensors_[t.name].file);
    }
    std::string key = t.name;
    tensors_.emplace(std::move(key), std::move(t));
  }
  files_.push_back(std::move(file));
  return Status::Ok();
}

Result<std::unique_ptr<Checkpoint>> Checkpoint::OpenFile(const std::string& path) {
  auto ck = std::make_unique<Checkpoint>(Key());
  LOOM_RETURN_IF_ERROR(ck->AddFile(path));
  return ck;
}

Result<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  std::string index_path = dir + "/model.safetensors.index.json";
  std::ifstream index(index_path, std::ios::binary);
  if (!index) {
    std::string single = dir + "/model.safetensors";
    if (::access(single.c_str(), F_OK) != 0) {
      return Status::NotFound("no model.safetensors or model.safetensors.index.json in " + dir);
    }
    return OpenFile(single);
  }
  std::ostringstream ss;
  ss << index.rdbuf();
  Result<Json> j = ParseJson(ss.str());
  if (!j.ok()) return Status::Corruption(index_path + ": " + j.status().message());
  auto wm = j->is_object() ? j->find("weight_map") : j->end();
  if (!j->is_object() || wm == j->end() || !wm->is_object()) {
    return Status::Corruption(index_path + ": key \"weight_map\" is missing or not an object");
  }
  std::vector<std::string> shards;
  for (const auto& [name, file] : wm->items()) {
    if (!file.is_string()) {
      return Status::Corruption(index_path + ": weight_map[\"" + name + "\"] is not a string");
    }
    auto f = file.get<std::string>();
    if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..") {
      return Status::Corruption(index_path + ": weight_map[\"" + name + "\"] = \"" + f +
                                "\" is not a file name in the model directory");
    }
    if (std::find(shards.begin(), shards.end(), f) == shards.end()) shards.push_back(f);
  }
  auto ck = std::make_unique<Checkpoint>(Key());
  for (const std::string& f : shards) LOOM_RETURN_IF_ERROR(ck->AddFile(dir + "/" + f));
  for (const auto& [name, file] : wm->items()) {
    const TensorInfo* t = ck->Find(name);
    std::string want = dir + "/" + file.get<std::string>();
    if (t == nullptr || t->file != want) {
      return Status::Corruption(index_path + ": tensor \"" + name + "\" is not in " + want);
    }
  }
  return ck;
}

const TensorInfo* Checkpoint::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<std::string> Checkpoint::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, t] : tensors_) names.push_back(name);
  return names;
}

Result<std::vector<float>> Checkpoint::ReadFloat32(
    const std::string& name, const std::vector<int64_t>& expected_shape) const {
  const TensorInfo* t = Find(name);
  if (t == nullptr) return Status::NotFound("checkpoint has no tensor \"" + name + "\"");
  LOOM_RETURN_IF_ERROR(CheckShape(*t, expected_shape));
  LOOM_RETURN_IF_ERROR(CheckConvertible(*t));
  std::vector<float> out(static_cast<size_t>(t->numel()));
  ConvertToFloat(t->dtype, t->data, out.size(), out.data());
  return out;
}

Result<std::vector<float>> Checkpoint::ReadMatrixSlice(const std::string& name,
                                                       int64_t expected_rows, int64_t expected_cols,
                                                       Range rows, Range cols) const {
  const TensorInfo* t = Find(name);
  if (t == nullptr) return Status::NotFound("checkpoint has no tensor \"" + name + "\"");
  LOOM_RETURN_IF_ERROR(CheckShape(*t, {expected_rows, expected_cols}));
  LOOM_RETURN_IF_ERROR(CheckConvertible(*t));
  if (rows.begin < 0 || rows.begin > rows.end || rows.end > expected_rows || cols.begin < 0 ||
      cols.begin > cols.end || cols.end > expected_cols) {
    return Status::InvalidArgument("slice out of range for tensor \"" + name + "\"");
  }
  const size_t elem = DTypeSize(t->dtype_name);
  const auto width = static_cast<size_t>(cols.end - cols.begin);
  std::vector<float> out(static_cast<size_t>(rows.end - rows.begin) * width);
  for (int64_t r = rows.begin; r < rows.end; ++r) {
    const std::byte* src = t->data + (static_cast<size_t>(r * expected_cols + cols.begin)) * elem;
    ConvertToFloat(t->dtype, src, width, out.data() + static_cast<size_t>(r - rows.begin) * width);
  }
  return out;
}

Status WriteSafetensors(const std::string& path, std::span<const TensorToWrite> tensors) {
  Json header = Json::object();
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    size_t elem = DTypeSize(t.dtype_name);
    uint64_t numel = 1;
    for (int64_t d : t.shape) numel *= static_cast<uint64_t>(d);
    if (elem == 0 || numel * elem != t.data.size()) {
      return Status::InvalidArgument("tensor \"" + t.name + "\": data size does not match shape");
    }
    header[t.name] = {{"dtype", t.dtype_name},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  header["__metadata__"] = {{"format", "pt"}};
  std::string text = DumpJson(header);
  while ((text.size() + 8) % 8 != 0) text.push_back(' ');  // keep the data 8-byte aligned
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::FromErrno(errno, "cannot create " + path);
  uint64_t n = text.size();
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out.write(len, 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const TensorToWrite& t : tensors) {
    out.write(reinterpret_cast<const char*>(t.data.data()),
              static_cast<std::streamsize>(t.data.size()));
  }
  out.close();
  if (!out) return Status::IoError("cannot write " + path);
  return Status::Ok();
}

}  // namespace loom::inference
