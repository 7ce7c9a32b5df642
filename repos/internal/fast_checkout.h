// Checkout of a tree into a new, empty worktree directory, faster than libgit2's
// general-purpose git_checkout_*: no diff against a baseline, no workdir scan, and
// the files are written by several threads (each with its own git_repository, as
// libgit2 requires). Private to repos/.
#pragma once

#include <string>

#include "common/status.h"

namespace loom::repos::internal {

// Writes every entry of `commit_hex`'s tree into `worktree_path` (which must be the
// empty working directory of the linked worktree at that path) and writes the
// worktree's index with each file's stat data, so `git status` is clean and fast.
// Applies checkout filters (eol, attributes); submodules become empty directories
// recorded as gitlinks. `threads` <= 0 picks a default from the hardware.
Status CheckoutIntoEmptyWorktree(const std::string& worktree_path, const std::string& commit_hex,
                                 int threads);

}  // namespace loom::repos::internal
