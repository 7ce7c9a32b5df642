// The inference engine: one thread that owns a Backend and runs generation
// requests through it with continuous batching over a paged KV cache.
//
// Requests are submitted from any thread and queued; between two forward steps
// the engine thread admits queued requests (up to max_batch running), gives
// every running decode one token, and fills the rest of the per-step token
// budget with prefill chunks, so a long prompt never starves decodes. Full KV
// blocks are kept in a prefix cache keyed by a chained hash of their tokens: a
// request that repeats a prefix takes those blocks instead of recomputing them
// (at least the last prompt token is always computed, to get its logits). When
// blocks run out, the newest running request is preempted (its blocks freed,
// its tokens recomputed when it is readmitted, its RNG state kept).
//
// Results stream back through a per-request callback on the engine thread.
// Engine is thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "inference/engine/output_text.h"
#include "inference/engine/sampler.h"
#include "inference/model/backend.h"

namespace loom::inference {

struct GenerationRequest {
  std::vector<int32_t> prompt;  // token ids; not empty
  SamplingParams sampling;
  int32_t max_tokens = 256;             // generated tokens at most
  std::vector<std::string> stop;        // the text ends before the first match
  std::vector<int32_t> stop_token_ids;  // end the generation, like the model's EOS ids
  bool ignore_eos = false;              // keep generating after the model's EOS ids
};

enum class FinishReason { kNone, kStop, kLength, kCancelled, kError };
std::string_view FinishReasonName(FinishReason reason);  // "stop", "length", ...

struct GenerationEvent {
  std::vector<int32_t> tokens;                // sampled since the previous event (EOS included)
  std::string text;                           // released since the previous event
  FinishReason finish = FinishReason::kNone;  // set on the request's last event only
  Status error;                               // when finish is kCancelled or kError
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;  // so far
  int32_t cached_tokens = 0;      // prompt tokens taken from the prefix cache
};

// Runs on the engine thread and must not block. Returning false cancels the
// request (no further event is delivered).
using EventCallback = std::function<bool(const GenerationEvent&)>;

struct EngineOptions {
  int32_t max_batch = 16;         // running requests at most
  int32_t max_step_tokens = 512;  // tokens per forward step (decodes first, then prefill)
  bool prefix_cache = true;
  Detokenizer detokenize;  // for text and stop strings; may be empty
};

struct EngineStats {
  int64_t queue_depth = 0;  // submitted, not yet running
  int64_t running = 0;
  int64_t kv_blocks_used = 0;
  int64_t kv_blocks_total = 0;
  int64_t requests_total = 0;  // finished, any reason
  int64_t prompt_tokens_total = 0;
  int64_t prefix_hit_tokens_total = 0;  // prompt tokens taken from the cache
  int64_t generated_tokens_total = 0;
  int64_t computed_tokens_total = 0;  // tokens run through the backend
  int64_t preemptions_total = 0;
  double tokens_per_second = 0;  // generated, over the last few seconds
  double prefix_hit_rate() const {
    return prompt_tokens_total ? double(prefix_hit_tokens_total) / prompt_tokens_total : 0.0;
  }
};

class Engine {
 public:
  // Starts the engine thread. InvalidArgument on nonsensical options.
  static Result<std::unique_ptr<Engine>> Start(std::unique_ptr<Backend> backend,
                                               EngineOptions options);
  // Stops the thread; requests still queued or running get a kCancelled event.
  virtual ~Engine() = default;

  // Queues a request and returns its id. InvalidArgument, before anything is
  // queued, when the prompt is empty, has a token outside the vocabulary, or is
  // longer than the context (the message says so).
  virtual Result<uint64_t> Submit(GenerationRequest request, EventCallback on_event) = 0;
  // Finishes the request with kCancelled; unknown or finished ids are ignored.
  virtual void Cancel(uint64_t id) = 0;

  virtual EngineStats Stats() const = 0;
  virtual const ModelConfig& config() const = 0;
  // Prompt plus generated tokens at most: the model's positions, capped by the
  // KV cache's capacity.
  virtual int32_t max_context() const = 0;
};

}  // namespace loom::inference
