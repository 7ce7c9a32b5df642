// repos/maintenance.h: background upkeep of a repository's git directory, the
// `git gc` of Loom, done through libgit2: packing loose objects and loose refs,
// listing what tasks left behind (snapshot refs, registered worktrees), and
// exporting a commit's tree into a plain directory (the verifier's pristine base
// tree).
//
// Each function opens its own libgit2 handle on `repo_path` (a work tree, a bare
// repository, or a linked worktree of one), so all of them are thread-safe and
// may run beside tasks that use the repository: packing never removes an object
// before the pack holding it is written, synced to disk and read back, and a
// reader that misses a loose object finds it in the new pack (libgit2 rescans
// the pack directory on a miss). Removing a task's worktree is
// Repository::RemoveWorkspace's job, which serialises with worktree creation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace loom::repos {

// Writes the tree of `commit_hex` into `dir`, which must not exist, as a
// checkout would (checkout filters applied, executable bits and symlinks kept,
// submodules as empty directories), and no `.git`. The files are written under
// `dir` + ".partial" and renamed, so `dir` exists only complete; a ".partial"
// left by a crash is replaced.
Status ExportTree(const std::string& repo_path, const std::string& commit_hex,
                  const std::string& dir);

struct ObjectPackReport {
  int64_t loose_before = 0;  // loose objects found
  int64_t packed = 0;        // of them, now in the new pack and removed loose
  uint64_t loose_bytes = 0;  // on disk, of the loose objects removed
  uint64_t pack_bytes = 0;   // of the new pack and its index
  std::string pack;          // the new pack's path; empty when nothing was loose
};

// Packs every loose object of the repository into one new pack (with its index)
// under objects/pack, then removes the loose files it packed. The pack is
// written, fsynced, and every object read back from it alone (hash-checked)
// before any loose file goes; on any error no loose object is removed. Objects
// written meanwhile stay loose until the next call.
Result<ObjectPackReport> PackLooseObjects(const std::string& repo_path);

struct PackMergeReport {
  int64_t packs_before = 0;   // packs merged (a pack with a .keep is never touched)
  int64_t objects = 0;        // objects in the merged pack
  uint64_t bytes_before = 0;  // of the packs merged, with their indexes
  uint64_t bytes_after = 0;   // of the merged pack and its index
  std::string pack;           // the merged pack's path; empty when nothing was merged
};

// When the repository has more than `max_packs` packs, writes every object of
// them into one new pack, then removes them: only once the new pack is synced
// and every object read back from it alone. Each pass of PackLooseObjects adds a
// pack, and libgit2 looks an object up pack by pack: this keeps the count, and
// so the lookups, bounded. A reader that still holds an old pack open reads on
// from it; one that does not finds the object in the new pack (libgit2 skips a
// pack whose file is gone and rescans the directory on a miss).
Result<PackMergeReport> MergePacks(const std::string& repo_path, int max_packs);

// The loose objects of the repository (files objects/xx/yyyy...).
Result<int64_t> CountLooseObjects(const std::string& repo_path);

struct RefPackReport {
  int64_t loose_before = 0;  // files under refs/ before
  int64_t loose_after = 0;   // and after (refs being updated meanwhile stay loose)
};

// Moves loose refs into packed-refs (git_refdb_compress). A ref another writer
// holds locked stays loose.
Result<RefPackReport> PackRefs(const std::string& repo_path);

// What tasks left in the repository: the task ids that have a snapshot ref
// (refs/loom/snapshots/<id>) or a registered Loom worktree (.git/worktrees/loom-<id>),
// each once, sorted.
Result<std::vector<std::string>> TaskIdsWithGitState(const std::string& repo_path);

}  // namespace loom::repos
