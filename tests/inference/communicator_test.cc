#include "inference/model/communicator.h"

#include <gtest/gtest.h>

#include <thread>

namespace loom::inference {
namespace {

// Runs fn(rank) on `size` threads, one per communicator.
template <typename Fn>
void RunRanks(std::vector<std::unique_ptr<Communicator>>& comms, Fn fn) {
  std::vector<std::thread> threads;
  for (auto& c : comms) threads.emplace_back([&fn, &c] { fn(*c); });
  for (auto& t : threads) t.join();
}

TEST(CommunicatorTest, AllReduceSumsInRankOrderOnEveryRank) {
  for (int size : {1, 2, 3, 4}) {
    auto comms = MakeInProcessGroup(size);
    ASSERT_EQ(comms.size(), static_cast<size_t>(size));
    std::vector<std::vector<float>> data(size);
    RunRanks(comms, [&](Communicator& c) {
      EXPECT_EQ(c.size(), size);
      std::vector<float>& d = data[c.rank()];
      for (int round = 0; round < 20; ++round) {
        d.assign(37, 0.0f);
        for (size_t i = 0; i < d.size(); ++i) d[i] = 0.1f * (c.rank() + 1) + i + round;
        ASSERT_TRUE(c.AllReduceSum(d.data(), d.size()).ok());
      }
    });
    for (size_t i = 0; i < 37; ++i) {
      float want = 0.1f * 1 + i + 19;
      for (int r = 1; r < size; ++r) want += 0.1f * (r + 1) + i + 19;
      for (int r = 0; r < size; ++r) EXPECT_EQ(data[r][i], want) << size << " " << r << " " << i;
    }
  }
}

TEST(CommunicatorTest, AllGatherConcatenatesByRank) {
  auto comms = MakeInProcessGroup(4);
  std::vector<std::vector<float>> out(4);
  RunRanks(comms, [&](Communicator& c) {
    std::vector<float> in = {static_cast<float>(c.rank()), c.rank() + 0.5f};
    out[c.rank()].resize(8);
    ASSERT_TRUE(c.AllGather(in.data(), 2, out[c.rank()].data()).ok());
  });
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(out[r], (std::vector<float>{0, 0.5f, 1, 1.5f, 2, 2.5f, 3, 3.5f}));
  }
}

TEST(CommunicatorTest, MismatchedCountsFailOnEveryRank) {
  auto comms = MakeInProcessGroup(2);
  std::vector<int> ok(2, 1);  // not vector<bool>: ranks write their elements concurrently
  RunRanks(comms, [&](Communicator& c) {
    std::vector<float> d(4, 1.0f);
    ok[c.rank()] = c.AllReduceSum(d.data(), c.rank() == 0 ? 4 : 3).ok();
    // The group is still usable afterwards.
    EXPECT_TRUE(c.AllReduceSum(d.data(), 4).ok());
  });
  EXPECT_FALSE(ok[0]);
  EXPECT_FALSE(ok[1]);
}

}  // namespace
}  // namespace loom::inference
