// The replicas of one model that loomd's LLM client spreads its calls over
// (e.g. one loom-infer per GPU node: docs/scale-out.md), with their health.
//
// Routing is prefix-affine: a conversation's key (llm_client.h derives it from
// the system prompt and the first user message, the part of the prompt that
// never changes) orders the endpoints by rendezvous hashing, and a call goes to
// the first endpoint of that order that is up. The same task therefore keeps
// hitting the same replica's prefix cache; different tasks spread evenly; when
// a replica is down its tasks go to the next one in their own order (spread
// over the survivors, not piled on one), and come back when it is up again.
// Adding or removing a replica moves only the tasks whose first choice changed.
//
// Health: an endpoint is up until a request cannot reach it or a probe (GET
// /models) fails; then it is down and re-probed after a backoff that doubles
// per failed probe (`down_backoff` up to `max_down_backoff`). An up endpoint
// is probed every `probe_interval`. Probes run on one thread
// (StartHealthChecks) or, in tests, when ProbeDue() is called.
//
// Thread-safe: Route, the Mark* calls and Snapshot may be called from any
// thread (the agent slots call them at once).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/mutex.h"
#include "common/status.h"

namespace loom {

// InvalidArgument unless `url` is an http:// or https:// base URL with a host
// (e.g. "http://127.0.0.1:8000/v1"); says what a right one looks like.
Status CheckModelUrl(const std::string& url);

struct ModelEndpointsOptions {
  std::chrono::milliseconds probe_interval{std::chrono::seconds(10)};  // 0: up ones are not probed
  std::chrono::milliseconds down_backoff{std::chrono::seconds(1)};     // first re-probe when down
  std::chrono::milliseconds max_down_backoff{std::chrono::minutes(1)};
  const Clock* clock = nullptr;  // null: the system clock
};

// One endpoint as operators see it (GET /v1/fleet, loomd's log).
struct EndpointStatus {
  std::string url;
  bool up = true;
  int64_t since_ms = 0;           // wall time of the last change between up and down; 0: never
  std::string last_error;         // why it went down last (empty: never)
  int failed_probes = 0;          // in a row, while down
  int64_t requests = 0;           // requests it answered
  int64_t failed_requests = 0;    // requests that could not reach it (each went on elsewhere)
  int64_t probe_latency_ms = -1;  // of its last successful probe; -1: none yet
};

class ModelEndpoints {
 public:
  // Asks one endpoint whether it serves (Ok) or not (the error says why).
  using Prober = std::function<Status(const std::string& url)>;

  // Splits a comma-separated list of base URLs (spaces around commas allowed).
  // InvalidArgument when one is not an http(s) URL (CheckModelUrl), when the
  // list is empty or when a URL appears twice. Trailing slashes are dropped.
  static Result<std::vector<std::string>> ParseUrls(const std::string& list);

  // REQUIRES: `urls` non-empty, as ParseUrls returns them. Every endpoint
  // starts up (unknown counts as up until a request or a probe says otherwise).
  ModelEndpoints(std::vector<std::string> urls, Prober prober, ModelEndpointsOptions options = {});
  // Stops the health thread, if started.
  ~ModelEndpoints();
  ModelEndpoints(const ModelEndpoints&) = delete;
  ModelEndpoints& operator=(const ModelEndpoints&) = delete;

  // Starts the thread that runs ProbeDue() whenever a probe falls due. At most once.
  void StartHealthChecks() EXCLUDES(mu_);

  size_t size() const { return urls_.size(); }
  const std::string& url(size_t i) const { return urls_[i]; }

  // The endpoints to try for `key`, in order: those up, by descending
  // rendezvous score; when none is up, every endpoint in that order (a
  // replica that came back is then found by the next call, before its probe).
  std::vector<size_t> Route(std::string_view key) const EXCLUDES(mu_);
  // Every endpoint in rendezvous order for `key`, up or not.
  std::vector<size_t> RendezvousOrder(std::string_view key) const;

  // A request could not reach endpoint `i` (connection refused or reset,
  // timeout, a stream cut short): down now, re-probed after the backoff.
  void MarkDown(size_t i, const std::string& why) EXCLUDES(mu_);
  // A request answered by endpoint `i`: up (if it was down, it is back).
  void MarkAnswered(size_t i) EXCLUDES(mu_);
  // The result of a probe of endpoint `i` made outside ProbeDue (loomd's start).
  void RecordProbe(size_t i, const Status& result, std::chrono::milliseconds latency) EXCLUDES(mu_);

  // Probes every endpoint whose probe is due by the clock, outside the lock;
  // returns how many it probed.
  int ProbeDue() EXCLUDES(mu_);

  std::vector<EndpointStatus> Snapshot() const EXCLUDES(mu_);
  int UpCount() const EXCLUDES(mu_);

 private:
  struct State {
    EndpointStatus status;
    int64_t next_probe_ns = 0;  // monotonic
    bool probing = false;
  };
  int64_t NowNs() const { return clock_->MonotonicNs(); }
  void SetDown(State& s, const std::string& why) REQUIRES(mu_);
  void SetUp(State& s) REQUIRES(mu_);
  void HealthLoop() EXCLUDES(mu_);

  const std::vector<std::string> urls_;
  const Prober prober_;
  const ModelEndpointsOptions options_;
  const Clock* const clock_;
  mutable Mutex mu_;
  std::vector<State> states_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::condition_variable wake_;
  std::thread health_;
};

}  // namespace loom
