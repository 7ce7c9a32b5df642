// Worktree location rules, and taking back a worktree a crash left lent. The loan
// and its give-back are loom::OwnershipLoan (common/posix.h), one implementation
// for the run's own give-back and for the reclaim after a restart.
#include "sandbox/internal/worktree.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "common/posix.h"
#include "sandbox/executor.h"

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

}  // namespace loom::sandbox::internal

namespace loom::sandbox {

Result<size_t> ReclaimWorktree(const std::string& worktree) {
  if (worktree.empty() || worktree[0] != '/') {
    return Status::InvalidArgument("the worktree must be an absolute path: '" + worktree + "'");
  }
  char buf[PATH_MAX];
  if (realpath(worktree.c_str(), buf) == nullptr) {
    if (errno == ENOENT) return Status::NotFound("no worktree at '" + worktree + "'");
    return Status::FromErrno(errno, "resolving the worktree " + worktree);
  }
  // Never give a system tree to this process's uid because a path pointed there.
  LOOM_RETURN_IF_ERROR(internal::CheckWorktreeLocation(buf));
  return ReclaimTree(buf);
}

}  // namespace loom::sandbox
