#include "common/metrics.h"

#include <cmath>
#include <sstream>

namespace loom {
namespace {

std::string Escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string LabelText(const std::vector<std::string>& names, const Labels& values,
                      const std::string& extra = {}) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    if (!out.empty()) out += ",";
    out += names[i] + "=\"" + Escape(values[i]) + "\"";
  }
  if (!extra.empty()) {
    if (!out.empty()) out += ",";
    out += extra;
  }
  return out.empty() ? "" : "{" + out + "}";
}

std::string Num(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  std::ostringstream os;
  os.precision(10);
  os << v;
  return os.str();
}

}  // namespace

void Counter::Add(const Labels& labels, double v) {
  MutexLock lock(&mu_);
  values_[labels] += v;
}
double Counter::Value(const Labels& labels) const {
  MutexLock lock(&mu_);
  auto it = values_.find(labels);
  return it == values_.end() ? 0 : it->second;
}

void Gauge::Set(const Labels& labels, double v) {
  MutexLock lock(&mu_);
  values_[labels] = v;
}
void Gauge::Add(const Labels& labels, double v) {
  MutexLock lock(&mu_);
  values_[labels] += v;
}
double Gauge::Value(const Labels& labels) const {
  MutexLock lock(&mu_);
  auto it = values_.find(labels);
  return it == values_.end() ? 0 : it->second;
}

void Histogram::Observe(const Labels& labels, double v) {
  MutexLock lock(&mu_);
  Series& s = series_[labels];
  if (s.buckets.empty()) s.buckets.assign(bounds_.size(), 0);
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (v <= bounds_[i]) {
      ++s.buckets[i];
      break;
    }
  }
  ++s.count;
  s.sum += v;
}
uint64_t Histogram::Count(const Labels& labels) const {
  MutexLock lock(&mu_);
  auto it = series_.find(labels);
  return it == series_.end() ? 0 : it->second.count;
}

Counter* MetricsRegistry::NewCounter(std::string name, std::string help,
                                     std::vector<std::string> label_names) {
  auto f = std::make_unique<Family>();
  f->name = std::move(name);
  f->help = std::move(help);
  f->type = "counter";
  f->label_names = std::move(label_names);
  f->counter = std::make_unique<Counter>();
  Counter* c = f->counter.get();
  MutexLock lock(&mu_);
  families_.push_back(std::move(f));
  return c;
}

Gauge* MetricsRegistry::NewGauge(std::string name, std::string help,
                                 std::vector<std::string> label_names) {
  auto f = std::make_unique<Family>();
  f->name = std::move(name);
  f->help = std::move(help);
  f->type = "gauge";
  f->label_names = std::move(label_names);
  f->gauge = std::make_unique<Gauge>();
  Gauge* g = f->gauge.get();
  MutexLock lock(&mu_);
  families_.push_back(std::move(f));
  return g;
}

Histogram* MetricsRegistry::NewHistogram(std::string name, std::string help,
                                         std::vector<std::string> label_names,
                                         std::vector<double> bounds) {
  auto f = std::make_unique<Family>();
  f->name = std::move(name);
  f->help = std::move(help);
  f->type = "histogram";
  f->label_names = std::move(label_names);
  f->histogram = std::make_unique<Histogram>(std::move(bounds));
  Histogram* h = f->histogram.get();
  MutexLock lock(&mu_);
  families_.push_back(std::move(f));
  return h;
}

std::vector<double> MetricsRegistry::LatencyBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

// A counter's or a gauge's lines.
template <class Metric>
void MetricsRegistry::RenderValues(std::ostream& os, const Family& f, const Metric& metric) {
  MutexLock lock(&metric.mu_);
  if (metric.values_.empty() && f.label_names.empty()) os << f.name << " 0\n";
  for (const auto& [labels, v] : metric.values_) {
    os << f.name << LabelText(f.label_names, labels) << " " << Num(v) << "\n";
  }
}

std::string MetricsRegistry::Render() const {
  std::ostringstream os;
  MutexLock lock(&mu_);
  for (const auto& f : families_) {
    os << "# HELP " << f->name << " " << f->help << "\n# TYPE " << f->name << " " << f->type
       << "\n";
    if (f->counter) {
      RenderValues(os, *f, *f->counter);
    } else if (f->gauge) {
      RenderValues(os, *f, *f->gauge);
    } else {
      const Histogram& h = *f->histogram;
      MutexLock l(&h.mu_);
      for (const auto& [labels, s] : h.series_) {
        uint64_t cum = 0;
        for (size_t i = 0; i < h.bounds_.size(); ++i) {
          cum += s.buckets[i];
          os << f->name << "_bucket"
             << LabelText(f->label_names, labels, "le=\"" + Num(h.bounds_[i]) + "\"") << " " << cum
             << "\n";
        }
        os << f->name << "_bucket" << LabelText(f->label_names, labels, "le=\"+Inf\"") << " "
           << s.count << "\n";
        os << f->name << "_sum" << LabelText(f->label_names, labels) << " " << Num(s.sum) << "\n";
        os << f->name << "_count" << LabelText(f->label_names, labels) << " " << s.count << "\n";
      }
    }
  }
  return os.str();
}

}  // namespace loom
