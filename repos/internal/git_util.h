// Small helpers over libgit2 shared by the repos/ implementation: one-time library
// initialisation, conversion of libgit2 errors into Status, and object lookups that
// return owned handles. Private to repos/.
#pragma once

#include <git2.h>

#include <string>
#include <string_view>

#include "common/status.h"
#include "repos/internal/git_handles.h"
#include "repos/workspace.h"

namespace loom::repos::internal {

// Calls git_libgit2_init exactly once per process (never shut down). Thread-safe.
void EnsureLibgit2();

// Converts a libgit2 return code (< 0) plus git_error_last() into a Status whose
// message starts with `what`. Object-database and zlib errors map to Corruption.
Status GitError(int rc, std::string_view what);

#define LOOM_GIT(call, what)                                                            \
  do {                                                                                  \
    int loom_git_rc_ = (call);                                                          \
    if (loom_git_rc_ < 0) return ::loom::repos::internal::GitError(loom_git_rc_, what); \
  } while (0)

std::string OidHex(const git_oid& oid);

Result<GitPtr<git_repository>> OpenRepo(const std::string& path);
Result<GitPtr<git_commit>> LookupCommit(git_repository* repo, const git_oid& oid);
Result<GitPtr<git_tree>> CommitTree(git_commit* commit);
// The commit a local branch points to; NotFound naming the branch when missing.
Result<git_oid> BranchHead(git_repository* repo, const std::string& branch);

// The content `blob` should have in a worktree at `path`: checkout filters (eol,
// ident, ...) applied to text; binary blobs verbatim.
Result<std::string> BlobForWorktree(git_blob* blob, const std::string& path);

// Checks that `path` holds a readable repository with a commit on the target
// branch, and that the allowed and protected globs follow common/glob.h (the same
// rules a policy's are validated with); the error says whether it is missing, empty,
// corrupt, lacks the branch, or which glob is wrong.
Status ValidateRepository(const std::string& path, const RepoSettings& settings);

}  // namespace loom::repos::internal
