// The CUDA backend: bf16 weights and activations with float32 accumulation,
// for the Llama and Qwen2 checkpoints the CPU backend reads.
//
// A step runs as: embedding; per layer RMSNorm (fused with the residual add),
// the q/k/v GEMM, RoPE fused into the KV-cache write, paged attention (GQA,
// prefill and decode alike, split over the context when the batch is small),
// o_proj, RMSNorm, gate/up GEMM, SiLU·mul, down_proj; then the final norm of
// the rows whose logits are wanted, lm_head and an on-GPU argmax. GEMMs of up
// to 8 rows use a weight-streaming GEMV kernel, larger ones cuBLAS. The paged
// KV cache lives in GPU memory. Decode steps (one token per sequence) are
// captured once per (batch size, block-table width) as CUDA graphs and
// replayed, since at batch 1 the launch gaps of ~150 kernels would cost as
// much as the weight read.
//
// Tensor parallelism is the CPU backend's (same head rule and splits), one GPU
// per rank, one thread per rank, collectives through NCCL.
//
// Thread-compatible: the engine thread is the only caller.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "inference/model/backend.h"

namespace loom::inference {

struct CudaBackendOptions {
  int tp = 1;                        // tensor-parallel ranks, one GPU each
  std::vector<int> devices;          // rank r on devices[r]; default 0, 1, ..., tp-1
  int32_t block_size = 16;           // tokens per KV block
  int32_t num_kv_blocks = 0;         // 0: as many as fit in kv_memory_fraction of what is free
  double kv_memory_fraction = 0.85;  // of the GPU memory free after weights and scratch
  bool cuda_graphs = true;           // replay decode steps from captured graphs
  // Run the collectives through NCCL at tp = 1 too (a one-rank group): the tests
  // prove it changes no bit; serving skips them (no launches for nothing).
  bool nccl_at_tp1 = false;
  int32_t max_graph_batch = 256;  // decode batches above this run without a graph
  // The attention kernel (kernels.h, AttentionShape): 1, or 2, the pipelined one
  // that combines the context parts itself. Both are checked against the CPU by
  // the GPU tests; 2 becomes the default once a GPU run has shown it right.
  int attention_kernel = 1;
  // Keys per context part when a step's rows x KV heads leave SMs idle. 0: kernel
  // 1 splits the context evenly over about 2 blocks per SM, kernel 2 into parts of
  // 256 keys. A value here splits every step's context into parts of this length
  // (the tests use it to reach the combine on a tiny model).
  int32_t attention_part_len = 0;
};

struct CudaBackendStats {
  int64_t graph_captures = 0;  // decode graphs captured
  int64_t graph_replays = 0;   // steps run from a captured graph
  int64_t eager_steps = 0;     // steps enqueued kernel by kernel
};

class CudaBackend : public Backend {
 public:
  virtual CudaBackendStats stats() const = 0;
  virtual std::string device_name() const = 0;  // "NVIDIA H200 x1"
};

// The number of CUDA devices this process can use (0 without a driver or GPU).
int CudaDeviceCount();

// "cuda: runtime 13.0 (built with 13.0), driver 12.8; nccl: 2.27.3 (built with
// 2.27.3)" for --version; "driver none" without one.
std::string CudaVersions();

// Loads `model_dir` onto the GPUs. FailedPrecondition when there are fewer
// GPUs than tp; ResourceExhausted when the weights or the KV cache do not fit.
Result<std::unique_ptr<CudaBackend>> MakeCudaBackend(const std::string& model_dir,
                                                     const CudaBackendOptions& options);

}  // namespace loom::inference
