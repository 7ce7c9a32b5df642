// The Communicator of the CUDA backend: NCCL collectives among the GPUs of one
// tensor-parallel group.
//
// Pointers are device pointers on the rank's GPU, and a collective is enqueued
// on the rank's stream (set_stream) rather than run to completion: its result
// is ready, on every rank, in stream order, so collectives can be captured in
// a CUDA graph with the kernels around them. On one node the group is made by
// MakeNcclGroup (ncclCommInitAll: one process, one thread per GPU); across
// nodes each process would call ncclCommInitRank with an id shared over a TCP
// bootstrap (docs/inference.md).
//
// Thread-compatible: each rank's object is used by its own thread.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <memory>
#include <vector>

#include "common/status.h"
#include "inference/model/communicator.h"

namespace loom::inference::cuda {

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int size, int device)
      : comm_(comm), rank_(rank), size_(size), device_(device) {}
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int device() const { return device_; }

  // The stream collectives are enqueued on (default: the legacy default stream).
  void set_stream(cudaStream_t stream) { stream_ = stream; }

  Status AllReduceSum(float* data, size_t n) override;
  Status AllGather(const float* in, size_t n, float* out) override;

 private:
  friend void FinalizeNcclGroup(const std::vector<NcclCommunicator*>& group);
  ncclComm_t comm_;
  int rank_, size_, device_;
  cudaStream_t stream_ = nullptr;
};

// One communicator per device in `devices` (rank r on devices[r]), made
// together in this process.
Result<std::vector<std::unique_ptr<NcclCommunicator>>> MakeNcclGroup(
    const std::vector<int>& devices);

// Finalizes the ranks of a group together (ncclCommFinalize in one NCCL group),
// so that destroying them one after another on one thread cannot wait on a peer.
void FinalizeNcclGroup(const std::vector<NcclCommunicator*>& group);

}  // namespace loom::inference::cuda
