// loomd's wiring: config -> data dir -> database-backed stores -> HTTP routes.
#include "orchestrator/daemon.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <filesystem>

#include "common/auth.h"
#include "common/blocking_pool.h"
#include "common/crypto.h"
#include "common/http_server.h"
#include "common/json_reader.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/mutex.h"
#include "common/private_dir.h"
#include "common/rate_limiter.h"
#include "feedback/api.h"
#include "feedback/intake.h"
#include "feedback/sentry.h"
#include "orchestrator/agent.h"
#include "orchestrator/api.h"
#include "orchestrator/forge_hooks.h"
#include "orchestrator/forge_store.h"
#include "orchestrator/forge_sync.h"
#include "orchestrator/llm_client.h"
#include "orchestrator/maintenance.h"
#include "orchestrator/observability.h"
#include "orchestrator/repo_cache.h"
#include "orchestrator/repo_policy.h"
#include "orchestrator/scheduler.h"
#include "orchestrator/schema.h"
#include "orchestrator/secrets.h"
#include "orchestrator/session_api.h"
#include "orchestrator/stores.h"
#include "orchestrator/webhook_outbox.h"
#include "policies/policy.h"
#include "sandbox/executor.h"
#include "web/static_files.h"

namespace loom {

std::vector<Config::Key> DaemonConfigSchema() {
  using T = Config::Type;
  return {
      {"data_dir", T::kString, ".loom", "Directory for the database and task workspaces."},
      {"listen", T::kString, "127.0.0.1:7700", "HTTP listen address, host:port."},
      {"log.level", T::kString, "info", "debug, info, warning or error."},
      {"log.json", T::kBool, "false", "Write logs as JSON lines."},
      {"http.threads", T::kInt, "2", "HTTP I/O threads."},
      {"http.blocking_threads", T::kInt, "4",
       "Threads that run the task, review and escalation routes (SQLite, git), off the I/O "
       "threads."},
      {"http.max_body_bytes", T::kInt, "1048576", "Largest accepted request body (413 above)."},
      {"http.header_timeout_ms", T::kInt, "10000", "Time allowed to send a request head."},
      {"http.idle_timeout_ms", T::kInt, "60000", "Keep-alive wait for the next request."},
      {"http.session_hours", T::kInt, "12",
       "How long a dashboard sign-in lasts (never past its token's expiry)."},
      {"http.drain_ms", T::kInt, "10000", "On SIGTERM, how long in-flight requests may finish."},
      {"feedback.rate_per_minute", T::kDouble, "600",
       "Submissions allowed per token per minute (0: unlimited)."},
      {"feedback.burst", T::kDouble, "60", "Submissions a token may make at once."},
      {"sentry.rate_per_minute", T::kDouble, "6000",
       "Crash reports a DSN may send per minute (0: unlimited); 429 with Retry-After above."},
      {"sentry.burst", T::kDouble, "600", "Crash reports a DSN may send at once."},
      {"sentry.max_envelope_bytes", T::kInt, "20971520",
       "Largest envelope once decompressed (413 above; the compressed body is capped by "
       "http.max_body_bytes)."},
      {"sentry.max_event_bytes", T::kInt, "1048576", "Largest event in an envelope (413 above)."},
      {"sentry.breadcrumbs", T::kInt, "20", "Breadcrumbs kept per crash report (the last ones)."},
      {"sentry.scrub_emails", T::kBool, "true", "Replace email addresses in crash reports."},
      {"sentry.scrub_ip_addresses", T::kBool, "true", "Replace IPv4/IPv6 addresses."},
      {"sentry.scrub_secrets", T::kBool, "true",
       "Replace bearer tokens, API keys, secret-named values and random-looking tokens."},
      {"sentry.scrub_cards", T::kBool, "true", "Replace card numbers (Luhn-checked)."},
      {"agents", T::kInt, "2", "Agent slots: tasks worked on at once (0: intake only)."},
      {"llm.url", T::kString, "http://127.0.0.1:8000/v1",
       "OpenAI-compatible endpoint the agents think with (loom-infer, vLLM, a hosted API), or "
       "several replicas of one model separated by commas: each task keeps to one replica "
       "(its prefix cache), and goes to the next when that one is down (docs/scale-out.md)."},
      {"llm.model", T::kString, "default", "Model name sent with every request."},
      {"llm.api_key", T::kString, "", "Bearer token for the endpoint (or LOOM_LLM_API_KEY)."},
      {"llm.timeout_ms", T::kInt, "300000", "Time allowed for one model reply."},
      {"llm.retries", T::kInt, "4",
       "Retries on 429, 5xx and connection errors, with backoff (with several replicas: rounds "
       "over them; within a round a call goes on to the next replica at once)."},
      {"llm.stream", T::kBool, "false", "Ask for streamed (SSE) replies."},
      {"llm.probe_interval_ms", T::kInt, "10000",
       "How often each model endpoint that is up is probed (GET /models; 0: only a failed "
       "request marks one down)."},
      {"llm.down_backoff_ms", T::kInt, "1000",
       "Wait before a model endpoint that went down is probed again; doubled per failed probe, "
       "up to a minute."},
      {"policies_dir", T::kString, "",
       "Directory of repository policies, <repo>.toml (default: <data_dir>/policies)."},
      {"disk.reserve_mb", T::kInt, "16",
       "Space kept back on the data dir's disk so that a full disk parks tasks with a reason "
       "(an infrastructure escalation) instead of wedging them (0: none)."},
      {"maintenance.interval_s", T::kInt, "3600",
       "Seconds between maintenance passes, which remove what finished tasks left (worktrees, "
       "branches by policy) and pack loose git objects and refs (0: only by hand, loom gc)."},
      {"maintenance.min_loose_objects", T::kInt, "256",
       "A periodic pass packs a repository's loose objects only when it has this many (loom gc "
       "packs whatever is loose)."},
      {"maintenance.max_packs", T::kInt, "8",
       "More packs than this in a repository are merged into one by the maintenance pass."},
      {"remote.pass_interval_s", T::kInt, "60",
       "Seconds between passes over repositories on a git server: fetch each target branch, "
       "mark tasks whose branch was merged there as merged, push again what failed (0: none)."},
      {"remote.attempts", T::kInt, "4",
       "Tries of a fetch or push whose git server cannot be reached, before an infrastructure "
       "escalation."},
      {"remote.backoff_ms", T::kInt, "500",
       "Wait before the second try of a fetch or push; doubled before each next one."},
      {"cost.usd_per_million_prompt_tokens", T::kDouble, "0.5",
       "Price of 1M prompt tokens, for the cost of a task on the review page."},
      {"cost.usd_per_million_completion_tokens", T::kDouble, "1.5",
       "Price of 1M completion tokens."},
      {"cost.usd_per_cpu_hour", T::kDouble, "0.05", "Price of an hour of sandbox CPU time."},
      {"cost.usd_per_gpu_hour", T::kDouble, "2.0", "Price of an hour of GPU time."},
      {"sandbox.uid", T::kInt, "64000",
       "When loomd runs as root: the unprivileged uid (and gid) sandboxed runs use."},
      {"sandbox.backend", T::kString, "bwrap",
       "Where sandboxed runs happen: bwrap (this machine) or slurm (job steps in an allocation; "
       "the data dir must be at the same path on the nodes)."},
      {"sandbox.partition", T::kString, "", "slurm: the partition (empty: the default)."},
      {"sandbox.account", T::kString, "", "slurm: the account (empty: the user's default)."},
      {"sandbox.gpu_partition", T::kString, "",
       "slurm: where runs of a task with a GPU grant go, as jobs with --gres=gpu:<type>:<n> "
       "(empty: sandbox.partition)."},
      {"sandbox.concurrent_steps", T::kInt, "4",
       "slurm: runs at once in the allocation (one CPU each)."},
      {"sandbox.step_memory_mb", T::kInt, "4096", "slurm: memory per step (srun --mem)."},
      {"sandbox.warm_allocations", T::kInt, "1",
       "slurm: allocations kept, each of concurrent_steps CPUs; runs spread over them."},
      {"sandbox.allocation_minutes", T::kInt, "60",
       "slurm: the allocation's time limit; a new one is made when it ends."},
      {"sandbox.slurm_conf", T::kString, "",
       "slurm: SLURM_CONF for salloc/srun (empty: /etc/slurm/slurm.conf)."},
      {"sandbox.runner", T::kString, "",
       "slurm: loom-sandbox-runner on the nodes (empty: next to loomd)."},
      {"sandbox.start_attempts", T::kInt, "3",
       "slurm: tries to start a step (controller unreachable, node drained) before the pool "
       "counts as down; a step that started and was lost is never run again."},
      {"sandbox.start_backoff_ms", T::kInt, "2000",
       "slurm: wait before the second try to start a step; doubled before each next one."},
      {"sandbox.slurm_fallback", T::kString, "none",
       "slurm: when the pool is down, none (the task waits on an infrastructure escalation) or "
       "local (the run happens in bubblewrap on this machine)."},
      {"webhooks.urls", T::kString, "",
       "Outbound webhooks: URLs (comma-separated) every task event is POSTed to as JSON "
       "(docs/forges.md)."},
      {"webhooks.secret_name", T::kString, "",
       "The secret (in loomd's secret store) that signs outbound webhooks "
       "(X-Loom-Signature-256)."},
      {"webhooks.max_attempts", T::kInt, "20",
       "Attempts of one outbound webhook delivery, with backoff, before it is marked failed."},
  };
}

Status CheckSandboxCanReach(const std::string& dir, uint32_t sandbox_uid) {
  if (::geteuid() != 0) return Status::Ok();
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(dir, ec).lexically_normal();
  if (ec) return Status::InvalidArgument("bad path " + dir + ": " + ec.message());
  for (std::filesystem::path p = abs.parent_path();; p = p.parent_path()) {
    struct stat st;
    if (::stat(p.c_str(), &st) == 0) {
      bool can = st.st_uid == sandbox_uid ? (st.st_mode & S_IXUSR) : (st.st_mode & S_IXOTH);
      if (!can) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
        return Status::FailedPrecondition(
            "sandboxed runs (uid " + std::to_string(sandbox_uid) + ") cannot reach " +
            abs.string() + ": " + p.string() + " is mode " + mode +
            "; put the data directory elsewhere (e.g. /var/lib/loom) or allow traversal with "
            "chmod o+x " +
            p.string());
      }
    }
    if (p == p.root_path()) break;
  }
  return Status::Ok();
}

namespace {

// What every agent prompt holds whatever the task: the tool schemas and the
// system prompt's opening (about 0.5 KB, counted as 1 KB).
size_t AgentFixedPromptBytes() { return DumpJson(AgentToolSchemas()).size() + 1024; }

// Present while a loomd runs on the data dir; a clean stop removes it.
std::string RunningMarker(const std::string& data_dir) { return data_dir + "/loomd.running"; }

// Before any store opens the database: creates or migrates it (the stores open
// it as it is). A damaged file is refused with what to do (serving from it
// would answer 500s and could lose more). A -wal file that is gone after an
// unclean stop means the writes acknowledged since the last checkpoint are
// lost: that is reported (`*wal_lost`), never silent.
Status CheckDatabaseAtStart(const std::string& data_dir, bool* wal_lost) {
  std::string db_path = DatabasePath(data_dir);
  std::error_code ec;
  *wal_lost = false;
  if (!std::filesystem::exists(db_path, ec)) return MigrateDatabase(db_path);
  if (std::filesystem::exists(RunningMarker(data_dir), ec) &&
      !std::filesystem::exists(db_path + "-wal", ec)) {
    *wal_lost = true;
    LOOM_LOG(kError) << db_path << "-wal is missing after an unclean stop: feedback, events and "
                     << "answers written since the last checkpoint are lost. If a copy of the "
                     << "file exists, stop loomd and put it back beside loom.db.";
  }
  LOOM_ASSIGN_OR_RETURN(std::unique_ptr<Db> db, Db::Open(db_path, LoomMigrations()));
  LOOM_ASSIGN_OR_RETURN(Statement * check, db->Prepare("PRAGMA quick_check"));
  std::string problems;
  for (int i = 0; i < 5; ++i) {
    Result<bool> row = check->Step();
    if (!row.ok()) {
      problems = row.status().message();
      break;
    }
    if (!*row) break;
    std::string line = check->Text(0);
    if (line == "ok") break;
    problems += (problems.empty() ? "" : "; ") + line;
  }
  check->Reset();
  if (problems.empty()) return Status::Ok();
  return Status::Corruption(
      db_path + " failed its integrity check (PRAGMA quick_check: " + problems +
      "). loomd will not serve from a damaged database. Keep a copy of the data dir, then "
      "restore the last backup, or recover what can be read: sqlite3 loom.db .recover | "
      "sqlite3 recovered.db, and move recovered.db to loom.db");
}

Status ParseListen(const std::string& listen, std::string* host, uint16_t* port) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return Status::InvalidArgument("listen: expected host:port, got '" + listen + "'");
  }
  *host = listen.substr(0, colon);
  int p = 0;
  try {
    p = std::stoi(listen.substr(colon + 1));
  } catch (...) {
    p = -1;
  }
  if (p < 0 || p > 65535) return Status::InvalidArgument("listen: bad port in '" + listen + "'");
  if (host->size() > 2 && host->front() == '[') *host = host->substr(1, host->size() - 2);
  *port = static_cast<uint16_t>(p);
  return Status::Ok();
}

// The request's id: the client's X-Request-Id when it is a plausible one (1 to 64
// letters, digits and "._:-"), else a new random one.
std::string RequestIdOf(const HttpRequest& request) {
  std::string_view given = request.Header("X-Request-Id");
  bool plausible = !given.empty() && given.size() <= 64;
  for (char c : given) {
    plausible = plausible && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
                              c == ':' || c == '-');
  }
  if (plausible) return std::string(given);
  static std::atomic<uint64_t> fallback{0};
  auto made = RandomHex(8);
  return made.ok() ? *made : "r" + std::to_string(++fallback);
}

// The last stop of every API response: answers with every known secret masked,
// and names the request's id (X-Request-Id).
class MaskingExchange : public HttpExchange {
 public:
  MaskingExchange(std::shared_ptr<HttpExchange> inner, std::shared_ptr<const SecretMasker> masker,
                  std::string request_id)
      : inner_(std::move(inner)), masker_(std::move(masker)), request_id_(std::move(request_id)) {}
  void Respond(HttpResponse response) override {
    if (masker_ && !masker_->empty()) response.body = masker_->Mask(response.body);
    response.headers.emplace_back("X-Request-Id", request_id_);
    inner_->Respond(std::move(response));
  }
  void StartStream(int status, std::string content_type,
                   std::vector<std::pair<std::string, std::string>> headers) override {
    headers.emplace_back("X-Request-Id", request_id_);
    inner_->StartStream(status, std::move(content_type), std::move(headers));
  }
  bool Write(std::string data) override {
    if (masker_ && !masker_->empty()) data = masker_->Mask(data);
    return inner_->Write(std::move(data));
  }
  void Finish() override { inner_->Finish(); }
  bool ClientGone() const override { return inner_->ClientGone(); }

 private:
  const std::shared_ptr<HttpExchange> inner_;
  const std::shared_ptr<const SecretMasker> masker_;
  const std::string request_id_;
};

class DaemonImpl : public Daemon {
 public:
  Status Init(const Config& config) {
    data_dir_ = config.GetString("data_dir");
    LOOM_RETURN_IF_ERROR(MakePrivateDir(data_dir_, DirAccess::kSandboxTraverses));
    bool wal_lost = false;
    LOOM_RETURN_IF_ERROR(CheckDatabaseAtStart(data_dir_, &wal_lost));
    if (FILE* marker = std::fopen(RunningMarker(data_dir_).c_str(), "w")) {
      std::fclose(marker);
      marked_running_ = true;
    }
    metrics_
        .NewGauge("loom_database_wal_lost_at_start",
                  "1 when the database's -wal file was missing after an unclean stop.")
        ->Set(wal_lost ? 1 : 0);
    // Db::Open makes the database 0600 before SQLite does, and SQLite gives its
    // -wal and -shm files the database's mode.
    std::string db_path = DatabasePath(data_dir_);
    LOOM_ASSIGN_OR_RETURN(tokens_, TokenStore::Open(db_path));
    LOOM_ASSIGN_OR_RETURN(feedback_, feedback::Store::Open(db_path));
    limiter_ =
        std::make_unique<RateLimiter>(config.GetDouble("feedback.rate_per_minute") / 60.0,
                                      config.GetDouble("feedback.burst"), SystemClock::Default());
    requests_ =
        metrics_.NewCounter("loom_http_requests_total", "HTTP requests by route and status.",
                            {"method", "route", "status"});
    latency_ = metrics_.NewHistogram("loom_http_request_duration_seconds",
                                     "HTTP request latency by route.", {"route"},
                                     MetricsRegistry::LatencyBuckets());
    // Triage waits for new feedback instead of polling (the scheduler starts
    // before the server takes its first request).
    feedback_api_ = std::make_unique<feedback::Api>(feedback_.get(), tokens_.get(), limiter_.get(),
                                                    &metrics_, feedback::Limits{}, [this] {
                                                      if (scheduler_) scheduler_->Wake();
                                                    });
    LOOM_RETURN_IF_ERROR(feedback_api_->LoadCounts());
    LOOM_ASSIGN_OR_RETURN(sentry_keys_, feedback::SentryKeys::Open(db_path));
    sentry_limiter_ =
        std::make_unique<RateLimiter>(config.GetDouble("sentry.rate_per_minute") / 60.0,
                                      config.GetDouble("sentry.burst"), SystemClock::Default());
    feedback::SentryOptions sentry;
    sentry.max_envelope_bytes = static_cast<size_t>(config.GetInt("sentry.max_envelope_bytes"));
    sentry.max_event_bytes = static_cast<size_t>(config.GetInt("sentry.max_event_bytes"));
    sentry.breadcrumbs =
        static_cast<size_t>(std::max<int64_t>(0, config.GetInt("sentry.breadcrumbs")));
    sentry.scrub_emails = config.GetBool("sentry.scrub_emails");
    sentry.scrub_ip_addresses = config.GetBool("sentry.scrub_ip_addresses");
    sentry.scrub_secrets = config.GetBool("sentry.scrub_secrets");
    sentry.scrub_cards = config.GetBool("sentry.scrub_cards");
    sentry_api_ =
        std::make_unique<feedback::SentryApi>(feedback_.get(), sentry_keys_.get(), tokens_.get(),
                                              sentry_limiter_.get(), &metrics_, sentry, [this] {
                                                if (scheduler_) scheduler_->Wake();
                                              });

    router_.Add("GET", "/healthz", [](HttpRequest&, std::shared_ptr<HttpExchange> ex) {
      ex->Respond(HttpResponse::Json(200, "{\"status\":\"ok\"}"));
    });
    // A scrape reads the database's gauges: on a thread of its own, never on an
    // I/O thread.
    router_.Add("GET", "/metrics", [this](HttpRequest&, std::shared_ptr<HttpExchange> ex) {
      scrape_pool_->Post([this, ex] {
        RefreshGauges();
        HttpResponse r = HttpResponse::Text(200, metrics_.Render());
        r.content_type = "text/plain; version=0.0.4; charset=utf-8";
        ex->Respond(std::move(r));
      });
    });
    router_.Add("POST", "/v1/tokens",
                [this](HttpRequest& r, std::shared_ptr<HttpExchange> ex) { CreateToken(r, ex); });
    router_.Add("GET", "/v1/tokens",
                [this](HttpRequest& r, std::shared_ptr<HttpExchange> ex) { ListTokens(r, ex); });
    router_.Add("POST", "/v1/tokens/{id}/revoke",
                [this](HttpRequest& r, std::shared_ptr<HttpExchange> ex) { RevokeToken(r, ex); });
    router_.Add(
        "PUT", "/v1/tokens/{id}/origins",
        [this](HttpRequest& r, std::shared_ptr<HttpExchange> ex) { SetTokenOrigins(r, ex); });
    feedback_api_->Register(router_);
    sentry_api_->Register(router_);
    int64_t session_hours = config.GetInt("http.session_hours");
    if (session_hours < 1 || session_hours > 24 * 90) {
      return Status::InvalidArgument("http.session_hours must be between 1 and 2160 (got " +
                                     std::to_string(session_hours) + ")");
    }
    RegisterSessionRoutes(router_, tokens_.get(), {session_hours * 3600 * 1000});

    LOOM_ASSIGN_OR_RETURN(stores_, OrchestratorStores::Open(db_path, SystemClock::Default()));
    stores_.tasks->Meter(&metrics_);
    store_gauges_ = std::make_unique<StoreGauges>(stores_.db, &metrics_);
    slots_ = metrics_.NewGauge("loom_agent_slots", "Agent slots, busy or idle.", {"state"});
    replicas_ = metrics_.NewGauge("loom_model_endpoints",
                                  "Model endpoints (replicas) up or down, as the health checks "
                                  "last found them.",
                                  {"state"});
    LOOM_RETURN_IF_ERROR(LoadPolicies(config));
    LOOM_ASSIGN_OR_RETURN(secrets_, SecretStore::Open(db_path, data_dir_));
    // The one masker of every stored secret, wherever text is recorded or shown:
    // the event log, the log, API responses (below) and model requests.
    masker_ = secrets_->masker();
    stores_.db->SetMasker(masker_);
    log::SetMasker(masker_);
    // Each registered repository is opened once and kept, for the scheduler, the
    // API and the lifecycle alike.
    repo_cache_ = std::make_unique<RepoCache>(stores_.repos.get(), &policies_, data_dir_);
    LifecycleOptions lifecycle{data_dir_, &policies_, repo_cache_.get(), secrets_.get(), {}};
    int64_t pass_s = config.GetInt("remote.pass_interval_s");
    int64_t attempts = config.GetInt("remote.attempts");
    int64_t backoff_ms = config.GetInt("remote.backoff_ms");
    if (pass_s < 0 || pass_s > 86400 || attempts < 1 || attempts > 20 || backoff_ms < 0 ||
        backoff_ms > 600000) {
      return Status::InvalidArgument(
          "remote.pass_interval_s must be between 0 and 86400, remote.attempts between 1 and 20 "
          "and remote.backoff_ms between 0 and 600000");
    }
    lifecycle.remote.attempts = static_cast<int>(attempts);
    lifecycle.remote.backoff = std::chrono::milliseconds(backoff_ms);
    lifecycle_ = std::make_unique<TaskLifecycle>(stores_.tasks.get(), stores_.escalations.get(),
                                                 stores_.repos.get(), lifecycle);
    if (pass_s > 0) lifecycle_->StartRemotePasses(std::chrono::seconds(pass_s));
    LOOM_RETURN_IF_ERROR(StartAgents(config));
    readiness_ = std::make_unique<Readiness>(ReadinessChecks(config));
    readiness_->Register(router_);
    int64_t interval_s = config.GetInt("maintenance.interval_s");
    if (interval_s < 0 || interval_s > 30 * 86400) {
      return Status::InvalidArgument("maintenance.interval_s must be between 0 and 2592000 (got " +
                                     std::to_string(interval_s) + ")");
    }
    MaintenanceOptions maintenance;
    maintenance.data_dir = data_dir_;
    maintenance.interval = std::chrono::seconds(interval_s);
    maintenance.first_delay = std::min(maintenance.interval, std::chrono::seconds(60));
    maintenance.min_loose_objects = config.GetInt("maintenance.min_loose_objects");
    int64_t max_packs = config.GetInt("maintenance.max_packs");
    if (maintenance.min_loose_objects < 1 || max_packs < 1 || max_packs > 1000) {
      return Status::InvalidArgument(
          "maintenance.min_loose_objects must be at least 1 and maintenance.max_packs between 1 "
          "and 1000");
    }
    maintenance.max_packs = static_cast<int>(max_packs);
    maintenance_ =
        std::make_unique<Maintenance>(stores_.repos.get(), lifecycle_.get(), maintenance);
    router_.Add("POST", "/v1/admin/gc", [this](HttpRequest& r, std::shared_ptr<HttpExchange> ex) {
      if (!RequireAdmin(r, ex, "running maintenance")) return;
      maintenance_->RunByHand([ex](const GcReport& report) {
        ex->Respond(HttpResponse::Json(200, DumpJson(report.ToJson())));
      });
    });
    int64_t blocking_threads = config.GetInt("http.blocking_threads");
    if (blocking_threads < 1 || blocking_threads > 256) {
      return Status::InvalidArgument("http.blocking_threads must be between 1 and 256 (got " +
                                     std::to_string(blocking_threads) + ")");
    }
    orchestrator_api_ = std::make_unique<OrchestratorApi>(
        stores_, lifecycle_.get(), feedback_.get(), tokens_.get(), data_dir_, &policies_,
        secrets_.get(),
        [this] {
          if (scheduler_) scheduler_->Wake();
        },
        static_cast<int>(blocking_threads));
    DashboardOptions dashboard;
    dashboard.usd_per_million_prompt_tokens =
        config.GetDouble("cost.usd_per_million_prompt_tokens");
    dashboard.usd_per_million_completion_tokens =
        config.GetDouble("cost.usd_per_million_completion_tokens");
    dashboard.usd_per_cpu_hour = config.GetDouble("cost.usd_per_cpu_hour");
    dashboard.usd_per_gpu_hour = config.GetDouble("cost.usd_per_gpu_hour");
    dashboard.agent_slots = static_cast<int>(config.GetInt("agents"));
    dashboard.llm_url = config.GetString("llm.url");
    dashboard.model_endpoints = model_endpoints_;
    dashboard.llm_model = config.GetString("llm.model");
    dashboard.sandbox = executor_ ? "bubblewrap" : "none (agents = 0)";
    dashboard.busy_slots = [this] { return scheduler_ ? scheduler_->busy_slots() : 0; };
    orchestrator_api_->SetDashboardOptions(std::move(dashboard));
    LOOM_RETURN_IF_ERROR(orchestrator_api_->FinishInterruptedMerges());
    orchestrator_api_->Register(router_);
    // Forges: webhooks in (verified by each repository's webhook secret, not a token).
    forge_store_ = std::make_unique<ForgeStore>(stores_.db);
    ForgeHooksDeps hooks;
    hooks.forge = forge_store_.get();
    hooks.tasks = stores_.tasks.get();
    hooks.lifecycle = lifecycle_.get();
    hooks.feedback = feedback_.get();
    hooks.tokens = tokens_.get();
    hooks.policies = &policies_;
    hooks.secrets = secrets_.get();
    hooks.wake = [this] {
      if (scheduler_) scheduler_->Wake();
    };
    forge_hooks_ = std::make_unique<ForgeHooks>(std::move(hooks));
    LOOM_RETURN_IF_ERROR(forge_hooks_->ResumeUnfinished());
    forge_hooks_->Register(router_);
    // Forges: each task's pull/merge request kept in step with the task.
    ForgeSyncDeps sync;
    sync.forge = forge_store_.get();
    sync.tasks = stores_.tasks.get();
    sync.feedback = feedback_.get();
    sync.policies = &policies_;
    sync.secrets = secrets_.get();
    forge_sync_ = std::make_unique<ForgeSync>(std::move(sync));
    forge_sync_->Start();
    WebhookOutboxOptions outbound;
    LOOM_ASSIGN_OR_RETURN(outbound.urls, ParseWebhookUrls(config.GetString("webhooks.urls")));
    outbound.secret_name = config.GetString("webhooks.secret_name");
    outbound.max_attempts = static_cast<int>(config.GetInt("webhooks.max_attempts"));
    if (outbound.max_attempts < 1 || outbound.max_attempts > 1000) {
      return Status::InvalidArgument("webhooks.max_attempts must be between 1 and 1000");
    }
    if (!outbound.urls.empty() && outbound.secret_name.empty()) {
      return Status::InvalidArgument(
          "webhooks.urls is set without webhooks.secret_name: outbound webhooks are always "
          "signed; store a secret (loom secrets) and name it");
    }
    if (!outbound.urls.empty()) {
      webhooks_ = std::make_unique<WebhookOutbox>(
          stores_.db, forge_store_.get(), stores_.tasks.get(), secrets_.get(), std::move(outbound));
      webhooks_->Start();
    }
    web::RegisterStaticRoutes(router_);

    HttpServerOptions opts;
    LOOM_RETURN_IF_ERROR(ParseListen(config.GetString("listen"), &opts.host, &opts.port));
    opts.io_threads = static_cast<int>(config.GetInt("http.threads"));
    opts.max_body_bytes = static_cast<size_t>(config.GetInt("http.max_body_bytes"));
    opts.header_timeout = std::chrono::milliseconds(config.GetInt("http.header_timeout_ms"));
    opts.idle_timeout = std::chrono::milliseconds(config.GetInt("http.idle_timeout_ms"));
    opts.on_complete = [this](const HttpRequest& req, int status, std::chrono::nanoseconds took) {
      std::string route = router_.RouteLabel(req);
      requests_->Add({Router::MethodLabel(req), route, std::to_string(status)});
      latency_->Observe({route}, std::chrono::duration<double>(took).count());
    };
    LOOM_ASSIGN_OR_RETURN(
        server_, HttpServer::Start(opts, [this](HttpRequest& r, std::shared_ptr<HttpExchange> ex) {
          std::string request_id = RequestIdOf(r);
          log::Scope request_field("request_id", request_id);
          router_.Dispatch(
              r, std::make_shared<MaskingExchange>(std::move(ex), masker_, std::move(request_id)));
        }));
    LOOM_LOG(kInfo) << "loomd listening on http://" << opts.host << ":" << server_->port()
                    << " (data in " << data_dir_ << ")";
    return Status::Ok();
  }

  uint16_t port() const override { return server_->port(); }
  const std::string& data_dir() const override { return data_dir_; }

  void Stop(std::chrono::milliseconds drain) override EXCLUDES(stop_mu_) {
    MutexLock lock(&stop_mu_);
    // Event streams never end by themselves: end them, or the drain waits them out.
    if (orchestrator_api_) orchestrator_api_->CloseStreams();
    if (server_) server_->Shutdown(drain);
    readiness_.reset();    // after its check in progress, which reads the members below
    scrape_pool_.reset();  // likewise after its scrape in progress
    if (maintenance_) maintenance_->Stop();        // after its pass in progress
    if (scheduler_) scheduler_->Stop();            // agents stop at their next step; tasks requeue
    if (lifecycle_) lifecycle_->remote()->Stop();  // after its pass in progress
    feedback_api_.reset();
    sentry_api_.reset();
    forge_hooks_.reset();  // runs the deliveries it holds, which may file feedback
    forge_sync_.reset();   // after its pass in progress
    webhooks_.reset();
    feedback_.reset();  // flushes queued submissions
    log::SetMasker(nullptr);
    if (marked_running_) std::remove(RunningMarker(data_dir_).c_str());
    marked_running_ = false;
  }

  ~DaemonImpl() override { Stop(std::chrono::milliseconds(0)); }

 private:
  void CreateToken(HttpRequest& req, std::shared_ptr<HttpExchange> ex) {
    auto who = tokens_->Authenticate(req);
    if (!who.ok()) return ex->Respond(ErrorResponse(who.status()));
    if (!who->AtLeast(Role::kAdmin)) {
      return ex->Respond(
          ErrorResponse(Status::PermissionDenied("creating tokens needs an admin token")));
    }
    auto body = ParseJson(req.body);
    if (!body.ok()) return ex->Respond(ErrorResponse(body.status()));
    constexpr int64_t kMaxSeconds = int64_t{100} * 366 * 86400;
    std::string role_name, name;
    int64_t expires_in_s = 0;
    JsonReader in(*body);
    in.String("role", &role_name, Presence::kNonEmpty)
        .String("name", &name)
        .Int("expires_in_s", &expires_in_s, Presence::kOptional, 1, kMaxSeconds);
    std::vector<std::string> origins;
    ReadOrigins(in, &origins);
    if (!in.ok()) return ex->Respond(ErrorResponse(in.status(), in.field()));
    auto role = ParseRole(role_name);
    if (!role.ok()) return ex->Respond(ErrorResponse(role.status(), "role"));
    std::optional<int64_t> expires_at;
    if (in.Has("expires_in_s")) {
      expires_at = SystemClock::Default()->NowMs() + expires_in_s * 1000;
    }
    auto token = tokens_->Create(*role, name, expires_at, origins);
    if (!token.ok()) {
      return ex->Respond(ErrorResponse(token.status(), origins.empty() ? "" : "origins"));
    }
    auto made = tokens_->Lookup(*token);
    Json reply = {{"token", *token}, {"role", RoleName(*role)}, {"name", name}};
    if (made.ok()) {
      reply["id"] = made->token_id;
      reply["origins"] = made->origins;
    }
    if (expires_at) reply["expires_at_ms"] = *expires_at;
    ex->Respond(HttpResponse::Json(201, DumpJson(reply)));
  }

  static Json TokenJson(const TokenInfo& t) {
    Json j = {{"id", t.id},
              {"role", RoleName(t.role)},
              {"name", t.name},
              {"created_at_ms", t.created_at_ms},
              {"expires_at_ms", t.expires_at_ms ? Json(*t.expires_at_ms) : Json()},
              {"revoked_at_ms", t.revoked_at_ms ? Json(*t.revoked_at_ms) : Json()},
              {"origins", t.origins}};
    return j;
  }

  // Reads an optional "origins": an array of strings (at most 64).
  static void ReadOrigins(JsonReader& in, std::vector<std::string>* origins) {
    const Json* list = nullptr;
    in.Array("origins", &list);
    if (!in.ok() || list == nullptr) return;
    if (list->size() > 64) {
      in.Fail("origins", "at most 64 origins per token");
      return;
    }
    for (const Json& o : *list) {
      if (!o.is_string()) {
        in.Fail("origins", "each origin must be a string, like \"https://app.example\"");
        return;
      }
      origins->push_back(o.get<std::string>());
    }
  }

  void SetTokenOrigins(HttpRequest& req, std::shared_ptr<HttpExchange> ex) {
    if (!RequireAdmin(req, ex, "changing a token's origins")) return;
    auto id = PathId(req);
    if (!id) {
      return ex->Respond(
          ErrorResponse(Status::InvalidArgument("the id in the path must be a positive integer")));
    }
    auto body = ParseJson(req.body);
    if (!body.ok()) return ex->Respond(ErrorResponse(body.status()));
    std::vector<std::string> origins;
    JsonReader in(*body);
    const Json* present = nullptr;
    in.Array("origins", &present, Presence::kRequired);
    ReadOrigins(in, &origins);
    in.NoOtherMembers();
    if (!in.ok()) return ex->Respond(ErrorResponse(in.status(), in.field()));
    auto changed = tokens_->SetOrigins(*id, origins);
    if (!changed.ok()) return ex->Respond(ErrorResponse(changed.status(), "origins"));
    LOOM_LOG(kInfo) << "token " << *id << " (" << changed->name << ") allows "
                    << changed->origins.size() << " origin(s)";
    ex->Respond(HttpResponse::Json(200, DumpJson(TokenJson(*changed))));
  }

  static std::optional<int64_t> PathId(const HttpRequest& req) {
    const std::string& text = req.params.at("id");
    int64_t id = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
    if (ec != std::errc() || end != text.data() + text.size() || id <= 0) return std::nullopt;
    return id;
  }

  // Admin only; answers the error itself and returns false otherwise.
  bool RequireAdmin(HttpRequest& req, std::shared_ptr<HttpExchange>& ex, const char* what) {
    auto who = tokens_->Authenticate(req);
    if (!who.ok()) {
      ex->Respond(ErrorResponse(who.status()));
      return false;
    }
    if (!who->AtLeast(Role::kAdmin)) {
      ex->Respond(
          ErrorResponse(Status::PermissionDenied(std::string(what) + " needs an admin token")));
      return false;
    }
    return true;
  }

  void ListTokens(HttpRequest& req, std::shared_ptr<HttpExchange> ex) {
    if (!RequireAdmin(req, ex, "listing tokens")) return;
    auto all = tokens_->List();
    if (!all.ok()) return ex->Respond(ErrorResponse(all.status()));
    Json items = Json::array();
    for (const auto& t : *all) items.push_back(TokenJson(t));
    ex->Respond(HttpResponse::Json(200, DumpJson({{"items", items}})));
  }

  void RevokeToken(HttpRequest& req, std::shared_ptr<HttpExchange> ex) {
    if (!RequireAdmin(req, ex, "revoking tokens")) return;
    const std::string& text = req.params.at("id");
    int64_t id = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
    if (ec != std::errc() || end != text.data() + text.size() || id <= 0) {
      return ex->Respond(
          ErrorResponse(Status::InvalidArgument("the id in the path must be a positive integer")));
    }
    auto revoked = tokens_->Revoke(id);
    if (!revoked.ok()) return ex->Respond(ErrorResponse(revoked.status()));
    LOOM_LOG(kInfo) << "token " << id << " (" << revoked->name << ") revoked";
    ex->Respond(HttpResponse::Json(200, DumpJson(TokenJson(*revoked))));
  }

  // At start an invalid policy stops loomd: its error names the file, line and
  // field. No directory: every repository gets the defaults.
  Status LoadPolicies(const Config& config) {
    policies_dir_ = config.GetString("policies_dir");
    if (policies_dir_.empty()) policies_dir_ = data_dir_ + "/policies";
    return ReloadPolicies();
  }

  Status ReloadPolicies() override {
    auto loaded = policies::LoadPolicyDir(policies_dir_);
    if (!loaded.ok() && loaded.status().code() != StatusCode::kNotFound) {
      MutexLock lock(&policies_mu_);
      policies_error_ = loaded.status().message();
      return loaded.status();
    }
    PolicyMap next = loaded.ok() ? std::move(*loaded) : PolicyMap{};
    {
      MutexLock lock(&policies_mu_);
      policies_error_.clear();
      policies_count_ = next.size();
    }
    LOOM_LOG(kInfo) << next.size() << " repository polic" << (next.size() == 1 ? "y" : "ies")
                    << " from " << policies_dir_;
    policies_.Replace(std::move(next));
    return Status::Ok();
  }

  Status StartAgents(const Config& config) {
    SchedulerOptions opts;
    LOOM_ASSIGN_OR_RETURN(std::vector<std::string> model_urls,
                          ModelEndpoints::ParseUrls(config.GetString("llm.url")));
    opts.agents = static_cast<int>(config.GetInt("agents"));
    agents_ = opts.agents;
    if (opts.agents == 0) {
      LOOM_LOG(kInfo) << "agents = 0: intake only, no task will be worked on";
      return Status::Ok();
    }
    opts.data_dir = data_dir_;
    int64_t reserve_mb = config.GetInt("disk.reserve_mb");
    if (reserve_mb < 0 || reserve_mb > (int64_t{1} << 20)) {
      return Status::InvalidArgument("disk.reserve_mb must be between 0 and 1048576 (got " +
                                     std::to_string(reserve_mb) + ")");
    }
    opts.disk_reserve_bytes = static_cast<uint64_t>(reserve_mb) << 20;
    opts.policies = &policies_;
    opts.secrets = secrets_.get();
    opts.llm.masker = masker_;
    opts.llm.url = config.GetString("llm.url");
    opts.llm.model = config.GetString("llm.model");
    opts.llm.api_key = config.GetString("llm.api_key");
    opts.llm.timeout = std::chrono::milliseconds(config.GetInt("llm.timeout_ms"));
    opts.llm.max_retries = static_cast<int>(config.GetInt("llm.retries"));
    opts.llm.stream = config.GetBool("llm.stream");
    ModelEndpointsOptions health;
    health.probe_interval = std::chrono::milliseconds(config.GetInt("llm.probe_interval_ms"));
    health.down_backoff = std::chrono::milliseconds(config.GetInt("llm.down_backoff_ms"));
    if (health.probe_interval.count() < 0 || health.down_backoff.count() < 1 ||
        health.down_backoff > health.max_down_backoff) {
      return Status::InvalidArgument(
          "llm.probe_interval_ms must be at least 0 and llm.down_backoff_ms between 1 and 60000");
    }
    model_endpoints_ = std::make_shared<ModelEndpoints>(
        std::move(model_urls), MakeModelProber(opts.llm, std::chrono::seconds(2)), health);
    opts.llm.endpoints = model_endpoints_;
    sandbox::BwrapOptions bwrap;
    bwrap.run_as_uid = bwrap.run_as_gid = static_cast<uint32_t>(config.GetInt("sandbox.uid"));
    if (Status s = CheckSandboxCanReach(data_dir_ + "/worktrees", bwrap.run_as_uid); !s.ok()) {
      return s.WithContext("data_dir");
    }
    const std::string backend = config.GetString("sandbox.backend");
    if (backend == "bwrap") {
      if (Status s = sandbox::ProbeBwrap(bwrap); !s.ok()) {
        return Status::FailedPrecondition("agents run tests in a bubblewrap sandbox, and " +
                                          s.message() + " (or set agents = 0 for intake only)");
      }
      LOOM_RETURN_IF_ERROR(CheckModelEndpoints(opts.llm));
      LOOM_ASSIGN_OR_RETURN(executor_, sandbox::MakeBwrapExecutor(bwrap));
      sandbox_probe_ = [bwrap]() -> Result<std::string> {
        LOOM_RETURN_IF_ERROR(sandbox::ProbeBwrap(bwrap));
        return std::string("bubblewrap runs");
      };
    } else if (backend == "slurm") {
      LOOM_ASSIGN_OR_RETURN(sandbox::SlurmOptions slurm, SlurmOptionsFrom(config, bwrap));
      const std::string fallback = config.GetString("sandbox.slurm_fallback");
      if (fallback == "local") {
        if (Status s = sandbox::ProbeBwrap(bwrap); !s.ok()) {
          return Status::FailedPrecondition("sandbox.slurm_fallback = local, and " + s.message() +
                                            " (or set sandbox.slurm_fallback = none)");
        }
        LOOM_ASSIGN_OR_RETURN(slurm.fallback, sandbox::MakeBwrapExecutor(bwrap));
      } else if (fallback != "none") {
        return Status::InvalidArgument("sandbox.slurm_fallback must be none or local (got '" +
                                       fallback + "')");
      }
      LOOM_RETURN_IF_ERROR(CheckModelEndpoints(opts.llm));
      auto executor = sandbox::MakeSlurmExecutor(slurm);
      if (!executor.ok()) {
        return Status::FailedPrecondition("sandbox.backend = slurm, and " +
                                          executor.status().message() +
                                          " (or set sandbox.backend = bwrap)");
      }
      executor_ = std::move(executor).value();
      sandbox_probe_ = []() -> Result<std::string> {
        return std::string("slurm (an unreachable cluster shows in the runs' errors)");
      };
    } else {
      return Status::InvalidArgument("sandbox.backend must be bwrap or slurm (got '" + backend +
                                     "')");
    }
    executor_ = MeterExecutor(std::move(executor_), &metrics_);
    opts.metrics = &metrics_;
    model_probe_ = opts.llm;
    LOOM_ASSIGN_OR_RETURN(
        scheduler_, Scheduler::Start(stores_.tasks.get(), stores_.escalations.get(),
                                     stores_.repos.get(), lifecycle_.get(), executor_.get(), opts));
    model_endpoints_->StartHealthChecks();
    LOOM_LOG(kInfo) << opts.agents << " agent slot(s), "
                    << (model_endpoints_->size() == 1 ? "model endpoint " : "model endpoints ")
                    << opts.llm.url;
    return Status::Ok();
  }

  static Result<sandbox::SlurmOptions> SlurmOptionsFrom(const Config& config,
                                                        const sandbox::BwrapOptions& bwrap) {
    sandbox::SlurmOptions o;
    o.bwrap = bwrap;
    o.partition = config.GetString("sandbox.partition");
    o.account = config.GetString("sandbox.account");
    o.gpu_partition = config.GetString("sandbox.gpu_partition");
    o.slurm_conf = config.GetString("sandbox.slurm_conf");
    for (const auto& [key, target, max] :
         {std::tuple{"sandbox.concurrent_steps", &o.concurrent_steps, int64_t{4096}},
          std::tuple{"sandbox.warm_allocations", &o.warm_allocations, int64_t{256}},
          std::tuple{"sandbox.allocation_minutes", &o.allocation_minutes, int64_t{525'600}}}) {
      int64_t v = config.GetInt(key);
      if (v < 1 || v > max) {
        return Status::InvalidArgument(std::string(key) + " must be between 1 and " +
                                       std::to_string(max) + " (got " + std::to_string(v) + ")");
      }
      *target = static_cast<uint32_t>(v);
    }
    int64_t attempts = config.GetInt("sandbox.start_attempts");
    int64_t backoff_ms = config.GetInt("sandbox.start_backoff_ms");
    if (attempts < 1 || attempts > 100 || backoff_ms < 0 || backoff_ms > 3'600'000) {
      return Status::InvalidArgument(
          "sandbox.start_attempts must be between 1 and 100 and sandbox.start_backoff_ms between "
          "0 and 3600000 (got " +
          std::to_string(attempts) + " and " + std::to_string(backoff_ms) + ")");
    }
    o.start_attempts = static_cast<uint32_t>(attempts);
    o.start_backoff = std::chrono::milliseconds(backoff_ms);
    int64_t memory = config.GetInt("sandbox.step_memory_mb");
    if (memory < 16 || memory > (int64_t{1} << 24)) {
      return Status::InvalidArgument(
          "sandbox.step_memory_mb must be between 16 and 16777216 (got " + std::to_string(memory) +
          ")");
    }
    o.memory_per_step_mb = static_cast<uint64_t>(memory);
    o.runner_path = config.GetString("sandbox.runner");
    if (o.runner_path.empty()) {
      std::error_code ec;
      auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
      if (ec)
        return Status::FailedPrecondition("cannot find loomd's directory: set sandbox.runner");
      o.runner_path = (self.parent_path() / "loom-sandbox-runner").string();
    }
    return o;
  }

  // Sets the gauges read from the database and the slots; before each scrape.
  void RefreshGauges() {
    if (store_gauges_) {
      if (Status s = store_gauges_->Refresh(); !s.ok()) {
        LOOM_LOG(kWarning) << "metrics: cannot read the database's gauges: " << s.ToString();
      }
    }
    int busy = scheduler_ ? scheduler_->busy_slots() : 0;
    slots_->Set({"busy"}, busy);
    slots_->Set({"idle"}, agents_ - busy);
    if (model_endpoints_) {
      int up = model_endpoints_->UpCount();
      replicas_->Set({"up"}, up);
      replicas_->Set({"down"}, static_cast<double>(model_endpoints_->size()) - up);
    }
  }

  // What GET /readyz checks: the database answers, the policies loaded, the
  // model endpoint answers and the sandbox runs (the last two only with agents).
  std::vector<ReadinessCheck> ReadinessChecks(const Config& config) {
    std::vector<ReadinessCheck> checks;
    checks.push_back({"database", [this]() -> Result<std::string> {
                        auto reader = stores_.db->AcquireReader();
                        LOOM_ASSIGN_OR_RETURN(
                            int64_t n,
                            reader.db()->QueryOne("SELECT COUNT(*) FROM tasks", "no count",
                                                  [](const Statement& r) { return r.Int(0); }));
                        return std::to_string(n) + " tasks";
                      }});
    checks.push_back({"policies", [this]() -> Result<std::string> {
                        MutexLock lock(&policies_mu_);
                        if (!policies_error_.empty()) {
                          return Status::FailedPrecondition(
                              "the last reload failed (the policies before it apply): " +
                              policies_error_);
                        }
                        return std::to_string(policies_count_) + " from " + policies_dir_;
                      }});
    if (config.GetInt("agents") == 0) return checks;
    // Each replica is asked now (its answer also feeds the routing's health);
    // ready while at least one answers.
    checks.push_back(
        {"model", [this]() -> Result<std::string> {
           std::string detail, errors;
           int up = 0;
           for (size_t i = 0; i < model_endpoints_->size(); ++i) {
             LlmOptions one = *model_probe_;
             one.url = model_endpoints_->url(i);
             auto started = std::chrono::steady_clock::now();
             auto info = ProbeModelEndpoint(one, std::chrono::seconds(2));
             model_endpoints_->RecordProbe(i, info.status(),
                                           std::chrono::duration_cast<std::chrono::milliseconds>(
                                               std::chrono::steady_clock::now() - started));
             std::string& out = info.ok() ? detail : errors;
             out += (out.empty() ? "" : "; ") + one.url;
             if (!info.ok()) {
               out += ": " + info.status().message();
               continue;
             }
             ++up;
             std::string served;
             for (const std::string& m : info->models) {
               served += (served.empty() ? "" : ", ") + m;
             }
             out += " serves " + served;
           }
           if (up == 0) return Status::Unavailable("no model endpoint answers: " + errors);
           return std::to_string(up) + " of " + std::to_string(model_endpoints_->size()) +
                  " up: " + detail + (errors.empty() ? "" : "; down: " + errors);
         }});
    checks.push_back({"sandbox", sandbox_probe_});
    return checks;
  }

  // Before any task is leased, each replica is probed once: one that answers
  // but cannot serve an agent (its context cannot hold the prompt) stops loomd
  // with what to change. One that does not answer is reported, marked down and
  // re-probed by the health checks; while none answers, each task parks on an
  // infrastructure escalation (see llm_client.h). The result is logged, one
  // line per replica and one for the whole: what operators read at start.
  Status CheckModelEndpoints(const LlmOptions& llm) {
    for (size_t i = 0; i < model_endpoints_->size(); ++i) {
      LlmOptions one = llm;
      one.url = model_endpoints_->url(i);
      auto started = std::chrono::steady_clock::now();
      auto info = ProbeModelEndpoint(one, std::chrono::seconds(5));
      model_endpoints_->RecordProbe(i, info.status(),
                                    std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::steady_clock::now() - started));
      if (info.ok()) LOOM_RETURN_IF_ERROR(CheckModelEndpoint(one, *info));
    }
    if (model_endpoints_->UpCount() == 0) {
      LOOM_LOG(kWarning) << (model_endpoints_->size() == 1 ? "the model endpoint does not answer"
                                                           : "no model endpoint answers")
                         << "; tasks will wait on an infrastructure escalation until one does";
    } else if (model_endpoints_->size() > 1) {
      LOOM_LOG(kInfo) << model_endpoints_->UpCount() << " of " << model_endpoints_->size()
                      << " model endpoints up; each task keeps to one (prefix affinity), and "
                         "goes to the next when it is down";
    }
    return Status::Ok();
  }

  static Status CheckModelEndpoint(const LlmOptions& llm, const ModelEndpointInfo& info) {
    std::string served;
    bool found = false;
    for (const std::string& m : info.models) {
      served += (served.empty() ? "" : ", ") + m;
      found = found || m == llm.model;
    }
    if (!found && llm.model != "default" && !info.models.empty()) {
      LOOM_LOG(kWarning) << "the model endpoint " << llm.url << " serves " << served << ", not '"
                         << llm.model << "' (llm.model): it may refuse every request";
    }
    LOOM_RETURN_IF_ERROR(CheckContextFits(info, llm, AgentFixedPromptBytes()));
    LOOM_LOG(kInfo) << "model endpoint " << llm.url << " serves " << served
                    << (info.max_model_len > 0
                            ? " (context " + std::to_string(info.max_model_len) + " tokens)"
                            : std::string(" (context size not offered)"));
    return Status::Ok();
  }

  std::string data_dir_;
  bool marked_running_ = false;  // this instance wrote RunningMarker()
  MetricsRegistry metrics_;
  std::unique_ptr<StoreGauges> store_gauges_;
  Gauge* slots_ = nullptr;
  Gauge* replicas_ = nullptr;
  int agents_ = 0;
  std::optional<LlmOptions> model_probe_;  // what /readyz asks; set with agents
  std::function<Result<std::string>()> sandbox_probe_;
  std::unique_ptr<Readiness> readiness_;
  std::unique_ptr<BlockingPool> scrape_pool_ = std::make_unique<BlockingPool>(1);  // /metrics
  Mutex policies_mu_;
  std::string policies_error_ GUARDED_BY(policies_mu_);  // of the last reload; empty: it loaded
  size_t policies_count_ GUARDED_BY(policies_mu_) = 0;
  Counter* requests_ = nullptr;
  Histogram* latency_ = nullptr;
  std::unique_ptr<TokenStore> tokens_;
  std::unique_ptr<feedback::Store> feedback_;
  std::unique_ptr<RateLimiter> limiter_;
  std::unique_ptr<feedback::Api> feedback_api_;
  std::unique_ptr<feedback::SentryKeys> sentry_keys_;
  std::unique_ptr<RateLimiter> sentry_limiter_;
  std::unique_ptr<feedback::SentryApi> sentry_api_;
  OrchestratorStores stores_;
  std::string policies_dir_;
  PolicySet policies_;
  std::unique_ptr<SecretStore> secrets_;
  std::shared_ptr<const SecretMasker> masker_;
  std::unique_ptr<RepoCache> repo_cache_;
  std::unique_ptr<TaskLifecycle> lifecycle_;
  std::unique_ptr<sandbox::Executor> executor_;
  std::shared_ptr<ModelEndpoints> model_endpoints_;  // null with agents = 0
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<OrchestratorApi> orchestrator_api_;
  std::unique_ptr<ForgeStore> forge_store_;
  std::unique_ptr<ForgeHooks> forge_hooks_;
  std::unique_ptr<ForgeSync> forge_sync_;
  std::unique_ptr<WebhookOutbox> webhooks_;
  std::unique_ptr<Maintenance> maintenance_;
  Router router_;
  std::unique_ptr<HttpServer> server_;
  // Serializes Stop() (the signal watcher's and the destructor's); it guards no
  // member: Start() sets them before another thread can see the daemon.
  Mutex stop_mu_;
};

}  // namespace

Result<std::unique_ptr<Daemon>> Daemon::Start(const Config& config) {
  auto d = std::make_unique<DaemonImpl>();
  LOOM_RETURN_IF_ERROR(d->Init(config));
  return std::unique_ptr<Daemon>(std::move(d));
}

}  // namespace loom
