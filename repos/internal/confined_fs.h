// Path confinement for agent file access.
//
// Every agent-supplied path is validated lexically (relative, no `..`, no `.git`
// component, no NUL) and then resolved one component at a time with openat(2) and
// O_NOFOLLOW from a descriptor of the worktree root. Nothing is resolved with
// realpath-then-open, so a symlink planted at any point of the path (by an earlier
// edit or by a test run, even between two calls) is refused rather than followed.
// Private to repos/.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "common/posix.h"
#include "common/status.h"
#include "repos/workspace.h"

namespace loom::repos::internal {

// A validated relative path: its normalised '/'-joined form and its components.
struct RelPath {
  std::string text;  // "" for the root
  std::vector<std::string> parts;
};

enum class RootUse { kAllowed, kRefused };

// Lexical checks. InvalidArgument for malformed input, PermissionDenied for paths
// that try to leave the worktree or reach into `.git`.
Result<RelPath> ParseRelPath(std::string_view path, RootUse root);

struct FileMeta {
  enum class Kind { kMissing, kFile, kDirectory, kSymlink, kOther };
  Kind kind = Kind::kMissing;
  mode_t mode = 0;
  uint64_t size = 0;
};

enum class CreateDirs { kNo, kYes };
enum class ModePolicy { kKeepExisting, kForce };

// The worktree root, opened once. Thread-compatible (distinct instances are
// independent; a single instance holds no mutable state besides the root fd).
class ConfinedDir {
 public:
  static Result<ConfinedDir> Open(const std::string& root);

  Result<FileMeta> Stat(const RelPath& path) const;
  // REQUIRES: path is not the root. Refuses non-regular files.
  Result<std::string> ReadFile(const RelPath& path) const;
  // Atomically replaces (or creates) the file. kKeepExisting keeps an existing
  // file's permission bits; `mode` applies to new files (and always with kForce).
  Status WriteFile(const RelPath& path, std::string_view content, mode_t mode,
                   ModePolicy policy = ModePolicy::kKeepExisting) const;
  // Removes a file (or a symlink leaf, which unlink never follows).
  Status Unlink(const RelPath& path) const;
  // Fails when `to` exists.
  Status Rename(const RelPath& from, const RelPath& to) const;
  Result<std::vector<FileEntry>> List(const RelPath& dir) const;
  // Every regular file under `dir`, depth-first, sorted per directory; symlinks and
  // `.git` are skipped.
  Result<std::vector<std::string>> Walk(const RelPath& dir) const;
  // Creates (or replaces) a symlink leaf; used only to restore tracked symlinks.
  Status WriteSymlink(const RelPath& path, const std::string& target) const;
  // Removes every empty directory from the leaf's parent upwards (not the root).
  void PruneEmptyParents(const RelPath& path) const;

 private:
  explicit ConfinedDir(UniqueFd root) : root_(std::move(root)) {}
  // Opens parts[0..n) as directories below the root.
  Result<UniqueFd> OpenDir(const RelPath& path, size_t n, CreateDirs create) const;
  Status WalkInto(int dir_fd, const std::string& prefix, int depth,
                  std::vector<std::string>* out) const;

  UniqueFd root_;
};

// Removes the directory tree at the absolute path `root` without ever following a
// symlink inside it (a planted link is unlinked, not descended into). OK if missing.
Status RemoveTreeNoFollow(const std::string& root);

}  // namespace loom::repos::internal
