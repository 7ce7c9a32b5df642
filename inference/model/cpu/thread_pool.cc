#include "inference/model/cpu/thread_pool.h"

#include <algorithm>
#include <atomic>

namespace loom::inference::cpu {

ThreadPool::ThreadPool(int size) : size_(std::max(size, 1)) {
  for (int i = 1; i < size_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int)>* job;
    {
      MutexLock lock(&mu_);
      while (!stop_ && generation_ == seen) lock.Wait(&start_cv_);
      if (stop_) return;
      seen = generation_;
      job = job_;
    }
    (*job)(index);
    {
      MutexLock lock(&mu_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }
}

void ThreadPool::RunOnEach(const std::function<void(int)>& fn) {
  if (size_ == 1) {
    fn(0);
    return;
  }
  {
    MutexLock lock(&mu_);
    job_ = &fn;
    pending_ = size_ - 1;
    ++generation_;
  }
  start_cv_.notify_all();
  fn(0);
  MutexLock lock(&mu_);
  while (pending_ != 0) lock.Wait(&done_cv_);
  job_ = nullptr;
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  if (size_ == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  // Dynamic chunks (a few per thread) absorb threads descheduled on a shared machine.
  const int64_t chunk = std::max(grain, (n + 4 * size_ - 1) / (4 * size_));
  std::atomic<int64_t> next{0};
  RunOnEach([&](int) {
    for (;;) {
      int64_t begin = next.fetch_add(chunk, std::memory_order_relaxed);
      if (begin >= n) return;
      fn(begin, std::min(n, begin + chunk));
    }
  });
}

}  // namespace loom::inference::cpu
