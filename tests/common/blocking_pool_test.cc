#include "common/blocking_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace loom {
namespace {

TEST(BlockingPoolTest, JobsRunOffTheCallersThreadInPostingOrderOnOneThread) {
  std::vector<int> order;
  std::thread::id caller = std::this_thread::get_id(), ran_on;
  {
    BlockingPool pool(1);
    for (int i = 0; i < 100; ++i) {
      pool.Post([&, i] {
        order.push_back(i);
        ran_on = std::this_thread::get_id();
      });
    }
  }  // the destructor runs what was queued
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
  EXPECT_NE(ran_on, caller);
}

TEST(BlockingPoolTest, AJobThatBlocksLeavesTheOtherThreadsWorking) {
  BlockingPool pool(2);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> done{0};
  pool.Post([&] {  // holds one thread until released
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return release; });
    ++done;
  });
  for (int i = 0; i < 10; ++i) pool.Post([&] { ++done; });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (done < 10 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(done, 10);  // all ran on the second thread while the first waits
  EXPECT_EQ(pool.queued(), 0u);
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
}

}  // namespace
}  // namespace loom
