// RemoteSync: see remote_sync.h.
//
// Design. Nothing about a remote is kept in loomd's memory or database besides
// the repository's URL and secret names: the clone itself holds where each task
// branch was last pushed (its remote-tracking ref, the lease), so a restart, a
// crash between a push and its event, or a pass that finds a push still missing
// all read the same truth. Credentials are resolved for each call and dropped.
#include "orchestrator/remote_sync.h"

#include "common/log.h"

namespace loom {
namespace {

Json CommitOrNull(const std::string& hex) { return hex.empty() ? Json() : Json(hex); }

// A failure that trying again cannot fix waits for a person.
bool Transient(const Status& s) { return s.code() == StatusCode::kUnavailable; }

}  // namespace

std::string UrlWithoutCredentials(const std::string& url) {
  auto parsed = repos::ParseRemoteUrl(url);
  if (!parsed.ok() || parsed->user.empty() ||
      (parsed->kind != repos::RemoteKind::kHttp && parsed->kind != repos::RemoteKind::kHttps)) {
    return url;
  }
  size_t scheme_end = url.find("://");
  size_t at = url.find('@', scheme_end);
  if (scheme_end == std::string::npos || at == std::string::npos) return url;
  return url.substr(0, scheme_end + 3) + url.substr(at + 1);
}

RemoteSync::RemoteSync(TaskStore* tasks, EscalationStore* escalations, RepoStore* repos,
                       SecretStore* secrets, RepoCache* repo_cache, RemoteSyncOptions options)
    : tasks_(tasks),
      escalations_(escalations),
      repos_(repos),
      secrets_(secrets),
      repo_cache_(repo_cache),
      options_(options) {}

RemoteSync::~RemoteSync() { Stop(); }

void RemoteSync::Stop() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (passes_.joinable()) passes_.join();
}

Result<bool> RemoteSync::IsRemote(const std::string& repo) {
  LOOM_ASSIGN_OR_RETURN(std::optional<RepoRemote> remote, repos_->Remote(repo));
  return remote.has_value();
}

Result<std::optional<RemoteSync::Target>> RemoteSync::Resolve(const std::string& repo) {
  LOOM_ASSIGN_OR_RETURN(std::optional<RepoRemote> remote, repos_->Remote(repo));
  if (!remote) return std::optional<Target>();
  LOOM_ASSIGN_OR_RETURN(std::shared_ptr<repos::Repository> open, repo_cache_->Get(repo));
  Target t;
  t.path = open->record().path;
  t.branch = open->record().settings.target_branch;
  t.url = UrlWithoutCredentials(remote->url);
  const RemoteSecretNames& n = remote->secrets;
  bool named = !n.password.empty() || !n.ssh_key.empty() || !n.ssh_passphrase.empty() ||
               !n.known_hosts.empty();
  if (named && !secrets_) {
    return Status::FailedPrecondition("the repository " + repo +
                                      " names secrets, but this loomd keeps none");
  }
  if (secrets_) {
    LOOM_ASSIGN_OR_RETURN(t.credentials, ResolveRemoteCredentials(*secrets_, remote->url, n));
  } else {
    t.credentials.username = n.username;
    if (n.accept_any_host_key) t.credentials.host_key_policy = repos::HostKeyPolicy::kAcceptAny;
  }
  return std::optional<Target>(std::move(t));
}

std::shared_ptr<Mutex> RemoteSync::RepoMutex(const std::string& repo) {
  MutexLock lock(&mu_);
  std::shared_ptr<Mutex>& m = repo_mu_[repo];
  if (!m) m = std::make_shared<Mutex>();
  return m;
}

template <typename Op>
auto RemoteSync::Retrying(Op op) -> decltype(op()) {
  std::chrono::milliseconds wait = options_.backoff;
  for (int attempt = 1;; ++attempt) {
    auto r = op();
    if (r.ok() || !Transient(r.status()) || attempt >= options_.attempts) return r;
    LOOM_LOG(kWarning) << r.status().message() << " (try " << attempt << " of " << options_.attempts
                       << "; again in " << wait.count() << " ms)";
    MutexLock lock(&mu_);
    if (stop_) return r;
    lock.WaitFor(&wake_, wait);
    wait *= 2;
  }
}

void RemoteSync::EscalateOnce(int64_t id, const std::string& summary) {
  auto mine = escalations_->ForTask(id);
  if (mine.ok()) {
    for (const Escalation& e : *mine) {
      if (e.kind == "infrastructure" && e.state == "open") return;
    }
  }
  auto raised = escalations_->Escalate(id, "infrastructure", summary, "orchestrator");
  if (!raised.ok()) {
    LOOM_LOG(kError) << "task " << id << ": cannot escalate: " << raised.status().ToString();
  }
}

Result<std::optional<repos::FetchOutcome>> RemoteSync::FetchTarget(const std::string& repo) {
  LOOM_ASSIGN_OR_RETURN(std::optional<Target> target, Resolve(repo));
  if (!target) return std::optional<repos::FetchOutcome>();
  std::shared_ptr<Mutex> repo_mu = RepoMutex(repo);
  MutexLock git(repo_mu.get());
  LOOM_ASSIGN_OR_RETURN(repos::FetchOutcome fetched, Retrying([&] {
                          return repos::FetchBranch(target->path, target->branch,
                                                    target->credentials);
                        }));
  return std::optional<repos::FetchOutcome>(std::move(fetched));
}

Result<std::optional<repos::FetchOutcome>> RemoteSync::FetchForTask(const Task& task,
                                                                    std::string_view purpose) {
  LOOM_ASSIGN_OR_RETURN(std::optional<repos::FetchOutcome> fetched, FetchTarget(task.repo));
  if (!fetched) return fetched;
  LOOM_ASSIGN_OR_RETURN(std::optional<RepoRemote> remote, repos_->Remote(task.repo));
  LOOM_ASSIGN_OR_RETURN(std::shared_ptr<repos::Repository> open, repo_cache_->Get(task.repo));
  Json data = {{"purpose", purpose},
               {"remote", UrlWithoutCredentials(remote ? remote->url : "")},
               {"branch", open->record().settings.target_branch},
               {"commit", fetched->commit},
               {"previous", CommitOrNull(fetched->previous_commit)}};
  LOOM_RETURN_IF_ERROR(tasks_->AppendEvent(task.id, EventType::kFetched, data).status());
  return fetched;
}

Status RemoteSync::PushTask(int64_t id) {
  LOOM_ASSIGN_OR_RETURN(Task task, tasks_->Get(id));
  if (!task.branch) return Status::Ok();
  Result<std::optional<Target>> target = Resolve(task.repo);
  std::string url;
  if (auto remote = repos_->Remote(task.repo); remote.ok() && *remote) {
    url = UrlWithoutCredentials((*remote)->url);
  }
  const std::string& branch = *task.branch;
  int attempts = 0;
  Result<repos::PushOutcome> pushed = Status::Ok();
  if (!target.ok()) {
    pushed = target.status();
  } else if (!*target) {
    return Status::Ok();  // registered in place: nothing to push to
  } else {
    std::shared_ptr<Mutex> repo_mu = RepoMutex(task.repo);
    MutexLock git(repo_mu.get());
    const Target& t = **target;
    pushed = Retrying([&]() -> Result<repos::PushOutcome> {
      ++attempts;
      // The lease: where this clone last pushed or saw the branch.
      LOOM_ASSIGN_OR_RETURN(std::string lease, repos::TrackingCommit(t.path, branch));
      return repos::PushBranch(t.path, {branch, "", lease, repos::PushMode::kForceWithLease},
                               t.credentials);
    });
  }
  if (pushed.ok()) {
    if (pushed->up_to_date) return Status::Ok();
    LOOM_LOG(kInfo) << "task " << id << ": pushed " << branch << " at " << pushed->commit << " to "
                    << url;
    return tasks_
        ->AppendEvent(id, EventType::kPushed,
                      {{"remote", url},
                       {"branch", branch},
                       {"commit", pushed->commit},
                       {"previous", CommitOrNull(pushed->previous_commit)}})
        .status();
  }
  const Status& error = pushed.status();
  LOOM_LOG(kWarning) << "task " << id << ": " << error.ToString();
  (void)tasks_->AppendEvent(
      id, EventType::kPushFailed,
      {{"remote", url}, {"branch", branch}, {"error", error.message()}, {"attempt", attempts}});
  std::string advice;
  switch (error.code()) {
    case StatusCode::kUnauthenticated:
    case StatusCode::kNotFound:
      advice = "check the repository's credential secrets (loom repo list) and the server";
      break;
    case StatusCode::kPermissionDenied:
      advice = "check the server's host key against the known_hosts secret";
      break;
    case StatusCode::kFailedPrecondition:
      advice =
          "someone else moved the branch on the server; Loom does not overwrite it. Look at the "
          "remote branch and put it back where Loom last pushed it (the error names both "
          "commits); loomd pushes again on its next pass";
      break;
    default:
      advice = "the server could not be reached; loomd tries again on its next pass";
  }
  EscalateOnce(id, "task " + std::to_string(id) + " is in review, but pushing its branch " +
                       branch + " to " + url + " failed: " + error.message() + ". " + advice +
                       ". Nothing is lost: the task stays in review with its branch.");
  return error;
}

Status RemoteSync::DeleteTaskBranch(int64_t id) {
  LOOM_ASSIGN_OR_RETURN(Task task, tasks_->Get(id));
  if (!task.branch) return Status::Ok();
  LOOM_ASSIGN_OR_RETURN(std::optional<Target> target, Resolve(task.repo));
  if (!target) return Status::Ok();
  const std::string& branch = *task.branch;
  std::shared_ptr<Mutex> repo_mu = RepoMutex(task.repo);
  MutexLock git(repo_mu.get());
  LOOM_ASSIGN_OR_RETURN(std::string lease, repos::TrackingCommit(target->path, branch));
  if (lease.empty()) return Status::Ok();  // never pushed
  Result<std::string> deleted = Retrying(
      [&] { return repos::DeleteRemoteBranch(target->path, branch, lease, target->credentials); });
  if (!deleted.ok()) {
    (void)tasks_->AppendEvent(id, EventType::kPushFailed,
                              {{"remote", target->url},
                               {"branch", branch},
                               {"error", deleted.status().message()},
                               {"attempt", options_.attempts}});
    return deleted.status();
  }
  return tasks_
      ->AppendEvent(id, EventType::kRemoteBranchDeleted,
                    {{"remote", target->url}, {"branch", branch}, {"commit", *deleted}})
      .status();
}

Status RemoteSync::PushTarget(const std::string& repo, const std::string& expected) {
  LOOM_ASSIGN_OR_RETURN(std::optional<Target> target, Resolve(repo));
  if (!target) return Status::Ok();
  std::shared_ptr<Mutex> repo_mu = RepoMutex(repo);
  MutexLock git(repo_mu.get());
  Result<repos::PushOutcome> pushed = Retrying([&] {
    return repos::PushBranch(target->path,
                             {target->branch, "", expected, repos::PushMode::kFastForwardWithLease},
                             target->credentials);
  });
  if (pushed.ok()) return Status::Ok();
  // The merge stays unpublished: the clone's target goes back to the server's.
  if (Status back = repos::ResetBranchToTracking(target->path, target->branch); !back.ok()) {
    LOOM_LOG(kError) << "repository " << repo << ": " << back.ToString();
  }
  return pushed.status();
}

Status RemoteSync::Pass(const MergedUpstream& merged_upstream, const KeyOf& key) {
  // Tasks in review, by repository.
  std::map<std::string, std::vector<Task>> in_review;
  for (int64_t after = 0;;) {
    LOOM_ASSIGN_OR_RETURN(std::vector<Task> page, tasks_->List(TaskState::kReview, after, 200));
    if (page.empty()) break;
    for (Task& t : page) in_review[t.repo].push_back(std::move(t));
    after = page.back().id;
    if (page.size() < 200) break;
  }
  for (const auto& [repo, tasks] : in_review) {
    auto remote = IsRemote(repo);
    if (!remote.ok() || !*remote) continue;
    auto fetched = FetchTarget(repo);
    if (!fetched.ok()) {
      LOOM_LOG(kWarning) << "repository " << repo << ": " << fetched.status().ToString();
      continue;
    }
    auto open = repo_cache_->Get(repo);
    if (!open.ok()) continue;
    for (const Task& task : tasks) {
      if (!task.branch) continue;
      auto diff = (*open)->DiffBranch(key(task));
      if (!diff.ok()) continue;
      // The branch's head is in the target: merged on the server.
      if (diff->base_commit == diff->head_commit) {
        if (Status s = merged_upstream(task, diff->head_commit); !s.ok()) {
          LOOM_LOG(kWarning) << "task " << task.id << ": " << s.ToString();
        }
        continue;
      }
      auto lease = repos::TrackingCommit((*open)->record().path, *task.branch);
      if (lease.ok() && *lease != diff->head_commit) (void)PushTask(task.id);
    }
  }
  return Status::Ok();
}

void RemoteSync::StartPasses(std::chrono::milliseconds interval, MergedUpstream merged_upstream,
                             KeyOf key) {
  passes_ = std::thread(
      [this, interval, merged_upstream = std::move(merged_upstream), key = std::move(key)] {
        while (true) {
          {
            MutexLock lock(&mu_);
            if (stop_) return;
            lock.WaitFor(&wake_, interval);
            if (stop_) return;
          }
          if (Status s = Pass(merged_upstream, key); !s.ok()) {
            LOOM_LOG(kWarning) << "remote pass: " << s.ToString();
          }
        }
      });
}

}  // namespace loom
