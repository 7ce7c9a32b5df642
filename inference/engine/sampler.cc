// Sampler: greedy is a plain argmax. Otherwise the candidates are cut to top-k
// (partial sort), turned into probabilities with a max-subtracted softmax at the
// temperature, cut to the smallest prefix whose mass reaches top-p, and one is
// drawn with a uniform from the request's own mt19937_64 (its output sequence is
// fixed by the standard, unlike the library's distributions).
#include "inference/engine/sampler.h"

#include <algorithm>
#include <cmath>

namespace loom::inference {

int32_t Argmax(std::span<const float> logits) {
  // NaN counts as -inf, as in the CUDA backend's argmax: a NaN met first must not
  // win over every number after it.
  const auto value = [&](size_t i) { return std::isnan(logits[i]) ? -INFINITY : logits[i]; };
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (value(i) > value(best)) best = static_cast<int32_t>(i);
  }
  return best;
}

Sampler::Sampler(const SamplingParams& params)
    : params_(params),
      seed_(params.seed ? *params.seed
                        : (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}()),
      rng_(seed_) {}

double Sampler::Uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

int32_t Sampler::Sample(std::span<const float> logits) {
  if (params_.temperature <= 0.0f) return Argmax(logits);
  const size_t n = logits.size();
  scratch_.resize(n);
  for (size_t i = 0; i < n; ++i) scratch_[i] = {logits[i], static_cast<int32_t>(i)};
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  size_t k = n;
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) k = params_.top_k;
  if (params_.top_p < 1.0f) {
    // top-p needs the candidates in order.
    std::partial_sort(scratch_.begin(), scratch_.begin() + k, scratch_.end(), by_logit);
  } else if (k < n) {
    std::nth_element(scratch_.begin(), scratch_.begin() + k - 1, scratch_.end(), by_logit);
  }
  scratch_.resize(k);
  float max_logit = scratch_[0].first;
  for (const auto& c : scratch_) max_logit = std::max(max_logit, c.first);
  std::vector<double> probs(k);
  double total = 0;
  for (size_t i = 0; i < k; ++i) {
    probs[i] = std::exp(static_cast<double>(scratch_[i].first - max_logit) / params_.temperature);
    total += probs[i];
  }
  if (params_.top_p < 1.0f) {
    double cum = 0;
    size_t keep = 0;
    while (keep < k) {
      cum += probs[keep++] / total;
      if (cum >= params_.top_p) break;
    }
    probs.resize(keep);
    total = 0;
    for (double p : probs) total += p;
  }
  double u = Uniform() * total;
  for (size_t i = 0; i < probs.size(); ++i) {
    u -= probs[i];
    if (u < 0) return scratch_[i].second;
  }
  return scratch_[probs.size() - 1].second;
}

}  // namespace loom::inference
