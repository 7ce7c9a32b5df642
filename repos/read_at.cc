// ReadFileAtCommit: one file's bytes as a commit holds it, through libgit2.
#include <git2.h>

#include "repos/internal/git_util.h"
#include "repos/workspace.h"

namespace loom::repos {

using internal::GitError;
using internal::GitPtr;

Result<std::string> ReadFileAtCommit(const std::string& repo_path, const std::string& commit,
                                     const std::string& path, size_t max_bytes) {
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_repository> repo, internal::OpenRepo(repo_path));
  git_object* raw = nullptr;
  std::string spec = commit + "^{commit}";
  if (int rc = git_revparse_single(&raw, repo.get(), spec.c_str()); rc != 0) {
    if (rc == GIT_ENOTFOUND || rc == GIT_EAMBIGUOUS || rc == GIT_EINVALIDSPEC) {
      return Status::NotFound("no commit " + commit + " in " + repo_path);
    }
    return GitError(rc, "looking up " + commit);
  }
  GitPtr<git_object> object(raw);
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_tree> tree,
                        internal::CommitTree(reinterpret_cast<git_commit*>(object.get())));
  git_tree_entry* raw_entry = nullptr;
  if (git_tree_entry_bypath(&raw_entry, tree.get(), path.c_str()) != 0) {
    return Status::NotFound(path + " is not in commit " + commit);
  }
  GitPtr<git_tree_entry> entry(raw_entry);
  if (git_tree_entry_type(entry.get()) != GIT_OBJECT_BLOB) {
    return Status::NotFound(path + " is not a file in commit " + commit);
  }
  git_blob* raw_blob = nullptr;
  if (int rc = git_blob_lookup(&raw_blob, repo.get(), git_tree_entry_id(entry.get())); rc != 0) {
    return GitError(rc, "reading " + path + " at " + commit);
  }
  GitPtr<git_blob> blob(raw_blob);
  auto size = static_cast<size_t>(git_blob_rawsize(blob.get()));
  if (size > max_bytes) {
    return Status::ResourceExhausted(path + " at " + commit + " is larger than " +
                                     std::to_string(max_bytes) + " bytes");
  }
  return std::string(static_cast<const char*>(git_blob_rawcontent(blob.get())), size);
}

}  // namespace loom::repos
