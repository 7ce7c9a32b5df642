// The /v1/feedback HTTP API: submit, list, show. Authentication by bearer
// token (any role may submit; reporters read only their own items, engineers
// and admins read all), per-token rate limits answered with 429 + Retry-After,
// and JSON errors {"error": {"code", "message", "field"?}}. Thread-safe.
#pragma once

#include "common/auth.h"
#include "common/http_server.h"
#include "common/metrics.h"
#include "common/rate_limiter.h"
#include "feedback/intake.h"

namespace loom::feedback {

class Api {
 public:
  // `on_stored` (may be empty) is called after each new item is stored: the
  // orchestrator's triage waits for it instead of polling.
  Api(Store* store, TokenStore* tokens, RateLimiter* limiter, MetricsRegistry* metrics,
      Limits limits, std::function<void()> on_stored = nullptr);
  void Register(Router& router);
  // Sets the loom_feedback_items gauge from the database (at start-up).
  Status LoadCounts();

 private:
  void Submit(HttpRequest& req, std::shared_ptr<HttpExchange> ex);
  void List(HttpRequest& req, std::shared_ptr<HttpExchange> ex);
  void Show(HttpRequest& req, std::shared_ptr<HttpExchange> ex);

  Store* store_;
  TokenStore* tokens_;
  RateLimiter* limiter_;
  Limits limits_;
  std::function<void()> on_stored_;
  Counter* submitted_;
  Counter* rejected_;
  Gauge* items_;
};

}  // namespace loom::feedback
