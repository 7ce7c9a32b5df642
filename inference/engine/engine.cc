// EngineImpl: a loop on one thread. Each iteration
//   1. moves submitted requests into `waiting_` and applies cancellations;
//   2. schedules a step: every running sequence that decodes gets one token
//      (allocating a block when it crosses a block boundary, preempting the
//      newest sequence not yet scheduled when none is free), then running
//      prefills get chunks, then waiting sequences are admitted (prefix-cache
//      lookup first) while the batch and the token budget allow;
//   3. runs Backend::Forward once for the whole batch;
//   4. publishes newly full blocks to the prefix cache, samples a token for
//      each sequence whose tokens are now all computed, and streams events.
// A sequence's state is just its tokens (prompt + generated), how many of them
// have K/V in the cache, and its block table, so a preempted sequence is
// recomputed by treating all of its tokens as a prompt.
#include "inference/engine/engine.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <thread>
#include <unordered_set>

#include "common/mutex.h"
#include "inference/engine/kv_cache.h"

namespace loom::inference {

std::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone:
      return "none";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kError:
      return "error";
  }
  return "none";
}

namespace {

using Clock = std::chrono::steady_clock;

struct Sequence {
  Sequence(uint64_t id_in, GenerationRequest req_in, EventCallback cb_in, Detokenizer detok)
      : id(id_in),
        req(std::move(req_in)),
        cb(std::move(cb_in)),
        sampler(req.sampling),
        text(std::move(detok), req.stop) {
    tokens = req.prompt;
    prompt_len = static_cast<int32_t>(tokens.size());
  }

  uint64_t id;
  GenerationRequest req;
  EventCallback cb;
  Sampler sampler;
  OutputText text;
  std::vector<int32_t> tokens;  // prompt + generated
  int32_t prompt_len = 0;
  int32_t num_computed = 0;     // tokens[0, num_computed) have K/V in `blocks`
  std::vector<int32_t> blocks;  // block table
  int32_t num_published = 0;    // blocks[0, num_published) are in the prefix cache
  uint64_t chain_hash = KvBlockManager::kRootHash;  // hash through blocks[num_published-1]
  bool admitted_once = false;
  int32_t cached_tokens = 0;
  std::vector<int32_t> unreported;  // sampled, not yet in an event
  int32_t completion() const { return static_cast<int32_t>(tokens.size()) - prompt_len; }
};

// One sequence's part of the step being built.
struct Scheduled {
  Sequence* seq;
  int32_t n;  // new tokens computed this step
};

class EngineImpl final : public Engine {
 public:
  EngineImpl(std::unique_ptr<Backend> backend, EngineOptions options)
      : backend_(std::move(backend)),
        options_(std::move(options)),
        kv_(backend_->num_kv_blocks(), backend_->block_size()) {
    const auto& cfg = backend_->config();
    int64_t cap = std::min<int64_t>(cfg.max_position_embeddings,
                                    int64_t{backend_->num_kv_blocks()} * backend_->block_size());
    max_context_ = static_cast<int32_t>(std::min<int64_t>(cap, INT32_MAX));
    eos_.insert(cfg.eos_token_ids.begin(), cfg.eos_token_ids.end());
    stats_.kv_blocks_total = backend_->num_kv_blocks();
    thread_ = std::thread([this] { Loop(); });
  }

  ~EngineImpl() override {
    {
      MutexLock lock(&mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  Result<uint64_t> Submit(GenerationRequest request, EventCallback on_event) override {
    const int64_t n = static_cast<int64_t>(request.prompt.size());
    if (n == 0) return Status::InvalidArgument("the prompt is empty: give at least one token");
    if (n >= max_context_) {
      return Status::InvalidArgument(
          "the prompt has " + std::to_string(n) + " tokens but the model's context is " +
          std::to_string(max_context_) + " tokens (prompt plus completion); shorten the prompt");
    }
    const int64_t vocab = backend_->config().vocab_size;
    for (int32_t t : request.prompt) {
      if (t < 0 || t >= vocab) {
        return Status::InvalidArgument("token id " + std::to_string(t) +
                                       " is outside the vocabulary [0, " + std::to_string(vocab) +
                                       ")");
      }
    }
    if (request.max_tokens < 1) {
      return Status::InvalidArgument("max_tokens must be at least 1");
    }
    MutexLock lock(&mu_);
    if (stopping_) return Status::Unavailable("the engine is shutting down");
    uint64_t id = next_id_++;
    incoming_.push_back(std::make_unique<Sequence>(id, std::move(request), std::move(on_event),
                                                   options_.detokenize));
    ++stats_.queue_depth;
    cv_.notify_one();
    return id;
  }

  void Cancel(uint64_t id) override {
    MutexLock lock(&mu_);
    cancels_.insert(id);
    cv_.notify_one();
  }

  EngineStats Stats() const override {
    MutexLock lock(&mu_);
    return stats_;
  }

  const ModelConfig& config() const override { return backend_->config(); }
  int32_t max_context() const override { return max_context_; }

 private:
  void Loop() {
    for (;;) {
      std::unordered_set<uint64_t> cancels;
      {
        MutexLock lock(&mu_);
        while (!stopping_ && incoming_.empty() && cancels_.empty() && running_.empty() &&
               waiting_.empty()) {
          lock.Wait(&cv_);
        }
        if (stopping_) break;
        for (auto& s : incoming_) waiting_.push_back(std::move(s));
        incoming_.clear();
        cancels.swap(cancels_);
      }
      if (!cancels.empty()) ApplyCancels(cancels);
      Step();
      PublishStats();
    }
    std::deque<std::unique_ptr<Sequence>> rest;
    {
      MutexLock lock(&mu_);
      for (auto& s : incoming_) rest.push_back(std::move(s));
      incoming_.clear();
    }
    for (auto& s : waiting_) rest.push_back(std::move(s));
    for (auto& s : running_) rest.push_back(std::move(s));
    waiting_.clear();
    running_.clear();
    for (auto& s : rest) {
      FreeBlocks(*s);
      Finish(*s, FinishReason::kCancelled, Status::Cancelled("the engine is shutting down"));
    }
  }

  void ApplyCancels(const std::unordered_set<uint64_t>& ids) {
    auto drop = [&](auto& list) {
      for (auto it = list.begin(); it != list.end();) {
        if (ids.contains((*it)->id)) {
          FreeBlocks(**it);
          Finish(**it, FinishReason::kCancelled, Status::Cancelled("the request was cancelled"));
          it = list.erase(it);
        } else {
          ++it;
        }
      }
    };
    drop(waiting_);
    drop(running_);
  }

  // Gives `seq` blocks for its first `upto` tokens; false (and nothing
  // allocated beyond what fitted) when the cache has no free block left.
  bool Reserve(Sequence& seq, int32_t upto) {
    const int32_t bs = kv_.block_size();
    while (static_cast<int64_t>(seq.blocks.size()) * bs < upto) {
      auto b = kv_.Allocate();
      if (!b) return false;
      seq.blocks.push_back(*b);
    }
    return true;
  }

  // Frees every block (cached ones stay in the prefix cache) and forgets what
  // was computed.
  void FreeBlocks(Sequence& seq) {
    for (int32_t b : seq.blocks) kv_.Release(b);
    seq.blocks.clear();
    seq.num_computed = 0;
    seq.num_published = 0;
    seq.chain_hash = KvBlockManager::kRootHash;
  }

  // Blocks beyond what the computed tokens need (left by a partial Reserve).
  void TrimBlocks(Sequence& seq) {
    const int32_t bs = kv_.block_size();
    size_t need = (seq.num_computed + bs - 1) / bs;
    while (seq.blocks.size() > need) {
      kv_.Release(seq.blocks.back());
      seq.blocks.pop_back();
    }
  }

  // Takes the cached blocks matching the start of `seq.tokens`, never the
  // block holding the last token (its logits must be computed).
  void LookupPrefix(Sequence& seq) {
    if (!options_.prefix_cache) return;
    const int32_t bs = kv_.block_size();
    const int32_t usable = (static_cast<int32_t>(seq.tokens.size()) - 1) / bs;
    std::span<const int32_t> toks(seq.tokens);
    for (int32_t i = 0; i < usable; ++i) {
      auto block_tokens = toks.subspan(static_cast<size_t>(i) * bs, bs);
      uint64_t h = KvBlockManager::HashBlock(seq.chain_hash, block_tokens);
      auto b = kv_.Lookup(h, seq.chain_hash, block_tokens);
      if (!b) break;
      seq.blocks.push_back(*b);
      seq.chain_hash = h;
      ++seq.num_published;
      seq.num_computed += bs;
    }
  }

  void PublishFullBlocks(Sequence& seq) {
    if (!options_.prefix_cache) return;
    const int32_t bs = kv_.block_size();
    std::span<const int32_t> toks(seq.tokens);
    while ((seq.num_published + 1) * bs <= seq.num_computed) {
      auto block_tokens = toks.subspan(static_cast<size_t>(seq.num_published) * bs, bs);
      uint64_t h = KvBlockManager::HashBlock(seq.chain_hash, block_tokens);
      kv_.Publish(seq.blocks[seq.num_published], h, seq.chain_hash, block_tokens);
      seq.chain_hash = h;
      ++seq.num_published;
    }
  }

  bool IsRunning(const Sequence* seq) const {
    return std::any_of(running_.begin(), running_.end(),
                       [&](const auto& p) { return p.get() == seq; });
  }

  // Frees the blocks of a running sequence and puts it first in the queue.
  void Preempt(Sequence* seq) {
    auto it = std::find_if(running_.begin(), running_.end(),
                           [&](const auto& p) { return p.get() == seq; });
    FreeBlocks(*seq);
    ++preemptions_;
    preempted_this_step_ = true;
    waiting_.push_front(std::move(*it));
    running_.erase(it);
  }

  // Preempts the newest running sequence that is neither `except` nor in
  // `scheduled`; false when there is none.
  bool PreemptOne(const std::vector<Scheduled>& scheduled, const Sequence* except) {
    for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
      Sequence* s = it->get();
      if (s == except) continue;
      bool in_step = std::any_of(scheduled.begin(), scheduled.end(),
                                 [&](const Scheduled& x) { return x.seq == s; });
      if (in_step) continue;
      Preempt(s);
      return true;
    }
    return false;
  }

  void Step() {
    std::vector<Scheduled> batch;
    int32_t budget = options_.max_step_tokens;
    preempted_this_step_ = false;

    // 1. Decodes: one token each, preempting the newest others for blocks.
    std::vector<Sequence*> decodes;
    for (auto& s : running_) {
      if (static_cast<int32_t>(s->tokens.size()) - s->num_computed == 1) decodes.push_back(s.get());
    }
    for (Sequence* seq : decodes) {
      if (!IsRunning(seq)) continue;  // preempted for an older decode
      while (!Reserve(*seq, seq->num_computed + 1)) {
        if (!PreemptOne(batch, seq)) break;
      }
      if (static_cast<int64_t>(seq->blocks.size()) * kv_.block_size() < seq->num_computed + 1) {
        Preempt(seq);  // nothing left to preempt but itself: recompute it later
        continue;
      }
      batch.push_back({seq, 1});
      --budget;
    }
    // 2. Running prefills: chunks within the budget and the free blocks.
    for (auto& s : running_) {
      Sequence& seq = *s;
      int32_t need = static_cast<int32_t>(seq.tokens.size()) - seq.num_computed;
      if (need <= 1 || budget <= 0) continue;
      int32_t n = ChunkThatFits(seq, std::min(need, budget));
      if (n == 0) continue;
      batch.push_back({&seq, n});
      budget -= n;
    }
    // 3. Admissions, oldest first, leaving a block per running sequence free
    //    so that admitting does not immediately force a preemption (and none
    //    in a step that had to preempt).
    while (!preempted_this_step_ && !waiting_.empty() && budget > 0 &&
           static_cast<int32_t>(running_.size()) < options_.max_batch) {
      if (!running_.empty() && kv_.num_available() <= static_cast<int32_t>(running_.size())) break;
      Sequence& seq = *waiting_.front();
      LookupPrefix(seq);
      int32_t hit = seq.num_computed;
      int32_t need = static_cast<int32_t>(seq.tokens.size()) - seq.num_computed;
      int32_t n = ChunkThatFits(seq, std::min(need, budget));
      if (n == 0) {
        FreeBlocks(seq);
        break;
      }
      if (!seq.admitted_once) {
        seq.admitted_once = true;
        seq.cached_tokens = hit;
        prompt_tokens_ += seq.prompt_len;
        prefix_hit_tokens_ += hit;
      }
      batch.push_back({&seq, n});
      budget -= n;
      running_.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
    }
    if (batch.empty()) {
      if (!running_.empty()) {
        // Prefills hold every block between them: let the oldest go on alone.
        PreemptOne(batch, running_.front().get());
      } else if (!waiting_.empty() && !preempted_this_step_) {
        // Cannot happen: an idle cache holds any prompt that passed Submit.
        auto seq = std::move(waiting_.front());
        waiting_.pop_front();
        FreeBlocks(*seq);
        Finish(*seq, FinishReason::kError, Status::Internal("the KV cache cannot hold the prompt"));
      }
      return;
    }
    RunBatch(batch);
  }

  // The largest n <= want whose blocks can be reserved (0 when none).
  int32_t ChunkThatFits(Sequence& seq, int32_t want) {
    if (Reserve(seq, seq.num_computed + want)) return want;
    int32_t have = static_cast<int32_t>(seq.blocks.size()) * kv_.block_size() - seq.num_computed;
    int32_t n = std::max(0, std::min(want, have));
    if (n == 0) TrimBlocks(seq);
    return n;
  }

  void RunBatch(const std::vector<Scheduled>& batch) {
    std::vector<SeqStep> steps;
    steps.reserve(batch.size());
    int64_t computed = 0;
    for (const auto& [seq, n] : batch) {
      SeqStep st;
      st.tokens = std::span<const int32_t>(seq->tokens).subspan(seq->num_computed, n);
      st.start_pos = seq->num_computed;
      const int32_t bs = kv_.block_size();
      st.block_table =
          std::span<const int32_t>(seq->blocks).first((seq->num_computed + n + bs - 1) / bs);
      st.greedy = seq->req.sampling.temperature <= 0.0f;
      steps.push_back(st);
      computed += n;
    }
    StepOutput out;
    Status st = backend_->Forward(steps, &out);
    const size_t vocab = static_cast<size_t>(backend_->config().vocab_size);
    // Row i of `out.logits` belongs to the i-th step without a device argmax.
    const bool has_argmax = !out.argmax.empty();
    size_t rows = batch.size();
    if (st.ok() && has_argmax && out.argmax.size() != batch.size()) {
      st = Status::Internal("the backend returned " + std::to_string(out.argmax.size()) +
                            " argmax entries for " + std::to_string(batch.size()) + " steps");
    }
    if (st.ok() && has_argmax) {
      for (size_t i = 0; i < batch.size(); ++i) {
        if (out.argmax[i] >= 0 && (!steps[i].greedy || out.argmax[i] >= int64_t(vocab))) {
          st = Status::Internal("the backend returned a bad argmax for step " + std::to_string(i));
        }
        if (out.argmax[i] >= 0) --rows;
      }
    }
    if (st.ok() && out.logits.size() != vocab * rows) {
      st = Status::Internal("the backend returned " + std::to_string(out.logits.size()) +
                            " logits for " + std::to_string(rows) + " rows of " +
                            std::to_string(vocab));
    }
    if (!st.ok()) {
      for (const auto& [seq, n] : batch) FailRunning(seq, st);
      return;
    }
    computed_tokens_ += computed;
    std::vector<Sequence*> done;
    size_t row = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      Sequence& seq = *batch[i].seq;
      const bool on_device = has_argmax && out.argmax[i] >= 0;
      const float* logits = on_device ? nullptr : out.logits.data() + row++ * vocab;
      seq.num_computed += batch[i].n;
      PublishFullBlocks(seq);
      if (seq.num_computed < static_cast<int32_t>(seq.tokens.size())) continue;  // mid-prefill
      FinishReason finish =
          Append(seq, on_device ? out.argmax[i] : seq.sampler.Sample(std::span(logits, vocab)));
      GenerationEvent ev = MakeEvent(seq);
      ev.finish = finish;
      bool keep = seq.cb ? seq.cb(ev) : true;
      if (finish != FinishReason::kNone || !keep) done.push_back(&seq);
    }
    for (Sequence* s : done) {
      ++requests_finished_;
      RemoveRunning(s);
    }
  }

  // Appends one sampled token; the finish reason it causes, if any.
  FinishReason Append(Sequence& seq, int32_t tok) {
    seq.tokens.push_back(tok);
    seq.unreported.push_back(tok);
    ++generated_tokens_;
    recent_.push_back({Clock::now(), 1});
    bool is_eos = !seq.req.ignore_eos && eos_.contains(tok);
    bool is_stop_id = std::find(seq.req.stop_token_ids.begin(), seq.req.stop_token_ids.end(),
                                tok) != seq.req.stop_token_ids.end();
    if (is_eos || is_stop_id) {
      seq.text.Flush();
      return FinishReason::kStop;
    }
    if (seq.text.Append(tok)) return FinishReason::kStop;
    if (seq.completion() >= seq.req.max_tokens ||
        static_cast<int32_t>(seq.tokens.size()) >= max_context_) {
      seq.text.Flush();
      return FinishReason::kLength;
    }
    return FinishReason::kNone;
  }

  GenerationEvent MakeEvent(Sequence& seq) {
    GenerationEvent ev;
    ev.tokens.swap(seq.unreported);
    ev.text = seq.text.TakeDelta();
    ev.prompt_tokens = seq.prompt_len;
    ev.completion_tokens = seq.completion();
    ev.cached_tokens = seq.cached_tokens;
    return ev;
  }

  void Finish(Sequence& seq, FinishReason reason, Status error) {
    ++requests_finished_;
    if (!seq.cb) return;
    seq.text.Flush();
    GenerationEvent ev = MakeEvent(seq);
    ev.finish = reason;
    ev.error = std::move(error);
    seq.cb(ev);
  }

  void FailRunning(Sequence* seq, const Status& st) {
    Finish(*seq, FinishReason::kError, st);
    seq->cb = nullptr;  // no second event from RemoveRunning
    RemoveRunning(seq);
  }

  void RemoveRunning(Sequence* seq) {
    auto it = std::find_if(running_.begin(), running_.end(),
                           [&](const auto& p) { return p.get() == seq; });
    if (it == running_.end()) return;
    FreeBlocks(**it);
    running_.erase(it);
  }

  void PublishStats() {
    auto now = Clock::now();
    const auto window = std::chrono::seconds(5);
    while (!recent_.empty() && now - recent_.front().first > window) recent_.pop_front();
    double tps = 0;
    if (!recent_.empty()) {
      double span = std::chrono::duration<double>(now - recent_.front().first).count();
      tps = static_cast<double>(recent_.size()) / std::max(span, 1.0);
    }
    MutexLock lock(&mu_);
    stats_.queue_depth = static_cast<int64_t>(waiting_.size() + incoming_.size());
    stats_.running = static_cast<int64_t>(running_.size());
    stats_.kv_blocks_used = kv_.num_used();
    stats_.requests_total = requests_finished_;
    stats_.prompt_tokens_total = prompt_tokens_;
    stats_.prefix_hit_tokens_total = prefix_hit_tokens_;
    stats_.generated_tokens_total = generated_tokens_;
    stats_.computed_tokens_total = computed_tokens_;
    stats_.preemptions_total = preemptions_;
    stats_.tokens_per_second = tps;
  }

  const std::unique_ptr<Backend> backend_;
  const EngineOptions options_;
  int32_t max_context_ = 0;
  std::unordered_set<int32_t> eos_;

  mutable Mutex mu_;
  std::condition_variable cv_;
  bool stopping_ GUARDED_BY(mu_) = false;
  uint64_t next_id_ GUARDED_BY(mu_) = 1;
  std::vector<std::unique_ptr<Sequence>> incoming_ GUARDED_BY(mu_);
  std::unordered_set<uint64_t> cancels_ GUARDED_BY(mu_);
  EngineStats stats_ GUARDED_BY(mu_);

  // Engine thread only.
  KvBlockManager kv_;
  std::deque<std::unique_ptr<Sequence>> waiting_;   // front = next to admit
  std::vector<std::unique_ptr<Sequence>> running_;  // admission order
  int64_t requests_finished_ = 0;
  int64_t prompt_tokens_ = 0;
  int64_t prefix_hit_tokens_ = 0;
  int64_t generated_tokens_ = 0;
  int64_t computed_tokens_ = 0;
  int64_t preemptions_ = 0;
  bool preempted_this_step_ = false;
  std::deque<std::pair<Clock::time_point, int>> recent_;
  std::thread thread_;
};

}  // namespace

Result<std::unique_ptr<Engine>> Engine::Start(std::unique_ptr<Backend> backend,
                                              EngineOptions options) {
  if (!backend) return Status::InvalidArgument("no backend");
  if (options.max_batch < 1) return Status::InvalidArgument("max_batch must be at least 1");
  if (options.max_step_tokens < options.max_batch) {
    return Status::InvalidArgument("max_step_tokens must be at least max_batch");
  }
  if (backend->block_size() < 1 || backend->num_kv_blocks() < 1) {
    return Status::InvalidArgument("the backend has no KV cache");
  }
  return std::unique_ptr<Engine>(
      std::make_unique<EngineImpl>(std::move(backend), std::move(options)));
}

}  // namespace loom::inference
