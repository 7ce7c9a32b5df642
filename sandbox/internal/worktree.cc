// Worktree location rules and the lend / give-back of a root caller's worktree.
//
// Both directions walk the tree the same way: depth first, each directory opened
// from the worktree's own fd with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
// RESOLVE_NO_XDEV), entries changed with fchownat(AT_SYMLINK_NOFOLLOW) relative to
// their directory's fd. So no symlink is ever followed (a planted `escape -> /etc`
// stays a symlink whose own owner changes) and no other file system is entered.
// Paths are relative to a base fd that moves down every ~2 KiB of path, so a tree
// deeper than PATH_MAX (a payload can make one) is walked in full with a few fds.
// The walk keeps going past a failure and reports the first one, so a give-back
// returns all it can.
#include "sandbox/internal/worktree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "common/log.h"

namespace loom::sandbox::internal {
namespace {

// Trees a worktree may not be in (nor be): the toolchain bound into every sandbox,
// kernel interfaces, host sockets and system state.
constexpr const char* kSystemTrees[] = {"/usr",   "/bin",    "/sbin", "/lib",  "/lib32",
                                        "/lib64", "/libx32", "/etc",  "/proc", "/sys",
                                        "/dev",   "/run",    "/boot", "/var"};
// Strictly below these, a worktree is allowed although they are in a system tree.
constexpr const char* kAllowedBelow[] = {"/var/tmp", "/var/lib/loom"};

bool IsUnder(const std::string& path, const std::string& prefix) {
  return path == prefix ||
         (path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0 &&
          path[prefix.size()] == '/');
}

bool IsStrictlyUnder(const std::string& path, const std::string& prefix) {
  return path != prefix && IsUnder(path, prefix);
}

struct DirCloser {
  void operator()(DIR* dir) const { closedir(dir); }
};
using UniqueDir = std::unique_ptr<DIR, DirCloser>;

// fn(dir_fd, name, st, shown) for the entry `name` of the directory open at `dir_fd`;
// `shown` is its full path, for messages.
using EntryFn = std::function<Status(int dir_fd, const char* name, const struct stat& st,
                                     const std::string& shown)>;

// Directory paths are kept relative to a base fd; past this length a directory
// becomes a base of its own, so trees deeper than PATH_MAX are walked too.
constexpr size_t kRebaseAfter = 2048;

// Calls fn on every entry below the directory `root_fd` (not on the root itself),
// except `.git` directly below the root. Depth first, so that the base fds alive at
// once are about depth / (kRebaseAfter / name length), not one per pending directory.
Status VisitBelow(int root_fd, const std::string& root_path, const EntryFn& fn) {
  Status first;
  auto note = [&first](Status s) {
    if (first.ok() && !s.ok()) first = std::move(s);
  };
  struct Pending {
    std::shared_ptr<UniqueFd> base;
    std::string rel;    // below base
    std::string shown;  // the full path, for messages
  };
  auto root_base = std::make_shared<UniqueFd>(fcntl(root_fd, F_DUPFD_CLOEXEC, 0));
  if (!root_base->valid()) return Status::FromErrno(errno, "dup");
  std::vector<Pending> stack = {{root_base, ".", root_path}};
  while (!stack.empty()) {
    Pending dir_entry = std::move(stack.back());
    stack.pop_back();
    const bool top = dir_entry.base == root_base && dir_entry.rel == ".";
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    int fd = static_cast<int>(
        syscall(SYS_openat2, dir_entry.base->get(), dir_entry.rel.c_str(), &how, sizeof how));
    if (fd < 0) {
      note(Status::FromErrno(errno, "opening " + dir_entry.shown));
      continue;
    }
    UniqueDir dir(fdopendir(fd));
    if (!dir) {
      note(Status::FromErrno(errno, "listing " + dir_entry.shown));
      close(fd);
      continue;
    }
    std::shared_ptr<UniqueFd> base = dir_entry.base;
    std::string prefix = dir_entry.rel == "." ? "" : dir_entry.rel + "/";
    if (prefix.size() > kRebaseAfter) {
      base = std::make_shared<UniqueFd>(fcntl(dirfd(dir.get()), F_DUPFD_CLOEXEC, 0));
      if (!base->valid()) {
        note(Status::FromErrno(errno, "dup"));
        continue;
      }
      prefix.clear();
    }
    for (;;) {
      errno = 0;
      const dirent* entry = readdir(dir.get());
      if (entry == nullptr) {
        if (errno != 0) note(Status::FromErrno(errno, "listing " + dir_entry.shown));
        break;
      }
      const char* name = entry->d_name;
      if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
      if (top && strcmp(name, ".git") == 0) continue;
      std::string shown = dir_entry.shown + "/" + name;
      struct stat st;
      if (fstatat(dirfd(dir.get()), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT) note(Status::FromErrno(errno, "stat " + shown));
        continue;
      }
      note(fn(dirfd(dir.get()), name, st, shown));
      if (S_ISDIR(st.st_mode)) stack.push_back({base, prefix + name, std::move(shown)});
    }
  }
  return first;
}

std::string Ids(Owner o) { return std::to_string(o.uid) + ":" + std::to_string(o.gid); }

}  // namespace

Status CheckWorktreeLocation(const std::string& worktree) {
  if (worktree.empty() || worktree[0] != '/') {
    return Status::InvalidArgument("the worktree must be an absolute path: '" + worktree + "'");
  }
  if (worktree == "/") return Status::InvalidArgument("the worktree cannot be /");
  if (worktree.find('/', 1) == std::string::npos) {
    return Status::InvalidArgument(
        "refusing " + worktree +
        " as a worktree: it is a top-level directory, shared with the rest of the system, and "
        "the sandbox owns and may rewrite everything in its worktree; use a directory of its "
        "own, e.g. one made with mktemp -d");
  }
  for (const char* allowed : kAllowedBelow) {
    if (IsStrictlyUnder(worktree, allowed)) return Status::Ok();
  }
  for (const char* tree : kSystemTrees) {
    if (IsUnder(worktree, tree)) {
      return Status::InvalidArgument("refusing " + worktree +
                                     " as a worktree: it is in the system tree " + tree +
                                     "; use a directory of its own");
    }
  }
  return Status::Ok();
}

Result<WorktreeLoan> WorktreeLoan::Lend(int worktree_fd, const std::string& path, Owner sandbox) {
  struct stat root;
  if (fstat(worktree_fd, &root) != 0) return Status::FromErrno(errno, "stat " + path);
  if (!S_ISDIR(root.st_mode)) return Status::InvalidArgument(path + " is not a directory");
  if (root.st_uid != 0 && root.st_uid != sandbox.uid) {
    return Status::PermissionDenied(
        path + " belongs to uid " + std::to_string(root.st_uid) +
        ": a root caller lends its worktree to the sandbox uid " + std::to_string(sandbox.uid) +
        ", which would change the owner of that user's files for the run; run loom as uid " +
        std::to_string(root.st_uid) + " instead, or use a directory root owns");
  }
  UniqueFd fd(fcntl(worktree_fd, F_DUPFD_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno(errno, "dup");
  const Owner owner{root.st_uid, root.st_gid};
  WorktreeLoan loan(std::move(fd), path, owner, sandbox);
  if (owner.uid == sandbox.uid) return loan;  // already the sandbox's: nothing to lend

  auto lend = [&](int dir_fd, const char* name, const struct stat& st,
                  const std::string& shown) -> Status {
    if (st.st_uid != owner.uid) return Status::Ok();  // someone else's: not ours to lend
    // A multiply-linked file may be a hard link to something outside the worktree.
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) return Status::Ok();
    if (fchownat(dir_fd, name, sandbox.uid, sandbox.gid, AT_SYMLINK_NOFOLLOW) != 0) {
      return Status::FromErrno(errno, "lending " + shown + " to the sandbox uid");
    }
    return Status::Ok();
  };
  Status s = fchown(loan.worktree_fd_.get(), sandbox.uid, sandbox.gid) == 0
                 ? Status::Ok()
                 : Status::FromErrno(errno, "lending " + path + " to the sandbox uid");
  if (s.ok()) s = VisitBelow(loan.worktree_fd_.get(), path, lend);
  if (!s.ok()) {
    Status back = loan.GiveBack();
    if (!back.ok()) {
      LOOM_LOG(kError) << "sandbox: giving back " << path << ": " << back.message();
    }
    return s;
  }
  return loan;
}

WorktreeLoan::WorktreeLoan(UniqueFd worktree_fd, std::string path, Owner owner, Owner sandbox)
    : worktree_fd_(std::move(worktree_fd)),
      path_(std::move(path)),
      owner_(owner),
      sandbox_(sandbox) {}

WorktreeLoan::WorktreeLoan(WorktreeLoan&& other) noexcept
    : worktree_fd_(std::move(other.worktree_fd_)),
      path_(std::move(other.path_)),
      owner_(other.owner_),
      sandbox_(other.sandbox_),
      outstanding_(std::exchange(other.outstanding_, false)) {}

WorktreeLoan::~WorktreeLoan() {
  if (!outstanding_) return;
  Status s = GiveBack();
  if (!s.ok()) {
    LOOM_LOG(kError) << "sandbox: giving back " << path_ << ": " << s.message();
  }
}

Status WorktreeLoan::GiveBack() {
  outstanding_ = false;
  if (owner_.uid == sandbox_.uid) return Status::Ok();
  auto give_back = [&](int dir_fd, const char* name, const struct stat& st,
                       const std::string& shown) -> Status {
    if (st.st_uid != sandbox_.uid) return Status::Ok();
    if (fchownat(dir_fd, name, owner_.uid, owner_.gid, AT_SYMLINK_NOFOLLOW) != 0) {
      return Status::FromErrno(errno, "giving " + shown + " back to " + Ids(owner_));
    }
    // The kernel clears these on chown too; a payload's set-uid file must never end
    // up owned by root with the bit still set.
    if (S_ISREG(st.st_mode) && (st.st_mode & (S_ISUID | S_ISGID)) != 0 &&
        fchmodat(dir_fd, name, st.st_mode & 07777 & ~(S_ISUID | S_ISGID), 0) != 0) {
      return Status::FromErrno(errno, "clearing the set-uid bits of " + shown);
    }
    return Status::Ok();
  };
  struct stat root;
  Status first = fstat(worktree_fd_.get(), &root) != 0 ? Status::FromErrno(errno, "stat " + path_)
                                                       : Status::Ok();
  if (first.ok() && root.st_uid == sandbox_.uid &&
      fchown(worktree_fd_.get(), owner_.uid, owner_.gid) != 0) {
    first = Status::FromErrno(errno, "giving " + path_ + " back to " + Ids(owner_));
  }
  Status below = VisitBelow(worktree_fd_.get(), path_, give_back);
  return first.ok() ? below : first;
}

}  // namespace loom::sandbox::internal
