// The module's public functions: the Outcome's JSON form, the host probe that turns
// "this host cannot sandbox" into an actionable error, and the safe reader for files
// a payload left in its worktree.
#include "sandbox/executor.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "common/posix.h"
#include "sandbox/internal/bwrap.h"

namespace loom::sandbox {

namespace {

// Replaces each byte of an invalid UTF-8 sequence by U+FFFD.
std::string ToValidUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80             ? 1
                 : (c & 0xE0) == 0xC0 ? 2
                 : (c & 0xF0) == 0xE0 ? 3
                 : (c & 0xF8) == 0xF0 ? 4
                                      : 0;
    if (len != 0 && i + len <= s.size() && IsValidUtf8(s.substr(i, len))) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

std::optional<long> ReadSysctl(const char* path) {
  UniqueFd fd(open(path, O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  char buf[64] = {};
  if (read(fd.get(), buf, sizeof buf - 1) <= 0) return std::nullopt;
  return strtol(buf, nullptr, 10);
}

Status CheckHost(const BwrapOptions& options) {
  if (access(options.bwrap_path.c_str(), X_OK) != 0) {
    return Status::FailedPrecondition("bubblewrap not found at " + options.bwrap_path + " (" +
                                      std::strerror(errno) +
                                      "): install it (Debian/Ubuntu: apt-get install bubblewrap) "
                                      "or set the bwrap path");
  }
  if (ReadSysctl("/proc/sys/user/max_user_namespaces").value_or(1) == 0) {
    return Status::FailedPrecondition(
        "user namespaces are disabled (user.max_user_namespaces = 0): the sandbox needs them; "
        "run `sysctl -w user.max_user_namespaces=15000` (and persist it in /etc/sysctl.d)");
  }
  if (ReadSysctl("/proc/sys/kernel/unprivileged_userns_clone").value_or(1) == 0) {
    return Status::FailedPrecondition(
        "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0): run "
        "`sysctl -w kernel.unprivileged_userns_clone=1` (and persist it in /etc/sysctl.d)");
  }
  if (ReadSysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").value_or(0) == 1) {
    return Status::FailedPrecondition(
        "AppArmor restricts unprivileged user namespaces "
        "(kernel.apparmor_restrict_unprivileged_userns = 1): install an AppArmor profile that "
        "allows `userns` for " +
        options.bwrap_path + " (Ubuntu ships one as bwrap-userns-restrict)");
  }
  return Status::Ok();
}

// A trial run of `true` in an empty worktree: the one check that proves it all works.
Status TrialRun(Executor& executor) {
  char dir[] = "/tmp/loom-sandbox-probe-XXXXXX";
  if (mkdtemp(dir) == nullptr) return Status::FromErrno(errno, "creating a probe directory");
  RunSpec spec;
  spec.argv = {"true"};
  spec.worktree = dir;
  spec.limits.wall_time = std::chrono::seconds(20);
  Result<Outcome> outcome = executor.Run(spec);
  rmdir(dir);
  if (!outcome.ok()) {
    return Status::FailedPrecondition("this host cannot run sandboxes: " +
                                      outcome.status().message());
  }
  if (!outcome->Succeeded()) {
    return Status::FailedPrecondition("a trial sandbox run of `true` failed: " +
                                      outcome->stderr_data.substr(0, 1000));
  }
  return Status::Ok();
}

}  // namespace

std::string_view LimitHitName(LimitHit limit) {
  switch (limit) {
    case LimitHit::kNone:
      return "none";
    case LimitHit::kTimeout:
      return "timeout";
    case LimitHit::kMemory:
      return "memory";
    case LimitHit::kPids:
      return "pids";
    case LimitHit::kOutput:
      return "output";
    case LimitHit::kFileSize:
      return "file_size";
    case LimitHit::kCpu:
      return "cpu";
    case LimitHit::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

Json Outcome::ToJson() const {
  Json j;
  j["exit_code"] = exit_code ? Json(*exit_code) : Json(nullptr);
  j["signal"] = signal ? Json(*signal) : Json(nullptr);
  j["limit"] = limit == LimitHit::kNone ? Json(nullptr) : Json(std::string(LimitHitName(limit)));
  j["wall_ms"] = wall_ms;
  j["cpu_ms"] = cpu_ms;
  j["peak_memory_bytes"] = peak_memory_bytes;
  for (const auto& [name, data, truncated] :
       {std::tuple{"stdout", &stdout_data, stdout_truncated},
        std::tuple{"stderr", &stderr_data, stderr_truncated}}) {
    std::string key = name;
    if (IsValidUtf8(*data)) {
      j[key] = *data;
    } else {
      j[key] = ToValidUtf8(*data);
      j[key + "_lossy"] = true;
    }
    j[key + "_truncated"] = truncated;
  }
  return j;
}

Status ProbeBwrap(const BwrapOptions& options) {
  LOOM_RETURN_IF_ERROR(CheckHost(options));
  LOOM_ASSIGN_OR_RETURN(auto executor, internal::CreateBwrapExecutor(options));
  return TrialRun(*executor);
}

Result<std::unique_ptr<Executor>> MakeBwrapExecutor(const BwrapOptions& options) {
  LOOM_RETURN_IF_ERROR(CheckHost(options));
  LOOM_ASSIGN_OR_RETURN(auto executor, internal::CreateBwrapExecutor(options));
  LOOM_RETURN_IF_ERROR(TrialRun(*executor));
  return executor;
}

Result<std::string> ReadWorktreeFile(const std::string& worktree, const std::string& relative_path,
                                     size_t max_bytes) {
  UniqueFd dir(open(worktree.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return Status::FromErrno(errno, "opening worktree " + worktree);
  struct open_how how;
  memset(&how, 0, sizeof how);
  // O_NONBLOCK: a planted FIFO must not hang the daemon.
  how.flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  UniqueFd fd(
      static_cast<int>(syscall(SYS_openat2, dir.get(), relative_path.c_str(), &how, sizeof how)));
  if (!fd.valid()) {
    if (errno == ELOOP || errno == EXDEV) {
      return Status::PermissionDenied(relative_path +
                                      " is or passes through a symlink, or leaves the worktree");
    }
    return Status::FromErrno(errno, "opening " + relative_path + " in the worktree");
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "stat " + relative_path);
  if (!S_ISREG(st.st_mode))
    return Status::PermissionDenied(relative_path + " is not a regular file");
  std::string out;
  char buf[65536];
  while (out.size() < max_bytes) {
    ssize_t n = read(fd.get(), buf, std::min(sizeof buf, max_bytes - out.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, "reading " + relative_path);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace loom::sandbox
