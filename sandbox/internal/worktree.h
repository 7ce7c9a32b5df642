// Where a worktree may be. A root caller's sandbox runs as an unprivileged uid, which
// must own the worktree to write it: the tree is lent for one run and given back
// afterwards (loom::OwnershipLoan of common/posix.h). Because lending changes the
// owner of a whole tree, it is refused for `/`, top-level directories (`--dir /tmp`
// once gave all of /tmp to the sandbox uid) and system trees; the loan itself refuses
// directories that belong to another user.
#pragma once

#include <string>

#include "common/status.h"

namespace loom::sandbox::internal {

// Refuses `worktree` when it is `/`, a top-level directory (/tmp, /home, /srv, ...)
// or in a system tree (/usr, /bin, /sbin, /lib*, /etc, /proc, /sys, /dev, /run,
// /boot, /var), except strictly below /var/tmp and /var/lib/loom (scratch space and
// the data_dir of docs/operator-guide.md). For every caller, root or not.
// REQUIRES: `worktree` is canonical (absolute, no symlinks, `.` or `..`).
Status CheckWorktreeLocation(const std::string& worktree);

}  // namespace loom::sandbox::internal
