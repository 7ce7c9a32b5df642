// POSIX pieces more than one module needs: an owned file descriptor, a walk over a
// directory tree that never follows a symlink or leaves its file system, and the
// ownership loan of a tree to another uid with its give-back (after the run, or
// after a crash that cut the run short).
//
// The loan exists because a root caller's sandbox runs as an unprivileged uid, which
// must own a worktree to write it (sandbox/), and because libgit2 will not open a
// repository someone else owns: a tree still lent when the process died must be
// taken back before it is opened again (sandbox::ReclaimWorktree, called by the
// orchestrator). Lending and giving back are one implementation: the same walk, the
// same order (the root changes owner last when a tree is given back, so a give-back
// cut short by a crash leaves the root lent and is redone in full next time), the
// same handling of set-uid bits.
//
// UniqueFd is thread-compatible; the free functions are thread-safe for distinct
// trees.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <functional>
#include <string>
#include <utility>

#include "common/status.h"

namespace loom {

// Sole owner of a file descriptor, closed on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() { return std::exchange(fd_, -1); }
  void Reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// ---- The safe tree walk --------------------------------------------------------

// fn(dir_fd, name, st, shown) for the entry `name` of the directory open at
// `dir_fd`; `st` is its lstat, `shown` its full path (for messages).
using TreeEntryFn = std::function<Status(int dir_fd, const char* name, const struct stat& st,
                                         const std::string& shown)>;

// Whether the walk enters `.git` directly below the root.
enum class TopGit { kSkip, kVisit };

// Calls fn on every entry below the directory open at `root_fd` (not on the root),
// depth first. Each directory is opened from the root's own fd with openat2
// (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV): no symlink is ever
// followed (a planted `escape -> /etc` is visited as a symlink, never entered) and no
// other file system is entered. A tree deeper than PATH_MAX is walked in full with a
// few fds. Keeps going past a failure (of fn too) and returns the first one.
// `root_path` names the root in messages only.
Status VisitTreeBelow(int root_fd, const std::string& root_path, TopGit git, const TreeEntryFn& fn);

// ---- Lending a tree to another uid ---------------------------------------------

struct Owner {
  uid_t uid = 0;
  gid_t gid = 0;
};

// A tree lent to another uid. Thread-compatible; distinct trees may be lent
// concurrently. `.git` directly below the root is never lent (the sandbox binds it
// read-only), nor is a multiply-linked file (a hard link may lead out of the tree).
class OwnershipLoan {
 public:
  // Lends the directory open at `root_fd` (O_RDONLY | O_DIRECTORY; `path` names it in
  // messages) to `borrower`: the root and every entry below it that belongs to the
  // root's owner. Refuses (PermissionDenied) a root owned by anyone but root or
  // `borrower`; a root `borrower` already owns is not changed (nothing to give back).
  // On an error nothing stays lent.
  static Result<OwnershipLoan> Lend(int root_fd, const std::string& path, Owner borrower);

  OwnershipLoan(OwnershipLoan&& other) noexcept;
  OwnershipLoan& operator=(OwnershipLoan&&) = delete;
  OwnershipLoan(const OwnershipLoan&) = delete;
  OwnershipLoan& operator=(const OwnershipLoan&) = delete;
  // Gives back if GiveBack() was not called, logging a failure.
  ~OwnershipLoan();

  // Gives every entry the borrower owns (lent, or created meanwhile) back to the
  // original owner, as GiveTreeBack does. REQUIRES: no process of the borrower that
  // could write the tree is alive. Best effort: returns the first failure.
  Status GiveBack();

  Owner original_owner() const { return owner_; }

 private:
  OwnershipLoan(UniqueFd root_fd, std::string path, Owner owner, Owner borrower);

  UniqueFd root_fd_;  // a duplicate of the caller's
  std::string path_;
  Owner owner_;
  Owner borrower_;
  bool outstanding_ = true;
};

// Gives every entry below the directory open at `root_fd` that `from` owns to `to`,
// then the root itself if `from` owns it, last. Set-uid/set-gid bits of those files
// are cleared (a file a borrower made set-uid must never end up the owner's with the
// bit set). `.git` directly below the root is left alone. Best effort: visits
// everything it can (the root too) and returns the first failure; `*changed` (if
// given) counts the entries that changed owner.
Status GiveTreeBack(int root_fd, const std::string& path, uid_t from, Owner to,
                    size_t* changed = nullptr);

// Takes back a tree lent by a process that died before it gave it back: when the
// root of `path` belongs to another uid, every entry that uid owns becomes this
// process's (euid, egid), as GiveTreeBack does. Returns how many entries changed
// owner (0: the root was already ours). PermissionDenied when the root is another
// uid's and this process is not root; NotFound when `path` does not exist.
Result<size_t> ReclaimTree(const std::string& path);

}  // namespace loom
