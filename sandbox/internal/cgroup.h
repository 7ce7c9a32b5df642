// A cgroup v2 directory per run, under a parent delegated to Loom: the reliable way
// to kill everything a run started (cgroup.kill) and, where the controllers are
// enabled, to limit and measure memory, pids and CPU.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/posix.h"
#include "common/status.h"
#include "sandbox/executor.h"

namespace loom::sandbox::internal {

// Resolves BwrapOptions::cgroup_parent: "" when runs get no cgroup. "auto" picks the
// controller-less v2 tree of a hybrid host (/sys/fs/cgroup/unified/loom) when the
// caller is root. An explicit directory is created if needed and must be writable.
Result<std::string> ResolveCgroupParent(const std::string& option);

// One run's cgroup. Thread-compatible; destroyed after the run: kills anything left
// in it and removes the directory.
class RunCgroup {
 public:
  static Result<std::unique_ptr<RunCgroup>> Create(const std::string& parent,
                                                   const std::string& name, const Limits& limits);
  // Use Create(); public only for std::make_unique.
  explicit RunCgroup(std::string path) : path_(std::move(path)) {}
  ~RunCgroup();
  RunCgroup(const RunCgroup&) = delete;
  RunCgroup& operator=(const RunCgroup&) = delete;

  // An O_CLOEXEC fd on cgroup.procs: a forked child writes "0" to it to join.
  int procs_fd() const { return procs_fd_.get(); }
  // An O_CLOEXEC fd on the directory, for clone3(CLONE_INTO_CGROUP).
  int dir_fd() const { return dir_fd_.get(); }
  bool has_memory_controller() const { return memory_; }

  // SIGKILLs every process in the cgroup (cgroup.kill; freeze-and-kill before 5.14).
  void KillAll();
  // True once no process is left (cgroup.events "populated 0"), waiting up to `wait`.
  bool WaitEmpty(std::chrono::milliseconds wait);

  std::vector<pid_t> Pids() const;  // cgroup.procs

  bool OomKilled() const;                           // memory.events oom_kill > 0
  bool PidsMaxHit() const;                          // pids.events max > 0
  std::optional<int64_t> CpuUsageMs() const;        // cpu.stat usage_usec
  std::optional<uint64_t> PeakMemoryBytes() const;  // memory.peak

 private:
  std::string path_;
  UniqueFd procs_fd_;
  UniqueFd dir_fd_;
  bool memory_ = false;
};

}  // namespace loom::sandbox::internal
