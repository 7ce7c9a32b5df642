// The registered repositories, open: one repos::Repository per repository (and
// per edit rules, below), kept for the daemon's life and shared by the scheduler,
// the API and the lifecycle, so that no operation opens a repository again (its
// config, refs and object caches are loaded once; issue 25).
//
// An entry is the repository as its tasks see it now: the registered record
// (RepoStore, read on every Get) with the current policy applied (RepoRecordFor).
// When either has changed since the entry was opened (a re-registration, a
// policy reload on SIGHUP), Get opens the repository again and later callers get
// the new one; a caller still holding the old one keeps it until it lets it go.
// A policy reload reopens every repository, so it also picks up a change of the
// repositories' git config. Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "common/mutex.h"
#include "common/status.h"
#include "orchestrator/repo_policy.h"
#include "orchestrator/repo_store.h"
#include "repos/workspace.h"

namespace loom {

// Whether a task's workspace refuses edits of the policy's protected paths (the
// usual case) or a person approved such edits for the task.
enum class ProtectedPaths { kRefused, kApproved };

class RepoCache {
 public:
  // Worktrees live under data_dir/worktrees/<repo> (created private, traversable
  // by the sandbox uid). `policies` may be null (the shipped defaults).
  // REQUIRES: `repos` and `policies` outlive the cache.
  RepoCache(RepoStore* repos, const PolicySet* policies, std::string data_dir);

  // The repository `name`, open, with its current record and its policy in
  // `policies` (null: the current snapshot), see above. NotFound when no
  // repository has that name; other errors say why it cannot be opened.
  Result<std::shared_ptr<repos::Repository>> Get(
      const std::string& name, ProtectedPaths protected_paths = ProtectedPaths::kRefused,
      std::shared_ptr<const PolicyMap> policies = nullptr) EXCLUDES(mu_);

  // How many times a repository was opened: for tests and the benchmark.
  int64_t opens() const EXCLUDES(mu_);

 private:
  struct Entry {
    repos::RepoRecord record;
    std::shared_ptr<const PolicyMap> policies;  // the snapshot it was opened under
    std::shared_ptr<repos::Repository> repository;
  };

  RepoStore* const repos_;
  const PolicySet* const policies_;
  const std::string data_dir_;
  // The policies when there is no PolicySet: one snapshot, so entries match.
  const std::shared_ptr<const PolicyMap> empty_ = std::make_shared<const PolicyMap>();
  mutable Mutex mu_;
  std::map<std::pair<std::string, ProtectedPaths>, Entry> entries_ GUARDED_BY(mu_);
  int64_t opens_ GUARDED_BY(mu_) = 0;
};

}  // namespace loom
