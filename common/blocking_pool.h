// A few threads for work that blocks (SQLite behind a store's lock, libgit2
// diffs and merges, long event-log reads), so that it never runs on an HTTP
// I/O thread: a route hands its request over with Post() and the job answers
// through the exchange, which may be answered from any thread. The pattern of
// Envoy's and Chromium's blocking pools beside their event loops.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/mutex.h"

namespace loom {

class BlockingPool {
 public:
  // REQUIRES: threads >= 1.
  explicit BlockingPool(int threads);
  // Runs every job already posted, then joins the threads.
  ~BlockingPool();
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  // Queues `job` to run on one of the threads, in posting order.
  void Post(std::function<void()> job) EXCLUDES(mu_);
  // Jobs waiting for a thread (not counting those running).
  size_t queued() const EXCLUDES(mu_);

 private:
  void Loop() EXCLUDES(mu_);

  mutable Mutex mu_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace loom
