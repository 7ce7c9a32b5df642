// Disk left per task after it is merged, rejected or fails (issue 25), with the
// repository's default [retention] policy: N tasks per outcome, each on its own
// repository (a copy of examples/calc padded with `--files` source files of
// `--file-kb` KiB), driven through the same calls loomd makes (lease, workspace
// through the repository cache, an edit and a commit, then the merge, the
// rejection or the failure with the API's removal), without a model. Disk is
// measured (allocated blocks, like du) of the repository's .git and of its
// worktrees under the data dir: right after the tasks (what the request paths
// leave), after a maintenance pass, and for failed tasks after their retention.
//
//   retention_bench [--tasks 50] [--files 200] [--file-kb 8]
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "common/auth.h"
#include "common/log.h"
#include "feedback/intake.h"
#include "orchestrator/lifecycle.h"
#include "orchestrator/maintenance.h"
#include "orchestrator/repo_cache.h"
#include "orchestrator/schema.h"
#include "orchestrator/stores.h"
#include "repos/maintenance.h"
#include "repos/workspace.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

class BenchClock : public Clock {
 public:
  int64_t NowMs() const override { return 1'700'000'000'000 + offset_ms_; }
  int64_t MonotonicNs() const override { return offset_ms_ * 1'000'000; }
  void AdvanceMs(int64_t ms) { offset_ms_ += ms; }

 private:
  std::atomic<int64_t> offset_ms_{0};
};

int64_t DiskBytes(const std::string& path) {
  int64_t total = 0;
  std::error_code ec;
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return 0;
  total += st.st_blocks * 512;
  for (fs::recursive_directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    if (::lstat(it->path().c_str(), &st) == 0) total += st.st_blocks * 512;
  }
  return total;
}

int Die(const std::string& what) {
  std::fprintf(stderr, "retention_bench: %s\n", what.c_str());
  return 1;
}

enum class Outcome { kMerged, kRejected, kFailed };
const char* Name(Outcome o) {
  return o == Outcome::kMerged ? "merged" : o == Outcome::kRejected ? "rejected" : "failed";
}

int Main(int argc, char** argv) {
  int tasks = 50, files = 200, file_kb = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--tasks")) tasks = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--files")) files = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--file-kb")) file_kb = std::atoi(argv[i + 1]);
  }
  log::SetLevel(log::Level::kError);
  char tmpl[] = "/tmp/loom-retention-bench-XXXXXX";
  if (!mkdtemp(tmpl)) return Die("mkdtemp failed");
  const std::string dir = tmpl;
  const std::string db = DatabasePath(dir);
  if (Status s = MigrateDatabase(db); !s.ok()) return Die(s.message());
  auto feedback = feedback::Store::Open(db);
  BenchClock clock;
  auto stores = OrchestratorStores::Open(db, &clock);
  auto tokens = TokenStore::Open(db);
  if (!feedback.ok() || !stores.ok() || !tokens.ok()) return Die("cannot open the stores");
  int64_t reporter = (*tokens)->Lookup(*(*tokens)->Create(Role::kReporter, "r"))->token_id;
  PolicySet policies;
  RepoCache cache(stores->repos.get(), &policies, dir);
  TaskLifecycle lifecycle(stores->tasks.get(), stores->escalations.get(), stores->repos.get(),
                          LifecycleOptions{dir, &policies, &cache});
  MaintenanceOptions mopts;
  mopts.data_dir = dir;
  mopts.interval = std::chrono::seconds(0);
  mopts.clock = &clock;
  Maintenance maintenance(stores->repos.get(), &lifecycle, mopts);
  TaskStore* store = stores->tasks.get();

  std::mt19937 rng(25);
  std::printf("%d tasks per outcome; repository: examples/calc + %d files of %d KiB\n", tasks,
              files, file_kb);
  std::printf(
      "| outcome | checkout | .git + worktrees before | right after the tasks, per task "
      "| after a maintenance pass, per task | after retention, per task |\n");
  for (Outcome outcome : {Outcome::kMerged, Outcome::kRejected, Outcome::kFailed}) {
    const std::string name = std::string("app-") + Name(outcome);
    const std::string repo = dir + "/" + name;
    fs::copy(std::string(LOOM_SOURCE_DIR) + "/examples/calc", repo, fs::copy_options::recursive);
    for (int f = 0; f < files; ++f) {
      const std::string sub = repo + "/src" + std::to_string(f % 10);
      fs::create_directories(sub);
      std::ofstream out(sub + "/m" + std::to_string(f) + ".py");
      for (int line = 0; line < file_kb * 16; ++line) {
        out << "value_" << line << " = " << rng() << "  # " << rng() << rng() << "\n";
      }
    }
    if (auto c = repos::InitRepository(repo, "main", "bench"); !c.ok())
      return Die(c.status().message());
    repos::RepoRecord record;
    record.name = name;
    record.path = repo;
    record.test_command = "true";
    if (auto r = stores->repos->Register(record); !r.ok()) return Die(r.status().message());
    auto packed = repos::PackLooseObjects(repo);  // a registered repository is usually packed
    if (!packed.ok()) return Die(packed.status().message());
    const std::string worktrees = dir + "/worktrees/" + name;
    auto measure = [&] { return DiskBytes(repo + "/.git") + DiskBytes(worktrees); };
    const int64_t before = measure();
    int64_t checkout = 0;
    for (int t = 0; t < tasks; ++t) {
      feedback::Item item;
      item.kind = "feature";
      item.title = std::string("change ") + static_cast<char>('a' + t % 26) +
                   static_cast<char>('a' + t / 26 % 26) + static_cast<char>('a' + t / 676);
      item.body = "b";
      item.repo = name;
      item.token_id = reporter;
      if (auto r = (*feedback)->SubmitAndWait(std::move(item)); !r.ok())
        return Die(r.status().message());
      auto made = store->Triage();
      if (!made.ok() || made->size() != 1) return Die("triage made no task");
      int64_t id = made->front();
      auto leased = lifecycle.Lease();
      if (!leased.ok() || !leased->has_value()) return Die("nothing to lease");
      auto repository = cache.Get(name);
      if (!repository.ok()) return Die(repository.status().message());
      auto ws = (*repository)->CreateWorkspace(std::to_string(id), "change");
      if (!ws.ok()) return Die(ws.status().message());
      if (t == 0) checkout = DiskBytes((*ws)->info().path);
      std::string body =
          "def f" + std::to_string(t) + "():\n    return " + std::to_string(t) + "\n";
      if (!(*ws)->WriteFile("src0/m0.py", body).ok() ||
          !(*ws)->WriteFile("tests/test_f" + std::to_string(t) + ".py", body).ok())
        return Die("edit failed");
      if (!(*ws)->CommitToBranch({"change", {}}).ok()) return Die("commit failed");
      (void)store->SetBranch(id, (*ws)->info().branch, (*ws)->info().base_commit);
      ws->reset();
      Status s;
      if (outcome == Outcome::kFailed) {
        s = lifecycle.Fail(id, "budget spent");
      } else {
        s = store->Transition(id, TaskState::kRunning, TaskState::kVerifying, "");
        if (s.ok()) s = store->Transition(id, TaskState::kVerifying, TaskState::kReview, "");
        // What the API does on approve (merge, record, remove the worktree; the
        // branch stays) and on reject (record, remove worktree and branch).
        if (s.ok() && outcome == Outcome::kMerged) {
          auto merged = (*repository)->MergeBranch(std::to_string(id));
          s = merged.ok() ? lifecycle.Merged(id, 1, "merged") : merged.status();
          if (s.ok())
            s = (*repository)->RemoveWorkspace(std::to_string(id), repos::BranchDisposition::kKeep);
        } else if (s.ok()) {
          s = lifecycle.Reject(id, 1, "no");
          if (s.ok()) {
            s = (*repository)
                    ->RemoveWorkspace(std::to_string(id), repos::BranchDisposition::kDelete);
            if (s.ok()) s = store->ClearBranch(id);
          }
        }
      }
      lifecycle.Release(id);
      if (!s.ok()) return Die(std::string(Name(outcome)) + ": " + s.message());
    }
    const int64_t after_tasks = measure();
    GcReport pass = maintenance.RunOnce();
    if (!pass.errors.empty()) return Die(pass.errors.front());
    const int64_t after_pass = measure();
    int64_t after_retention = after_pass;
    if (outcome == Outcome::kFailed) {
      clock.AdvanceMs(169LL * 3'600'000);
      GcReport later = maintenance.RunOnce();
      if (!later.errors.empty()) return Die(later.errors.front());
      after_retention = measure();
    }
    std::printf("| %s | %.1f KiB | %.1f KiB | %.1f KiB | %.1f KiB | %.1f KiB |\n", Name(outcome),
                checkout / 1024.0, before / 1024.0, (after_tasks - before) / 1024.0 / tasks,
                (after_pass - before) / 1024.0 / tasks,
                (after_retention - before) / 1024.0 / tasks);
  }
  std::printf("database: %.1f KiB in all (%.2f KiB per task, its event log and feedback)\n",
              (DiskBytes(db) + DiskBytes(db + "-wal")) / 1024.0,
              (DiskBytes(db) + DiskBytes(db + "-wal")) / 1024.0 / (3 * tasks));
  maintenance.Stop();
  fs::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace loom

int main(int argc, char** argv) { return loom::Main(argc, argv); }
