#include "common/rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace loom {

int64_t RateLimiter::Acquire(const std::string& key) {
  if (!enabled()) return 0;
  int64_t now = clock_->MonotonicNs();
  MutexLock lock(&mu_);
  if (now - last_sweep_ns_ > 60'000'000'000LL) {
    // Drop buckets that would be full by now: they carry no information.
    double full_after_ns = burst_ / rate_ * 1e9;
    std::erase_if(buckets_,
                  [&](const auto& kv) { return now - kv.second.last_ns > full_after_ns; });
    last_sweep_ns_ = now;
  }
  auto [it, inserted] = buckets_.try_emplace(key, Bucket{burst_, now});
  Bucket& b = it->second;
  b.tokens = std::min(burst_, b.tokens + (now - b.last_ns) / 1e9 * rate_);
  b.last_ns = now;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return 0;
  }
  double wait_s = (1 - b.tokens) / rate_;
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(wait_s * 1000)));
}

}  // namespace loom
