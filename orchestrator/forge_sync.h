// Keeps each task's pull/merge request in step with the task: a durable
// consumer of the task event log (its cursor in SQLite, resumed after a
// restart) that acts on
//   pushed          (the task branch reached the repository's server): opens
//                   the pull/merge request if the task has none, else updates
//                   its body; a draft until the task's verification passed
//                   (the task is in review), then ready;
//   state -> review the pull request is made ready, and each forge issue the
//                   task's feedback came from is told, once per task, with a
//                   link to it;
//   state -> rejected  the pull request is closed.
// Only tasks of repositories whose policy names a forge ([forge] kind) are
// touched. The body says what the task did: the agent's summary, the feedback
// with reporter counts and links, the verification (FAIL_TO_PASS and
// PASS_TO_PASS), tokens and time.
//
// Errors: a forge that cannot be reached (Unavailable, after the client's own
// retries) stops the pass at that event, which is tried again at the next
// pass (at-least-once; each step checks what was done: an open pull request is
// updated, not opened twice; an issue told once). Any other refusal (a bad
// token, a missing branch) is logged and the event passed over: retrying it
// would not help, and later events must not wait behind it.
//
// Thread-safe: RunOnce is serialised; Start runs it on a thread of its own
// every `interval` and when woken.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/mutex.h"
#include "feedback/intake.h"
#include "orchestrator/forge_client.h"
#include "orchestrator/forge_store.h"
#include "orchestrator/repo_policy.h"
#include "orchestrator/secrets.h"
#include "orchestrator/task_store.h"

namespace loom {

struct ForgeSyncDeps {
  ForgeStore* forge = nullptr;
  TaskStore* tasks = nullptr;
  feedback::Store* feedback = nullptr;
  const PolicySet* policies = nullptr;
  SecretStore* secrets = nullptr;
  // Makes a repository's client; empty: ForgeClient::Make.
  std::function<Result<std::unique_ptr<ForgeClient>>(ForgeClientOptions)> make_client;
  std::chrono::milliseconds interval{5000};
};

class ForgeSync {
 public:
  static constexpr const char* kConsumer = "pr_sync";

  // REQUIRES: every pointer in `deps` outlives the sync.
  explicit ForgeSync(ForgeSyncDeps deps);
  ~ForgeSync();  // Stop()

  // Runs passes on a thread of its own until Stop().
  void Start() EXCLUDES(mu_);
  void Wake() EXCLUDES(mu_);
  void Stop() EXCLUDES(mu_);

  // One pass over the events after the cursor. Unavailable when a forge could
  // not be reached (the cursor stays before that event).
  Status RunOnce() EXCLUDES(pass_mu_);

 private:
  // Ok: done with the event (acted, or nothing to do, or logged as refused).
  Status Handle(const LoggedEvent& event) REQUIRES(pass_mu_);
  Status Pushed(const Task& task, const LoggedEvent& event) REQUIRES(pass_mu_);
  Status ReachedReview(const Task& task) REQUIRES(pass_mu_);
  Status Rejected(const Task& task) REQUIRES(pass_mu_);
  // Comments on the task's forge issues not yet told about it.
  Status TellIssues(const Task& task, const ForgePull& pull, ForgeClient& client)
      REQUIRES(pass_mu_);
  Result<std::unique_ptr<ForgeClient>> ClientFor(const policies::ForgePolicy& forge);
  Result<PullRequestSpec> SpecFor(const Task& task, const std::string& branch,
                                  const std::string& commit);
  void Loop() EXCLUDES(mu_);

  ForgeSyncDeps deps_;
  Mutex pass_mu_;
  Mutex mu_;
  std::condition_variable wake_;
  bool stop_ GUARDED_BY(mu_) = false;
  bool woken_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace loom
