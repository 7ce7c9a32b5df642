// Space held back on the data dir's filesystem, so that loomd can still record
// what happened when the disk fills up (CockroachDB's "ballast file").
//
// While the disk has room, a file of `bytes` (the ballast, `disk-reserve` in the
// data dir) takes that space. The disk counts as full when less than `bytes` is
// free, or when the ballast was given up and cannot be made again (less than
// twice `bytes` free). Whoever finds the disk full calls Release() before writing
// what parks the task (a result, an escalation, a state change): deleting the
// ballast gives SQLite, git and the worktree room for those writes. The ballast
// is made again by the first Check() that finds room for it, i.e. once a person
// freed space. Thread-safe.
//
// The space is held with posix_fallocate; on filesystems that do not reserve
// allocated blocks (copy-on-write, compressing) the ballast holds less.
#pragma once

#include <cstdint>
#include <string>

#include "common/mutex.h"
#include "common/status.h"

namespace loom {

class DiskReserve {
 public:
  // `bytes` == 0 disables the reserve: Check() is always OK.
  DiskReserve(std::string dir, uint64_t bytes);

  // OK while the disk has room; otherwise ResourceExhausted saying how much is
  // free, how much loomd keeps, and what to do. Makes the ballast when missing
  // and there is room for it. A statvfs and, rarely, an fallocate.
  Status Check() EXCLUDES(mu_);
  // Deletes the ballast (a no-op when there is none).
  void Release() EXCLUDES(mu_);

 private:
  bool HoldLocked() REQUIRES(mu_);

  const std::string dir_, path_;
  const uint64_t bytes_;
  Mutex mu_;
  bool held_ GUARDED_BY(mu_) = false;
};

// The summary of the `infrastructure` escalation that parks task `task_id`
// because the disk is full (`full`, from Check()) `during` a step.
std::string DiskFullSummary(int64_t task_id, const std::string& during, const Status& full);

}  // namespace loom
