// loomd's wiring: config -> data dir -> database-backed stores -> HTTP routes.
#include "orchestrator/daemon.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <mutex>

#include "common/auth.h"
#include "common/http_server.h"
#include "common/json_reader.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/rate_limiter.h"
#include "common/schema.h"
#include "feedback/api.h"
#include "feedback/intake.h"
#include "orchestrator/api.h"
#include "orchestrator/scheduler.h"
#include "orchestrator/secrets.h"
#include "orchestrator/task_store.h"
#include "policies/policy.h"
#include "sandbox/executor.h"

namespace loom {

std::vector<Config::Key> DaemonConfigSchema() {
  using T = Config::Type;
  return {
      {"data_dir", T::kString, ".loom", "Directory for the database and task workspaces."},
      {"listen", T::kString, "127.0.0.1:7700", "HTTP listen address, host:port."},
      {"log.level", T::kString, "info", "debug, info, warning or error."},
      {"log.json", T::kBool, "false", "Write logs as JSON lines."},
      {"http.threads", T::kInt, "2", "HTTP I/O threads."},
      {"http.max_body_bytes", T::kInt, "1048576", "Largest accepted request body (413 above)."},
      {"http.header_timeout_ms", T::kInt, "10000", "Time allowed to send a request head."},
      {"http.idle_timeout_ms", T::kInt, "60000", "Keep-alive wait for the next request."},
      {"http.drain_ms", T::kInt, "10000", "On SIGTERM, how long in-flight requests may finish."},
      {"feedback.rate_per_minute", T::kDouble, "600",
       "Submissions allowed per token per minute (0: unlimited)."},
      {"feedback.burst", T::kDouble, "60", "Submissions a token may make at once."},
      {"agents", T::kInt, "2", "Agent slots: tasks worked on at once (0: intake only)."},
      {"llm.url", T::kString, "http://127.0.0.1:8000/v1",
       "OpenAI-compatible endpoint the agents think with (loom-infer, vLLM, a hosted API)."},
      {"llm.model", T::kString, "default", "Model name sent with every request."},
      {"llm.api_key", T::kString, "", "Bearer token for the endpoint (or LOOM_LLM_API_KEY)."},
      {"llm.timeout_ms", T::kInt, "300000", "Time allowed for one model reply."},
      {"llm.retries", T::kInt, "4", "Retries on 429, 5xx and connection errors, with backoff."},
      {"llm.stream", T::kBool, "false", "Ask for streamed (SSE) replies."},
      {"policies_dir", T::kString, "",
       "Directory of repository policies, <repo>.toml (default: <data_dir>/policies)."},
      {"sandbox.uid", T::kInt, "64000",
       "When loomd runs as root: the unprivileged uid (and gid) sandboxed runs use."},
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

class DaemonImpl : public Daemon {
 public:
  Status Init(const Config& config) {
    data_dir_ = config.GetString("data_dir");
    std::error_code ec;
    std::filesystem::create_directories(data_dir_, ec);
    if (ec) return Status::IoError("cannot create data_dir " + data_dir_ + ": " + ec.message());
    // Others may traverse but not list: a root loomd's sandboxed runs (another
    // uid) must reach their worktrees below; the database files are 0600.
    ::chmod(data_dir_.c_str(), 0711);
    std::string db_path = DatabasePath(data_dir_);
    LOOM_ASSIGN_OR_RETURN(tokens_, TokenStore::Open(db_path));
    ::chmod(db_path.c_str(), 0600);  // SQLite gives its -wal and -shm files the same mode
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
    feedback_api_ = std::make_unique<feedback::Api>(feedback_.get(), tokens_.get(), limiter_.get(),
                                                    &metrics_, feedback::Limits{});
    LOOM_RETURN_IF_ERROR(feedback_api_->LoadCounts());

    router_.Add("GET", "/healthz", [](HttpRequest&, std::shared_ptr<HttpExchange> ex) {
      ex->Respond(HttpResponse::Json(200, "{\"status\":\"ok\"}"));
    });
    router_.Add("GET", "/metrics", [this](HttpRequest&, std::shared_ptr<HttpExchange> ex) {
      HttpResponse r = HttpResponse::Text(200, metrics_.Render());
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      ex->Respond(std::move(r));
    });
    router_.Add("POST", "/v1/tokens",
                [this](HttpRequest& r, std::shared_ptr<HttpExchange> ex) { CreateToken(r, ex); });
    feedback_api_->Register(router_);

    LOOM_ASSIGN_OR_RETURN(tasks_, TaskStore::Open(db_path));
    LOOM_RETURN_IF_ERROR(LoadPolicies(config));
    LOOM_ASSIGN_OR_RETURN(secrets_, SecretStore::Open(db_path, data_dir_));
    LOOM_RETURN_IF_ERROR(StartAgents(config));
    orchestrator_api_ = std::make_unique<OrchestratorApi>(tasks_.get(), tokens_.get(), data_dir_,
                                                          &policies_, secrets_.get(), [this] {
                                                            if (scheduler_) scheduler_->Wake();
                                                          });
    orchestrator_api_->Register(router_);

    HttpServerOptions opts;
    LOOM_RETURN_IF_ERROR(ParseListen(config.GetString("listen"), &opts.host, &opts.port));
    opts.io_threads = static_cast<int>(config.GetInt("http.threads"));
    opts.max_body_bytes = static_cast<size_t>(config.GetInt("http.max_body_bytes"));
    opts.header_timeout = std::chrono::milliseconds(config.GetInt("http.header_timeout_ms"));
    opts.idle_timeout = std::chrono::milliseconds(config.GetInt("http.idle_timeout_ms"));
    opts.on_complete = [this](const HttpRequest& req, int status, std::chrono::nanoseconds took) {
      std::string route = router_.RouteLabel(req);
      requests_->Add({req.method, route, std::to_string(status)});
      latency_->Observe({route}, std::chrono::duration<double>(took).count());
    };
    LOOM_ASSIGN_OR_RETURN(
        server_, HttpServer::Start(opts, [this](HttpRequest& r, std::shared_ptr<HttpExchange> ex) {
          router_.Dispatch(r, std::move(ex));
        }));
    LOOM_LOG(kInfo) << "loomd listening on http://" << opts.host << ":" << server_->port()
                    << " (data in " << data_dir_ << ")";
    return Status::Ok();
  }

  uint16_t port() const override { return server_->port(); }
  const std::string& data_dir() const override { return data_dir_; }

  void Stop(std::chrono::milliseconds drain) override {
    std::lock_guard<std::mutex> lock(stop_mu_);
    if (server_) server_->Shutdown(drain);
    if (scheduler_) scheduler_->Stop();  // agents stop at their next step; tasks requeue
    feedback_api_.reset();
    feedback_.reset();  // flushes queued submissions
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
    std::string role_name, name;
    JsonReader in(*body);
    in.String("role", &role_name, Presence::kNonEmpty).String("name", &name);
    if (!in.ok()) return ex->Respond(ErrorResponse(in.status(), in.field()));
    auto role = ParseRole(role_name);
    if (!role.ok()) return ex->Respond(ErrorResponse(role.status(), "role"));
    auto token = tokens_->Create(*role, name);
    if (!token.ok()) return ex->Respond(ErrorResponse(token.status()));
    ex->Respond(HttpResponse::Json(
        201, DumpJson({{"token", *token}, {"role", RoleName(*role)}, {"name", name}})));
  }

  // An invalid policy stops loomd: its error names the file, line and field.
  Status LoadPolicies(const Config& config) {
    std::string dir = config.GetString("policies_dir");
    if (dir.empty()) dir = data_dir_ + "/policies";
    auto loaded = policies::LoadPolicyDir(dir);
    if (!loaded.ok() && loaded.status().code() != StatusCode::kNotFound) return loaded.status();
    if (loaded.ok()) policies_ = std::move(*loaded);
    if (!policies_.empty()) {
      LOOM_LOG(kInfo) << policies_.size() << " repository polic"
                      << (policies_.size() == 1 ? "y" : "ies") << " from " << dir;
    }
    return Status::Ok();
  }

  Status StartAgents(const Config& config) {
    SchedulerOptions opts;
    opts.agents = static_cast<int>(config.GetInt("agents"));
    if (opts.agents == 0) {
      LOOM_LOG(kInfo) << "agents = 0: intake only, no task will be worked on";
      return Status::Ok();
    }
    opts.data_dir = data_dir_;
    opts.policies = policies_;
    opts.secrets = secrets_.get();
    opts.llm.url = config.GetString("llm.url");
    opts.llm.model = config.GetString("llm.model");
    opts.llm.api_key = config.GetString("llm.api_key");
    opts.llm.timeout = std::chrono::milliseconds(config.GetInt("llm.timeout_ms"));
    opts.llm.max_retries = static_cast<int>(config.GetInt("llm.retries"));
    opts.llm.stream = config.GetBool("llm.stream");
    sandbox::BwrapOptions bwrap;
    bwrap.run_as_uid = bwrap.run_as_gid = static_cast<uint32_t>(config.GetInt("sandbox.uid"));
    if (Status s = CheckSandboxCanReach(data_dir_ + "/worktrees", bwrap.run_as_uid); !s.ok()) {
      return s.WithContext("data_dir");
    }
    if (Status s = sandbox::ProbeBwrap(bwrap); !s.ok()) {
      return Status::FailedPrecondition("agents run tests in a bubblewrap sandbox, and " +
                                        s.message() + " (or set agents = 0 for intake only)");
    }
    LOOM_ASSIGN_OR_RETURN(executor_, sandbox::MakeBwrapExecutor(bwrap));
    LOOM_ASSIGN_OR_RETURN(scheduler_, Scheduler::Start(tasks_.get(), executor_.get(), opts));
    LOOM_LOG(kInfo) << opts.agents << " agent slot(s), model endpoint " << opts.llm.url;
    return Status::Ok();
  }

  std::string data_dir_;
  MetricsRegistry metrics_;
  Counter* requests_ = nullptr;
  Histogram* latency_ = nullptr;
  std::unique_ptr<TokenStore> tokens_;
  std::unique_ptr<feedback::Store> feedback_;
  std::unique_ptr<RateLimiter> limiter_;
  std::unique_ptr<feedback::Api> feedback_api_;
  std::unique_ptr<TaskStore> tasks_;
  std::map<std::string, policies::Policy> policies_;
  std::unique_ptr<SecretStore> secrets_;
  std::unique_ptr<sandbox::Executor> executor_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<OrchestratorApi> orchestrator_api_;
  Router router_;
  std::unique_ptr<HttpServer> server_;
  std::mutex stop_mu_;
};

}  // namespace

Result<std::unique_ptr<Daemon>> Daemon::Start(const Config& config) {
  auto d = std::make_unique<DaemonImpl>();
  LOOM_RETURN_IF_ERROR(d->Init(config));
  return std::unique_ptr<Daemon>(std::move(d));
}

}  // namespace loom
