// What an operator watches besides the log: loomd's readiness (GET /readyz) and
// the metrics no single store counts (docs/metrics.md). Model calls and sandbox
// runs are measured by wrapping the LlmClient and the sandbox::Executor; the
// gauges of what is in the database (tasks by state, the queue's oldest task, open
// escalations, webhooks not yet delivered) are read at each scrape.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/blocking_pool.h"
#include "common/clock.h"
#include "common/http_server.h"
#include "common/metrics.h"
#include "common/mutex.h"
#include "common/status.h"
#include "orchestrator/llm_client.h"
#include "orchestrator/store_db.h"
#include "sandbox/executor.h"

namespace loom {

// `inner`, with each Chat() timed and counted in `metrics`:
// loom_model_request_duration_seconds{outcome}, loom_model_requests_total{outcome}
// (ok | unavailable | malformed | error), loom_model_retries_total and
// loom_model_{prompt,completion,cached}_tokens_total. REQUIRES: `metrics` outlives
// the client; called once per registry.
std::unique_ptr<LlmClient> MeterLlmClient(std::unique_ptr<LlmClient> inner,
                                          MetricsRegistry* metrics);

// `inner`, with each Run() timed and counted: loom_sandbox_run_duration_seconds
// {outcome} and loom_sandbox_runs_total{outcome}, where outcome is passed, failed
// (a non-zero exit), the limit that ended the run (timeout, memory, pids, output,
// file_size, cpu, cancelled) or error (not run). Thread-safe when `inner` is.
std::unique_ptr<sandbox::Executor> MeterExecutor(std::unique_ptr<sandbox::Executor> inner,
                                                 MetricsRegistry* metrics);

// The database's gauges, refreshed by Refresh() (at each scrape) on the stores'
// read-only connection: loom_tasks{state}, loom_task_queue_oldest_age_seconds,
// loom_escalations_open{kind}, loom_escalation_oldest_open_age_seconds{kind},
// loom_webhook_deliveries_pending, loom_webhook_deliveries_retrying and
// loom_forge_deliveries_unfinished. Every statement is an index search.
class StoreGauges {
 public:
  // REQUIRES: `clock` is the one the stores stamp rows with, and outlives this.
  StoreGauges(std::shared_ptr<StoreDb> db, MetricsRegistry* metrics,
              const Clock* clock = SystemClock::Default());
  Status Refresh() EXCLUDES(mu_);

 private:
  Status RefreshIn(Db* db) REQUIRES(mu_);

  const std::shared_ptr<StoreDb> db_;
  const Clock* const clock_;
  Gauge* tasks_;
  Gauge* queue_age_;
  Gauge* escalations_;
  Gauge* escalation_age_;
  Gauge* webhooks_pending_;
  Gauge* webhooks_retrying_;
  Gauge* forge_unfinished_;
  Mutex mu_;
  std::vector<std::string> kinds_seen_ GUARDED_BY(mu_);  // so a kind with none left reads 0
};

// One check of GET /readyz: `name` ("database", "model", ...) and what runs it:
// a line saying what it found, or why loomd is not ready.
struct ReadinessCheck {
  std::string name;
  std::function<Result<std::string>()> run;
};

// GET /readyz: 200 {"status":"ready","checks":{name:{"ok":true,"detail":..}}} when
// every check passes, else 503 with "status":"not ready" and each failed check's
// "error". The checks run on a thread of their own, never on an I/O thread, and a
// result is reused for `reuse` so that probes cannot turn into load. Thread-safe.
class Readiness {
 public:
  Readiness(std::vector<ReadinessCheck> checks,
            std::chrono::milliseconds reuse = std::chrono::seconds(1));
  void Register(Router& router);

 private:
  void Answer(std::shared_ptr<HttpExchange> exchange) EXCLUDES(mu_);

  const std::vector<ReadinessCheck> checks_;
  const std::chrono::milliseconds reuse_;
  Mutex mu_;
  std::chrono::steady_clock::time_point checked_at_ GUARDED_BY(mu_);
  std::optional<HttpResponse> last_ GUARDED_BY(mu_);
  BlockingPool pool_{1};  // last: joined first, while the members above live
};

}  // namespace loom
