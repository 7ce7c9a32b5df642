// The maintenance pass and its thread. See maintenance.h.
//
// The thread sleeps until the next periodic pass or a request by hand; each
// pass runs under pass_mu_, so a pass by hand (RunOnce from a test, or a
// request queued while a periodic pass runs) never overlaps another. Sizes are
// measured per item removed (a worktree's files before they go, the loose
// objects less the pack they went into), never by walking the whole data dir.
#include "orchestrator/maintenance.h"

#include <sys/stat.h>

#include <charconv>
#include <filesystem>
#include <map>
#include <set>

#include "common/log.h"
#include "repos/maintenance.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

// Bytes of the regular files under `path` (symlinks not followed).
int64_t TreeBytes(const std::string& path) {
  int64_t total = 0;
  std::error_code ec;
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return 0;
  if (!S_ISDIR(st.st_mode)) return S_ISREG(st.st_mode) ? st.st_size : 0;
  for (fs::recursive_directory_iterator it(path, fs::directory_options::skip_permission_denied, ec),
       end;
       !ec && it != end; it.increment(ec)) {
    if (::lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) total += st.st_size;
  }
  return total;
}

// The task id of a workspace name: `<id>` (an older loomd's) or `<instance>-<id>`
// of this data dir's instance (TaskWorkspaceKey); another instance's is none.
std::optional<int64_t> TaskId(std::string_view text, const std::string& instance) {
  if (!instance.empty() && text.starts_with(instance + "-"))
    text.remove_prefix(instance.size() + 1);
  int64_t id = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc() || end != text.data() + text.size() || id <= 0) return std::nullopt;
  return id;
}

// Removes `path` (a tree loomd made) and counts it in `report`.
void RemoveCounted(const fs::path& path, GcReport* report) {
  int64_t bytes = TreeBytes(path.string());
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) {
    report->errors.push_back("cannot remove " + path.string() + ": " + ec.message());
    return;
  }
  ++report->base_copies_removed;
  report->bytes_freed += bytes;
}

}  // namespace

Json GcReport::ToJson() const {
  return {{"worktrees_removed", worktrees_removed},
          {"branches_deleted", branches_deleted},
          {"base_copies_removed", base_copies_removed},
          {"refs_packed", refs_packed},
          {"loose_objects_packed", loose_objects_packed},
          {"loose_objects_left", loose_objects_left},
          {"packs_merged", packs_merged},
          {"bytes_freed", bytes_freed},
          {"duration_ms", duration_ms},
          {"errors", errors}};
}

Maintenance::Maintenance(RepoStore* repos, TaskLifecycle* lifecycle, MaintenanceOptions options)
    : repos_(repos), lifecycle_(lifecycle), options_(std::move(options)) {
  thread_ = std::thread([this] { Loop(); });
}

Maintenance::~Maintenance() { Stop(); }

void Maintenance::Stop() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Maintenance::RunByHand(std::function<void(const GcReport&)> done) {
  {
    MutexLock lock(&mu_);
    if (!stop_) {
      requests_.push_back(std::move(done));
      wake_.notify_all();
      return;
    }
  }
  GcReport stopping;
  stopping.errors.push_back("loomd is stopping: no maintenance pass was run");
  done(stopping);
}

void Maintenance::Loop() {
  auto next = std::chrono::steady_clock::now() + options_.first_delay;
  const bool periodic = options_.interval.count() > 0;
  while (true) {
    std::vector<std::function<void(const GcReport&)>> asked;
    {
      MutexLock lock(&mu_);
      while (!stop_ && requests_.empty() &&
             (!periodic || std::chrono::steady_clock::now() < next)) {
        if (periodic) {
          lock.WaitUntil(&wake_, next);
        } else {
          lock.Wait(&wake_);
        }
      }
      asked.assign(requests_.begin(), requests_.end());
      requests_.clear();
      if (stop_) {
        GcReport stopping;
        stopping.errors.push_back("loomd is stopping: no maintenance pass was run");
        for (auto& done : asked) done(stopping);
        return;
      }
    }
    GcReport report = RunOnce(asked.empty() ? Trigger::kPeriodic : Trigger::kByHand);
    if (!report.errors.empty()) {
      LOOM_LOG(kWarning) << "maintenance: " << report.errors.size()
                         << " problem(s), the first: " << report.errors.front();
    }
    for (auto& done : asked) done(report);
    if (periodic) next = std::chrono::steady_clock::now() + options_.interval;
  }
}

GcReport Maintenance::RunOnce(Trigger trigger) {
  MutexLock pass(&pass_mu_);
  const auto start = std::chrono::steady_clock::now();
  GcReport report;
  auto repos = repos_->List();
  if (!repos.ok()) {
    report.errors.push_back("cannot list the repositories: " + repos.status().message());
  } else {
    for (const repos::RepoRecord& repo : *repos) CleanRepository(repo, trigger, &report);
  }
  CleanDataDir(&report);
  report.duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now() - start)
                           .count();
  LOOM_LOG(kInfo) << "maintenance: " << report.worktrees_removed << " worktree(s) and "
                  << report.branches_deleted << " branch(es) removed, " << report.refs_packed
                  << " ref(s) and " << report.loose_objects_packed << " loose object(s) packed, "
                  << report.bytes_freed << " bytes freed in " << report.duration_ms << " ms";
  return report;
}

void Maintenance::CleanRepository(const repos::RepoRecord& repo, Trigger trigger,
                                  GcReport* report) {
  const std::string what = "repository " + repo.name + ": ";
  // Candidates: task ids with git state or a worktree directory.
  std::set<int64_t> ids;
  std::map<int64_t, std::string> names;  // the worktree directory of an id, when there is one
  auto with_state = repos::TaskIdsWithGitState(repo.path);
  if (!with_state.ok()) {
    report->errors.push_back(what + with_state.status().message());
    return;  // a repository that cannot be opened is not packed either
  }
  for (const std::string& id : *with_state) {
    if (auto n = TaskId(id, lifecycle_->instance())) ids.insert(*n);
  }
  const std::string worktrees = options_.data_dir + "/worktrees/" + repo.name;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(worktrees, ec)) {
    std::string name = entry.path().filename().string();
    if (!name.starts_with("loom-")) continue;
    if (auto n = TaskId(std::string_view(name).substr(5), lifecycle_->instance())) {
      ids.insert(*n);
      names[*n] = name;
    }
  }
  const int64_t now = options_.clock->NowMs();
  for (int64_t id : ids) {
    const std::string path =
        worktrees + "/" + (names.count(id) ? names[id] : "loom-" + std::to_string(id));
    int64_t bytes = TreeBytes(path);
    auto removal = lifecycle_->RemoveFilesIfOver(id, now);
    if (!removal.ok()) {
      report->errors.push_back(what + "task " + std::to_string(id) + ": " +
                               removal.status().message());
      continue;
    }
    if (!removal->removed) continue;
    ++report->worktrees_removed;
    if (removal->branch_deleted) ++report->branches_deleted;
    report->bytes_freed += bytes - TreeBytes(path);
  }
  if (auto refs = repos::PackRefs(repo.path); refs.ok()) {
    report->refs_packed += std::max<int64_t>(0, refs->loose_before - refs->loose_after);
  } else {
    report->errors.push_back(what + refs.status().message());
  }
  Result<int64_t> loose = repos::CountLooseObjects(repo.path);
  if (trigger == Trigger::kPeriodic && loose.ok() && *loose < options_.min_loose_objects) {
    report->loose_objects_left += *loose;
    return;
  }
  if (auto objects = repos::PackLooseObjects(repo.path); objects.ok()) {
    report->loose_objects_packed += objects->packed;
    report->bytes_freed += static_cast<int64_t>(objects->loose_bytes) -
                           (objects->packed > 0 ? static_cast<int64_t>(objects->pack_bytes) : 0);
  } else {
    report->errors.push_back(what + objects.status().message());
  }
  if (auto merged = repos::MergePacks(repo.path, options_.max_packs); merged.ok()) {
    if (!merged->pack.empty()) {
      report->packs_merged += merged->packs_before;
      report->bytes_freed +=
          static_cast<int64_t>(merged->bytes_before) - static_cast<int64_t>(merged->bytes_after);
    }
  } else {
    report->errors.push_back(what + merged.status().message());
  }
  if (auto left = repos::CountLooseObjects(repo.path); left.ok()) {
    report->loose_objects_left += *left;
  }
}

void Maintenance::CleanDataDir(GcReport* report) {
  std::error_code ec;
  // Per-task base copies of an older loomd: nothing reads them any more.
  for (const auto& entry : fs::directory_iterator(options_.data_dir + "/base", ec)) {
    RemoveCounted(entry.path(), report);
  }
  // A verification tree (scratch/verify-<task>-<ns>) lives for one sandboxed run,
  // at most a day (sandbox.timeout_s); one older was left by a crash.
  const auto cutoff = fs::file_time_type::clock::now() - std::chrono::hours(48);
  for (const auto& entry : fs::directory_iterator(options_.data_dir + "/scratch", ec)) {
    if (!entry.path().filename().string().starts_with("verify-")) continue;
    std::error_code mec;
    auto mtime = fs::last_write_time(entry.path(), mec);
    if (!mec && mtime < cutoff) RemoveCounted(entry.path(), report);
  }
}

}  // namespace loom
