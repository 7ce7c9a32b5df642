// Prometheus text-format metrics: counters, gauges and histograms with labels.
//
//   static Counter* requests = registry.NewCounter("loom_http_requests_total", "...",
//                                                  {"route", "status"});
//   requests->Add({"/v1/feedback", "201"});
//
// Families are created at start-up and live as long as the registry; updates are
// cheap (one short mutex per family) and thread-safe; Render() is thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "common/mutex.h"

namespace loom {

using Labels = std::vector<std::string>;  // values, in the family's label order

class Counter {
 public:
  void Add(const Labels& labels = {}, double v = 1);
  double Value(const Labels& labels = {}) const;

 private:
  friend class MetricsRegistry;
  mutable Mutex mu_;
  std::map<Labels, double> values_ GUARDED_BY(mu_);
};

class Gauge {
 public:
  void Set(const Labels& labels, double v);
  void Set(double v) { Set({}, v); }
  void Add(const Labels& labels, double v);
  double Value(const Labels& labels = {}) const;

 private:
  friend class MetricsRegistry;
  mutable Mutex mu_;
  std::map<Labels, double> values_ GUARDED_BY(mu_);
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {}
  void Observe(const Labels& labels, double v);
  uint64_t Count(const Labels& labels = {}) const;

 private:
  friend class MetricsRegistry;
  struct Series {
    std::vector<uint64_t> buckets;  // cumulative at render time, per-bucket here
    uint64_t count = 0;
    double sum = 0;
  };
  std::vector<double> bounds_;
  mutable Mutex mu_;
  std::map<Labels, Series> series_ GUARDED_BY(mu_);
};

class MetricsRegistry {
 public:
  Counter* NewCounter(std::string name, std::string help,
                      std::vector<std::string> label_names = {});
  Gauge* NewGauge(std::string name, std::string help, std::vector<std::string> label_names = {});
  Histogram* NewHistogram(std::string name, std::string help, std::vector<std::string> label_names,
                          std::vector<double> bounds);
  // The whole registry in Prometheus text exposition format 0.0.4.
  std::string Render() const;

  static std::vector<double> LatencyBuckets();  // seconds, 0.5 ms .. 10 s

 private:
  struct Family {
    std::string name, help, type;
    std::vector<std::string> label_names;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
  };
  template <class Metric>
  static void RenderValues(std::ostream& os, const Family& f, const Metric& metric);

  mutable Mutex mu_;
  std::vector<std::unique_ptr<Family>> families_ GUARDED_BY(mu_);
};

}  // namespace loom
