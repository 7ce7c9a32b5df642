// Time as a dependency: code that decides by time takes a Clock so that tests
// can inject a FakeClock (tests/fakes/fake_clock.h). Implementations are thread-safe.
#pragma once

#include <chrono>
#include <cstdint>

namespace loom {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch (wall time, for records).
  virtual int64_t NowMs() const = 0;
  // A monotonic reading in nanoseconds (for intervals and rate limits).
  virtual int64_t MonotonicNs() const = 0;
};

class SystemClock : public Clock {
 public:
  int64_t NowMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  int64_t MonotonicNs() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  static SystemClock* Default() {
    static SystemClock clock;
    return &clock;
  }
};

}  // namespace loom
