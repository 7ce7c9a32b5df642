// Checks made before a repository is registered (the registry itself is the
// orchestrator's RepoStore, in loomd's database), and the bare clone.
#include <git2.h>

#include <filesystem>

#include "repos/internal/git_util.h"
#include "repos/workspace.h"

namespace loom::repos {
namespace {

using internal::GitError;
using internal::GitPtr;

Status ValidateName(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 64 && name.front() != '.';
  for (char c : name) {
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-');
  }
  if (!ok) {
    return Status::InvalidArgument("bad repository name '" + std::string(name) +
                                   "': use 1-64 of [A-Za-z0-9_.-], not starting with '.'");
  }
  return Status::Ok();
}

Result<std::string> Absolute(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path, ec);
  if (ec) return Status::InvalidArgument("bad path '" + path + "': " + ec.message());
  return p.lexically_normal().string();
}

}  // namespace

Result<RepoRecord> CheckRepository(RepoRecord record) {
  LOOM_RETURN_IF_ERROR(ValidateName(record.name));
  LOOM_ASSIGN_OR_RETURN(record.path, Absolute(record.path));
  LOOM_RETURN_IF_ERROR(internal::ValidateRepository(record.path, record.settings));
  return record;
}

Result<RepoRecord> CloneRepository(std::string source, RepoRecord record) {
  LOOM_RETURN_IF_ERROR(ValidateName(record.name));
  LOOM_ASSIGN_OR_RETURN(std::string abs, Absolute(record.path));
  std::error_code ec;
  if (std::filesystem::exists(abs, ec)) {
    return Status::AlreadyExists("clone destination '" + abs + "' already exists");
  }
  const RepoSettings& settings = record.settings;
  internal::EnsureLibgit2();
  git_clone_options opts = GIT_CLONE_OPTIONS_INIT;
  opts.bare = 1;
  git_repository* raw = nullptr;
  int rc = git_clone(&raw, source.c_str(), abs.c_str(), &opts);
  if (rc < 0) {
    Status s = GitError(rc, "cannot clone '" + source + "'");
    std::filesystem::remove_all(abs, ec);
    return Status::Unavailable(s.message());
  }
  GitPtr<git_repository> repo(raw);
  // A bare clone has a local branch only for the remote's HEAD: add the target.
  std::string local = "refs/heads/" + settings.target_branch;
  git_oid oid;
  if (git_reference_name_to_id(&oid, repo.get(), local.c_str()) == GIT_ENOTFOUND &&
      git_reference_name_to_id(&oid, repo.get(),
                               ("refs/remotes/origin/" + settings.target_branch).c_str()) == 0) {
    GitPtr<git_reference> ref;
    LOOM_GIT(git_reference_create(Out(ref), repo.get(), local.c_str(), &oid, 0, "loom: target"),
             "cannot create branch '" + settings.target_branch + "'");
  }
  repo.reset();
  Status valid = internal::ValidateRepository(abs, settings);
  if (!valid.ok()) {
    std::filesystem::remove_all(abs, ec);
    return valid.WithContext("cloned '" + source + "'");
  }
  record.path = std::move(abs);
  record.origin = std::move(source);
  return record;
}

}  // namespace loom::repos
