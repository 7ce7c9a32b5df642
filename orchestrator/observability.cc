#include "orchestrator/observability.h"

#include <algorithm>
#include <map>
#include <utility>

#include "common/json.h"
#include "orchestrator/task_store.h"

namespace loom {
namespace {

using Seconds = std::chrono::duration<double>;

class MeteredLlmClient : public LlmClient {
 public:
  MeteredLlmClient(std::unique_ptr<LlmClient> inner, MetricsRegistry* m)
      : inner_(std::move(inner)),
        latency_(m->NewHistogram("loom_model_request_duration_seconds",
                                 "Time for one model reply, retries included, by outcome.",
                                 {"outcome"}, {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300})),
        requests_(m->NewCounter("loom_model_requests_total",
                                "Model requests by outcome: ok, unavailable (retries ran out), "
                                "malformed (not a completion) or error.",
                                {"outcome"})),
        retries_(m->NewCounter("loom_model_retries_total",
                               "HTTP attempts to the model beyond the first of each request.")),
        prompt_(m->NewCounter("loom_model_prompt_tokens_total", "Prompt tokens the model read.")),
        completion_(
            m->NewCounter("loom_model_completion_tokens_total", "Tokens the model generated.")),
        cached_(m->NewCounter("loom_model_cached_tokens_total",
                              "Prompt tokens the model server took from its prefix cache.")) {}

  Result<ChatReply> Chat(const Json& messages, const Json& tools) override {
    auto start = std::chrono::steady_clock::now();
    Result<ChatReply> reply = inner_->Chat(messages, tools);
    const char* outcome = "ok";
    if (reply.ok()) {
      retries_->Add({}, reply->attempts - 1);
      prompt_->Add({}, static_cast<double>(reply->prompt_tokens));
      completion_->Add({}, static_cast<double>(reply->completion_tokens));
      cached_->Add({}, static_cast<double>(reply->cached_tokens));
    } else if (reply.status().code() == StatusCode::kUnavailable) {
      outcome = "unavailable";
    } else if (reply.status().code() == StatusCode::kCorruption) {
      outcome = "malformed";
    } else {
      outcome = "error";
    }
    requests_->Add({outcome});
    latency_->Observe({outcome}, Seconds(std::chrono::steady_clock::now() - start).count());
    return reply;
  }

 private:
  const std::unique_ptr<LlmClient> inner_;
  Histogram* const latency_;
  Counter* const requests_;
  Counter* const retries_;
  Counter* const prompt_;
  Counter* const completion_;
  Counter* const cached_;
};

class MeteredExecutor : public sandbox::Executor {
 public:
  MeteredExecutor(std::unique_ptr<sandbox::Executor> inner, MetricsRegistry* m)
      : inner_(std::move(inner)),
        latency_(m->NewHistogram("loom_sandbox_run_duration_seconds",
                                 "Wall time of sandboxed runs (test suites), by outcome.",
                                 {"outcome"}, {0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800})),
        runs_(m->NewCounter("loom_sandbox_runs_total",
                            "Sandboxed runs by outcome: passed, failed, the limit that ended "
                            "the run, or error (not run).",
                            {"outcome"})) {}

  Result<sandbox::Outcome> Run(const sandbox::RunSpec& spec) override {
    auto start = std::chrono::steady_clock::now();
    Result<sandbox::Outcome> out = inner_->Run(spec);
    std::string outcome = "error";
    if (out.ok()) {
      if (out->limit != sandbox::LimitHit::kNone) {
        outcome = sandbox::LimitHitName(out->limit);
      } else {
        outcome = out->Succeeded() ? "passed" : "failed";
      }
    }
    runs_->Add({outcome});
    latency_->Observe({outcome}, Seconds(std::chrono::steady_clock::now() - start).count());
    return out;
  }

 private:
  const std::unique_ptr<sandbox::Executor> inner_;
  Histogram* const latency_;
  Counter* const runs_;
};

}  // namespace

std::unique_ptr<LlmClient> MeterLlmClient(std::unique_ptr<LlmClient> inner,
                                          MetricsRegistry* metrics) {
  return std::make_unique<MeteredLlmClient>(std::move(inner), metrics);
}

std::unique_ptr<sandbox::Executor> MeterExecutor(std::unique_ptr<sandbox::Executor> inner,
                                                 MetricsRegistry* metrics) {
  return std::make_unique<MeteredExecutor>(std::move(inner), metrics);
}

StoreGauges::StoreGauges(std::shared_ptr<StoreDb> db, MetricsRegistry* m, const Clock* clock)
    : db_(std::move(db)),
      clock_(clock),
      tasks_(m->NewGauge("loom_tasks", "Tasks by state.", {"state"})),
      queue_age_(m->NewGauge("loom_task_queue_oldest_age_seconds",
                             "How long the next task to lease has been queued; 0: none queued.")),
      escalations_(m->NewGauge("loom_escalations_open", "Open escalations by kind.", {"kind"})),
      escalation_age_(m->NewGauge("loom_escalation_oldest_open_age_seconds",
                                  "Age of the oldest open escalation of each kind.", {"kind"})),
      webhooks_pending_(m->NewGauge("loom_webhook_deliveries_pending",
                                    "Outbound webhook deliveries not yet delivered nor given up.")),
      webhooks_retrying_(m->NewGauge("loom_webhook_deliveries_retrying",
                                     "Pending outbound webhook deliveries that failed at least "
                                     "once.")),
      forge_unfinished_(m->NewGauge("loom_forge_deliveries_unfinished",
                                    "Forge webhook deliveries received and not yet handled.")) {}

Status StoreGauges::Refresh() {
  MutexLock lock(&mu_);
  auto reader = db_->AcquireReader();
  // One read transaction: the numbers agree with each other.
  LOOM_RETURN_IF_ERROR(reader.db()->Exec("BEGIN"));
  Status s = RefreshIn(reader.db());
  (void)reader.db()->Exec("COMMIT");
  return s;
}

Status StoreGauges::RefreshIn(Db* db) {
  std::map<std::string, int64_t> by_state;
  LOOM_ASSIGN_OR_RETURN(Statement * q,
                        db->Prepare("SELECT state, COUNT(*) FROM tasks GROUP BY state"));
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    by_state[q->Text(0)] = q->Int(1);
  }
  for (int s = 0; s <= static_cast<int>(TaskState::kCancelled); ++s) {
    std::string name(TaskStateName(static_cast<TaskState>(s)));
    tasks_->Set({name}, static_cast<double>(by_state[name]));
  }
  int64_t now = clock_->NowMs();
  // The task LeaseNext takes next (the oldest by id) has waited since its last
  // state event.
  LOOM_ASSIGN_OR_RETURN(
      std::optional<int64_t> queued_at,
      db->QueryOptional(
          "SELECT (SELECT created_at FROM events WHERE task_id=t.id AND type='state' ORDER BY "
          "seq DESC LIMIT 1) FROM tasks t WHERE state='queued' ORDER BY id LIMIT 1",
          [](const Statement& r) { return r.IsNull(0) ? int64_t{-1} : r.Int(0); }));
  double age = 0;
  if (queued_at && *queued_at >= 0) age = std::max<int64_t>(0, now - *queued_at) / 1000.0;
  queue_age_->Set(age);

  for (const std::string& kind : kinds_seen_) {
    escalations_->Set({kind}, 0);
    escalation_age_->Set({kind}, 0);
  }
  LOOM_ASSIGN_OR_RETURN(
      Statement * e,
      db->Prepare("SELECT kind, COUNT(*), MIN(created_at) FROM escalations WHERE state='open' "
                  "GROUP BY kind"));
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, e->Step());
    if (!row) break;
    std::string kind = e->Text(0);
    if (std::find(kinds_seen_.begin(), kinds_seen_.end(), kind) == kinds_seen_.end()) {
      kinds_seen_.push_back(kind);
    }
    escalations_->Set({kind}, static_cast<double>(e->Int(1)));
    escalation_age_->Set({kind}, std::max<int64_t>(0, now - e->Int(2)) / 1000.0);
  }

  LOOM_ASSIGN_OR_RETURN(
      auto webhooks,
      db->QueryOne("SELECT COUNT(*), COALESCE(SUM(attempts > 0), 0) FROM webhook_outbox "
                   "WHERE delivered_at IS NULL AND failed_at IS NULL",
                   "no count", [](const Statement& r) {
                     return std::pair{r.Int(0), r.Int(1)};
                   }));
  webhooks_pending_->Set(static_cast<double>(webhooks.first));
  webhooks_retrying_->Set(static_cast<double>(webhooks.second));
  LOOM_ASSIGN_OR_RETURN(
      int64_t unfinished,
      db->QueryOne("SELECT COUNT(*) FROM forge_deliveries WHERE finished_at IS NULL", "no count",
                   [](const Statement& r) { return r.Int(0); }));
  forge_unfinished_->Set(static_cast<double>(unfinished));
  return Status::Ok();
}

Readiness::Readiness(std::vector<ReadinessCheck> checks, std::chrono::milliseconds reuse)
    : checks_(std::move(checks)), reuse_(reuse) {}

void Readiness::Register(Router& router) {
  router.Add("GET", "/readyz", [this](HttpRequest&, std::shared_ptr<HttpExchange> ex) {
    pool_.Post([this, ex] { Answer(ex); });
  });
}

void Readiness::Answer(std::shared_ptr<HttpExchange> exchange) {
  MutexLock lock(&mu_);
  auto now = std::chrono::steady_clock::now();
  if (!last_ || now - checked_at_ >= reuse_) {
    Json checks = Json::object();
    bool ready = true;
    for (const ReadinessCheck& check : checks_) {
      Result<std::string> r = check.run();
      if (r.ok()) {
        checks[check.name] = {{"ok", true}, {"detail", *r}};
      } else {
        ready = false;
        checks[check.name] = {{"ok", false}, {"error", r.status().message()}};
      }
    }
    Json body = {{"status", ready ? "ready" : "not ready"}, {"checks", checks}};
    last_ = HttpResponse::Json(ready ? 200 : 503, DumpJson(body));
    checked_at_ = std::chrono::steady_clock::now();
  }
  exchange->Respond(*last_);
}

}  // namespace loom
