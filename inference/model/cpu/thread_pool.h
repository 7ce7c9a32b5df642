// A small fork-join pool for the CPU backend's kernels: `size()` threads, the
// caller being thread 0, so a pool of 1 runs everything inline. Jobs are
// dispatched with a generation counter under a mutex and condition variables
// (the backend runs on shared machines: no spinning).
//
// Thread-compatible: one caller at a time (the rank thread that owns it).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "common/mutex.h"

namespace loom::inference::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int size);  // size >= 1
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return size_; }

  // Runs fn(i) for every i in [0, size()), each on its own thread, concurrently
  // (so fn may block on the others, as the ranks' collectives do); returns when
  // all have returned.
  void RunOnEach(const std::function<void(int)>& fn) EXCLUDES(mu_);

  // Calls fn(begin, end) on disjoint chunks covering [0, n), each at least
  // `grain` long (but the last), spread over the threads.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void WorkerLoop(int index) EXCLUDES(mu_);

  const int size_;
  Mutex mu_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  uint64_t generation_ GUARDED_BY(mu_) = 0;
  int pending_ GUARDED_BY(mu_) = 0;
  bool stop_ GUARDED_BY(mu_) = false;
  const std::function<void(int)>* job_ GUARDED_BY(mu_) = nullptr;
  std::vector<std::thread> workers_;  // joined in the destructor
};

}  // namespace loom::inference::cpu
