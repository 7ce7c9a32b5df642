// The ballast of DiskReserve. See disk_reserve.h.
#include "orchestrator/disk_reserve.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace loom {
namespace {

std::string Mib(uint64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

}  // namespace

DiskReserve::DiskReserve(std::string dir, uint64_t bytes)
    : dir_(std::move(dir)), path_(dir_ + "/disk-reserve"), bytes_(bytes) {}

bool DiskReserve::HoldLocked() {
  struct stat st;
  if (::stat(path_.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) >= bytes_ &&
      static_cast<uint64_t>(st.st_blocks) * 512 >= bytes_) {
    return true;  // made by an earlier loomd
  }
  int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes_)) == 0;
  ::close(fd);
  if (!ok) ::unlink(path_.c_str());  // a partial ballast would only take space
  return ok;
}

Status DiskReserve::Check() {
  if (bytes_ == 0) return Status::Ok();
  MutexLock lock(&mu_);
  struct statvfs vfs;
  if (::statvfs(dir_.c_str(), &vfs) != 0) {
    return Status::IoError("cannot read the free space of " + dir_ + ": " + std::strerror(errno));
  }
  uint64_t free = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  if (!held_ && free >= 2 * bytes_ && HoldLocked()) {
    held_ = true;
    if (::statvfs(dir_.c_str(), &vfs) == 0)
      free = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  }
  if (held_ && free >= bytes_) return Status::Ok();
  return Status::ResourceExhausted(
      "the disk of " + dir_ + " is full: " + Mib(free) + " free, and loomd keeps " + Mib(bytes_) +
      (held_ ? " in reserve" : " in reserve plus as much again to work with") +
      " (disk.reserve_mb)");
}

void DiskReserve::Release() {
  if (bytes_ == 0) return;
  MutexLock lock(&mu_);
  ::unlink(path_.c_str());
  held_ = false;
}

std::string DiskFullSummary(int64_t task_id, const std::string& during, const Status& full) {
  return "Task " + std::to_string(task_id) + " stopped " + during + ": " + full.message() +
         ". loomd gave up its reserve to record this. Free space on that disk (the task's "
         "worktree under worktrees/ may hold what filled it), then answer this escalation to "
         "resume the task.";
}

}  // namespace loom
