// The tree walk and the ownership loan of posix.h.
//
// The walk is depth first with an explicit stack (no recursion, so a hostile tree's
// depth cannot exhaust the stack). Each directory is opened with openat2 relative to
// a base fd; entries are stat'ed and changed with *at(AT_SYMLINK_NOFOLLOW) calls
// relative to their directory's fd, so no path is ever resolved through a symlink.
// Paths are kept relative to a base fd that moves down every ~2 KiB of path, so a
// tree deeper than PATH_MAX is walked in full with a few fds alive at once.
#include "common/posix.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>

#include <cstring>
#include <memory>
#include <vector>

#include "common/log.h"

namespace loom {
namespace {

struct DirCloser {
  void operator()(DIR* dir) const { closedir(dir); }
};
using UniqueDir = std::unique_ptr<DIR, DirCloser>;

// Directory paths are kept relative to a base fd; past this length a directory
// becomes a base of its own.
constexpr size_t kRebaseAfter = 2048;

std::string Ids(Owner o) { return std::to_string(o.uid) + ":" + std::to_string(o.gid); }

}  // namespace

Status VisitTreeBelow(int root_fd, const std::string& root_path, TopGit git,
                      const TreeEntryFn& fn) {
  Status first;
  auto note = [&first](Status s) {
    if (first.ok() && !s.ok()) first = std::move(s);
  };
  struct stat root_st;
  if (fstat(root_fd, &root_st) != 0) return Status::FromErrno(errno, "stat " + root_path);
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
      if (top && git == TopGit::kSkip && strcmp(name, ".git") == 0) continue;
      std::string shown = dir_entry.shown + "/" + name;
      struct stat st;
      if (fstatat(dirfd(dir.get()), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT) note(Status::FromErrno(errno, "stat " + shown));
        continue;
      }
      if (st.st_dev != root_st.st_dev) continue;  // a mount point: not part of the tree
      note(fn(dirfd(dir.get()), name, st, shown));
      if (S_ISDIR(st.st_mode)) stack.push_back({base, prefix + name, std::move(shown)});
    }
  }
  return first;
}

Status GiveTreeBack(int root_fd, const std::string& path, uid_t from, Owner to, size_t* changed) {
  size_t count = 0;
  auto give_back = [&](int dir_fd, const char* name, const struct stat& st,
                       const std::string& shown) -> Status {
    if (st.st_uid != from) return Status::Ok();
    if (fchownat(dir_fd, name, to.uid, to.gid, AT_SYMLINK_NOFOLLOW) != 0) {
      return Status::FromErrno(errno, "giving " + shown + " back to " + Ids(to));
    }
    ++count;
    // The kernel clears these on chown too; a borrower's set-uid file must never end
    // up owned by root with the bit still set.
    if (S_ISREG(st.st_mode) && (st.st_mode & (S_ISUID | S_ISGID)) != 0 &&
        fchmodat(dir_fd, name, st.st_mode & 07777 & ~(S_ISUID | S_ISGID), 0) != 0) {
      return Status::FromErrno(errno, "clearing the set-uid bits of " + shown);
    }
    return Status::Ok();
  };
  Status first = VisitTreeBelow(root_fd, path, TopGit::kSkip, give_back);
  // The root last: a give-back cut short by a crash leaves the root lent, so the
  // reclaim after the restart sees it and redoes the whole tree.
  struct stat root;
  Status s = fstat(root_fd, &root) != 0 ? Status::FromErrno(errno, "stat " + path) : Status::Ok();
  if (s.ok() && root.st_uid == from) {
    if (fchown(root_fd, to.uid, to.gid) == 0) {
      ++count;
    } else {
      s = Status::FromErrno(errno, "giving " + path + " back to " + Ids(to));
    }
  }
  if (changed != nullptr) *changed = count;
  return first.ok() ? s : first;
}

Result<OwnershipLoan> OwnershipLoan::Lend(int root_fd, const std::string& path, Owner borrower) {
  struct stat root;
  if (fstat(root_fd, &root) != 0) return Status::FromErrno(errno, "stat " + path);
  if (!S_ISDIR(root.st_mode)) return Status::InvalidArgument(path + " is not a directory");
  if (root.st_uid != 0 && root.st_uid != borrower.uid) {
    return Status::PermissionDenied(
        path + " belongs to uid " + std::to_string(root.st_uid) +
        ": a root caller lends its worktree to the sandbox uid " + std::to_string(borrower.uid) +
        ", which would change the owner of that user's files for the run; run loom as uid " +
        std::to_string(root.st_uid) + " instead, or use a directory root owns");
  }
  UniqueFd fd(fcntl(root_fd, F_DUPFD_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno(errno, "dup");
  const Owner owner{root.st_uid, root.st_gid};
  OwnershipLoan loan(std::move(fd), path, owner, borrower);
  if (owner.uid == borrower.uid) return loan;  // already the borrower's: nothing to lend

  auto lend = [&](int dir_fd, const char* name, const struct stat& st,
                  const std::string& shown) -> Status {
    if (st.st_uid != owner.uid) return Status::Ok();  // someone else's: not ours to lend
    // A multiply-linked file may be a hard link to something outside the tree.
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) return Status::Ok();
    if (fchownat(dir_fd, name, borrower.uid, borrower.gid, AT_SYMLINK_NOFOLLOW) != 0) {
      return Status::FromErrno(errno, "lending " + shown + " to the sandbox uid");
    }
    return Status::Ok();
  };
  // The root first: from here on a crash leaves the root lent, which is what the
  // reclaim after a restart looks for.
  Status s = fchown(loan.root_fd_.get(), borrower.uid, borrower.gid) == 0
                 ? Status::Ok()
                 : Status::FromErrno(errno, "lending " + path + " to the sandbox uid");
  if (s.ok()) s = VisitTreeBelow(loan.root_fd_.get(), path, TopGit::kSkip, lend);
  if (!s.ok()) {
    Status back = loan.GiveBack();
    if (!back.ok()) {
      LOOM_LOG(kError) << "giving back " << path << ": " << back.message();
    }
    return s;
  }
  return loan;
}

OwnershipLoan::OwnershipLoan(UniqueFd root_fd, std::string path, Owner owner, Owner borrower)
    : root_fd_(std::move(root_fd)), path_(std::move(path)), owner_(owner), borrower_(borrower) {}

OwnershipLoan::OwnershipLoan(OwnershipLoan&& other) noexcept
    : root_fd_(std::move(other.root_fd_)),
      path_(std::move(other.path_)),
      owner_(other.owner_),
      borrower_(other.borrower_),
      outstanding_(std::exchange(other.outstanding_, false)) {}

OwnershipLoan::~OwnershipLoan() {
  if (!outstanding_) return;
  Status s = GiveBack();
  if (!s.ok()) {
    LOOM_LOG(kError) << "giving back " << path_ << ": " << s.message();
  }
}

Status OwnershipLoan::GiveBack() {
  outstanding_ = false;
  if (owner_.uid == borrower_.uid) return Status::Ok();
  return GiveTreeBack(root_fd_.get(), path_, borrower_.uid, owner_);
}

Result<size_t> ReclaimTree(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return Status::NotFound("'" + path + "' does not exist");
    return Status::FromErrno(errno, "cannot open '" + path + "'");
  }
  struct stat st;
  if (fstat(fd.get(), &st) < 0) return Status::FromErrno(errno, "cannot stat '" + path + "'");
  const uid_t me = geteuid();
  if (st.st_uid == me) return size_t{0};
  if (me != 0) {
    return Status::PermissionDenied("'" + path + "' belongs to uid " + std::to_string(st.st_uid) +
                                    ", not to this process (uid " + std::to_string(me) +
                                    "), which cannot take it back; chown it to uid " +
                                    std::to_string(me) + " and retry");
  }
  size_t changed = 0;
  LOOM_RETURN_IF_ERROR(GiveTreeBack(fd.get(), path, st.st_uid, {me, getegid()}, &changed));
  return changed;
}

}  // namespace loom
