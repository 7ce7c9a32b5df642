// The orchestrator's HTTP API. See api.h. Every handler authenticates first,
// parses its input into plain values, calls the TaskStore and answers JSON.
#include "orchestrator/api.h"

#include <charconv>
#include <filesystem>
#include <limits>
#include <regex>

#include "common/clock.h"
#include "common/crash_point.h"
#include "common/json_reader.h"
#include "common/log.h"
#include "common/paging.h"
#include "orchestrator/repo_policy.h"
#include "orchestrator/review_comments.h"
#include "repos/workspace.h"

namespace loom {
namespace {

std::optional<int64_t> ParseInt(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

// An event log is read in long runs (a transcript, `loom task log --follow`):
// its pages are larger than the other lists'.
constexpr PageBounds kEventPages{500, 5000};

Result<int64_t> PathId(const HttpRequest& req) {
  auto v = ParseInt(req.params.at("id"));
  if (!v || *v == 0)
    return Status::InvalidArgument("the id in the path must be a positive integer");
  return *v;
}

// Parses a request body and reads it with `read`; on failure answers 400 with
// the field named and returns false. Every body of this API comes in here.
template <typename Read>
bool ReadBody(const HttpRequest& req, std::shared_ptr<HttpExchange>& ex, Read read) {
  auto body = ParseJson(req.body);
  if (!body.ok()) {
    ex->Respond(ErrorResponse(body.status()));
    return false;
  }
  JsonReader in(*body);
  read(in);
  if (!in.ok()) {
    ex->Respond(ErrorResponse(in.status(), in.field()));
    return false;
  }
  return true;
}

void RespondJson(std::shared_ptr<HttpExchange>& ex, int status, const Json& body) {
  ex->Respond(HttpResponse::Json(status, DumpJson(body)));
}

}  // namespace

OrchestratorApi::OrchestratorApi(const OrchestratorStores& stores, TaskLifecycle* lifecycle,
                                 feedback::Store* feedback, TokenStore* tokens,
                                 std::string data_dir, const PolicySet* policies,
                                 SecretStore* secrets, std::function<void()> on_requeue,
                                 int blocking_threads)
    : store_(stores.tasks.get()),
      escalations_(stores.escalations.get()),
      repos_(stores.repos.get()),
      lifecycle_(lifecycle),
      feedback_(feedback),
      tokens_(tokens),
      data_dir_(std::move(data_dir)),
      policies_(policies),
      secrets_(secrets),
      on_requeue_(std::move(on_requeue)),
      streams_(std::make_unique<TaskEventStreams>(store_, TaskEventStreams::Options{})),
      pool_(std::make_unique<BlockingPool>(std::max(1, blocking_threads))) {}

OrchestratorApi::~OrchestratorApi() = default;

void OrchestratorApi::CloseStreams() { streams_->Close(); }

// Every route reads or writes SQLite behind a store's lock, and some run libgit2
// diffs and merges or read whole event logs: all of it runs on the blocking pool,
// never on an HTTP I/O thread (which would stall every connection it serves).
// The request is copied: the server keeps its own for the access log and metrics.
// Lines logged on the pool carry the request's id like those of the I/O thread.
void OrchestratorApi::Add(Router& router, const char* method, const char* path, Role min_role,
                          Handler handler) {
  router.Add(method, path,
             [this, min_role, handler](HttpRequest& request, std::shared_ptr<HttpExchange> ex) {
               pool_->Post([this, min_role, handler, req = request, ex,
                            request_id = log::CurrentField("request_id")]() mutable {
                 log::Scope request_field("request_id", request_id);
                 auto who = tokens_->Authenticate(req);
                 if (!who.ok()) return ex->Respond(ErrorResponse(who.status()));
                 if (!who->AtLeast(min_role)) {
                   return ex->Respond(ErrorResponse(
                       Status::PermissionDenied("this needs a token with the role " +
                                                std::string(RoleName(min_role)) + " or higher")));
                 }
                 (this->*handler)(req, ex);
               });
             });
}

void OrchestratorApi::Register(Router& router) {
  Add(router, "POST", "/v1/repos", Role::kAdmin, &OrchestratorApi::AddRepo);
  Add(router, "GET", "/v1/repos", Role::kEngineer, &OrchestratorApi::ListRepos);
  Add(router, "POST", "/v1/secrets", Role::kAdmin, &OrchestratorApi::PutSecret);
  Add(router, "GET", "/v1/tasks", Role::kEngineer, &OrchestratorApi::ListTasks);
  Add(router, "GET", "/v1/tasks/{id}", Role::kEngineer, &OrchestratorApi::ShowTask);
  Add(router, "GET", "/v1/tasks/{id}/events", Role::kEngineer, &OrchestratorApi::TaskEvents);
  Add(router, "GET", "/v1/tasks/{id}/stream", Role::kEngineer, &OrchestratorApi::TaskStream);
  Add(router, "GET", "/v1/tasks/{id}/diff", Role::kEngineer, &OrchestratorApi::TaskDiff);
  Add(router, "POST", "/v1/tasks/{id}/cancel", Role::kEngineer, &OrchestratorApi::CancelTask);
  Add(router, "POST", "/v1/tasks/{id}/retry", Role::kEngineer, &OrchestratorApi::RetryTask);
  Add(router, "GET", "/v1/reviews", Role::kEngineer, &OrchestratorApi::ListReviews);
  Add(router, "GET", "/v1/reviews/{id}", Role::kEngineer, &OrchestratorApi::ShowReview);
  Add(router, "POST", "/v1/reviews/{id}/approve", Role::kEngineer, &OrchestratorApi::Approve);
  Add(router, "POST", "/v1/reviews/{id}/merge", Role::kEngineer, &OrchestratorApi::Merge);
  Add(router, "POST", "/v1/reviews/{id}/request-changes", Role::kEngineer,
      &OrchestratorApi::RequestChanges);
  Add(router, "POST", "/v1/reviews/{id}/reject", Role::kEngineer, &OrchestratorApi::Reject);
  Add(router, "GET", "/v1/fleet", Role::kEngineer, &OrchestratorApi::Fleet);
  Add(router, "GET", "/v1/escalations", Role::kEngineer, &OrchestratorApi::ListEscalations);
  Add(router, "GET", "/v1/escalations/{id}", Role::kEngineer, &OrchestratorApi::ShowEscalation);
  Add(router, "POST", "/v1/escalations/{id}/answer", Role::kEngineer,
      &OrchestratorApi::AnswerEscalation);
}

void OrchestratorApi::AddRepo(HttpRequest& req, std::shared_ptr<HttpExchange>& ex) {
  repos::RepoRecord repo;
  RemoteSecretNames names;  // for a URL: the secrets that reach its server, by name
  if (!ReadBody(req, ex, [&](JsonReader& in) {
        in.String("name", &repo.name, Presence::kNonEmpty)
            .String("path", &repo.path, Presence::kNonEmpty)
            .String("test_command", &repo.test_command, Presence::kNonEmpty)
            .String("branch", &repo.settings.target_branch)
            .String("username", &names.username)
            .String("password_secret", &names.password)
            .String("ssh_key_secret", &names.ssh_key)
            .String("ssh_passphrase_secret", &names.ssh_passphrase)
            .String("known_hosts_secret", &names.known_hosts)
            .Bool("accept_any_host_key", &names.accept_any_host_key);
      })) {
    return;
  }
  if (repo.settings.target_branch.empty()) repo.settings.target_branch = "main";
  // The names must fit the URL's transport, and the secrets must be stored: the
  // clone uses them now, every fetch and push later.
  repos::RemoteCredentials credentials;
  bool named = !names.username.empty() || !names.password.empty() || !names.ssh_key.empty() ||
               !names.ssh_passphrase.empty() || !names.known_hosts.empty() ||
               names.accept_any_host_key;
  if (named) {
    if (Status s = CheckRemoteSecretNames(repo.path, names); !s.ok()) {
      return ex->Respond(ErrorResponse(s));
    }
    if (!secrets_) {
      return ex->Respond(ErrorResponse(Status::FailedPrecondition("this loomd keeps no secrets")));
    }
    auto resolved = ResolveRemoteCredentials(*secrets_, repo.path, names);
    if (!resolved.ok()) {
      return ex->Respond(ErrorResponse(Status::InvalidArgument(resolved.status().message())));
    }
    credentials = std::move(*resolved);
  }
  // Checks what an agent will need (the repository opens, is not empty and has
  // the target branch), then registers it.
  auto registered = repos_->Register(std::move(repo), credentials, names);
  if (!registered.ok()) {
    Status s = registered.status();
    return ex->Respond(ErrorResponse(s, s.code() == StatusCode::kAlreadyExists ? "name" : "path"));
  }
  if (on_requeue_) on_requeue_();  // feedback that waited for a repository can be triaged
  RespondJson(ex, 201,
              RepoJson(*registered, repos_->Remote(registered->name).value_or(std::nullopt)));
}

void OrchestratorApi::ListRepos(HttpRequest&, std::shared_ptr<HttpExchange>& ex) {
  auto repos = repos_->List();
  if (!repos.ok()) return ex->Respond(ErrorResponse(repos.status()));
  Json items = Json::array();
  for (const auto& r : *repos) {
    items.push_back(RepoJson(r, repos_->Remote(r.name).value_or(std::nullopt)));
  }
  RespondJson(ex, 200, {{"items", items}});
}

void OrchestratorApi::PutSecret(HttpRequest& req, std::shared_ptr<HttpExchange>& ex) {
  std::string name, value;
  if (!ReadBody(req, ex, [&](JsonReader& in) {
        in.String("name", &name, Presence::kNonEmpty).String("value", &value, Presence::kNonEmpty);
      })) {
    return;
  }
  if (!secrets_) {
    return ex->Respond(ErrorResponse(Status::FailedPrecondition("this loomd keeps no secrets")));
  }
  if (Status s = ValidateSecretName(name); !s.ok()) return ex->Respond(ErrorResponse(s, "name"));
  if (Status s = secrets_->Put(name, value); !s.ok()) {
    return ex->Respond(ErrorResponse(s, "value"));
  }
  RespondJson(ex, 200, {{"name", name}, {"stored", true}});
}

void OrchestratorApi::ListTasks(HttpRequest& req, std::shared_ptr<HttpExchange>& ex) {
  std::optional<TaskState> state;
  if (auto it = req.query.find("state"); it != req.query.end() && !it->second.empty()) {
    auto s = ParseTaskState(it->second);
    if (!s.ok()) return ex->Respond(ErrorResponse(s.status(), "state"));
    state = *s;
  }
  RespondTaskPage(req, ex, state);
}

void OrchestratorApi::ShowTask(HttpRequest& req, std::shared_ptr<HttpExchange>& ex) {
  auto id = PathId(req);
  if (!id.ok()) return ex->Respond(ErrorResponse(id.status()));
  auto task = store_->Get(*id);
  if (!task.ok()) return ex->Respond(ErrorResponse(task.status()));
  Json j = task->ToJson();
  auto grant = escalations_->ActiveGpuGrant(*id, SystemClock::Default()->NowMs());
  if (!grant.ok()) return ex->Respond(ErrorResponse(grant.status()));
  if (*grant) j["gpu_grant"] = (*grant)->ToJson();
  RespondJson(ex, 200, j);
}

void OrchestratorApi::TaskEvents(HttpRequest& req, std::shared_ptr<HttpExchange>& ex) {
  auto id = PathId(req);
  if (!id.ok()) return ex->Respond(ErrorResponse(id.status()));
  if (auto task = store_->Get(*id); !task.ok()) return ex->Respond(ErrorResponse(task.status()));
  auto parsed = ParsePage(req, kEventPages);
  if (auto* bad = std::get_if<HttpResponse>(&parsed)) return ex->Respond(std::move(*bad));
  const Page& page = std::get<Page>(parsed);
  auto events = store_->Events(*id, page.after, page.limit);
  if (!events.ok()) return ex->Respond(ErrorResponse(events.status()));
  Json items = Json::array();
  for (const auto& e : *events) items.push_back(e.ToJson());
  int64_t last = events->empty() ? 0 : events->back().seq;
  RespondJson(ex, 200, PageJson(std::move(items), page, last));
}

void OrchestratorApi::TaskStream(HttpRequest& req, std::shared_ptr<HttpExchange>& ex) {
  auto id = PathId(req);
  if (!id.ok()) return ex->Respond(ErrorResponse(id.status()));
  if (auto task = store_->Get(*id); !task.ok()) return ex->Respond(ErrorResponse(task.status()));
  // A reconnecting EventSource says where it stopped in Last-Event-ID; a first
  // connection may say it with ?after= (the page has drawn the log up to there).
  int64_t after = 0;
  std::string_view resume = req.Header("Last-Event-ID");
  auto it = req.query.find("after");
  std::string_view from = !resume.empty() ? resume : it != req.query.end() ? it->second : "";
  if (!from.empty()) {
    auto v = ParseInt(from);
    if (!v) {
      return ex->Respond(ErrorResponse(
          Status::InvalidArgument("Last-Event-ID and after must be event sequence numbers"),
          "after"));
    }
    after = *v;
  }
  streams_->Add(*id, after, ex);
}

void OrchestratorApi::CancelTask(HttpRequest& req, std::shared_ptr<HttpExchange>& ex) {
  auto id = PathId(req);
  if (!id.ok()) return ex->Respond(ErrorResponse(id.status()));
  std::string reason;
  if (!req.body.empty() &&
      !ReadBody(req, ex, [&](JsonReader& in) { in.String("reason", &reason); })) {
    return;
  }
  auto who = tokens_->Authenticate(req);
  int64_t by = who.ok() ? who->token_id : 0;
  std::string why = "cancelled by an engineer" + (reason.empty() ? "" : ": " + reason);
  auto task = lifecycle_->Cancel(*id, why, by);
  if (!task.ok()) return ex->Respond(ErrorResponse(task.status()));
  RespondJson(ex, 200, task->ToJson());
}

void OrchestratorApi::RetryTask(HttpRequest& req, std::shared_ptr<HttpExchange>& ex) {
  auto id = PathId(req);
  if (!id.ok()) return ex->Respond(ErrorResponse(id.status()));
  RetryBudget budget;
  if (!req.body.empty() && !ReadBody(req, ex, [&](JsonReader& in) {
        in.Bool("more_budget", &budget.more)
            .Int("extra_steps", &budget.extra_steps, Presence::kOptional, 0, 1'000'000)
            .Int("extra_tokens", &budget.extra_tokens, Presence::kOptional, 0, int64_t{1} << 40);
      })) {
    return;
  }
  auto who = tokens_->Authenticate(req);
  auto task = lifecycle_->Retry(*id, who.ok() ? who->token_id : 0, budget);
  if (!task.ok()) return ex->Respond(ErrorResponse(task.status()));
  if (on_requeue_) on_requeue_();
  RespondJson(ex, 200, task->ToJson());
}

namespace {

Result<Json> BranchDiffJson(TaskLifecycle* lifecycle, const Task& task,
                            const std::shared_ptr<const PolicyMap>& policies) {
  RepoCache* repos = lifecycle->repositories();
  if (!task.branch) {
    return Status::FailedPrecondition("task " + std::to_string(task.id) + " has no branch yet");
  }
  LOOM_ASSIGN_OR_RETURN(auto repo, repos->Get(task.repo, ProtectedPaths::kRefused, policies));
  LOOM_ASSIGN_OR_RETURN(repos::DiffReport diff, repo->DiffBranch(lifecycle->WorkspaceKey(task)));
  // Edits of the policy's protected paths were approved by a person before the
  // agent could make them; the reviewer still sees them called out.
  const policies::Policy& policy = PolicyFor(*policies, task.repo);
  auto is_protected = [&](const std::string& path) {
    for (const std::string& glob : policy.paths.protected_paths) {
      if (!path.empty() && policies::GlobMatch(glob, path)) return true;
    }
    return false;
  };
  Json files = Json::array(), protected_paths = Json::array();
  for (const auto& f : diff.files) {
    bool touched = is_protected(f.path) || is_protected(f.old_path);
    if (touched) protected_paths.push_back(f.path);
    files.push_back({{"path", f.path},
                     {"old_path", f.old_path},
                     {"additions", f.additions},
                     {"deletions", f.deletions},
                     {"binary", f.binary},
                     {"protected", touched}});
  }
  return Json{{"branch", *task.branch},
              {"base_commit", diff.base_commit},
              {"head_commit", diff.head_commit},
              {"files", files},
              {"protected_paths", protected_paths},
              {"unified", diff.unified}};
}

// What a reviewer reads besides the diff: the last verification run and the
// FAIL_TO_PASS evidence (the agent's tests failing on the base tree), what the
// agent did (tool calls by name, its finish summary), cost and time.
// What a task used and what it cost at the configured prices. Model time is the
// sum of the model calls' durations; sandbox CPU time the user + system time of
// every sandboxed run (tests and commands, on the branch and the base tree).
Json UsageAndCost(const Task& task, int64_t model_ms, int64_t cpu_ms, int64_t wall_ms,
                  const DashboardOptions& prices) {
  double tokens = task.prompt_tokens / 1e6 * prices.usd_per_million_prompt_tokens +
                  task.completion_tokens / 1e6 * prices.usd_per_million_completion_tokens;
  double cpu = cpu_ms / 3.6e6 * prices.usd_per_cpu_hour;
  double gpu = 0;  // sandboxed runs get no GPU; the model's own is in its token price
  return {{"usage",
           {{"prompt_tokens", task.prompt_tokens},
            {"completion_tokens", task.completion_tokens},
            {"model_ms", model_ms},
            {"sandbox_cpu_ms", cpu_ms},
            {"sandbox_wall_ms", wall_ms},
            {"sandbox_gpu_ms", 0}}},
          {"cost",
           {{"currency", "USD"},
            {"tokens", tokens},
            {"cpu", cpu},
            {"gpu", gpu},
            {"total", tokens + cpu + gpu},
            {"prices",
             {{"per_million_prompt_tokens", prices.usd_per_million_prompt_tokens},
              {"per_million_completion_tokens", prices.usd_per_million_completion_tokens},
              {"per_cpu_hour", prices.usd_per_cpu_hour},
              {"per_gpu_hour", prices.usd_per_gpu_hour}}}}}};
}

Result<Json> ReviewSummary(TaskStore* store, const Task& task, const DashboardOptions& prices) {
  LOOM_ASSIGN_OR_RETURN(std::vector<Event> events, store->Events(task.id));
  Json tools = Json::object(), last_run, fail_to_pass, summary;
  int64_t first_ms = 0, review_ms = 0, model_ms = 0, cpu_ms = 0, wall_ms = 0;
  for (const auto& e : events) {
    if (first_ms == 0) first_ms = e.created_at_ms;
    if (e.type == EventType::kLlmReply) model_ms += std::max<int64_t>(0, IntOr(e.data, "ms", 0));
    if (e.type == EventType::kTestRun || e.type == EventType::kCommandRun) {
      const Json& outcome = MemberOrNull(e.data, "outcome");
      cpu_ms += std::max<int64_t>(0, IntOr(outcome, "cpu_ms", 0));
      wall_ms += std::max<int64_t>(0, IntOr(outcome, "wall_ms", 0));
    }
    // Stored events are read tolerantly: a model's finish({"summary": 5}) is in
    // the log for good and must not break this page.
    if (e.type == EventType::kToolResult) {
      std::string name = StringOr(e.data, "name");
      tools[name] = IntOr(tools, name, 0) + 1;
    } else if (e.type == EventType::kTestRun && StringOr(e.data, "tree") == "branch") {
      last_run = e.data;
    } else if (e.type == EventType::kFailToPass) {
      fail_to_pass = e.data;
    } else if (e.type == EventType::kLlmReply) {
      const Json& calls = MemberOrNull(MemberOrNull(e.data, "message"), "tool_calls");
      if (!calls.is_array()) continue;
      for (const auto& tc : calls) {
        const Json& fn = MemberOrNull(tc, "function");
        if (StringOr(fn, "name") != "finish") continue;
        auto args = ParseJson(StringOr(fn, "arguments", "{}"));
        if (args.ok()) summary = StringOr(*args, "summary");
      }
    } else if (e.type == EventType::kState && StringOr(e.data, "to") == "review") {
      review_ms = e.created_at_ms;
    }
  }
  Json out = UsageAndCost(task, model_ms, cpu_ms, wall_ms, prices);
  out.update(
      Json{{"task", task.ToJson()},
           {"summary", summary},
           {"tool_calls", tools},
           {"verification", last_run},
           {"fail_to_pass", fail_to_pass},
           {"tokens", task.prompt_tokens + task.completion_tokens},
           {"seconds_to_review", review_ms > 0 ? Json((review_ms - first_ms) / 1000.0) : Json()}});
  return out;
}

}  // namespace

void OrchestratorApi::TaskDiff(HttpRequest& req, std::shared_ptr<HttpExchange>& ex) {
  auto id = PathId(req);
  if (!id.ok()) return ex->Respond(ErrorResponse(id.status()));
  auto task = store_->Get(*id);
  if (!task.ok()) return ex->Respond(ErrorResponse(task.status()));
  auto diff = BranchDiffJson(lifecycle_, *task, policies_->Snapshot());
  if (!diff.ok()) return ex->Respond(ErrorResponse(diff.status()));
  RespondJson(ex, 200, *diff);
}

void OrchestratorApi::ListReviews(HttpRequest& req, std::shared_ptr<HttpExchange>& ex) {
  RespondTaskPage(req, ex, TaskState::kReview);
}

// A page of the tasks (in `state`, when given), for GET /v1/tasks and /v1/reviews.
void OrchestratorApi::RespondTaskPage(HttpRequest& req, std::shared_ptr<HttpExchange>& ex,
                                      std::optional<TaskState> state) {
  auto parsed = ParsePage(req);
  if (auto* bad = std::get_if<HttpResponse>(&parsed)) return ex->Respond(std::move(*bad));
  const Page& page = std::get<Page>(parsed);
  auto tasks = store_->List(state, page.after, page.limit);
  if (!tasks.ok()) return ex->Respond(ErrorResponse(tasks.status()));
  Json items = Json::array();
  for (const auto& t : *tasks) items.push_back(t.ToJson());
  RespondJson(ex, 200, PageJson(std::move(items), page, tasks->empty() ? 0 : tasks->back().id));
}

// The task of a review route, which must be in review.
Result<Task> OrchestratorApi::ReviewedTask(HttpRequest& req) {
  LOOM_ASSIGN_OR_RETURN(int64_t id, PathId(req));
  LOOM_ASSIGN_OR_RETURN(Task task, store_->Get(id));
  if (task.state != TaskState::kReview) {
    return Status::FailedPrecondition("task " + std::to_string(id) + " is " +
                                      std::string(TaskStateName(task.state)) + ", not in review");
  }
  return task;
}

void OrchestratorApi::ShowReview(HttpRequest& req, std::shared_ptr<HttpExchange>& ex) {
  auto task = ReviewedTask(req);
  if (!task.ok()) return ex->Respond(ErrorResponse(task.status()));
  auto review = ReviewSummary(store_, *task, dashboard_);
  if (!review.ok()) return ex->Respond(ErrorResponse(review.status()));
  auto diff = BranchDiffJson(lifecycle_, *task, policies_->Snapshot());
  if (!diff.ok()) return ex->Respond(ErrorResponse(diff.status()));
  (*review)["diff"] = *diff;
  // What the reporters asked for, in their words (the originals and duplicates
  // that triage linked to this task).
  Json feedback = Json::array();
  for (int64_t id : task->feedback_ids) {
    auto item = feedback_->Get(id);
    if (!item.ok()) return ex->Respond(ErrorResponse(item.status()));
    feedback.push_back({{"id", item->id},
                        {"kind", item->kind},
                        {"title", item->title},
                        {"body", item->body},
                        {"reporter_count", item->reporter_count}});
  }
  (*review)["feedback"] = feedback;
  RespondJson(ex, 200, *review);
}

void OrchestratorApi::Approve(HttpRequest& req, std::shared_ptr<HttpExchange>& ex) {
  auto task = ReviewedTask(req);
  if (!task.ok()) return ex->Respond(ErrorResponse(task.status()));
  auto who = tokens_->Authenticate(req);
  if (!who.ok()) return ex->Respond(ErrorResponse(who.status()));
  std::shared_ptr<const PolicyMap> snapshot = policies_->Snapshot();
  const policies::Policy& policy = PolicyFor(*snapshot, task->repo);
  if (!policies::MayApprove(policy, who->role, task->requested_by.value_or(0), who->token_id)) {
    bool own = task->requested_by && *task->requested_by == who->token_id;
    return ex->Respond(ErrorResponse(Status::PermissionDenied(
        own ? "whoever requested a task cannot approve it: ask another engineer"
            : "the policy of " + task->repo + " does not let your role approve")));
  }
  if (!policy.review.auto_merge) {
    Status s =
        store_->AppendEvent(task->id, EventType::kApproved, {{"reviewer", who->token_id}}).status();
    if (!s.ok()) return ex->Respond(ErrorResponse(s));
    return RespondJson(
        ex, 200,
        {{"merged", false},
         {"approved", true},
         {"message", "approved; the policy of " + task->repo +
                         " waits for a merger: loom review merge " + std::to_string(task->id)}});
  }
  MergeApproved(*task, *who, ex);
}

void OrchestratorApi::Merge(HttpRequest& req, std::shared_ptr<HttpExchange>& ex) {
  auto task = ReviewedTask(req);
  if (!task.ok()) return ex->Respond(ErrorResponse(task.status()));
  auto who = tokens_->Authenticate(req);
  if (!who.ok()) return ex->Respond(ErrorResponse(who.status()));
  std::shared_ptr<const PolicyMap> snapshot = policies_->Snapshot();
  const policies::Policy& policy = PolicyFor(*snapshot, task->repo);
  if (!policies::MayMerge(policy, who->role)) {
    return ex->Respond(ErrorResponse(
        Status::PermissionDenied("the policy of " + task->repo + " does not let your role merge")));
  }
  // Approved since the task last came to review?
  auto events = store_->Events(task->id);
  if (!events.ok()) return ex->Respond(ErrorResponse(events.status()));
  bool approved = false;
  for (const auto& e : *events) {
    if (e.type == EventType::kState && StringOr(e.data, "to") == "review") approved = false;
    if (e.type == EventType::kApproved) approved = true;
  }
  if (!approved) {
    return ex->Respond(ErrorResponse(Status::FailedPrecondition(
        "task " + std::to_string(task->id) + " is not approved yet: loom review approve first")));
  }
  MergeApproved(*task, *who, ex);
}

void OrchestratorApi::MergeApproved(const Task& task, const Principal& reviewer,
                                    std::shared_ptr<HttpExchange>& ex) {
  auto repo = lifecycle_->repositories()->Get(task.repo);
  if (!repo.ok()) return ex->Respond(ErrorResponse(repo.status()));
  std::string id = lifecycle_->WorkspaceKey(task);
  // A repository on a git server: the merge is made on the server's current
  // target, and pushed (a fast-forward under the lease) before it is recorded.
  auto fetched = lifecycle_->remote()->FetchTarget(task.repo);
  if (!fetched.ok()) {
    return ex->Respond(ErrorResponse(
        fetched.status().WithContext("cannot merge task " + std::to_string(task.id))));
  }
  // The intent, before git is touched: a restart that finds it on a task still in
  // review whose branch is in the target finishes recording the merge
  // (FinishInterruptedMerges).
  Status intent =
      store_->AppendEvent(task.id, EventType::kMerging, {{"reviewer", reviewer.token_id}}).status();
  if (!intent.ok()) return ex->Respond(ErrorResponse(intent));
  auto merged = (*repo)->MergeBranch(id);
  if (!merged.ok()) return ex->Respond(ErrorResponse(merged.status()));
  CrashPoint("approve.merged");
  if (merged->kind == repos::MergeOutcome::Kind::kConflict) {
    // The target moved under the branch: the agent redoes its change on a
    // workspace made afresh from the new target head.
    std::string paths;
    for (const auto& p : merged->conflicting_paths) paths += (paths.empty() ? "" : ", ") + p;
    Status s = (*repo)->RemoveWorkspace(id, repos::BranchDisposition::kDelete);
    std::error_code ec;
    std::filesystem::remove_all(data_dir_ + "/base/" + std::to_string(task.id), ec);
    if (s.ok()) {
      s = lifecycle_->RequestChanges(task.id, reviewer.token_id,
                                     "Approved, but the merge conflicts with changes made on " +
                                         (*repo)->record().settings.target_branch +
                                         " meanwhile (in " + paths +
                                         "). Your workspace was made again from its new head: "
                                         "apply your change to it once more.",
                                     {{"conflicting_paths", merged->conflicting_paths}});
    }
    if (!s.ok()) return ex->Respond(ErrorResponse(s));
    if (on_requeue_) on_requeue_();
    return RespondJson(ex, 409,
                       {{"merged", false},
                        {"conflicting_paths", merged->conflicting_paths},
                        {"task", store_->Get(task.id).value_or(task).ToJson()}});
  }
  const char* how = merged->kind == repos::MergeOutcome::Kind::kFastForward   ? "fast-forward"
                    : merged->kind == repos::MergeOutcome::Kind::kMergeCommit ? "merge commit"
                                                                              : "up to date";
  if (*fetched) {
    Status pushed = lifecycle_->remote()->PushTarget(task.repo, (*fetched)->commit);
    if (!pushed.ok()) {
      return ex->Respond(ErrorResponse(pushed.WithContext(
          "task " + std::to_string(task.id) + " stays in review: the merge into " +
          (*repo)->record().settings.target_branch + " could not be pushed to the server")));
    }
  }
  Status s = lifecycle_->Merged(task.id, reviewer.token_id,
                                std::string("approved and merged (") + how + ")",
                                {{"commit", merged->commit}, {"merge", how}});
  if (s.code() == StatusCode::kFailedPrecondition && *fetched) {
    // The remote pass saw the pushed target hold the branch first and recorded
    // the merge: it is this one.
    auto now = store_->Get(task.id);
    if (now.ok() && now->state == TaskState::kMerged) s = Status::Ok();
  }
  if (!s.ok()) return ex->Respond(ErrorResponse(s));
  CrashPoint("approve.recorded");
  // The worktree has done its work; the branch stays for the record unless the
  // policy says otherwise (retention.keep_merged_branch).
  if (PolicyFor(*policies_->Snapshot(), task.repo).retention.keep_merged_branch) {
    (void)(*repo)->RemoveWorkspace(id, repos::BranchDisposition::kKeep);
  } else if ((*repo)->RemoveWorkspace(id, repos::BranchDisposition::kDelete).ok()) {
    (void)store_->ClearBranch(task.id);
  }
  if (on_requeue_) on_requeue_();  // a repository at its review bound may lease again
  RespondJson(ex, 200, {{"merged", true}, {"commit", merged->commit}, {"merge", how}});
}

Status OrchestratorApi::FinishInterruptedMerges() {
  LOOM_ASSIGN_OR_RETURN(std::vector<repos::RepoRecord> entries, repos_->List());
  for (const repos::RepoRecord& entry : entries) {
    auto repo = lifecycle_->repositories()->Get(entry.name);
    Status s = repo.ok() ? (*repo)->FinishInterruptedMerge() : repo.status();
    if (!s.ok()) {
      LOOM_LOG(kError) << "repository " << entry.name << ": " << s.ToString();
    }
  }
  LOOM_ASSIGN_OR_RETURN(std::vector<Task> in_review,
                        store_->List(TaskState::kReview, 0, std::numeric_limits<int>::max()));
  for (const Task& task : in_review) {
    LOOM_ASSIGN_OR_RETURN(std::vector<Event> events, store_->Events(task.id));
    bool merging = false;  // a merge began since the task came to review
    int64_t reviewer = 0;
    for (const auto& e : events) {
      if (e.type == EventType::kState && StringOr(e.data, "to") == "review") merging = false;
      if (e.type == EventType::kMerging) {
        merging = true;
        reviewer = IntOr(e.data, "reviewer", 0);
      }
    }
    if (!merging) continue;
    auto repo = lifecycle_->repositories()->Get(task.repo);
    if (!repo.ok()) continue;
    std::string id = lifecycle_->WorkspaceKey(task);
    auto diff = (*repo)->DiffBranch(id);
    // The merge committed (the target holds the branch) when the branch is its
    // own merge base with the target; otherwise nothing had moved and the task
    // waits in review for its approval again.
    if (!diff.ok() || diff->base_commit != diff->head_commit) continue;
    LOOM_RETURN_IF_ERROR(lifecycle_->Merged(task.id, reviewer,
                                            "approved and merged (finished after a restart)",
                                            {{"merge", "finished after a restart"}}));
    (void)(*repo)->RemoveWorkspace(id, repos::BranchDisposition::kKeep);
    LOOM_LOG(kWarning) << "task " << id << ": recorded the merge that a stop of loomd interrupted";
  }
  return Status::Ok();
}

void OrchestratorApi::RequestChanges(HttpRequest& req, std::shared_ptr<HttpExchange>& ex) {
  auto task = ReviewedTask(req);
  if (!task.ok()) return ex->Respond(ErrorResponse(task.status()));
  std::string comment;
  std::vector<LineComment> comments;
  if (!ReadBody(req, ex, [&](JsonReader& in) {
        in.String("comment", &comment);
        ReadLineComments(in, "comments", &comments);
        if (in.ok() && comment.empty() && comments.empty()) {
          in.Fail("comment", "say what to change: a comment, line comments, or both");
        }
      })) {
    return;
  }
  auto who = tokens_->Authenticate(req);
  Json extra = Json::object();
  if (!comments.empty()) extra["comments"] = LineCommentsToJson(comments);
  Status s =
      lifecycle_->RequestChanges(task->id, who.ok() ? who->token_id : 0, comment, std::move(extra));
  if (!s.ok()) return ex->Respond(ErrorResponse(s));
  if (on_requeue_) on_requeue_();
  RespondJson(ex, 200, store_->Get(task->id).value_or(*task).ToJson());
}

void OrchestratorApi::Reject(HttpRequest& req, std::shared_ptr<HttpExchange>& ex) {
  auto task = ReviewedTask(req);
  if (!task.ok()) return ex->Respond(ErrorResponse(task.status()));
  std::string reason;
  if (!ReadBody(req, ex,
                [&](JsonReader& in) { in.String("reason", &reason, Presence::kNonEmpty); })) {
    return;
  }
  auto who = tokens_->Authenticate(req);
  Status s = lifecycle_->Reject(task->id, who.ok() ? who->token_id : 0, "rejected: " + reason);
  if (!s.ok()) return ex->Respond(ErrorResponse(s));
  // The worktree goes; the branch too unless retention.keep_rejected_branch.
  if (auto repo = lifecycle_->repositories()->Get(task->repo); repo.ok()) {
    if (PolicyFor(*policies_->Snapshot(), task->repo).retention.keep_rejected_branch) {
      (void)(*repo)->RemoveWorkspace(lifecycle_->WorkspaceKey(*task),
                                     repos::BranchDisposition::kKeep);
    } else if ((*repo)
                   ->RemoveWorkspace(lifecycle_->WorkspaceKey(*task),
                                     repos::BranchDisposition::kDelete)
                   .ok()) {
      (void)store_->ClearBranch(task->id);
    }
  }
  if (on_requeue_) on_requeue_();  // a repository at its review bound may lease again
  RespondJson(ex, 200, store_->Get(task->id).value_or(*task).ToJson());
}

void OrchestratorApi::Fleet(HttpRequest&, std::shared_ptr<HttpExchange>& ex) {
  Json working = Json::array();
  Json queue = Json::object();
  for (TaskState state : {TaskState::kQueued, TaskState::kRunning, TaskState::kVerifying,
                          TaskState::kBlocked, TaskState::kReview}) {
    auto tasks = store_->List(state, 0, std::numeric_limits<int>::max());
    if (!tasks.ok()) return ex->Respond(ErrorResponse(tasks.status()));
    queue[std::string(TaskStateName(state))] = tasks->size();
    if (state != TaskState::kRunning && state != TaskState::kVerifying) continue;
    for (const Task& t : *tasks) {
      working.push_back({{"task_id", t.id},
                         {"title", t.title},
                         {"repo", t.repo},
                         {"state", TaskStateName(t.state)},
                         {"steps", t.steps},
                         {"tokens", t.prompt_tokens + t.completion_tokens}});
    }
  }
  int busy = dashboard_.busy_slots ? dashboard_.busy_slots() : static_cast<int>(working.size());
  Json model = {{"url", dashboard_.llm_url}, {"model", dashboard_.llm_model}};
  if (dashboard_.agent_slots == 0 || !dashboard_.model_endpoints) {
    model["healthy"] = nullptr;
    model["detail"] = "no agents: loomd takes feedback only (agents = 0)";
  } else {
    // The replicas as the LLM client's probes and requests left them: no probe
    // here, so the page costs nothing however many replicas there are.
    std::vector<EndpointStatus> replicas = dashboard_.model_endpoints->Snapshot();
    Json endpoints = Json::array();
    int up = 0;
    int64_t latency = -1;
    for (const EndpointStatus& e : replicas) {
      Json j = {{"url", e.url},
                {"up", e.up},
                {"requests", e.requests},
                {"failed_requests", e.failed_requests},
                {"failed_probes", e.failed_probes},
                {"last_error", e.last_error}};
      if (e.since_ms > 0) j["since"] = e.since_ms;
      if (e.probe_latency_ms >= 0) j["latency_ms"] = e.probe_latency_ms;
      endpoints.push_back(std::move(j));
      if (e.up) {
        ++up;
        if (e.probe_latency_ms >= 0 && (latency < 0 || e.probe_latency_ms < latency)) {
          latency = e.probe_latency_ms;
        }
      }
    }
    model["healthy"] = up > 0;
    if (replicas.size() == 1) {
      model["detail"] = up ? std::string("answering GET /models") : replicas[0].last_error;
    } else {
      model["detail"] = std::to_string(up) + " of " + std::to_string(replicas.size()) +
                        " replicas up; each task keeps to one";
    }
    if (latency >= 0) model["latency_ms"] = latency;
    model["endpoints"] = std::move(endpoints);
  }
  // The model's queue as loomd sees it: the tasks whose agents call it, and those
  // waiting for a slot.
  model["in_flight"] = working.size();
  model["waiting"] = queue["queued"];
  RespondJson(
      ex, 200,
      {{"agents", {{"slots", dashboard_.agent_slots}, {"busy", busy}, {"working", working}}},
       {"queue", queue},
       {"model", model},
       {"sandbox",
        {{"kind", dashboard_.sandbox},
         {"slots", dashboard_.agent_slots},
         {"runs_in_progress", working.size()}}}});
}

void OrchestratorApi::ListEscalations(HttpRequest& req, std::shared_ptr<HttpExchange>& ex) {
  std::string state = req.query.count("state") ? req.query.at("state") : "open";
  if (state != "open" && state != "all") {
    return ex->Respond(
        ErrorResponse(Status::InvalidArgument("state must be open or all"), "state"));
  }
  auto parsed = ParsePage(req);
  if (auto* bad = std::get_if<HttpResponse>(&parsed)) return ex->Respond(std::move(*bad));
  const Page& page = std::get<Page>(parsed);
  auto list = escalations_->List(state == "open", page.after, page.limit);
  if (!list.ok()) return ex->Respond(ErrorResponse(list.status()));
  Json items = Json::array();
  for (const auto& e : *list) items.push_back(e.ToJson());
  RespondJson(ex, 200, PageJson(std::move(items), page, list->empty() ? 0 : list->back().id));
}

void OrchestratorApi::ShowEscalation(HttpRequest& req, std::shared_ptr<HttpExchange>& ex) {
  auto id = PathId(req);
  if (!id.ok()) return ex->Respond(ErrorResponse(id.status()));
  auto e = escalations_->Get(*id);
  if (!e.ok()) return ex->Respond(ErrorResponse(e.status()));
  RespondJson(ex, 200, e->ToJson());
}

Result<Json> OrchestratorApi::ParseAnswer(const AnswerRequest& answer,
                                          const Escalation& escalation) {
  if (answer.secret) {
    std::string name = answer.secret_name;
    if (name.empty() && escalation.secret_name) name = *escalation.secret_name;
    if (answer.secret_value.empty()) return Status::InvalidArgument("secret.value is required");
    LOOM_RETURN_IF_ERROR(ValidateSecretName(name));
    if (escalation.task_id) {
      LOOM_ASSIGN_OR_RETURN(Task task, store_->Get(*escalation.task_id));
      if (!policies::SecretAllowed(PolicyFor(*policies_->Snapshot(), task.repo), name)) {
        return Status::PermissionDenied("the policy of " + task.repo +
                                        " does not allow the secret " + name +
                                        ": add it to [secrets] allowed first");
      }
    }
    if (!secrets_) return Status::FailedPrecondition("this loomd keeps no secrets");
    LOOM_RETURN_IF_ERROR(secrets_->Put(name, answer.secret_value));
    return Json{
        {"secret", name},
        {"text", "The secret " + name + " is now set in the environment of your sandbox runs ($" +
                     name + "); its value is never shown to you."}};
  }
  if (answer.gpu) {
    if (escalation.kind != "gpu") {
      return Status::InvalidArgument("gpu: only a gpu escalation is answered with a GPU grant");
    }
    static const std::regex kType("[A-Za-z0-9_-]{1,64}");
    if (!std::regex_match(answer.gpu_type, kType)) {
      return Status::InvalidArgument(
          "gpu.type: the GPU type as the cluster names it (gres gpu:<type>), letters, digits, '_' "
          "or '-'");
    }
    int64_t until = SystemClock::Default()->NowMs() + answer.gpu_minutes * 60'000;
    std::string what = std::to_string(answer.gpu_count) + " GPU" +
                       (answer.gpu_count == 1 ? "" : "s") + " of type " + answer.gpu_type +
                       " for " + std::to_string(answer.gpu_minutes) + " minutes";
    return Json{{"approved", true},
                {"gpu",
                 {{"type", answer.gpu_type},
                  {"count", answer.gpu_count},
                  {"minutes", answer.gpu_minutes},
                  {"until_ms", until}}},
                {"text", "Granted: " + what +
                             ". Your sandbox runs (run_tests, run_command) now have them until "
                             "the grant ends; after that they run without GPUs."}};
  }
  if (answer.approve) return Json{{"approved", true}, {"text", "Approved."}};
  if (answer.deny) {
    if (answer.reason.empty()) return Status::InvalidArgument("a denial needs a reason");
    return Json{{"approved", false}, {"text", "Denied: " + answer.reason}};
  }
  if (answer.text.empty())
    return Status::InvalidArgument("the answer needs text, approve, deny or secret");
  return Json{{"text", answer.text}};
}

void OrchestratorApi::AnswerEscalation(HttpRequest& req, std::shared_ptr<HttpExchange>& ex) {
  auto id = PathId(req);
  if (!id.ok()) return ex->Respond(ErrorResponse(id.status()));
  // {"text"}, {"approve": true}, {"deny": true, "reason"} or {"secret": {"name", "value"}}.
  AnswerRequest request;
  if (!ReadBody(req, ex, [&](JsonReader& in) {
        const Json* secret = nullptr;
        const Json* gpu = nullptr;
        in.String("text", &request.text)
            .Bool("approve", &request.approve)
            .Bool("deny", &request.deny)
            .String("reason", &request.reason)
            .Object("secret", &secret)
            .Object("gpu", &gpu);
        if (secret != nullptr && in.ok()) {
          request.secret = true;
          JsonReader sec(*secret, "secret");
          sec.String("name", &request.secret_name).String("value", &request.secret_value);
          in.Include(sec);
        }
        if (gpu != nullptr && in.ok()) {
          request.gpu = true;
          JsonReader g(*gpu, "gpu");
          g.String("type", &request.gpu_type, Presence::kNonEmpty)
              .Int("count", &request.gpu_count, Presence::kRequired, 1, 64)
              .Int("minutes", &request.gpu_minutes, Presence::kRequired, 1, 7 * 24 * 60)
              .NoOtherMembers();
          in.Include(g);
        }
      })) {
    return;
  }
  Status s;
  {
    MutexLock answering(&answer_mu_);
    auto escalation = escalations_->Get(*id);
    if (!escalation.ok()) return ex->Respond(ErrorResponse(escalation.status()));
    // Checked before ParseAnswer, which stores a secret: a 409 changes nothing.
    if (escalation->state != "open") {
      return ex->Respond(ErrorResponse(Status::FailedPrecondition(
          "escalation " + std::to_string(*id) + " is already answered")));
    }
    auto answer = ParseAnswer(request, *escalation);
    if (!answer.ok()) return ex->Respond(ErrorResponse(answer.status()));
    auto who = tokens_->Authenticate(req);
    s = lifecycle_->AnswerEscalation(*id, *answer, who.ok() ? who->token_id : 0);
  }
  if (!s.ok()) return ex->Respond(ErrorResponse(s));
  if (on_requeue_) on_requeue_();
  auto e = escalations_->Get(*id);
  if (!e.ok()) return ex->Respond(ErrorResponse(e.status()));
  RespondJson(ex, 200, e->ToJson());
}

}  // namespace loom
