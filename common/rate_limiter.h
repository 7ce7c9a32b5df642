// Token-bucket rate limits per key (e.g. per API token): `rate_per_second`
// refill, `burst` capacity. Buckets idle long enough to be full are dropped so
// the map stays small. Thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>

#include "common/clock.h"
#include "common/mutex.h"

namespace loom {

class RateLimiter {
 public:
  RateLimiter(double rate_per_second, double burst, const Clock* clock)
      : rate_(rate_per_second), burst_(burst), clock_(clock) {}

  // Takes one unit for `key`. Returns 0 when allowed, otherwise the number of
  // milliseconds after which a retry will be allowed (for Retry-After).
  int64_t Acquire(const std::string& key);
  // A limiter with rate <= 0 allows everything.
  bool enabled() const { return rate_ > 0; }

 private:
  struct Bucket {
    double tokens;
    int64_t last_ns;
  };
  double rate_, burst_;
  const Clock* clock_;
  Mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_ GUARDED_BY(mu_);
  int64_t last_sweep_ns_ GUARDED_BY(mu_) = 0;
};

}  // namespace loom
