// A deterministic toy "model" behind the Backend interface, for engine tests.
//
// The K/V of token t at position p is one number, Mix(t, p), stored in the
// slot the block table names. The logits after position p are a pseudo-random
// function of every K/V value at positions 0..p, read back through the block
// table, so a wrong block table, a stale block or a bad prefix-cache reuse
// changes the next token. Reading a slot that was never written is an error.
// FakeBackend::Greedy computes the same model without any cache, as the
// reference. Thread-compatible (the engine thread calls it); the counters are
// atomic so a test thread may read them.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "inference/engine/sampler.h"
#include "inference/model/backend.h"

namespace loom::inference::testing {

class FakeBackend : public Backend {
 public:
  static constexpr uint64_t kUnwritten = ~uint64_t{0};

  FakeBackend(int32_t block_size, int32_t num_blocks, int64_t vocab = 64,
              int64_t max_positions = 4096, std::vector<int32_t> eos = {})
      : block_size_(block_size),
        num_blocks_(num_blocks),
        kv_(size_t(block_size) * num_blocks, kUnwritten) {
    config_.model_type = "fake";
    config_.vocab_size = vocab;
    config_.max_position_embeddings = max_positions;
    config_.eos_token_ids = std::move(eos);
  }

  static uint64_t Mix(uint64_t a, uint64_t b) {
    uint64_t h = a * 0x9e3779b97f4a7c15ull + b + 0x632be59bd9b4e019ull;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    return h ^ (h >> 31);
  }

  // Logits from the fold of the K/V values at positions 0..p.
  static void LogitsFrom(uint64_t fold, int64_t vocab, float* out) {
    for (int64_t i = 0; i < vocab; ++i) out[i] = float(Mix(fold, uint64_t(i)) % 1000) / 100.0f;
  }

  // The reference: `n` greedy tokens after `prompt`, computed from scratch.
  static std::vector<int32_t> Greedy(std::vector<int32_t> tokens, int n, int64_t vocab = 64) {
    std::vector<int32_t> out;
    std::vector<float> logits(vocab);
    for (int i = 0; i < n; ++i) {
      uint64_t fold = 0;
      for (size_t p = 0; p < tokens.size(); ++p) fold = Mix(fold, Mix(uint64_t(tokens[p]), p));
      LogitsFrom(fold, vocab, logits.data());
      int32_t t = Argmax(logits);
      out.push_back(t);
      tokens.push_back(t);
    }
    return out;
  }

  const ModelConfig& config() const override { return config_; }
  int32_t block_size() const override { return block_size_; }
  int32_t num_kv_blocks() const override { return num_blocks_; }

  Status Forward(std::span<const SeqStep> batch, StepOutput* out) override {
    ++forward_calls_;
    if (step_delay_.load().count() > 0) std::this_thread::sleep_for(step_delay_.load());
    max_rows_seen_ = std::max<int64_t>(max_rows_seen_.load(), int64_t(batch.size()));
    out->logits.clear();
    out->argmax.clear();
    if (device_argmax_) out->argmax.assign(batch.size(), -1);
    const int64_t vocab = config_.vocab_size;
    for (size_t i = 0; i < batch.size(); ++i) {
      const SeqStep& s = batch[i];
      const int64_t end = s.start_pos + int64_t(s.tokens.size());
      if (int64_t(s.block_table.size()) * block_size_ < end) {
        return Status::Internal("block table too short");
      }
      for (int32_t b : s.block_table) {
        if (b < 0 || b >= num_blocks_) return Status::Internal("block out of range");
      }
      tokens_computed_ += int64_t(s.tokens.size());
      for (size_t j = 0; j < s.tokens.size(); ++j) {
        int64_t p = s.start_pos + int64_t(j);
        kv_[Slot(s, p)] = Mix(uint64_t(s.tokens[j]), uint64_t(p));
        if (!s.all_logits && j + 1 != s.tokens.size()) continue;
        uint64_t fold = 0;
        for (int64_t q = 0; q <= p; ++q) {
          uint64_t v = kv_[Slot(s, q)];
          if (v == kUnwritten) return Status::Internal("read an unwritten KV slot");
          fold = Mix(fold, v);
        }
        size_t row = out->logits.size();
        out->logits.resize(row + size_t(vocab));
        LogitsFrom(fold, vocab, out->logits.data() + row);
        if (device_argmax_ && s.greedy && !s.all_logits) {  // as a CUDA backend answers
          out->argmax[i] = Argmax(std::span<const float>(out->logits).subspan(row));
          out->logits.resize(row);
        }
      }
    }
    return Status::Ok();
  }

  Status CopyBlock(int32_t src, int32_t dst) override {
    std::copy_n(kv_.begin() + int64_t(src) * block_size_, block_size_,
                kv_.begin() + int64_t(dst) * block_size_);
    return Status::Ok();
  }

  // Answers greedy steps with StepOutput::argmax instead of a logits row.
  void set_device_argmax(bool on) { device_argmax_ = on; }

  // Makes every Forward take at least this long (for cancellation tests).
  void set_step_delay(std::chrono::microseconds d) { step_delay_ = d; }

  int64_t tokens_computed() const { return tokens_computed_; }
  int64_t forward_calls() const { return forward_calls_; }
  int64_t max_rows_seen() const { return max_rows_seen_; }

 private:
  size_t Slot(const SeqStep& s, int64_t p) const {
    return size_t(s.block_table[p / block_size_]) * block_size_ + size_t(p % block_size_);
  }

  ModelConfig config_;
  int32_t block_size_;
  int32_t num_blocks_;
  std::vector<uint64_t> kv_;
  bool device_argmax_ = false;
  std::atomic<int64_t> tokens_computed_{0};
  std::atomic<int64_t> forward_calls_{0};
  std::atomic<int64_t> max_rows_seen_{0};
  std::atomic<std::chrono::microseconds> step_delay_{std::chrono::microseconds(0)};
};

}  // namespace loom::inference::testing

namespace loom::inference::testing {

// A backend that "generates" a fixed script: after a prompt (the first step's
// tokens end at position L), the logits at position L-1+i make script[i] the
// argmax (past the script, script.back()). One request at a time, with the
// prefix cache off and the prompt in one chunk. For API
// tests that need a model to say something specific (a tool call).
class ScriptedBackend : public Backend {
 public:
  ScriptedBackend(int64_t vocab, std::vector<int32_t> eos, int32_t block_size = 16,
                  int32_t num_blocks = 64, int64_t max_positions = 512)
      : block_size_(block_size), num_blocks_(num_blocks) {
    config_.model_type = "scripted";
    config_.vocab_size = vocab;
    config_.max_position_embeddings = max_positions;
    config_.eos_token_ids = std::move(eos);
  }

  // REQUIRES: no request running.
  void set_script(std::vector<int32_t> script) {
    script_ = std::move(script);
    base_ = -1;
  }

  const ModelConfig& config() const override { return config_; }
  int32_t block_size() const override { return block_size_; }
  int32_t num_kv_blocks() const override { return num_blocks_; }

  Status Forward(std::span<const SeqStep> batch, StepOutput* out) override {
    const int64_t vocab = config_.vocab_size;
    out->logits.assign(size_t(vocab) * batch.size(), 0.0f);
    for (size_t i = 0; i < batch.size(); ++i) {
      const SeqStep& s = batch[i];
      int64_t end = s.start_pos + int64_t(s.tokens.size());
      if (s.start_pos == 0 || s.tokens.size() > 1) base_ = end;  // prefill (no prefix cache)
      int64_t k = base_ < 0 ? 0 : std::max<int64_t>(0, end - base_);
      int32_t next = script_.empty() ? 0 : script_[std::min<size_t>(size_t(k), script_.size() - 1)];
      out->logits[i * size_t(vocab) + size_t(next)] = 100.0f;  // near-certain when sampled too
    }
    return Status::Ok();
  }

  Status CopyBlock(int32_t, int32_t) override { return Status::Ok(); }

 private:
  ModelConfig config_;
  int32_t block_size_;
  int32_t num_blocks_;
  std::vector<int32_t> script_;
  int64_t base_ = -1;
};

}  // namespace loom::inference::testing
