// The orchestrator's HTTP API: repositories, tasks and their event logs, and
// escalations (minimal until the humans-in-the-loop work completes it).
//
//   POST /v1/repos                      admin: register {name, path, test_command, branch?}
//   GET  /v1/repos                      engineer
//   GET  /v1/tasks[?state=&after=&limit=]   engineer; oldest first, paged
//   GET  /v1/tasks/{id}                 engineer
//   GET  /v1/tasks/{id}/events[?after=&limit=]   engineer; `after` is a seq (for --follow)
//   GET  /v1/tasks/{id}/diff            engineer: the branch against its merge base
//   GET  /v1/escalations[?state=open|all]        engineer
//   GET  /v1/escalations/{id}           engineer
//   POST /v1/escalations/{id}/answer    engineer: {text} requeues the blocked task
//
// Handlers run SQLite reads on the I/O thread (short, indexed). Thread-safe.
#pragma once

#include <functional>
#include <string>

#include "common/auth.h"
#include "common/http_server.h"
#include "orchestrator/task_store.h"

namespace loom {

class OrchestratorApi {
 public:
  // `on_requeue` is called after an answer puts a task back in the queue (wakes
  // the scheduler); may be empty.
  // Task worktrees live under `worktrees_dir`/<repo> (the scheduler's layout).
  OrchestratorApi(TaskStore* store, TokenStore* tokens, std::string worktrees_dir,
                  std::function<void()> on_requeue);
  void Register(Router& router);

 private:
  using Handler = void (OrchestratorApi::*)(HttpRequest&, std::shared_ptr<HttpExchange>&);
  void Add(Router& router, const char* method, const char* path, Role min_role, Handler handler);

  void AddRepo(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void ListRepos(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void ListTasks(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void ShowTask(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void TaskEvents(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void TaskDiff(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void ListEscalations(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void ShowEscalation(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);
  void AnswerEscalation(HttpRequest& req, std::shared_ptr<HttpExchange>& ex);

  TaskStore* store_;
  TokenStore* tokens_;
  std::string worktrees_dir_;
  std::function<void()> on_requeue_;
};

}  // namespace loom
