// libgit2 plumbing shared by the module: see git_util.h.
#include "repos/internal/git_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <mutex>

#include "common/glob.h"

namespace loom::repos::internal {

void EnsureLibgit2() {
  static std::once_flag once;
  std::call_once(once, [] { git_libgit2_init(); });
}

Status GitError(int rc, std::string_view what) {
  const git_error* e = git_error_last();
  std::string msg(what);
  msg += ": ";
  msg += (e && e->message) ? e->message : "unknown libgit2 error";
  int klass = e ? e->klass : GIT_ERROR_NONE;
  switch (rc) {
    case GIT_ENOTFOUND:
      return Status::NotFound(std::move(msg));
    case GIT_EEXISTS:
      return Status::AlreadyExists(std::move(msg));
    case GIT_ELOCKED:
      return Status::Unavailable(std::move(msg) + " (locked by another process; retry)");
    case GIT_EUNBORNBRANCH:
      return Status::FailedPrecondition(std::move(msg));
    case GIT_ECONFLICT:
    case GIT_EMODIFIED:
      return Status::FailedPrecondition(std::move(msg));
    case GIT_EINVALIDSPEC:
      return Status::InvalidArgument(std::move(msg));
    default:
      break;
  }
  if (klass == GIT_ERROR_ODB || klass == GIT_ERROR_ZLIB || klass == GIT_ERROR_OBJECT ||
      klass == GIT_ERROR_INDEX || klass == GIT_ERROR_SHA1) {
    return Status::Corruption(std::move(msg) + " (the repository looks damaged; try `git fsck`)");
  }
  if (klass == GIT_ERROR_OS) return Status::IoError(std::move(msg));
  return Status::Internal(std::move(msg));
}

std::string OidHex(const git_oid& oid) {
  char buf[GIT_OID_HEXSZ + 1];
  git_oid_tostr(buf, sizeof buf, &oid);
  return buf;
}

Result<GitPtr<git_repository>> OpenRepo(const std::string& path) {
  EnsureLibgit2();
  git_repository* raw = nullptr;
  int rc = git_repository_open_ext(&raw, path.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr);
  if (rc == GIT_ENOTFOUND) {
    // libgit2 1.5 reports a repository owned by another user (safe.directory) as
    // not found; say what is really wrong.
    struct stat st;
    if (lstat(path.c_str(), &st) == 0 && st.st_uid != geteuid()) {
      return Status::FailedPrecondition(
          "the repository at '" + path + "' belongs to uid " + std::to_string(st.st_uid) +
          ", not to this process (uid " + std::to_string(geteuid()) +
          "), so libgit2 refuses to open it; give it back to uid " + std::to_string(geteuid()));
    }
    return Status::NotFound("no git repository at '" + path + "'");
  }
  if (rc < 0) return GitError(rc, "cannot open repository '" + path + "'");
  return GitPtr<git_repository>(raw);
}

Result<GitPtr<git_commit>> LookupCommit(git_repository* repo, const git_oid& oid) {
  git_commit* raw = nullptr;
  int rc = git_commit_lookup(&raw, repo, &oid);
  if (rc < 0) {
    Status s = GitError(rc, "cannot read commit " + OidHex(oid));
    if (rc == GIT_ENOTFOUND) {
      return Status::Corruption(s.message() + " (object missing: the repository is corrupt)");
    }
    return s;
  }
  return GitPtr<git_commit>(raw);
}

Result<GitPtr<git_tree>> CommitTree(git_commit* commit) {
  git_tree* raw = nullptr;
  int rc = git_commit_tree(&raw, commit);
  if (rc < 0) {
    return Status::Corruption(
        GitError(rc, "cannot read tree of commit " + OidHex(*git_commit_id(commit))).message());
  }
  return GitPtr<git_tree>(raw);
}

Result<git_oid> BranchHead(git_repository* repo, const std::string& branch) {
  git_oid oid;
  int rc = git_reference_name_to_id(&oid, repo, ("refs/heads/" + branch).c_str());
  if (rc == GIT_ENOTFOUND) {
    if (git_repository_head_unborn(repo) == 1) {
      return Status::FailedPrecondition("the repository is empty (no commits yet); commit to '" +
                                        branch + "' before registering it");
    }
    return Status::NotFound("branch '" + branch + "' does not exist in the repository");
  }
  if (rc < 0) return GitError(rc, "cannot resolve branch '" + branch + "'");
  return oid;
}

Result<std::string> BlobForWorktree(git_blob* blob, const std::string& path) {
  const char* raw = static_cast<const char*>(git_blob_rawcontent(blob));
  size_t size = static_cast<size_t>(git_blob_rawsize(blob));
  // git_blob_filter with CHECK_FOR_BINARY yields an empty buffer for binary
  // blobs, so binary content is returned as stored.
  if (git_blob_is_binary(blob)) return std::string(raw, size);
  git_blob_filter_options opts = GIT_BLOB_FILTER_OPTIONS_INIT;
  opts.flags = 0;
  GitBuf out;
  LOOM_GIT(git_blob_filter(out.get(), blob, path.c_str(), &opts), "cannot filter '" + path + "'");
  return std::string(out.view());
}

Status ValidateRepository(const std::string& path, const RepoSettings& settings) {
  if (settings.target_branch.empty()) return Status::InvalidArgument("target branch is empty");
  if (git_reference_is_valid_name(("refs/heads/" + settings.target_branch).c_str()) != 1) {
    return Status::InvalidArgument("bad target branch name '" + settings.target_branch + "'");
  }
  for (const auto* globs : {&settings.allowed_globs, &settings.protected_globs}) {
    for (const std::string& g : *globs) {
      Status s = ValidateGlob(g);
      if (!s.ok()) {
        return s.WithContext(globs == &settings.allowed_globs ? "allowed paths"
                                                              : "protected paths");
      }
    }
  }
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_repository> repo, OpenRepo(path));
  LOOM_ASSIGN_OR_RETURN(git_oid head, BranchHead(repo.get(), settings.target_branch));
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_commit> commit, LookupCommit(repo.get(), head));
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_tree> tree, CommitTree(commit.get()));
  return Status::Ok();
}

}  // namespace loom::repos::internal
