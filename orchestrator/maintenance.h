// The maintenance pass: reclaims the disk that tasks leave behind, on a
// background thread of loomd (every `maintenance.interval_s`) and by hand
// (`POST /v1/admin/gc`, `loom gc`).
//
// One pass, for each registered repository:
//   1. what tasks that are over left: the worktree and snapshot ref of every
//      merged, rejected, cancelled or answered task, its branch by the
//      repository's [retention] policy, and a failed task's once
//      retention.failed_hours have passed (TaskLifecycle::RemoveFilesIfOver, which
//      leaves live tasks and those a slot holds alone). Candidates come from what
//      is on disk (snapshot refs, registered worktrees, worktree directories), so
//      a pass costs what is left over, not the task history;
//   2. loose refs packed into packed-refs (git_refdb_compress);
//   3. loose objects packed into one new pack, removed only once the pack is
//      synced and read back (repos::PackLooseObjects); more than max_packs packs
//      merged into one the same way (repos::MergePacks);
// then data_dir/base/ (per-task base copies an older loomd made; FAIL_TO_PASS
// now exports its base tree into scratch/) and verification trees a crash left
// in scratch/ more than a day ago are removed.
//
// Never blocks a task: a task's worktree is only touched once the task is over,
// under the lifecycle's files lock; packing runs beside agents that write
// objects and refs (see repos/maintenance.h). Thread-safe; passes are
// serialised on the maintenance thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/json.h"
#include "common/mutex.h"
#include "orchestrator/lifecycle.h"
#include "orchestrator/repo_policy.h"
#include "orchestrator/repo_store.h"

namespace loom {

struct MaintenanceOptions {
  std::string data_dir;  // worktrees/<repo>/, scratch/ and base/ live here
  // Between two passes of the thread; zero: passes only by hand (RunByHand).
  std::chrono::seconds interval{3600};
  // Before the thread's first pass, so that a start is not slowed by it.
  std::chrono::seconds first_delay{60};
  // A periodic pass packs a repository's loose objects only when it has at
  // least this many, so that packs stay few (each pass that packs writes one);
  // a pass by hand packs whatever is loose.
  int64_t min_loose_objects = 256;
  // More packs than this in a repository are merged into one (repos::MergePacks).
  int max_packs = 8;
  const Clock* clock = SystemClock::Default();  // failed tasks' age
};

// What one pass freed.
struct GcReport {
  int64_t worktrees_removed = 0;  // tasks whose worktree and snapshot ref went
  int64_t branches_deleted = 0;
  int64_t base_copies_removed = 0;  // data_dir/base/* and stale scratch/ trees
  int64_t refs_packed = 0;          // loose refs moved into packed-refs
  int64_t loose_objects_packed = 0;
  int64_t loose_objects_left = 0;  // written while the pass ran
  int64_t packs_merged = 0;        // packs merged into one (more than max_packs)
  int64_t bytes_freed = 0;         // removed files, less the new packs
  int64_t duration_ms = 0;
  std::vector<std::string> errors;  // what could not be done (the rest was)
  Json ToJson() const;
};

class Maintenance {
 public:
  // REQUIRES: the stores, `lifecycle` and `policies` outlive this. Starts the
  // thread (it waits for `first_delay` before its first pass).
  Maintenance(RepoStore* repos, TaskLifecycle* lifecycle, MaintenanceOptions options);
  ~Maintenance();  // Stop()
  enum class Trigger { kPeriodic, kByHand };
  // One pass now, on the caller's thread (tests; the thread uses it too).
  GcReport RunOnce(Trigger trigger = Trigger::kByHand) EXCLUDES(pass_mu_);
  // Queues a pass on the maintenance thread; `done` gets its report there.
  void RunByHand(std::function<void(const GcReport&)> done) EXCLUDES(mu_);
  // Ends the thread after its pass in progress; queued requests get a report
  // saying the daemon is stopping. Idempotent.
  void Stop() EXCLUDES(mu_);

 private:
  void Loop() EXCLUDES(mu_);
  void CleanRepository(const repos::RepoRecord& repo, Trigger trigger, GcReport* report)
      REQUIRES(pass_mu_);
  void CleanDataDir(GcReport* report) REQUIRES(pass_mu_);

  RepoStore* repos_;
  TaskLifecycle* lifecycle_;
  const MaintenanceOptions options_;
  Mutex pass_mu_;  // one pass at a time
  Mutex mu_;
  std::condition_variable wake_;
  bool stop_ GUARDED_BY(mu_) = false;
  std::deque<std::function<void(const GcReport&)>> requests_ GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace loom
