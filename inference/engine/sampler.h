// Token sampling from one row of logits: greedy, or temperature with top-k and
// top-p (nucleus) filtering, driven by a per-request seeded RNG so that the same
// seed gives the same tokens whatever else is in the batch.
// Thread-compatible value type: one per request, used on the engine thread.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <vector>

namespace loom::inference {

struct SamplingParams {
  float temperature = 1.0f;      // 0 = greedy (argmax, lowest id on ties)
  float top_p = 1.0f;            // (0, 1]
  int32_t top_k = 0;             // 0 = all tokens
  std::optional<uint64_t> seed;  // none: a random seed is drawn
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // Picks the next token. REQUIRES: logits is not empty.
  int32_t Sample(std::span<const float> logits);

  uint64_t seed() const { return seed_; }

 private:
  double Uniform();  // [0, 1), the same on every standard library

  SamplingParams params_;
  uint64_t seed_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> scratch_;
};

// The index of the largest value; the lowest index among equal ones.
int32_t Argmax(std::span<const float> logits);

}  // namespace loom::inference
