// Sentry's ingestion protocol, so that apps' unmodified Sentry SDKs send their
// crashes to loomd (docs/crash-reports.md).
//
// SentryKeys: the DSNs. Each has a project id (its row id), a random public
// key, the reporter token its crashes are filed under and the repository they
// are about. Created by an admin (`loom dsn create --repo NAME`). Thread-safe.
//
// SentryApi: POST /api/{project_id}/envelope/ and /api/{project_id}/store/,
// authenticated by the DSN's public key (X-Sentry-Auth or ?sentry_key=),
// with CORS for the browser SDK; and the admin routes /v1/sentry/dsns. An event
// is decompressed, parsed, scrubbed, and handed to Store::SubmitCrash; the
// answer ({"id": event_id}) goes once it is durable. Over the DSN's rate the
// answer is 429 with Retry-After and X-Sentry-Rate-Limits, which the SDKs
// honour. Items other than events are counted and dropped. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/auth.h"
#include "common/clock.h"
#include "common/db.h"
#include "common/http_server.h"
#include "common/metrics.h"
#include "common/mutex.h"
#include "common/rate_limiter.h"
#include "feedback/intake.h"

namespace loom::feedback {

struct SentryKey {
  int64_t project_id = 0;
  std::string public_key;  // 32 hex digits
  int64_t token_id = 0;
  std::string repo;
  int64_t created_at_ms = 0;
  std::optional<int64_t> revoked_at_ms;

  Json ToJson() const;
};

class SentryKeys {
 public:
  static Result<std::unique_ptr<SentryKeys>> Open(const std::string& db_path,
                                                  const Clock* clock = SystemClock::Default());
  // A new DSN for `repo`, filing under reporter token `token_id`.
  Result<SentryKey> Create(std::string_view repo, int64_t token_id);
  Result<std::vector<SentryKey>> List();
  // Refuses the DSN's key from now on (within the lookup cache's second).
  Result<SentryKey> Revoke(int64_t project_id);
  // The usable DSN `project_id` (cached for a second). NotFound when there is
  // none, PermissionDenied when it was revoked.
  Result<SentryKey> Lookup(int64_t project_id);

 private:
  SentryKeys(std::unique_ptr<Db> db, const Clock* clock) : db_(std::move(db)), clock_(clock) {}
  struct Cached {
    Result<SentryKey> key;
    int64_t at_ms;
  };
  Mutex mu_;
  std::unique_ptr<Db> db_ GUARDED_BY(mu_);
  const Clock* clock_;
  std::map<int64_t, Cached> cache_ GUARDED_BY(mu_);
};

struct SentryOptions {
  size_t max_envelope_bytes = 20 << 20;  // decompressed (the compressed body: http.max_body_bytes)
  size_t max_event_bytes = 1 << 20;      // one event item (Sentry's limit)
  size_t breadcrumbs = 20;               // the last ones kept
  bool scrub_emails = true, scrub_ip_addresses = true, scrub_secrets = true, scrub_cards = true;
};

class SentryApi {
 public:
  // `limiter` is keyed by DSN; `on_stored` (may be empty) runs when a crash
  // filed a new feedback item (triage waits for it).
  SentryApi(Store* store, SentryKeys* keys, TokenStore* tokens, RateLimiter* limiter,
            MetricsRegistry* metrics, SentryOptions options,
            std::function<void()> on_stored = nullptr);
  ~SentryApi();
  void Register(Router& router);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom::feedback
