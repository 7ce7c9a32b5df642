// The CUDA backend (see cuda_backend.h): host side. Each tensor-parallel rank
// owns one GPU: its shard of the weights (bf16), its heads' share of the KV
// cache, a stream, a cuBLAS handle, step buffers and its captured decode graphs.
//
// A step is planned once on the caller's thread into a pinned int32 array (the
// "meta": tokens, positions, sequence of each row, KV slot of each row, logit
// rows, block tables), which each rank copies to its GPU as the first operation
// of the step. Everything a step enqueues reads its inputs from fixed device
// addresses, so a decode step can be captured as a CUDA graph and replayed
// with only the meta changed. The first step of each (batch, block-table
// width) runs eagerly (which also loads its kernels) and is then captured.
#include "inference/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <utility>

#include "common/log.h"
#include "inference/cuda/check.h"
#include "inference/cuda/kernels.h"
#include "inference/cuda/nccl_communicator.h"
#include "inference/model/cpu/thread_pool.h"
#include "inference/model/safetensors.h"

namespace loom::inference {
namespace {

using cuda::bf16;

// Keys per context part for attention kernel 2 (a multiple of its 128-key chunk).
constexpr int kAttentionPartLen = 256;

std::string MiB(size_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20); }

// cudaMalloc'd (or, Pinned, cudaHostAlloc'd) bytes, freed with their owner.
template <bool Pinned>
class Buffer {
 public:
  Buffer() = default;
  ~Buffer() { Free(); }
  Buffer(Buffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      Free();
      p_ = std::exchange(o.p_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }

  // Replaces the contents with `bytes` uninitialized bytes.
  Status Allocate(size_t bytes, const std::string& what) {
    Free();
    if (bytes == 0) return Status::Ok();
    cudaError_t e =
        Pinned ? cudaHostAlloc(&p_, bytes, cudaHostAllocPortable) : cudaMalloc(&p_, bytes);
    if (e != cudaSuccess) {
      p_ = nullptr;
      cudaGetLastError();  // clear it: the failure is reported here
      return Status::ResourceExhausted(std::string("out of ") + (Pinned ? "pinned host" : "GPU") +
                                       " memory: " + what + " needs " + MiB(bytes) + " MiB (" +
                                       cudaGetErrorString(e) + ")");
    }
    bytes_ = bytes;
    return Status::Ok();
  }

  template <class T>
  T* get() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void Free() {
    if (p_ != nullptr) Pinned ? cudaFreeHost(p_) : cudaFree(p_);
    p_ = nullptr;
    bytes_ = 0;
  }
  void* p_ = nullptr;
  size_t bytes_ = 0;
};
using DeviceArray = Buffer<false>;
using HostArray = Buffer<true>;

struct Layer {
  DeviceArray attn_norm;  // [H]
  DeviceArray wqkv;       // [(nq + 2*nkv) * hd, H]: this rank's q rows, then k, then v
  DeviceArray bqkv;       // float [(nq + 2*nkv) * hd]; empty without attention bias
  DeviceArray wo;         // [H, nq * hd]
  DeviceArray mlp_norm;   // [H]
  DeviceArray wgu;        // [2 * inter, H]: gate rows, then up rows
  DeviceArray wd;         // [H, inter]
  DeviceArray k_cache;    // [num_kv_blocks, block_size, nkv, hd]
  DeviceArray v_cache;
};

// The buffers of a step, grown (never shrunk) to the largest step seen.
struct Scratch {
  int64_t rows = 0, logit_rows = 0;
  size_t meta_ints = 0, work_floats = 0;
  DeviceArray x;       // float [rows, H]: the residual stream
  DeviceArray delta;   // float [rows, H]: o_proj / down_proj output (all-reduced)
  DeviceArray h;       // bf16 [rows, H]: normed input of the next GEMM
  DeviceArray qkv;     // float [rows, (nq + 2*nkv) * hd]
  DeviceArray attn;    // bf16 [rows, nq * hd]
  DeviceArray gu;      // float [rows, 2 * inter]
  DeviceArray act;     // bf16 [rows, inter]
  DeviceArray local;   // float [logit_rows, vocab_rows]: this rank's vocabulary slice
  DeviceArray gather;  // float [tp, logit_rows, vocab_rows]
  DeviceArray logits;  // float [logit_rows, V] (rank 0)
  DeviceArray argmax;  // int32 [logit_rows] (rank 0)
  DeviceArray meta;    // int32 [meta_ints]
  DeviceArray work;    // float: attention parts
  DeviceArray done;    // int [rows, nkv]: attention kernel 2's finished parts, kept 0
};

struct Rank : TensorParallelShard {
  int index = 0, device = 0, sm_count = 0;
  int64_t vocab_begin = 0, vocab_rows = 0;
  std::vector<Layer> layers;
  DeviceArray embed;           // [V, H]
  DeviceArray lm_head;         // [vocab_rows, H]; empty when tied to embed
  DeviceArray final_norm;      // [H]
  DeviceArray inv_freq;        // float [hd / 2]
  const bf16* head = nullptr;  // this rank's lm_head rows (in lm_head or embed)
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  DeviceArray cublas_workspace;
  std::unique_ptr<cuda::NcclCommunicator> comm;  // null at tp 1 without NCCL
  Scratch s;
  std::map<std::pair<int, int>, cudaGraphExec_t> graphs;  // (rows, width) -> decode graph
  std::set<std::pair<int, int>> eager_only;               // shapes whose capture failed
  int64_t graph_generation = 0;  // of the pinned buffers the graphs read and write

  Rank() = default;
  Rank(const Rank&) = delete;
  Rank& operator=(const Rank&) = delete;
  ~Rank() {
    cudaSetDevice(device);  // the buffers below are freed on this device after the body
    ClearGraphs();
    if (cublas != nullptr) cublasDestroy(cublas);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
  void ClearGraphs() {
    for (auto& [key, exec] : graphs) cudaGraphExecDestroy(exec);
    graphs.clear();
  }
};

// A step, planned on the caller's thread; its meta is in the backend's pinned buffer.
struct Plan {
  int T = 0, R = 0, S = 0, W = 0;  // rows, logit rows, sequences, block-table width
  bool graph = false;              // a decode step to run from a graph
  int parts = 1, part_len = 0;     // attention split over the context
  size_t meta_ints = 0;
  std::vector<int32_t> row_step;   // [R] the step each logit row belongs to
  std::vector<char> row_returned;  // [R] its logits go to StepOutput::logits
};

int NextPowerOfTwo(int v) {
  int p = 1;
  while (p < v) p *= 2;
  return p;
}

class CudaBackendImpl final : public CudaBackend {
 public:
  CudaBackendImpl(ModelConfig config, CudaBackendOptions options)
      : config_(std::move(config)), options_(std::move(options)) {}
  ~CudaBackendImpl() override {
    // Tearing down a communicator may wait for its peers: finalize them together.
    std::vector<cuda::NcclCommunicator*> comms;
    for (auto& r : ranks_) {
      if (r->comm) comms.push_back(r->comm.get());
    }
    cuda::FinalizeNcclGroup(comms);
  }

  Status Load(const Checkpoint& ck);

  const ModelConfig& config() const override { return config_; }
  int32_t block_size() const override { return options_.block_size; }
  int32_t num_kv_blocks() const override { return num_kv_blocks_; }
  Status Forward(std::span<const SeqStep> batch, StepOutput* out) override;
  Status CopyBlock(int32_t src, int32_t dst) override;
  CudaBackendStats stats() const override { return stats_; }
  std::string device_name() const override { return device_name_; }

 private:
  Status LoadRank(const Checkpoint& ck, Rank& r);
  Status AllocateKvCache(Rank& r);
  Status MakePlan(std::span<const SeqStep> batch, Plan* plan);
  Status Reserve(Rank& r, const Plan& plan);
  Status RunRank(Rank& r, const Plan& plan);
  Status Enqueue(Rank& r, const Plan& plan);
  Status MatMul(Rank& r, const bf16* x, int T, int64_t K, const bf16* w, int64_t N, float* y);
  Status ForEachRank(const std::function<Status(Rank&)>& fn);
  size_t KvBytesPerBlock(const Rank& r) const {
    return 2 * static_cast<size_t>(options_.block_size) * r.nkv * config_.head_dim * sizeof(bf16) *
           config_.num_layers;
  }

  ModelConfig config_;
  CudaBackendOptions options_;
  int32_t num_kv_blocks_ = 0;
  bool split_vocab_ = false;  // lm_head rows split over ranks (V % tp == 0)
  bool gemv_ok_ = false;      // every GEMM's K is a multiple of 8 (16-byte rows)
  std::vector<std::unique_ptr<Rank>> ranks_;
  std::unique_ptr<cpu::ThreadPool> gang_;  // one thread per rank when tp > 1
  // Pinned buffers shared by the ranks: the meta (read by every rank), the
  // argmax and the returned logits rows (written by rank 0).
  HostArray host_meta_, host_argmax_, host_logits_;
  int64_t host_generation_ = 0;  // bumped when host_meta_ or host_argmax_ move
  CudaBackendStats stats_;
  std::string device_name_;
};

// Uploads rows [rows) x columns [cols) of the 2-D tensor `name` [R, C] to `dst`
// as bf16; a BF16 tensor taken whole in its columns is copied as it is.
Status UploadMatrix(const Checkpoint& ck, const std::string& name, int64_t R, int64_t C, Range rows,
                    Range cols, bf16* dst) {
  const TensorInfo* t = ck.Find(name);
  const int64_t n = (rows.end - rows.begin) * (cols.end - cols.begin);
  if (t != nullptr && t->dtype == DType::kBF16 && t->shape == std::vector<int64_t>{R, C} &&
      cols.begin == 0 && cols.end == C) {
    LOOM_CUDA_CHECK(cudaMemcpy(dst, t->data + rows.begin * C * sizeof(bf16), n * sizeof(bf16),
                               cudaMemcpyHostToDevice));
    return Status::Ok();
  }
  LOOM_ASSIGN_OR_RETURN(std::vector<float> f, ck.ReadMatrixSlice(name, R, C, rows, cols));
  std::vector<uint16_t> b(f.size());
  for (size_t i = 0; i < f.size(); ++i) b[i] = FloatToBf16(f[i]);
  LOOM_CUDA_CHECK(cudaMemcpy(dst, b.data(), b.size() * sizeof(uint16_t), cudaMemcpyHostToDevice));
  return Status::Ok();
}

Status UploadVector(const Checkpoint& ck, const std::string& name, int64_t n, DeviceArray* dst) {
  LOOM_ASSIGN_OR_RETURN(std::vector<float> f, ck.ReadFloat32(name, {n}));
  std::vector<uint16_t> b(f.size());
  for (size_t i = 0; i < f.size(); ++i) b[i] = FloatToBf16(f[i]);
  LOOM_RETURN_IF_ERROR(dst->Allocate(b.size() * sizeof(uint16_t), name));
  LOOM_CUDA_CHECK(
      cudaMemcpy(dst->get<void>(), b.data(), b.size() * sizeof(uint16_t), cudaMemcpyHostToDevice));
  return Status::Ok();
}

Status UploadFloats(const std::vector<float>& f, const std::string& what, DeviceArray* dst) {
  LOOM_RETURN_IF_ERROR(dst->Allocate(f.size() * sizeof(float), what));
  LOOM_CUDA_CHECK(
      cudaMemcpy(dst->get<void>(), f.data(), f.size() * sizeof(float), cudaMemcpyHostToDevice));
  return Status::Ok();
}

std::string LayerName(int64_t l, const char* suffix) {
  return "model.layers." + std::to_string(l) + "." + suffix;
}

Status CudaBackendImpl::LoadRank(const Checkpoint& ck, Rank& r) {
  const ModelConfig& c = config_;
  const int64_t H = c.hidden_size, hd = c.head_dim, V = c.vocab_size, tp = options_.tp;
  static_cast<TensorParallelShard&>(r) = ShardOf(c, static_cast<int>(tp), r.index);
  const Range all_h{0, H};
  const Range q_rows{r.q_begin * hd, (r.q_begin + r.nq) * hd};
  const Range kv_rows{r.kv_begin * hd, (r.kv_begin + r.nkv) * hd};
  const Range i_rows{r.index * r.inter, (r.index + 1) * r.inter};
  const int64_t nq_rows = r.nq * hd, nkv_rows = r.nkv * hd;

  r.layers.resize(static_cast<size_t>(c.num_layers));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    Layer& L = r.layers[l];
    LOOM_RETURN_IF_ERROR(UploadVector(ck, LayerName(l, "input_layernorm.weight"), H, &L.attn_norm));
    LOOM_RETURN_IF_ERROR(
        UploadVector(ck, LayerName(l, "post_attention_layernorm.weight"), H, &L.mlp_norm));
    LOOM_RETURN_IF_ERROR(
        L.wqkv.Allocate((nq_rows + 2 * nkv_rows) * H * sizeof(bf16), LayerName(l, "qkv")));
    bf16* qkv = L.wqkv.get<bf16>();
    LOOM_RETURN_IF_ERROR(UploadMatrix(ck, LayerName(l, "self_attn.q_proj.weight"), c.num_heads * hd,
                                      H, q_rows, all_h, qkv));
    LOOM_RETURN_IF_ERROR(UploadMatrix(ck, LayerName(l, "self_attn.k_proj.weight"),
                                      c.num_kv_heads * hd, H, kv_rows, all_h, qkv + nq_rows * H));
    LOOM_RETURN_IF_ERROR(UploadMatrix(ck, LayerName(l, "self_attn.v_proj.weight"),
                                      c.num_kv_heads * hd, H, kv_rows, all_h,
                                      qkv + (nq_rows + nkv_rows) * H));
    if (c.attention_bias) {
      LOOM_ASSIGN_OR_RETURN(
          auto bq, ck.ReadFloat32(LayerName(l, "self_attn.q_proj.bias"), {c.num_heads * hd}));
      LOOM_ASSIGN_OR_RETURN(
          auto bk, ck.ReadFloat32(LayerName(l, "self_attn.k_proj.bias"), {c.num_kv_heads * hd}));
      LOOM_ASSIGN_OR_RETURN(
          auto bv, ck.ReadFloat32(LayerName(l, "self_attn.v_proj.bias"), {c.num_kv_heads * hd}));
      std::vector<float> b(bq.begin() + q_rows.begin, bq.begin() + q_rows.end);
      b.insert(b.end(), bk.begin() + kv_rows.begin, bk.begin() + kv_rows.end);
      b.insert(b.end(), bv.begin() + kv_rows.begin, bv.begin() + kv_rows.end);
      LOOM_RETURN_IF_ERROR(UploadFloats(b, LayerName(l, "qkv bias"), &L.bqkv));
    }
    LOOM_RETURN_IF_ERROR(L.wo.Allocate(H * nq_rows * sizeof(bf16), LayerName(l, "o_proj")));
    LOOM_RETURN_IF_ERROR(UploadMatrix(ck, LayerName(l, "self_attn.o_proj.weight"), H,
                                      c.num_heads * hd, all_h, q_rows, L.wo.get<bf16>()));
    LOOM_RETURN_IF_ERROR(L.wgu.Allocate(2 * r.inter * H * sizeof(bf16), LayerName(l, "gate_up")));
    LOOM_RETURN_IF_ERROR(UploadMatrix(ck, LayerName(l, "mlp.gate_proj.weight"), c.intermediate_size,
                                      H, i_rows, all_h, L.wgu.get<bf16>()));
    LOOM_RETURN_IF_ERROR(UploadMatrix(ck, LayerName(l, "mlp.up_proj.weight"), c.intermediate_size,
                                      H, i_rows, all_h, L.wgu.get<bf16>() + r.inter * H));
    LOOM_RETURN_IF_ERROR(L.wd.Allocate(H * r.inter * sizeof(bf16), LayerName(l, "down_proj")));
    LOOM_RETURN_IF_ERROR(UploadMatrix(ck, LayerName(l, "mlp.down_proj.weight"), H,
                                      c.intermediate_size, all_h, i_rows, L.wd.get<bf16>()));
  }

  LOOM_RETURN_IF_ERROR(r.embed.Allocate(V * H * sizeof(bf16), "model.embed_tokens.weight"));
  LOOM_RETURN_IF_ERROR(
      UploadMatrix(ck, "model.embed_tokens.weight", V, H, {0, V}, all_h, r.embed.get<bf16>()));
  LOOM_RETURN_IF_ERROR(UploadVector(ck, "model.norm.weight", H, &r.final_norm));
  LOOM_RETURN_IF_ERROR(UploadFloats(RopeInverseFrequencies(c), "inv_freq", &r.inv_freq));
  r.vocab_rows = split_vocab_ ? V / tp : V;
  r.vocab_begin = split_vocab_ ? r.index * r.vocab_rows : 0;
  if (c.tie_word_embeddings) {
    r.head = r.embed.get<bf16>() + r.vocab_begin * H;
  } else {
    if (ck.Find("lm_head.weight") == nullptr) {
      return Status::NotFound(
          "checkpoint has no tensor \"lm_head.weight\" and config.json has "
          "tie_word_embeddings false");
    }
    LOOM_RETURN_IF_ERROR(r.lm_head.Allocate(r.vocab_rows * H * sizeof(bf16), "lm_head.weight"));
    LOOM_RETURN_IF_ERROR(UploadMatrix(ck, "lm_head.weight", V, H,
                                      {r.vocab_begin, r.vocab_begin + r.vocab_rows}, all_h,
                                      r.lm_head.get<bf16>()));
    r.head = r.lm_head.get<bf16>();
  }
  return Status::Ok();
}

Status CudaBackendImpl::AllocateKvCache(Rank& r) {
  LOOM_CUDA_CHECK(cudaSetDevice(r.device));
  const size_t bytes = KvBytesPerBlock(r) / (2 * config_.num_layers) * num_kv_blocks_;
  for (size_t l = 0; l < r.layers.size(); ++l) {
    Layer& L = r.layers[l];
    LOOM_RETURN_IF_ERROR(L.k_cache.Allocate(bytes, "the KV cache"));
    LOOM_RETURN_IF_ERROR(L.v_cache.Allocate(bytes, "the KV cache"));
    LOOM_CUDA_CHECK(cudaMemsetAsync(L.k_cache.get<void>(), 0, bytes, r.stream));
    LOOM_CUDA_CHECK(cudaMemsetAsync(L.v_cache.get<void>(), 0, bytes, r.stream));
  }
  LOOM_CUDA_CHECK(cudaStreamSynchronize(r.stream));
  return Status::Ok();
}

Status CudaBackendImpl::Load(const Checkpoint& ck) {
  const ModelConfig& c = config_;
  const int tp = options_.tp;
  LOOM_RETURN_IF_ERROR(CheckTensorParallel(c, tp));
  if (options_.block_size < 1 || options_.num_kv_blocks < 0) {
    return Status::InvalidArgument("block_size must be positive and num_kv_blocks not negative");
  }
  if (options_.attention_kernel != 1 && options_.attention_kernel != 2) {
    return Status::InvalidArgument("attention_kernel must be 1 or 2, not " +
                                   std::to_string(options_.attention_kernel));
  }
  if (options_.attention_part_len < 0) {
    return Status::InvalidArgument("attention_part_len must not be negative");
  }
  if (!cuda::SupportedHeadDim(static_cast<int>(c.head_dim))) {
    return Status::InvalidArgument("the CUDA backend supports head_dim 16, 32, 64 and 128, not " +
                                   std::to_string(c.head_dim));
  }
  if (c.num_heads / c.num_kv_heads > cuda::kMaxQueryGroup) {
    return Status::InvalidArgument("the CUDA backend supports at most " +
                                   std::to_string(cuda::kMaxQueryGroup) +
                                   " query heads per KV head");
  }
  if (options_.devices.empty()) {
    for (int i = 0; i < tp; ++i) options_.devices.push_back(i);
  }
  if (static_cast<int>(options_.devices.size()) != tp) {
    return Status::InvalidArgument("tp=" + std::to_string(tp) + " needs " + std::to_string(tp) +
                                   " devices, " + std::to_string(options_.devices.size()) +
                                   " given");
  }
  const int count = CudaDeviceCount();
  for (int d : options_.devices) {
    if (d < 0 || d >= count) {
      return Status::FailedPrecondition("CUDA device " + std::to_string(d) +
                                        " is not available (this machine has " +
                                        std::to_string(count) + " GPU" + (count == 1 ? "" : "s") +
                                        "; tp=" + std::to_string(tp) + " needs one per rank)");
    }
  }
  split_vocab_ = tp > 1 && c.vocab_size % tp == 0;
  gemv_ok_ = c.hidden_size % 8 == 0 && (c.intermediate_size / tp) % 8 == 0 &&
             (c.num_heads / tp * c.head_dim) % 8 == 0;

  std::vector<std::unique_ptr<cuda::NcclCommunicator>> comms;
  if (tp > 1 || options_.nccl_at_tp1) {
    LOOM_ASSIGN_OR_RETURN(comms, cuda::MakeNcclGroup(options_.devices));
  }
  for (int i = 0; i < tp; ++i) {
    auto r = std::make_unique<Rank>();
    r->index = i;
    r->device = options_.devices[i];
    LOOM_CUDA_CHECK(cudaSetDevice(r->device));
    LOOM_CUDA_CHECK(
        cudaDeviceGetAttribute(&r->sm_count, cudaDevAttrMultiProcessorCount, r->device));
    LOOM_CUDA_CHECK(cudaStreamCreateWithFlags(&r->stream, cudaStreamNonBlocking));
    LOOM_CUDA_CHECK(cublasCreate(&r->cublas));
    LOOM_CUDA_CHECK(cublasSetStream(r->cublas, r->stream));
    // An explicit workspace: cuBLAS must not allocate while a graph is captured.
    const size_t workspace = size_t{32} << 20;
    LOOM_RETURN_IF_ERROR(r->cublas_workspace.Allocate(workspace, "the cuBLAS workspace"));
    LOOM_CUDA_CHECK(cublasSetWorkspace(r->cublas, r->cublas_workspace.get<void>(), workspace));
    if (!comms.empty()) {
      r->comm = std::move(comms[i]);
      r->comm->set_stream(r->stream);
    }
    LOOM_RETURN_IF_ERROR(LoadRank(ck, *r));
    ranks_.push_back(std::move(r));
  }

  // Slots (block x block_size + offset) are int32 in the step's meta.
  const int64_t max_blocks = std::numeric_limits<int32_t>::max() / options_.block_size;
  if (options_.num_kv_blocks > max_blocks) {
    return Status::InvalidArgument("num_kv_blocks x block_size must stay below 2^31");
  }
  num_kv_blocks_ = options_.num_kv_blocks;
  if (num_kv_blocks_ == 0) {
    // What is free after the weights, less the step buffers of a 2,048-token
    // step and some room for cuBLAS and NCCL, times kv_memory_fraction.
    int64_t blocks = -1;
    for (auto& r : ranks_) {
      LOOM_CUDA_CHECK(cudaSetDevice(r->device));
      size_t free = 0, total = 0;
      LOOM_CUDA_CHECK(cudaMemGetInfo(&free, &total));
      const size_t step =
          size_t{2048} * (c.hidden_size * 10 + (r->nq + 2 * r->nkv) * c.head_dim * 4 +
                          r->nq * c.head_dim * 2 + r->inter * 10);
      const size_t reserve = step + (size_t{512} << 20);
      const double usable =
          free > reserve ? static_cast<double>(free - reserve) * options_.kv_memory_fraction : 0;
      const auto b = static_cast<int64_t>(usable / static_cast<double>(KvBytesPerBlock(*r)));
      blocks = blocks < 0 ? b : std::min(blocks, b);
    }
    num_kv_blocks_ = static_cast<int32_t>(std::min<int64_t>(blocks, max_blocks));
    if (num_kv_blocks_ < 1) {
      return Status::ResourceExhausted("no GPU memory is left for the KV cache after the weights");
    }
  }
  for (auto& r : ranks_) {
    LOOM_RETURN_IF_ERROR(AllocateKvCache(*r));
    // The weights went up with cudaMemcpy on the legacy stream, which a pageable
    // source lets return before the copy ends, and steps run on a non-blocking
    // stream that does not wait for it.
    LOOM_CUDA_CHECK(cudaSetDevice(r->device));
    LOOM_CUDA_CHECK(cudaDeviceSynchronize());
  }
  if (tp > 1) gang_ = std::make_unique<cpu::ThreadPool>(tp);

  cudaDeviceProp prop;
  LOOM_CUDA_CHECK(cudaGetDeviceProperties(&prop, options_.devices[0]));
  device_name_ = std::string(prop.name) + " x" + std::to_string(tp);
  return Status::Ok();
}

Status CudaBackendImpl::MakePlan(std::span<const SeqStep> batch, Plan* p) {
  const int32_t bs = options_.block_size;
  p->S = static_cast<int>(batch.size());
  bool decode = true;
  int max_context = 0;
  for (const SeqStep& st : batch) {
    const int n = static_cast<int>(st.tokens.size());
    const int end = st.start_pos + n;
    p->T += n;
    p->R += st.all_logits ? n : 1;
    p->W = std::max(p->W, (end + bs - 1) / bs);
    max_context = std::max(max_context, end);
    decode = decode && n == 1 && !st.all_logits;
  }
  p->graph = decode && options_.cuda_graphs && p->S <= options_.max_graph_batch;
  if (p->graph) {
    // Graphs are kept per width: round it up so that a growing context reuses them.
    p->W = NextPowerOfTwo(p->W);
    max_context = p->W * bs;
  }
  // Split the context when the rows x KV heads would leave SMs idle.
  const Rank& r0 = *ranks_[0];
  const int blocks = p->T * static_cast<int>(r0.nkv);
  const int want = 2 * r0.sm_count;
  p->parts = 1;
  if (options_.attention_part_len > 0) {
    p->parts = (max_context + options_.attention_part_len - 1) / options_.attention_part_len;
  } else if (blocks < want && options_.attention_kernel == 2) {
    p->parts = (max_context + kAttentionPartLen - 1) / kAttentionPartLen;
  } else if (blocks < want) {
    p->parts = std::max(1, std::min((want + blocks - 1) / blocks, (max_context + 63) / 64));
  }
  p->part_len = (max_context + p->parts - 1) / p->parts;
  p->meta_ints = 4 * static_cast<size_t>(p->T) + p->R + static_cast<size_t>(p->S) * p->W;

  // Pinned buffers: moving them invalidates every captured graph.
  if (host_meta_.bytes() < p->meta_ints * sizeof(int32_t) ||
      host_argmax_.bytes() < p->R * sizeof(int32_t)) {
    const size_t ints = std::max(p->meta_ints, host_meta_.bytes() / sizeof(int32_t)) * 2;
    const size_t rows = std::max<size_t>(p->R, host_argmax_.bytes() / sizeof(int32_t)) * 2;
    LOOM_RETURN_IF_ERROR(host_meta_.Allocate(ints * sizeof(int32_t), "the step metadata"));
    LOOM_RETURN_IF_ERROR(host_argmax_.Allocate(rows * sizeof(int32_t), "the argmax"));
    ++host_generation_;
  }
  int32_t* m = host_meta_.get<int32_t>();
  int32_t *tokens = m, *pos = m + p->T, *seq = m + 2 * p->T, *slot = m + 3 * p->T;
  int32_t *rows = m + 4 * p->T, *tables = rows + p->R;
  p->row_step.clear();
  p->row_returned.clear();
  int t = 0;
  for (int s = 0; s < p->S; ++s) {
    const SeqStep& st = batch[s];
    const int n = static_cast<int>(st.tokens.size());
    for (int i = 0; i < n; ++i, ++t) {
      const int32_t ps = st.start_pos + i;
      tokens[t] = st.tokens[i];
      pos[t] = ps;
      seq[t] = s;
      slot[t] = st.block_table[ps / bs] * bs + ps % bs;
      if (st.all_logits || i + 1 == n) {
        rows[p->row_step.size()] = t;
        p->row_step.push_back(s);
        p->row_returned.push_back(st.all_logits || !st.greedy);
      }
    }
    const int used = (st.start_pos + n + bs - 1) / bs;
    for (int j = 0; j < p->W; ++j) tables[s * p->W + j] = j < used ? st.block_table[j] : 0;
  }
  return Status::Ok();
}

Status CudaBackendImpl::Reserve(Rank& r, const Plan& p) {
  Scratch& s = r.s;
  const size_t work = cuda::AttentionWorkFloats(p.T, static_cast<int>(r.nq),
                                                static_cast<int>(config_.head_dim), p.parts);
  if (r.graph_generation != host_generation_) {
    r.ClearGraphs();
    r.eager_only.clear();  // a capture that failed may work with the new buffers
    r.graph_generation = host_generation_;
  }
  if (p.T <= s.rows && p.R <= s.logit_rows && p.meta_ints <= s.meta_ints && work <= s.work_floats) {
    return Status::Ok();
  }
  r.ClearGraphs();  // they point into the buffers about to move
  s.rows = std::max<int64_t>(s.rows, NextPowerOfTwo(std::max(p.T, 16)));
  s.logit_rows = std::max<int64_t>(s.logit_rows, NextPowerOfTwo(std::max(p.R, 16)));
  s.meta_ints = std::max(s.meta_ints, p.meta_ints * 2);
  s.work_floats = std::max(s.work_floats, work * 2);
  const size_t T = s.rows, R = s.logit_rows, H = config_.hidden_size, hd = config_.head_dim;
  const size_t V = config_.vocab_size, vr = r.vocab_rows;
  const bool logits_here = r.index == 0;
  LOOM_RETURN_IF_ERROR(s.x.Allocate(T * H * sizeof(float), "step buffers"));
  LOOM_RETURN_IF_ERROR(s.delta.Allocate(T * H * sizeof(float), "step buffers"));
  LOOM_RETURN_IF_ERROR(s.h.Allocate(T * H * sizeof(bf16), "step buffers"));
  LOOM_RETURN_IF_ERROR(s.qkv.Allocate(T * (r.nq + 2 * r.nkv) * hd * sizeof(float), "step buffers"));
  LOOM_RETURN_IF_ERROR(s.attn.Allocate(T * r.nq * hd * sizeof(bf16), "step buffers"));
  LOOM_RETURN_IF_ERROR(s.gu.Allocate(T * 2 * r.inter * sizeof(float), "step buffers"));
  LOOM_RETURN_IF_ERROR(s.act.Allocate(T * r.inter * sizeof(bf16), "step buffers"));
  if (split_vocab_) {
    LOOM_RETURN_IF_ERROR(s.local.Allocate(R * vr * sizeof(float), "logits"));
    LOOM_RETURN_IF_ERROR(s.gather.Allocate(options_.tp * R * vr * sizeof(float), "logits"));
  }
  if (logits_here) {
    LOOM_RETURN_IF_ERROR(s.logits.Allocate(R * V * sizeof(float), "logits"));
    LOOM_RETURN_IF_ERROR(s.argmax.Allocate(R * sizeof(int32_t), "argmax"));
  }
  LOOM_RETURN_IF_ERROR(s.meta.Allocate(s.meta_ints * sizeof(int32_t), "step metadata"));
  LOOM_RETURN_IF_ERROR(s.work.Allocate(s.work_floats * sizeof(float), "attention parts"));
  const size_t done = T * r.nkv * sizeof(int);
  LOOM_RETURN_IF_ERROR(s.done.Allocate(done, "attention part counters"));
  LOOM_CUDA_CHECK(cudaMemsetAsync(s.done.get<int>(), 0, done, r.stream));
  return Status::Ok();
}

Status CudaBackendImpl::MatMul(Rank& r, const bf16* x, int T, int64_t K, const bf16* w, int64_t N,
                               float* y) {
  if (T <= cuda::kMaxGemvRows && gemv_ok_) {
    cuda::Gemv(w, x, T, static_cast<int>(N), static_cast<int>(K), y, r.stream);
    return Status::Ok();
  }
  // Row-major y[T, N] = x[T, K] . w[N, K]^T is column-major y^T = w^T(op T) . x^T.
  const float one = 1.0f, zero = 0.0f;
  LOOM_CUDA_CHECK(cublasGemmEx(r.cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(N), T,
                               static_cast<int>(K), &one, w, CUDA_R_16BF, static_cast<int>(K), x,
                               CUDA_R_16BF, static_cast<int>(K), &zero, y, CUDA_R_32F,
                               static_cast<int>(N), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return Status::Ok();
}

Status CudaBackendImpl::Enqueue(Rank& r, const Plan& p) {
  const ModelConfig& c = config_;
  const int T = p.T, R = p.R;
  const int64_t H = c.hidden_size, hd = c.head_dim, V = c.vocab_size, vr = r.vocab_rows;
  const auto eps = static_cast<float>(c.rms_norm_eps);
  const int64_t qkv_cols = (r.nq + 2 * r.nkv) * hd;
  cudaStream_t st = r.stream;
  Scratch& s = r.s;

  int32_t* m = s.meta.get<int32_t>();
  LOOM_CUDA_CHECK(cudaMemcpyAsync(m, host_meta_.get<int32_t>(), p.meta_ints * sizeof(int32_t),
                                  cudaMemcpyHostToDevice, st));
  const int32_t *tokens = m, *pos = m + T, *seq = m + 2 * T, *slot = m + 3 * T;
  const int32_t *rows = m + 4 * T, *tables = rows + R;
  float *x = s.x.get<float>(), *delta = s.delta.get<float>();
  float *qkv = s.qkv.get<float>(), *gu = s.gu.get<float>();
  bf16 *h = s.h.get<bf16>(), *attn = s.attn.get<bf16>(), *act = s.act.get<bf16>();
  cuda::AttentionShape shape;
  shape.T = T;
  shape.nq = static_cast<int>(r.nq);
  shape.nkv = static_cast<int>(r.nkv);
  shape.hd = static_cast<int>(hd);
  shape.width = p.W;
  shape.block_size = options_.block_size;
  shape.parts = p.parts;
  shape.part_len = p.part_len;
  shape.kernel = options_.attention_kernel;

  cuda::Embed(tokens, r.embed.get<bf16>(), T, static_cast<int>(H), x, st);
  const float* pending = nullptr;  // the last layer output not yet added to x
  for (Layer& L : r.layers) {
    cuda::AddRmsNorm(x, pending, nullptr, T, L.attn_norm.get<bf16>(), eps, static_cast<int>(H),
                     true, h, st);
    LOOM_RETURN_IF_ERROR(MatMul(r, h, T, H, L.wqkv.get<bf16>(), qkv_cols, qkv));
    cuda::RopeKvWrite(qkv, L.bqkv.get<float>(), r.inv_freq.get<float>(), pos, slot, T, shape.nq,
                      shape.nkv, shape.hd, L.k_cache.get<bf16>(), L.v_cache.get<bf16>(), st);
    cuda::PagedAttention(shape, qkv, L.k_cache.get<bf16>(), L.v_cache.get<bf16>(), pos, seq, tables,
                         s.work.get<float>(), s.done.get<int>(), attn, st);
    LOOM_RETURN_IF_ERROR(MatMul(r, attn, T, r.nq * hd, L.wo.get<bf16>(), H, delta));
    if (r.comm) LOOM_RETURN_IF_ERROR(r.comm->AllReduceSum(delta, T * H));
    cuda::AddRmsNorm(x, delta, nullptr, T, L.mlp_norm.get<bf16>(), eps, static_cast<int>(H), true,
                     h, st);
    LOOM_RETURN_IF_ERROR(MatMul(r, h, T, H, L.wgu.get<bf16>(), 2 * r.inter, gu));
    cuda::SiluMul(gu, T, static_cast<int>(r.inter), act, st);
    LOOM_RETURN_IF_ERROR(MatMul(r, act, T, r.inter, L.wd.get<bf16>(), H, delta));
    if (r.comm) LOOM_RETURN_IF_ERROR(r.comm->AllReduceSum(delta, T * H));
    pending = delta;
  }
  if (split_vocab_ || r.index == 0) {
    // The final norm of the logit rows only, then this rank's lm_head rows.
    cuda::AddRmsNorm(x, pending, rows, R, r.final_norm.get<bf16>(), eps, static_cast<int>(H), false,
                     h, st);
    float* logits = s.logits.get<float>();
    if (split_vocab_) {
      float *local = s.local.get<float>(), *gather = s.gather.get<float>();
      LOOM_RETURN_IF_ERROR(MatMul(r, h, R, H, r.head, vr, local));
      LOOM_RETURN_IF_ERROR(r.comm->AllGather(local, R * vr, gather));
      for (int q = 0; r.index == 0 && q < options_.tp; ++q) {  // [tp, R, vr] -> [R, V]
        LOOM_CUDA_CHECK(cudaMemcpy2DAsync(logits + q * vr, V * sizeof(float), gather + q * R * vr,
                                          vr * sizeof(float), vr * sizeof(float), R,
                                          cudaMemcpyDeviceToDevice, st));
      }
    } else {
      LOOM_RETURN_IF_ERROR(MatMul(r, h, R, H, r.head, V, logits));
    }
    if (r.index == 0) {
      cuda::Argmax(logits, R, static_cast<int>(V), s.argmax.get<int32_t>(), st);
      LOOM_CUDA_CHECK(cudaMemcpyAsync(host_argmax_.get<int32_t>(), s.argmax.get<int32_t>(),
                                      R * sizeof(int32_t), cudaMemcpyDeviceToHost, st));
    }
  }
  LOOM_CUDA_CHECK(cudaGetLastError());  // a bad launch configuration
  return Status::Ok();
}

Status CudaBackendImpl::RunRank(Rank& r, const Plan& p) {
  LOOM_CUDA_CHECK(cudaSetDevice(r.device));
  LOOM_RETURN_IF_ERROR(Reserve(r, p));
  const bool counts = r.index == 0;
  const std::pair<int, int> key{p.T, p.W};
  const bool use_graph = p.graph && !r.eager_only.contains(key);
  auto it = use_graph ? r.graphs.find(key) : r.graphs.end();
  if (it != r.graphs.end()) {
    LOOM_CUDA_CHECK(cudaGraphLaunch(it->second, r.stream));
    if (counts) ++stats_.graph_replays;
  } else {
    LOOM_RETURN_IF_ERROR(Enqueue(r, p));
    if (counts) ++stats_.eager_steps;
    if (use_graph) {
      // Capturing records the same operations without running them.
      LOOM_CUDA_CHECK(cudaStreamBeginCapture(r.stream, cudaStreamCaptureModeThreadLocal));
      Status enqueued = Enqueue(r, p);
      cudaGraph_t graph = nullptr;
      cudaError_t ended = cudaStreamEndCapture(r.stream, &graph);
      if (enqueued.ok() && ended == cudaSuccess) {
        cudaGraphExec_t exec = nullptr;
        cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
        if (made == cudaSuccess) {
          r.graphs.emplace(key, exec);
          if (counts) ++stats_.graph_captures;
        }
        ended = made;
      }
      if (graph != nullptr) cudaGraphDestroy(graph);
      if (!enqueued.ok() || ended != cudaSuccess) {
        // The eager step above ran; this shape just stays eager (e.g. no memory
        // left for the graph).
        cudaGetLastError();
        r.eager_only.insert(key);
        LOOM_LOG(kWarning) << "CUDA graph capture failed for a decode step of " << p.T
                           << " rows; running it eagerly: "
                           << (enqueued.ok() ? cudaGetErrorString(ended) : enqueued.message());
      }
    }
  }
  if (r.index == 0) {
    // The returned logits rows, runs of consecutive rows in one copy each.
    const size_t V = config_.vocab_size;
    float* dst = host_logits_.get<float>();
    const float* src = r.s.logits.get<float>();
    for (int i = 0; i < p.R;) {
      if (!p.row_returned[i]) {
        ++i;
        continue;
      }
      int j = i;
      while (j < p.R && p.row_returned[j]) ++j;
      LOOM_CUDA_CHECK(cudaMemcpyAsync(dst, src + i * V, (j - i) * V * sizeof(float),
                                      cudaMemcpyDeviceToHost, r.stream));
      dst += (j - i) * V;
      i = j;
    }
  }
  LOOM_CUDA_CHECK(cudaStreamSynchronize(r.stream));
  return Status::Ok();
}

Status CudaBackendImpl::ForEachRank(const std::function<Status(Rank&)>& fn) {
  if (!gang_) return fn(*ranks_[0]);
  std::vector<Status> statuses(ranks_.size());
  gang_->RunOnEach([&](int i) { statuses[i] = fn(*ranks_[i]); });
  for (const Status& s : statuses) LOOM_RETURN_IF_ERROR(s);
  return Status::Ok();
}

Status CudaBackendImpl::Forward(std::span<const SeqStep> batch, StepOutput* out) {
  if (out == nullptr) return Status::InvalidArgument("Forward: null output");
  LOOM_RETURN_IF_ERROR(ValidateBatch(batch, config_, options_.block_size, num_kv_blocks_));
  out->logits.clear();
  out->argmax.clear();
  if (batch.empty()) return Status::Ok();
  Plan plan;
  LOOM_RETURN_IF_ERROR(MakePlan(batch, &plan));
  const size_t V = config_.vocab_size;
  const auto returned =
      static_cast<size_t>(std::count(plan.row_returned.begin(), plan.row_returned.end(), 1));
  if (host_logits_.bytes() < returned * V * sizeof(float)) {
    LOOM_RETURN_IF_ERROR(host_logits_.Allocate(
        std::max(returned * V * sizeof(float), 2 * host_logits_.bytes()), "the logits"));
  }
  LOOM_RETURN_IF_ERROR(ForEachRank([&](Rank& r) { return RunRank(r, plan); }));

  const float* logits = host_logits_.get<float>();
  out->logits.assign(logits, logits + returned * V);
  out->argmax.assign(batch.size(), -1);
  const int32_t* argmax = host_argmax_.get<int32_t>();
  for (int i = 0; i < plan.R; ++i) {
    if (!plan.row_returned[i]) out->argmax[plan.row_step[i]] = argmax[i];
  }
  return Status::Ok();
}

Status CudaBackendImpl::CopyBlock(int32_t src, int32_t dst) {
  if (src < 0 || dst < 0 || src >= num_kv_blocks_ || dst >= num_kv_blocks_) {
    return Status::InvalidArgument("CopyBlock: block out of range");
  }
  if (src == dst) return Status::Ok();
  for (auto& r : ranks_) {
    LOOM_CUDA_CHECK(cudaSetDevice(r->device));
    const size_t n = static_cast<size_t>(options_.block_size) * r->nkv * config_.head_dim;
    for (Layer& L : r->layers) {
      for (DeviceArray* cache : {&L.k_cache, &L.v_cache}) {
        bf16* base = cache->get<bf16>();
        LOOM_CUDA_CHECK(cudaMemcpyAsync(base + dst * n, base + src * n, n * sizeof(bf16),
                                        cudaMemcpyDeviceToDevice, r->stream));
      }
    }
  }
  return Status::Ok();
}

}  // namespace

int CudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string CudaVersions() {
  auto dotted = [](int v) {  // 13000 -> "13.0"
    return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
  };
  int runtime = 0, driver = 0, nccl = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);  // 0 without a driver
  ncclGetVersion(&nccl);
  auto nccl_dotted = [](int v) {  // 22703 -> "2.27.3"
    return std::to_string(v / 10000) + "." + std::to_string(v % 10000 / 100) + "." +
           std::to_string(v % 100);
  };
  return "cuda: runtime " + dotted(runtime) + " (built with " + dotted(CUDART_VERSION) +
         "), driver " + (driver > 0 ? dotted(driver) : std::string("none")) +
         "; nccl: " + nccl_dotted(nccl) + " (built with " + nccl_dotted(NCCL_VERSION_CODE) + ")";
}

Result<std::unique_ptr<CudaBackend>> MakeCudaBackend(const std::string& model_dir,
                                                     const CudaBackendOptions& options) {
  LOOM_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir));
  LOOM_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> ck, Checkpoint::Open(model_dir));
  auto backend = std::make_unique<CudaBackendImpl>(std::move(config), options);
  LOOM_RETURN_IF_ERROR(backend->Load(*ck));
  return std::unique_ptr<CudaBackend>(std::move(backend));
}

}  // namespace loom::inference
