// repos/workspace.h: the public interface of Loom's git layer.
//
// A RepoRecord is one registered repository (the orchestrator's RepoStore keeps
// them; CheckRepository validates one before it is registered). A Repository
// opened from a RepoRecord creates one Workspace per agent
// task: branch `loom/<task-id>-<slug>` plus a linked worktree checked out from the
// target branch's head. Every agent edit goes through the Workspace, which confines
// paths to the worktree (no `..`, absolute paths, symlinks anywhere on the path,
// `.git`, or paths outside the allowed globs) and records a snapshot commit on
// `refs/loom/snapshots/<task-id>` after each applied edit, so a crashed task resumes
// exactly where its last completed edit left it. Reviews diff the branch against
// its merge base and merge it into the target branch.
//
// All git work is done through libgit2; nothing here shells out to `git`. No
// libgit2 type appears in this header: implementations live in repos/*.cc.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace loom::repos {

// Per-repository git settings. The target branch is registered with the
// repository; the orchestrator fills the rest in from the repository's policy
// (orchestrator/repo_policy.h), whose target branch overrides the registered one.
struct RepoSettings {
  std::string target_branch = "main";
  // Glob patterns (relative to the worktree root) an edit may touch, in the rules of
  // common/glob.h (the ones policies/ validates paths.allowed with): `*` and `?`
  // stay within one path segment, `**` spans segments, `dir/` means everything
  // under dir. Empty allows no edit, as an empty paths.allowed does. Reads are not
  // limited by these globs. Repository::Open refuses a pattern ValidateGlob refuses.
  std::vector<std::string> allowed_globs = {"**"};
  // Paths that are never edited, even when an allowed glob matches them.
  std::vector<std::string> protected_globs;
  std::string author_name = "Loom agent";
  std::string author_email = "loom-agent@localhost";
};

// One registered repository: the one record type of a repository, from its
// registration (the orchestrator's RepoStore) to the Repository opened on it.
struct RepoRecord {
  std::string name;    // [A-Za-z0-9._-]+, not starting with '.'; unique among the registered
  std::string path;    // the repository on disk (a work tree or a bare repository)
  std::string origin;  // the URL or path it was cloned from; empty when registered in place
  // The test suite, run with /bin/sh -c in the sandbox. The registered default;
  // a policy's test_command overrides it. Not used by the git layer.
  std::string test_command;
  RepoSettings settings;
};

// Checks a repository before it is registered, and says precisely what is
// wrong: a bad name, no repository at the path, an empty repository (no commits
// yet), a corrupt one, or a missing target branch. Returns `record` with its
// path made absolute.
Result<RepoRecord> CheckRepository(RepoRecord record);
// Clones `source` (a path or URL) into `record.path` as a bare repository, then
// checks it as CheckRepository does; a clone that fails the check is removed.
// `record.path` must not exist. A bare clone has no checked-out branch that a
// merge would leave stale. Returns the record with its origin set. repos/remote.h
// has the form with credentials, for https:// and ssh:// servers.
Result<RepoRecord> CloneRepository(std::string source, RepoRecord record);

struct FileEntry {
  enum class Kind { kFile, kDirectory, kSymlink, kOther };
  std::string path;  // relative to the worktree root, '/'-separated
  Kind kind = Kind::kFile;
  uint64_t size = 0;
};

struct SearchMatch {
  std::string path;
  int line = 0;  // 1-based
  std::string text;
};

struct SearchOptions {
  size_t max_matches = 200;
};

// One step of a task's snapshot history. Step 0 is the commit the workspace was
// created from; step N is the state after the Nth applied edit (or rollback).
struct SnapshotInfo {
  int step = 0;
  std::string commit;   // hex id on refs/loom/snapshots/<task>
  std::string summary;  // e.g. "write src/a.cc"
};

struct FileStat {
  enum class Change { kAdded, kDeleted, kModified, kRenamed, kTypeChanged, kOther };
  std::string path;
  std::string old_path;  // differs from path for renames
  Change change = Change::kModified;
  int additions = 0;
  int deletions = 0;
  bool binary = false;
};

struct DiffReport {
  std::string base_commit;  // merge base with the target branch (or previous snapshot)
  std::string head_commit;
  std::vector<FileStat> files;
  std::string unified;  // `git diff` style patch text
};

struct SnapshotDetail {
  SnapshotInfo info;
  DiffReport diff;  // against the previous step
};

// What reopening a workspace found and did to make the worktree match its last
// snapshot (an edit was written but the process died before its snapshot).
struct ResumeReport {
  int step = 0;
  std::vector<std::string> restored_paths;  // rewritten or deleted to match the snapshot
};

struct WorkspaceInfo {
  std::string task_id;
  std::string branch;       // "loom/<task-id>-<slug>"
  std::string path;         // absolute path of the worktree
  std::string base_commit;  // the target head the workspace was created from
};

struct CommitRequest {
  std::string summary;                    // the agent's summary: becomes the message
  std::vector<std::string> feedback_ids;  // -> "Loom-Feedback: a, b"
};

struct MergeOutcome {
  enum class Kind { kFastForward, kMergeCommit, kUpToDate, kConflict };
  Kind kind = Kind::kUpToDate;
  std::string commit;                          // new target head (empty on conflict)
  std::vector<std::string> conflicting_paths;  // kConflict only; the target is untouched
};

enum class BranchDisposition { kKeep, kDelete };

// One task's branch and worktree. Every path argument is relative to the worktree
// root and confined to it; refusals are PermissionDenied (or InvalidArgument for a
// malformed path) with a message that names the path and the reason.
// Thread-compatible: one agent drives a workspace at a time; distinct workspaces
// (even of one repository) may be used concurrently from different threads.
class Workspace {
 public:
  virtual ~Workspace() = default;
  virtual const WorkspaceInfo& info() const = 0;
  // What Repository::OpenWorkspace restored; empty for a new workspace.
  virtual const ResumeReport& resume_report() const = 0;

  // Reads. `start_line`/`end_line` are 1-based and inclusive; 0 means open-ended.
  virtual Result<std::string> ReadFile(std::string_view path, int start_line = 0,
                                       int end_line = 0) = 0;
  // Entries of directory `path` ("" for the root), sorted; `.git` is never listed.
  virtual Result<std::vector<FileEntry>> ListFiles(std::string_view path) = 0;
  // Lines containing `pattern` (literally: a caller's regular expression could
  // backtrack without bound) in regular, non-binary files under `path`.
  virtual Result<std::vector<SearchMatch>> Search(std::string_view pattern,
                                                  std::string_view path = "",
                                                  SearchOptions options = {}) = 0;

  // Edits. Each one, once applied, is recorded as the next snapshot step.
  virtual Result<SnapshotInfo> WriteFile(std::string_view path, std::string_view content) = 0;
  // Replaces the one exact occurrence of `old_text`. No occurrence, or several, is
  // an InvalidArgument error that lists the nearest candidate lines or every match.
  virtual Result<SnapshotInfo> ReplaceInFile(std::string_view path, std::string_view old_text,
                                             std::string_view new_text) = 0;
  virtual Result<SnapshotInfo> DeleteFile(std::string_view path) = 0;
  // Refuses to overwrite an existing `to`.
  virtual Result<SnapshotInfo> RenameFile(std::string_view from, std::string_view to) = 0;

  // Snapshots, oldest first (step 0 first).
  virtual Result<std::vector<SnapshotInfo>> ListSnapshots() = 0;
  virtual Result<SnapshotDetail> InspectSnapshot(int step) = 0;
  // Makes the worktree equal to step `step` and records that as a new step, so no
  // history is lost.
  virtual Result<SnapshotInfo> RollbackTo(int step) = 0;

  // Commits the latest snapshot's tree to the task branch (author/committer from the
  // settings; message = summary + `Loom-Task:` and `Loom-Feedback:` trailers).
  // Returns the commit id. FailedPrecondition when nothing changed since the last
  // branch commit.
  virtual Result<std::string> CommitToBranch(const CommitRequest& request) = 0;
  // The latest snapshot against the merge base with the target branch.
  virtual Result<DiffReport> Diff() = 0;
};

// Makes `dir` (existing files kept) a new repository whose first commit, on
// `branch`, holds all its files except those .gitignore excludes; the author
// comes from `author`. Returns the commit id. AlreadyExists-like GitError when
// `dir` is already a repository.
Result<std::string> InitRepository(const std::string& dir, const std::string& branch,
                                   const std::string& message, const RepoSettings& author = {});

// The bytes of `path` (relative to the repository's root) in `commit` (a full or
// abbreviated id) of the repository at `repo_path`. NotFound when the commit or
// the file is not there; ResourceExhausted when the file is over `max_bytes`.
Result<std::string> ReadFileAtCommit(const std::string& repo_path, const std::string& commit,
                                     const std::string& path, size_t max_bytes = 1 << 20);

// A registered repository. Thread-safe: each call opens its own libgit2 handle.
class Repository {
 public:
  // Opens the repository of `record`; worktrees are created under `worktrees_dir`
  // (created when missing). Errors say whether the repository is missing, empty,
  // corrupt, or lacks the target branch.
  static Result<std::unique_ptr<Repository>> Open(RepoRecord record, std::string worktrees_dir);

  virtual ~Repository() = default;
  virtual const RepoRecord& record() const = 0;

  // Creates branch `loom/<task_id>-<slug>` at the target head (or reuses that branch
  // when it already exists without a worktree) and its worktree. `task_id` is
  // [A-Za-z0-9_.-]{1,64}; `slug` is normalised to lower-case words joined by '-'.
  // A workspace whose creation was cut short (no snapshot ref yet) is made again;
  // AlreadyExists for a complete one. REQUIRES (also for OpenWorkspace): nothing
  // else drives the task meanwhile, because lock files of its refs and index left
  // by a killed process are removed.
  virtual Result<std::unique_ptr<Workspace>> CreateWorkspace(std::string_view task_id,
                                                             std::string_view slug) = 0;
  // Reopens a task's workspace after a restart and makes it match the latest
  // snapshot (see Workspace::resume_report). NotFound when the task has no workspace,
  // or only one whose creation was cut short (CreateWorkspace then makes it again).
  // REQUIRES: the worktree is this process's; one a crash left lent to a sandbox uid
  // is taken back first with sandbox::ReclaimWorktree(WorkspacePath(task_id)), as
  // libgit2 will not open a repository another uid owns.
  virtual Result<std::unique_ptr<Workspace>> OpenWorkspace(std::string_view task_id) = 0;
  // Where the worktree of `task_id` is (or will be): `<worktrees_dir>/loom-<task_id>`.
  // REQUIRES: `task_id` is valid (see CreateWorkspace).
  virtual std::string WorkspacePath(std::string_view task_id) const = 0;
  virtual Result<std::vector<WorkspaceInfo>> ListWorkspaces() = 0;
  // Removes the worktree directory, its admin files under .git/worktrees, the
  // snapshot ref, and the branch when `branch` is kDelete.
  virtual Status RemoveWorkspace(std::string_view task_id, BranchDisposition branch) = 0;

  // The task branch's head against its merge base with the target branch.
  virtual Result<DiffReport> DiffBranch(std::string_view task_id) = 0;
  // Merges the task branch into the target branch: fast-forward when possible, else
  // a merge commit. Conflicts come back as kConflict with the paths, target untouched.
  // When the target is checked out in the repository's own work tree, that checkout
  // is updated too, and local changes the merge would overwrite are refused
  // (FailedPrecondition) before anything moves. Crash-atomic: the target ref's move
  // is the commit point; a process killed before it changed nothing, one killed
  // after it left a journal from which FinishInterruptedMerge (called first by
  // every merge) completes the checkout. An error after the ref moved says so.
  virtual Result<MergeOutcome> MergeBranch(std::string_view task_id) = 0;
  // After a restart: completes the checkout of a merge whose process died after
  // the target ref moved, or drops the journal of one that died before (nothing
  // had changed). FailedPrecondition when local changes made meanwhile are in the
  // way (the journal stays, so a later call finishes it once they are gone).
  virtual Status FinishInterruptedMerge() = 0;
};

}  // namespace loom::repos
