// Pieces shared by the Repository and Workspace implementations: naming of task
// branches, worktrees and snapshot refs, diff reports, signatures, and the factory
// for a Workspace bound to one worktree. Private to repos/.
#pragma once

#include <git2.h>

#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "repos/internal/git_handles.h"
#include "repos/workspace.h"

namespace loom::repos::internal {

// [A-Za-z0-9_.-]{1,64}, not starting with '.' or '-'.
Status ValidateTaskId(std::string_view task_id);
// Lower-case ASCII words joined by '-', at most 48 bytes; "task" when nothing is left.
std::string NormalizeSlug(std::string_view slug);
inline std::string BranchName(std::string_view task_id, std::string_view slug) {
  return "loom/" + std::string(task_id) + "-" + NormalizeSlug(slug);
}
inline std::string WorktreeName(std::string_view task_id) { return "loom-" + std::string(task_id); }
inline std::string SnapshotRefName(std::string_view task_id) {
  return "refs/loom/snapshots/" + std::string(task_id);
}

Result<GitPtr<git_signature>> MakeSignature(const RepoSettings& settings);
Result<git_oid> MergeBase(git_repository* repo, const git_oid& a, const git_oid& b);
// Unified diff and per-file stats from `base` to `head` (commits), renames detected.
Result<DiffReport> DiffCommits(git_repository* repo, const git_oid& base, const git_oid& head);

struct WorkspaceParams {
  std::string worktree_path;  // absolute
  std::string task_id;
  std::string branch;  // short name, e.g. "loom/12-fix-login"
  RepoSettings settings;
};

enum class OpenMode {
  kNew,     // just created: the snapshot ref points at the branch head
  kResume,  // after a restart: make the worktree match the latest snapshot
};

Result<std::unique_ptr<Workspace>> OpenWorkspaceAt(WorkspaceParams params, OpenMode mode);

}  // namespace loom::repos::internal
