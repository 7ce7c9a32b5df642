// RepoCache: see repo_cache.h.
//
// Design. A Get reads the registered record (one indexed SQLite read) and the
// policy snapshot (a shared_ptr copy), applies the policy, and compares the result
// with the entry's: equal records under the same snapshot are the same open
// repository. Opening (Repository::Open validates the repository: a few ms) runs
// outside the lock, so a slow disk never holds up the other repositories' callers;
// two callers that miss at once both open, and the later one's entry is kept.
#include "orchestrator/repo_cache.h"

#include "common/private_dir.h"

namespace loom {
namespace {

bool SameSettings(const repos::RepoSettings& a, const repos::RepoSettings& b) {
  return a.target_branch == b.target_branch && a.allowed_globs == b.allowed_globs &&
         a.protected_globs == b.protected_globs && a.author_name == b.author_name &&
         a.author_email == b.author_email;
}

bool SameRecord(const repos::RepoRecord& a, const repos::RepoRecord& b) {
  return a.name == b.name && a.path == b.path && a.origin == b.origin &&
         a.test_command == b.test_command && SameSettings(a.settings, b.settings);
}

}  // namespace

RepoCache::RepoCache(RepoStore* repos, const PolicySet* policies, std::string data_dir)
    : repos_(repos), policies_(policies), data_dir_(std::move(data_dir)) {}

Result<std::shared_ptr<repos::Repository>> RepoCache::Get(
    const std::string& name, ProtectedPaths protected_paths,
    std::shared_ptr<const PolicyMap> snapshot) {
  LOOM_ASSIGN_OR_RETURN(repos::RepoRecord registered, repos_->Get(name));
  if (!snapshot) snapshot = policies_ ? policies_->Snapshot() : empty_;
  repos::RepoRecord record = RepoRecordFor(registered, *snapshot);
  if (protected_paths == ProtectedPaths::kApproved) record.settings.protected_globs.clear();
  const auto key = std::make_pair(name, protected_paths);
  {
    MutexLock lock(&mu_);
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.policies == snapshot &&
        SameRecord(it->second.record, record)) {
      return it->second.repository;
    }
  }
  const std::string worktrees = data_dir_ + "/worktrees/" + name;
  LOOM_RETURN_IF_ERROR(MakePrivateDir(worktrees, DirAccess::kSandboxTraverses));
  auto opened = repos::Repository::Open(record, worktrees);
  if (!opened.ok()) {
    return opened.status().WithContext("cannot open repository " + name);
  }
  std::shared_ptr<repos::Repository> repository = std::move(*opened);
  MutexLock lock(&mu_);
  ++opens_;
  entries_[key] = Entry{std::move(record), std::move(snapshot), repository};
  return repository;
}

int64_t RepoCache::opens() const {
  MutexLock lock(&mu_);
  return opens_;
}

}  // namespace loom
