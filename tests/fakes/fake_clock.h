// A Clock that moves only when told to. Thread-safe.
#pragma once

#include <atomic>

#include "common/clock.h"

namespace loom {

class FakeClock : public Clock {
 public:
  int64_t NowMs() const override { return 1'700'000'000'000 + mono_ns_ / 1'000'000; }
  int64_t MonotonicNs() const override { return mono_ns_; }
  void AdvanceMs(int64_t ms) { mono_ns_ += ms * 1'000'000; }

 private:
  std::atomic<int64_t> mono_ns_{1'000'000'000};
};

}  // namespace loom
