// The in-process group: ranks publish pointers to their buffers in shared
// slots and meet at a barrier; each rank then reduces its own slice of the
// elements (summing the ranks in order 0..size-1, so every run and every rank
// gets the same bits) into a shared result, and after a second barrier every
// rank copies the result out. A third barrier keeps the next collective from
// overwriting the shared state before everyone has read it.
#include "inference/model/communicator.h"

#include <algorithm>
#include <barrier>
#include <cstring>
#include <string>

namespace loom::inference {
namespace {

struct Shared {
  explicit Shared(int n) : size(n), barrier(n), ptrs(n), counts(n) {}
  const int size;
  std::barrier<> barrier;
  std::vector<const float*> ptrs;  // [size]: each rank's input of the current collective
  std::vector<size_t> counts;      // [size]: each rank's n
  std::vector<float> result;       // [n]: AllReduceSum's output
};

class InProcessCommunicator final : public Communicator {
 public:
  InProcessCommunicator(std::shared_ptr<Shared> shared, int rank)
      : shared_(std::move(shared)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return shared_->size; }

  Status AllReduceSum(float* data, size_t n) override {
    Shared& s = *shared_;
    if (s.size == 1) return Status::Ok();
    s.ptrs[rank_] = data;
    s.counts[rank_] = n;
    if (rank_ == 0 && s.result.size() < n) s.result.resize(n);
    s.barrier.arrive_and_wait();
    Status st = CheckCounts("AllReduceSum");
    if (!st.ok()) {
      s.barrier.arrive_and_wait();
      return st;
    }
    const size_t begin = n * rank_ / s.size;
    const size_t end = n * (rank_ + 1) / s.size;
    float* res = s.result.data();
    std::memcpy(res + begin, s.ptrs[0] + begin, (end - begin) * sizeof(float));
    for (int r = 1; r < s.size; ++r) {
      const float* src = s.ptrs[r];
      for (size_t i = begin; i < end; ++i) res[i] += src[i];
    }
    s.barrier.arrive_and_wait();
    std::memcpy(data, res, n * sizeof(float));
    s.barrier.arrive_and_wait();
    return Status::Ok();
  }

  Status AllGather(const float* in, size_t n, float* out) override {
    Shared& s = *shared_;
    s.ptrs[rank_] = in;
    s.counts[rank_] = n;
    s.barrier.arrive_and_wait();
    Status st = CheckCounts("AllGather");
    if (st.ok()) {
      for (int r = 0; r < s.size; ++r) std::memcpy(out + r * n, s.ptrs[r], n * sizeof(float));
    }
    s.barrier.arrive_and_wait();
    return st;
  }

 private:
  // Every rank sees the same counts, so every rank agrees on the verdict.
  Status CheckCounts(const char* op) const {
    const Shared& s = *shared_;
    for (int r = 1; r < s.size; ++r) {
      if (s.counts[r] != s.counts[0]) {
        return Status::Internal(std::string(op) + ": rank " + std::to_string(r) +
                                " passed n=" + std::to_string(s.counts[r]) +
                                " but rank 0 passed n=" + std::to_string(s.counts[0]));
      }
    }
    return Status::Ok();
  }

  std::shared_ptr<Shared> shared_;
  const int rank_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> MakeInProcessGroup(int size) {
  auto shared = std::make_shared<Shared>(std::max(size, 1));
  std::vector<std::unique_ptr<Communicator>> comms;
  for (int r = 0; r < std::max(size, 1); ++r) {
    comms.push_back(std::make_unique<InProcessCommunicator>(shared, r));
  }
  return comms;
}

}  // namespace loom::inference
