#include "common/rate_limiter.h"

#include <gtest/gtest.h>

#include "common/metrics.h"
#include "tests/fakes/fake_clock.h"

namespace loom {
namespace {

TEST(RateLimiterTest, AllowsTheBurstThenRefillsAtTheRate) {
  FakeClock clock;
  RateLimiter limiter(/*rate_per_second=*/2, /*burst=*/3, &clock);
  EXPECT_EQ(limiter.Acquire("a"), 0);
  EXPECT_EQ(limiter.Acquire("a"), 0);
  EXPECT_EQ(limiter.Acquire("a"), 0);
  int64_t wait = limiter.Acquire("a");
  EXPECT_GT(wait, 0);
  EXPECT_LE(wait, 500);
  EXPECT_EQ(limiter.Acquire("b"), 0) << "keys have separate buckets";
  clock.AdvanceMs(500);
  EXPECT_EQ(limiter.Acquire("a"), 0);
  EXPECT_GT(limiter.Acquire("a"), 0);
}

TEST(RateLimiterTest, ZeroRateMeansUnlimited) {
  FakeClock clock;
  RateLimiter limiter(0, 0, &clock);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(limiter.Acquire("a"), 0);
}

TEST(MetricsTest, RendersPrometheusText) {
  MetricsRegistry r;
  Counter* c = r.NewCounter("req_total", "Requests.", {"route"});
  Histogram* h = r.NewHistogram("lat_seconds", "Latency.", {}, {0.1, 1});
  c->Add({"/a\"b"});
  h->Observe({}, 0.05);
  h->Observe({}, 5);
  std::string text = r.Render();
  EXPECT_NE(text.find("# TYPE req_total counter"), std::string::npos);
  EXPECT_NE(text.find("req_total{route=\"/a\\\"b\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_seconds_bucket{le=\"0.1\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_seconds_bucket{le=\"+Inf\"} 2"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_seconds_count 2"), std::string::npos) << text;
}

}  // namespace
}  // namespace loom
