// The orchestrator's HTTP API: repositories, tasks and their event logs, and
// escalations (minimal until the humans-in-the-loop work completes it).
//
//   POST /v1/repos                      admin: register {name, path, test_command, branch?}
//   GET  /v1/repos                      engineer
// Every list is paged by one rule (common/paging.h, docs/api.md "Lists"):
// `after` (a key, 0 = the start) and `limit`, answered {"items", "next_after"}.
//
//   GET  /v1/tasks[?state=&after=&limit=]   engineer; oldest first, paged
//   GET  /v1/tasks/{id}                 engineer
//   GET  /v1/tasks/{id}/events[?after=&limit=]   engineer; `after` is a seq (for --follow);
//                                       pages of up to 5000 (default 500)
//   GET  /v1/tasks/{id}/stream[?after=]   engineer: the event log as Server-Sent Events,
//                                       from after `after` or the Last-Event-ID header,
//                                       then live (orchestrator/event_stream.h)
//   GET  /v1/tasks/{id}/diff            engineer: the branch against its merge base
//   POST /v1/tasks/{id}/cancel          engineer: {reason?}; a queued, blocked or
//                                       changes_requested task at once, a running or
//                                       verifying one with its sandbox run killed; its
//                                       worktree and branch removed, its escalations
//                                       closed, its feedback told why. 409 otherwise
//   POST /v1/tasks/{id}/retry           engineer: {more_budget?, extra_steps?, extra_tokens?};
//                                       a failed or cancelled task back to queued with a
//                                       fresh workspace. 409 otherwise
//   GET  /v1/reviews[?after=&limit=]    engineer: tasks in review, paged
//   GET  /v1/reviews/{id}               engineer: diff (protected paths flagged), the
//                                       verification and FAIL_TO_PASS runs, the feedback,
//                                       transcript summary, cost
//   POST /v1/reviews/{id}/approve       engineer: merge (a conflict sends it back to the agent);
//                                       with review.auto_merge = false only records the approval
//   POST /v1/reviews/{id}/merge         a merger: merges an approved branch
//   POST /v1/reviews/{id}/request-changes   engineer: {comment?, comments?: [{path, line,
//                                       body}]} (one non-empty) -> the agent's next instruction
//   POST /v1/reviews/{id}/reject        engineer: {reason}
//   GET  /v1/fleet                      engineer: agent slots and the tasks they work on,
//                                       the queue by state, the model endpoint's health
//                                       (probed), the sandbox
//   GET  /v1/escalations[?state=open|all&after=&limit=]   engineer, paged
//   GET  /v1/escalations/{id}           engineer
//   POST /v1/escalations/{id}/answer    engineer: one of {text}, {approve: true},
//        {deny: true, reason}, {secret: {name, value}}; requeues the blocked task.
//        A secret is stored encrypted; the answer and the log keep only its name.
//
// Handlers run on a small pool of their own (`blocking_threads`), never on an
// HTTP I/O thread: they read and write SQLite, and run libgit2 diffs and merges,
// and answer through the exchange. Whoever requested a task (the token that filed its feedback)
// cannot approve it. Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "common/auth.h"
#include "common/blocking_pool.h"
#include "common/http_server.h"
#include "common/mutex.h"
#include "feedback/intake.h"
#include "orchestrator/event_stream.h"
#include "orchestrator/lifecycle.h"
#include "orchestrator/model_endpoints.h"
#include "orchestrator/repo_policy.h"
#include "orchestrator/secrets.h"
#include "orchestrator/stores.h"
#include "policies/policy.h"

namespace loom {

// What the dashboard's review and fleet pages show beyond the stores: the prices
// a task's cost is reckoned with, and the fleet's set-up.
struct DashboardOptions {
  double usd_per_million_prompt_tokens = 0;
  double usd_per_million_completion_tokens = 0;
  double usd_per_cpu_hour = 0;  // sandbox CPU time (user + system)
  double usd_per_gpu_hour = 0;
  int agent_slots = 0;
  std::string llm_url, llm_model;  // llm.url (one URL or a comma-separated list), llm.model
  // The model replicas and their health, as the LLM client's probes and
  // requests left it (GET /v1/fleet reads it, never probes); null: none (agents = 0).
  std::shared_ptr<const ModelEndpoints> model_endpoints;
  std::string sandbox;              // "bubblewrap", or why there is none
  std::function<int()> busy_slots;  // may be empty
};

class OrchestratorApi {
 public:
  // `on_requeue` is called after an answer puts a task back in the queue, and
  // after a merge or a rejection (a place under review.max_waiting is free): it
  // wakes the scheduler; may be empty.
  // Task worktrees live under `data_dir`/worktrees/<repo> and base trees under
  // `data_dir`/base (the scheduler's layout).
  // `policies` (per repository; REQUIRES: outlives this) decide who may approve.
  // REQUIRES: `stores`, `lifecycle` (over the same stores) and `feedback` outlive
  // this. Every state change is asked of `lifecycle`.
  OrchestratorApi(const OrchestratorStores& stores, TaskLifecycle* lifecycle,
                  feedback::Store* feedback, TokenStore* tokens, std::string data_dir,
                  const PolicySet* policies, SecretStore* secrets, std::function<void()> on_requeue,
                  int blocking_threads = 4);
  // Runs the requests already handed to the pool, then returns.
  ~OrchestratorApi();
  void Register(Router& router);
  // At start, before serving: finishes what a stop during an approve left. Each
  // registered repository completes or drops an interrupted merge
  // (Repository::FinishInterruptedMerge; a failure is logged), and a task still
  // in review whose approval had begun merging ("merging" event) is recorded
  // merged when its branch is in the target, else left in review as before.
  Status FinishInterruptedMerges();
  // REQUIRES: called before Register.
  void SetDashboardOptions(DashboardOptions options) { dashboard_ = std::move(options); }
  // Ends every open event stream (before the HTTP server drains). Idempotent.
  void CloseStreams();

 private:
  using Handler = void (OrchestratorApi::*)(HttpRequest&, std::shared_ptr<HttpExchange>&);
  void Add(Router& router, const char* method, const char* path, Role min_role, Handler handler);

  void AddRepo(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void ListRepos(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  // POST /v1/secrets {name, value}: stores a secret (a git server's token or key,
  // named by a repository); answers its name, never its value.
  void PutSecret(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void ListTasks(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void ShowTask(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void TaskEvents(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void TaskStream(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void TaskDiff(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void CancelTask(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void RetryTask(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void ListReviews(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void RespondTaskPage(HttpRequest& req, std::shared_ptr<HttpExchange>& ex,
                       std::optional<TaskState> state);
  void ShowReview(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void Approve(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void Merge(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void MergeApproved(const Task& task, const Principal& reviewer,
                     std::shared_ptr<HttpExchange>& ex);
  void RequestChanges(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void Reject(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  Result<Task> ReviewedTask(HttpRequest& req);
  // The body of POST /v1/escalations/{id}/answer, read by a JsonReader.
  struct AnswerRequest {
    std::string text, reason, secret_name, secret_value;
    bool approve = false, deny = false, secret = false;
    bool gpu = false;  // a GPU grant: {"gpu": {"type", "count", "minutes"}}
    std::string gpu_type;
    int64_t gpu_count = 0, gpu_minutes = 0;
  };
  Result<Json> ParseAnswer(const AnswerRequest& answer, const Escalation& escalation);
  void Fleet(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void ListEscalations(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void ShowEscalation(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void AnswerEscalation(HttpRequest& req, std::shared_ptr<HttpExchange>& ex) EXCLUDES(answer_mu_);

  TaskStore* store_;
  EscalationStore* escalations_;
  RepoStore* repos_;
  TaskLifecycle* lifecycle_;
  feedback::Store* feedback_;
  TokenStore* tokens_;
  std::string data_dir_;
  const PolicySet* policies_;
  SecretStore* secrets_;
  // Held from the check that an escalation is open until its answer is recorded,
  // so an answer that is refused (409) has stored nothing, a secret included.
  Mutex answer_mu_;
  std::function<void()> on_requeue_;
  std::unique_ptr<TaskEventStreams> streams_;
  DashboardOptions dashboard_;
  // Last: destroyed first, so its jobs finish while the rest is alive.
  std::unique_ptr<BlockingPool> pool_;
};

}  // namespace loom
