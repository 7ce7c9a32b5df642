// Masking of secret values: the one choke point that every byte Loom records or
// shows passes through (task events, outcomes of sandboxed runs, log lines, API
// responses, requests to the model).
//
// A secret is masked as "[secret NAME]" wherever it appears as itself, as a piece
// of at least kMinFragment characters at its start or end (what is left when a
// long output is cut in the middle of it), or in the encodings a payload can
// print without effort: lower- and upper-case hex, base64 (standard and URL-safe,
// at every alignment), percent-encoding and JSON string escaping. Masking is
// applied to text after it was cut to size, so a cut cannot bring a value back.
//
// Thread-safe: values are added while loomd serves (an answered escalation) and
// read by every thread that records or answers.
#pragma once

#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/json.h"

namespace loom {

class SecretMasker {
 public:
  // A piece of a value shorter than this is not masked on its own (it would
  // mask ordinary text); whole values of any length are.
  static constexpr size_t kMinFragment = 8;

  // Adds `value` under `name`, or replaces the value `name` had (both stay
  // masked: an old value may still be in a run's output). An empty value is ignored.
  void Add(const std::string& name, const std::string& value);
  bool empty() const;

  // `text` with every known value masked.
  std::string Mask(std::string_view text) const;
  // `j` with every string (keys and values) masked. Nesting deeper than
  // `max_depth` is replaced by a string saying so, never recursed into.
  Json MaskJson(const Json& j, int max_depth = 64) const;

 private:
  struct Needle {
    std::string text;  // a form of a value that must not appear
    std::string name;
  };
  struct Value {
    std::string name;
    std::string value;
  };
  std::string MaskLocked(std::string_view text) const;
  Json MaskJsonLocked(const Json& j, int depth_left) const;

  mutable std::shared_mutex mu_;
  std::vector<Needle> needles_;  // GUARDED_BY(mu_), longest first
  std::vector<Value> values_;    // GUARDED_BY(mu_), for the fragment pass
};

// The forms of `value` that SecretMasker looks for (the value itself first).
// Exposed for tests.
std::vector<std::string> SecretEncodings(const std::string& value);

}  // namespace loom
