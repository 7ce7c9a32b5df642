// What loomd does with the git server of a repository registered by URL
// (docs/forges.md): fetch the target branch before a task starts and before it is
// verified, push a task's branch when it reaches review (again, under the lease,
// after each revision), delete it when the task is rejected, push the target
// after a merge made in Loom, and notice a task branch merged upstream.
//
// A repository registered in place (a local path) has no server: every call is
// a no-op for it. Credentials are resolved from the secret store for each call
// (RepoStore::Remote, ResolveRemoteCredentials) and never kept.
//
// The lease of a task branch is the clone's remote-tracking ref
// refs/remotes/origin/<branch>: where Loom last pushed (or saw) it. A push that
// finds the remote branch elsewhere is refused, leaves the remote alone and
// becomes an `infrastructure` escalation; the task stays in review with its
// local branch.
//
// Failures: a server that cannot be reached (Unavailable) is tried again with
// backoff (RemoteSyncOptions); what persists, and what retrying cannot fix (a
// refused credential, an unknown host key, a lease refusal), becomes one
// `infrastructure` escalation on the task (not another while one is open). A
// push that failed is tried again by each Pass while its task is in review.
//
// Events (orchestrator/event_type.h): `fetched` {purpose, remote, branch, commit,
// previous}, `pushed` {remote, branch, commit, previous} (a contract: forge
// integrations open pull requests on it), `push_failed` {remote, branch, error,
// attempt}, `remote_branch_deleted` {remote, branch, commit}.
//
// Thread-safe: git work on one repository's clone is serialised by a mutex per
// repository; calls block (libgit2 has no timeouts): call from a slot, a pool
// or the pass thread, never an event loop.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "common/json.h"
#include "common/mutex.h"
#include "common/status.h"
#include "orchestrator/escalation_store.h"
#include "orchestrator/repo_cache.h"
#include "orchestrator/repo_store.h"
#include "orchestrator/secrets.h"
#include "orchestrator/task_store.h"
#include "repos/remote.h"

namespace loom {

struct RemoteSyncOptions {
  // Tries of a fetch or push whose server is unavailable, and the wait before
  // the second try (doubled before each next one).
  int attempts = 4;
  std::chrono::milliseconds backoff{std::chrono::milliseconds(500)};
};

// `url` without credentials: the user of an http(s) URL dropped (an SSH user is
// no secret and stays).
std::string UrlWithoutCredentials(const std::string& url);

class RemoteSync {
 public:
  // `secrets` may be null: only repositories that need no secret can be reached.
  // REQUIRES: everything given outlives this object.
  RemoteSync(TaskStore* tasks, EscalationStore* escalations, RepoStore* repos, SecretStore* secrets,
             RepoCache* repo_cache, RemoteSyncOptions options);
  ~RemoteSync();

  // Whether `repo` was cloned from a server.
  Result<bool> IsRemote(const std::string& repo);

  // Fetches the target branch of `repo` (fast-forwarding the clone's branch),
  // retrying an unavailable server. nullopt for a repository registered in place.
  Result<std::optional<repos::FetchOutcome>> FetchTarget(const std::string& repo) EXCLUDES(mu_);
  // FetchTarget for task `task`, with a `fetched` event {purpose: `purpose`}
  // when it fetched.
  Result<std::optional<repos::FetchOutcome>> FetchForTask(const Task& task,
                                                          std::string_view purpose);

  // Pushes task `id`'s branch under the lease, with a `pushed`
  // event; a failure that persists is a `push_failed` event and an
  // infrastructure escalation (and the error is returned). Ok and nothing done
  // for a repository registered in place or a task with no branch.
  Status PushTask(int64_t id);
  // Deletes the task's branch on the server under the lease, with a
  // `remote_branch_deleted` event; a branch never pushed is left alone.
  Status DeleteTaskBranch(int64_t id);

  // After a merge into the target branch of `repo` made in Loom: pushes the
  // target (fast-forward, lease `expected`: where the fetch before the merge
  // found it). A refusal moves the clone's target back to the remote's, so
  // that nothing unpushed stays on it, and is returned.
  Status PushTarget(const std::string& repo, const std::string& expected);

  // One pass over the remote repositories with tasks in review: fetches each
  // target; a task whose branch head is in the fetched target is handed to
  // `merged_upstream` (task, commit); a task whose branch is not where it was
  // last pushed is pushed again (`key` gives a task's workspace key).
  using MergedUpstream = std::function<Status(const Task&, const std::string& commit)>;
  using KeyOf = std::function<std::string(const Task&)>;
  Status Pass(const MergedUpstream& merged_upstream, const KeyOf& key);

  // Runs Pass every `interval` on a thread of its own until destruction (or
  // Stop). REQUIRES: called once.
  void StartPasses(std::chrono::milliseconds interval, MergedUpstream merged_upstream, KeyOf key);
  void Stop() EXCLUDES(mu_);

 private:
  struct Target {
    std::string path;  // the clone
    std::string url;   // without credentials
    std::string branch;
    repos::RemoteCredentials credentials;
  };
  // nullopt for a repository registered in place.
  Result<std::optional<Target>> Resolve(const std::string& repo);
  // The mutex serialising git work on `repo`'s clone.
  std::shared_ptr<Mutex> RepoMutex(const std::string& repo) EXCLUDES(mu_);
  // `op` tried while it fails with Unavailable, up to options_.attempts.
  template <typename Op>
  auto Retrying(Op op) -> decltype(op());
  // An infrastructure escalation for task `id`, unless one is open.
  void EscalateOnce(int64_t id, const std::string& summary);

  TaskStore* const tasks_;
  EscalationStore* const escalations_;
  RepoStore* const repos_;
  SecretStore* const secrets_;
  RepoCache* const repo_cache_;
  const RemoteSyncOptions options_;
  Mutex mu_;
  std::map<std::string, std::shared_ptr<Mutex>> repo_mu_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::condition_variable wake_;
  std::thread passes_;
};

}  // namespace loom
