// The /v1/feedback HTTP API: submit, list, show. Authentication by bearer
// token (any role may submit; reporters read only their own items, engineers
// and admins read all), per-token rate limits answered with 429 + Retry-After,
// and JSON errors {"error": {"code", "message", "field"?}}. Thread-safe.
//
// CORS, for the widget in an app's pages: a browser request from another origin
// is served only with a reporter token that allows that origin (the check is
// TokenStore::Authenticate's: 403 otherwise), and only then does the answer name
// the origin in Access-Control-Allow-Origin. A preflight (OPTIONS) carries no
// token: it is answered with the origin when some usable token allows it, and
// refused with 403 otherwise. An answer to a request whose token was not usable
// (401) names an origin some token allows, so the widget can say why.
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
  void Preflight(HttpRequest& req, std::shared_ptr<HttpExchange> ex);
  // Authenticates `req` and, for a cross-origin request, wraps `*ex` so that
  // every answer carries the CORS headers it may have.
  Result<Principal> Authenticate(HttpRequest& req, std::shared_ptr<HttpExchange>* ex);

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
