// Collectives among the ranks of one tensor-parallel group.
//
// Every rank of a group calls each collective in the same order with the same
// `n`; a call returns when every rank has contributed. The CPU implementation
// below runs N ranks on N threads of one process (tests prove TP=N equals TP=1
// with it); the CUDA backend adds an NCCL one behind the same interface.
//
// A Communicator object belongs to one rank and is used by one thread at a time
// (thread-compatible); the ranks' objects are used concurrently by design.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "common/status.h"

namespace loom::inference {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // data[0, n) <- the element-wise sum over all ranks of their data[0, n).
  // Every rank receives bit-identical results.
  virtual Status AllReduceSum(float* data, size_t n) = 0;

  // out[r * n, (r + 1) * n) <- rank r's in[0, n), for every r; out holds size() * n.
  virtual Status AllGather(const float* in, size_t n, float* out) = 0;
};

// Makes the `size` communicators of an in-process group (element r is rank r).
// They share state and must all be used, each from its own thread; the group
// lives as long as any of them. Sums are taken in rank order 0, 1, ..., size-1
// whatever the timing, so results are reproducible run to run.
std::vector<std::unique_ptr<Communicator>> MakeInProcessGroup(int size);

}  // namespace loom::inference
