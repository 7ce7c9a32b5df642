// Where a worktree may be, and lending a root caller's worktree to the sandbox uid.
//
// A root caller's sandbox runs as an unprivileged uid, which must own the worktree
// to write it. The tree is lent for one run and given back afterwards: everything
// in it that the sandbox uid owns (what was lent and what the payload created)
// returns to the owner the worktree root had before the run. Because lending
// changes the owner of a whole tree, it is refused for `/`, top-level directories
// (`--dir /tmp` once gave all of /tmp to the sandbox uid), system trees, and
// directories that belong to another user.
#pragma once

#include <sys/types.h>

#include <string>

#include "common/status.h"
#include "sandbox/internal/unique_fd.h"

namespace loom::sandbox::internal {

struct Owner {
  uid_t uid = 0;
  gid_t gid = 0;
};

// Refuses `worktree` when it is `/`, a top-level directory (/tmp, /home, /srv, ...)
// or in a system tree (/usr, /bin, /sbin, /lib*, /etc, /proc, /sys, /dev, /run,
// /boot, /var), except strictly below /var/tmp and /var/lib/loom (scratch space and
// the data_dir of docs/operator-guide.md). For every caller, root or not.
// REQUIRES: `worktree` is canonical (absolute, no symlinks, `.` or `..`).
Status CheckWorktreeLocation(const std::string& worktree);

// A worktree lent to the sandbox uid for one run. Thread-compatible; distinct
// worktrees may be lent concurrently.
class WorktreeLoan {
 public:
  // Lends the directory open at `worktree_fd` (O_RDONLY | O_DIRECTORY; `path` names
  // it in messages) to `sandbox`: the root and every entry below it that belongs to
  // the root's owner, without following symlinks or leaving the file system. `.git`
  // at the top is left alone (it is bound read-only), and so are multiply-linked
  // files (a hard link may lead outside the worktree). Refuses (PermissionDenied) a
  // worktree owned by anyone but root or `sandbox`. On an error nothing stays lent.
  static Result<WorktreeLoan> Lend(int worktree_fd, const std::string& path, Owner sandbox);

  WorktreeLoan(WorktreeLoan&& other) noexcept;
  WorktreeLoan& operator=(WorktreeLoan&&) = delete;
  WorktreeLoan(const WorktreeLoan&) = delete;
  WorktreeLoan& operator=(const WorktreeLoan&) = delete;
  // Gives back if GiveBack() was not called, logging a failure.
  ~WorktreeLoan();

  // Gives every entry the sandbox uid owns (lent, or created by the payload) to the
  // original owner, and clears set-uid/set-gid bits on those files. REQUIRES: no
  // process of the run is alive. Best effort: visits everything it can, returns the
  // first failure.
  Status GiveBack();

  Owner original_owner() const { return owner_; }

 private:
  WorktreeLoan(UniqueFd worktree_fd, std::string path, Owner owner, Owner sandbox);

  UniqueFd worktree_fd_;  // a duplicate of the caller's
  std::string path_;
  Owner owner_;
  Owner sandbox_;
  bool outstanding_ = true;
};

}  // namespace loom::sandbox::internal
