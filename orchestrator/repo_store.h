// The registered repositories: loomd's one registry (the repos table) of the
// one repository record type, repos::RepoRecord. What is registered (path,
// target branch, test command) is each repository's default; its policy
// overrides the target branch and the test command where it sets them
// (repo_policy.h, docs/policies.md). Thread-safe (the shared StoreDb).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/db.h"
#include "common/json.h"
#include "common/status.h"
#include "orchestrator/remote_credentials.h"
#include "orchestrator/store_db.h"
#include "repos/remote.h"
#include "repos/workspace.h"

namespace loom {

// Where a repository registered by URL was cloned from, and the names (never the
// values) of the secrets that reach that server.
struct RepoRemote {
  std::string url;
  RemoteSecretNames secrets;
};

// {name, path, branch, test_command[, remote: {url, username, password_secret,
// ssh_key_secret, ssh_passphrase_secret, known_hosts_secret, accept_any_host_key}]}:
// a registered repository as the API shows it (secret names only, never values).
Json RepoJson(const repos::RepoRecord& repo, const std::optional<RepoRemote>& remote = {});

class RepoStore {
 public:
  // The migrations of the repos table (assembled in orchestrator/schema.h).
  static const std::vector<Migration>& Migrations();

  // A repository registered by URL is cloned to `<clones_dir>/<name>.git`; with
  // an empty `clones_dir`, URLs are refused.
  explicit RepoStore(std::shared_ptr<StoreDb> db, std::string clones_dir = "")
      : db_(std::move(db)), clones_dir_(std::move(clones_dir)) {}

  // Checks the repository (repos::CheckRepository: a good name, a repository
  // that opens, is not empty and has the target branch) and registers it. A
  // `record.path` that is a URL (https://, http://, ssh://, scp-like, file://;
  // repos::ParseRemoteUrl) is first cloned bare, with `credentials`, to
  // `<clones_dir>/<name>.git` (repos::CloneRepository), and the clone is what is
  // registered: the server stays its remote "origin", and no checkout a person
  // works in is touched. A clone whose registration fails is removed. In
  // the same transaction, the feedback items triage had set aside as unroutable
  // for want of it go back to triage's queue: those that name it, and, when it
  // is the only repository now, those that name none (the caller wakes triage).
  // Returns the record as registered (its path absolute). AlreadyExists for a
  // name that is taken. `secret_names` (checked by the caller against the URL,
  // CheckRemoteSecretNames) are stored with a cloned repository: every later
  // fetch and push resolves them again (Remote()).
  Result<repos::RepoRecord> Register(repos::RepoRecord record,
                                     const repos::RemoteCredentials& credentials = {},
                                     const RemoteSecretNames& secret_names = {});
  // As registered, before any policy: name, path, test command and
  // settings.target_branch. NotFound when no repository has that name.
  Result<repos::RepoRecord> Get(const std::string& name);
  Result<std::vector<repos::RepoRecord>> List();  // sorted by name
  // The server a repository was cloned from and its secret names; nullopt for a
  // repository registered in place (a local path: nothing to fetch or push).
  // NotFound when no repository has that name.
  Result<std::optional<RepoRemote>> Remote(const std::string& name);

  // This data dir's instance id ("i" and 8 hex digits), made once by the
  // schema's migration 9 and never changed: task branches and worktrees carry it,
  // so that two data dirs on one upstream never meet (docs/repos.md).
  Result<std::string> InstanceId();

  // Within the caller's lock (triage): whether `name` is registered, the name
  // of the only registered repository (nullopt with none or several), and how
  // many are registered.
  Result<bool> IsRegistered(const StoreDb::Lock& lock, const std::string& name);
  Result<std::optional<std::string>> OnlyRepository(const StoreDb::Lock& lock);
  Result<int64_t> Count(const StoreDb::Lock& lock);

 private:
  // The checked record into the table, and triage's requeue, in one transaction.
  Result<repos::RepoRecord> Insert(repos::RepoRecord record, const RemoteSecretNames& names);

  std::shared_ptr<StoreDb> db_;
  const std::string clones_dir_;
};

}  // namespace loom
