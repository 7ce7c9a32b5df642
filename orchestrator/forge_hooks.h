// Inbound webhooks from GitHub and GitLab: POST /v1/hooks/github and
// POST /v1/hooks/gitlab. No Loom token: a delivery is verified instead, with
// the webhook secret of a repository whose policy names the forge
// ([forge] webhook_secret, a secret in the secret store): GitHub's
// X-Hub-Signature-256 (HMAC-SHA256 of the raw body), GitLab's X-Gitlab-Token,
// each compared in constant time. The body is parsed only once it verified.
//
// A verified delivery is recorded in SQLite (ForgeStore) before anything else,
// and answered 2xx only after that commit; its id makes it idempotent (a
// redelivery is answered with what the first did, and does nothing again). Then
// it is applied:
//   - an issue opened with the repository's [forge] issue_label, or labelled
//     with it -> a feedback item (kind from the labels, reporter = the issue's
//     author, its URL), once per issue, through the feedback store and triage;
//   - a line comment on a pull/merge request -> kept until its review;
//   - a review requesting changes -> TaskLifecycle::RequestChanges with its
//     text and line comments (the path of `loom review request-changes`);
//   - a pull/merge request merged -> TaskLifecycle::Merged ({"how": "forge"});
//     closed unmerged -> TaskLifecycle::Reject.
// A delivery that no longer applies (the task moved on, no task has that pull
// request, an event Loom does not act on) is recorded with the reason and
// answered 200: the forge should not retry it. One that loomd stopped in the
// middle of is applied again at the next start (ResumeUnfinished); each step
// is idempotent.
//
// Thread-safe: requests run on the hooks' own blocking pool.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/auth.h"
#include "common/blocking_pool.h"
#include "common/http_server.h"
#include "common/mutex.h"
#include "feedback/intake.h"
#include "orchestrator/forge_store.h"
#include "orchestrator/lifecycle.h"
#include "orchestrator/repo_policy.h"
#include "orchestrator/secrets.h"
#include "orchestrator/task_store.h"

namespace loom {

struct ForgeHooksDeps {
  ForgeStore* forge = nullptr;
  TaskStore* tasks = nullptr;
  TaskLifecycle* lifecycle = nullptr;
  feedback::Store* feedback = nullptr;
  TokenStore* tokens = nullptr;  // the forge's reporter identity for feedback
  const PolicySet* policies = nullptr;
  SecretStore* secrets = nullptr;
  // Called after feedback was filed or a task requeued (wakes triage and the scheduler).
  std::function<void()> wake;
};

class ForgeHooks {
 public:
  // REQUIRES: every pointer in `deps` outlives the hooks.
  explicit ForgeHooks(ForgeHooksDeps deps, int threads = 2);
  ~ForgeHooks();

  // POST /v1/hooks/github and /v1/hooks/gitlab.
  void Register(Router& router);

  // The whole handling of one request, synchronously (the routes run it on the pool).
  HttpResponse HandleGithub(const HttpRequest& request);
  HttpResponse HandleGitlab(const HttpRequest& request);

  // Applies the deliveries recorded but not finished (loomd stopped between).
  Status ResumeUnfinished();

 private:
  struct IssueFields;
  HttpResponse Handle(const std::string& forge, const HttpRequest& request);
  // Applies a recorded delivery; the outcome to record, or an error to retry.
  Result<std::string> Apply(const ForgeDelivery& delivery);
  Result<std::string> ApplyGithub(const ForgeDelivery& d, const Json& body);
  Result<std::string> ApplyGitlab(const ForgeDelivery& d, const Json& body);
  Result<std::string> FileIssue(const ForgeDelivery& d, const IssueFields& issue);
  Result<std::string> ChangesRequested(const ForgeDelivery& d, int64_t number,
                                       const std::string& review_id, const std::string& text,
                                       const std::string& who, const std::string& url);
  Result<std::string> Closed(const ForgeDelivery& d, int64_t number, bool merged,
                             const std::string& who, const std::string& url,
                             const std::string& commit);
  Result<int64_t> ForgeTokenId(const std::string& forge) EXCLUDES(token_mu_);

  ForgeHooksDeps deps_;
  Mutex token_mu_;
  std::map<std::string, int64_t> token_ids_ GUARDED_BY(token_mu_);
  std::unique_ptr<BlockingPool> pool_;
};

}  // namespace loom
