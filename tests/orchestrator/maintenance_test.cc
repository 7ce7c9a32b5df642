// The maintenance pass on a real SQLite file and a real git repository: what
// each way out of a task leaves after a pass (merged, rejected, cancelled,
// answered, failed within and past its retention), live tasks untouched, loose
// objects and refs packed with every object still readable, old base copies
// removed, and a pass by hand answered from the maintenance thread.
#include "orchestrator/maintenance.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>

#include "feedback/intake.h"
#include "orchestrator/lifecycle.h"
#include "policies/policy.h"
#include "repos/maintenance.h"
#include "repos/workspace.h"
#include "tests/fakes/fake_clock.h"
#include "tests/support/store_fixture.h"
#include "tests/support/subprocess.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

class MaintenanceTest : public testing::StoreFixture {
 protected:
  void SetUp() override {
    OpenStores(&clock_);
    repo_ = RegisterRepo("app", "true", "app.py", "x = 1\n");
    fs::create_directories(dir_.path() + "/worktrees/app");
    lifecycle_ =
        std::make_unique<TaskLifecycle>(store_, stores_.escalations.get(), stores_.repos.get(),
                                        LifecycleOptions{dir_.path(), &policies_});
    MaintenanceOptions options;
    options.data_dir = dir_.path();
    options.interval = std::chrono::seconds(0);  // passes only when asked
    options.clock = &clock_;
    options.max_packs = 1;  // every pass that adds a pack merges them
    maintenance_ = std::make_unique<Maintenance>(stores_.repos.get(), lifecycle_.get(), options);
  }

  // A task leased, with a workspace holding one committed edit, as a slot leaves
  // it; then moved to `state`.
  int64_t TaskIn(TaskState state) {
    feedback::Item item;
    item.kind = "feature";
    item.title = std::string("change ") + static_cast<char>('a' + made_++);  // no duplicates
    item.body = "body";
    item.repo = "app";
    item.token_id = token_id_;
    EXPECT_TRUE(feedback_->SubmitAndWait(std::move(item)).ok());
    auto ids = store_->Triage();
    EXPECT_TRUE(ids.ok() && ids->size() == 1u);
    int64_t id = ids->at(0);
    auto leased = lifecycle_->Lease();
    EXPECT_TRUE(leased.ok() && leased->has_value() && (*leased)->id == id);
    auto repo = repos::Repository::Open({"app", repo_, "", "", {}}, dir_.path() + "/worktrees/app");
    EXPECT_TRUE(repo.ok()) << repo.status().ToString();
    auto ws = (*repo)->CreateWorkspace(std::to_string(id), "change");
    EXPECT_TRUE(ws.ok()) << ws.status().ToString();
    EXPECT_TRUE((*ws)->WriteFile("f" + std::to_string(id) + ".py", "y = 2\n").ok());
    EXPECT_TRUE((*ws)->CommitToBranch({"change", {}}).ok());
    EXPECT_TRUE(store_->SetBranch(id, (*ws)->info().branch, (*ws)->info().base_commit).ok());
    switch (state) {
      case TaskState::kRunning:
        return id;  // still leased
      case TaskState::kFailed:
        EXPECT_TRUE(lifecycle_->Fail(id, "budget spent").ok());
        break;
      case TaskState::kAnswered:
        EXPECT_TRUE(store_->RecordAnswer(id, TaskState::kRunning, "42").ok());
        break;
      default:
        EXPECT_TRUE(store_->Transition(id, TaskState::kRunning, TaskState::kVerifying, "").ok());
        EXPECT_TRUE(store_->Transition(id, TaskState::kVerifying, TaskState::kReview, "").ok());
        if (state == TaskState::kMerged) {
          EXPECT_TRUE(lifecycle_->Merged(id, 1, "merged").ok());
        } else if (state == TaskState::kRejected) {
          EXPECT_TRUE(lifecycle_->Reject(id, 1, "no").ok());
        }
    }
    lifecycle_->Release(id);
    return id;
  }

  bool HasWorktree(int64_t id) {
    return fs::exists(dir_.path() + "/worktrees/app/loom-" + std::to_string(id)) ||
           fs::exists(repo_ + "/.git/worktrees/loom-" + std::to_string(id));
  }
  bool HasRef(const std::string& glob) {
    return !testing::CommandOutput("git -C " + repo_ + " for-each-ref '" + glob + "'").empty();
  }
  bool HasSnapshot(int64_t id) { return HasRef("refs/loom/snapshots/" + std::to_string(id)); }
  bool HasBranch(int64_t id) { return HasRef("refs/heads/loom/" + std::to_string(id) + "-*"); }

  FakeClock clock_;
  PolicySet policies_;
  std::unique_ptr<TaskLifecycle> lifecycle_;
  std::unique_ptr<Maintenance> maintenance_;
  std::string repo_;
  int made_ = 0;
};

TEST_F(MaintenanceTest, EachWayOutLeavesWhatItsRetentionPolicySays) {
  int64_t merged = TaskIn(TaskState::kMerged);
  int64_t rejected = TaskIn(TaskState::kRejected);
  int64_t answered = TaskIn(TaskState::kAnswered);
  int64_t failed = TaskIn(TaskState::kFailed);
  int64_t review = TaskIn(TaskState::kReview);
  int64_t running = TaskIn(TaskState::kRunning);
  // A cancelled task whose removal a stop cut short: its worktree is still there.
  int64_t cancelled = TaskIn(TaskState::kReview);
  ASSERT_TRUE(
      store_->Transition(cancelled, TaskState::kReview, TaskState::kChangesRequested, "").ok());
  ASSERT_TRUE(store_->RecordCancel(cancelled, TaskState::kChangesRequested, "stop", 1).ok());

  // An answered question's files went when its slot let go.
  EXPECT_FALSE(HasWorktree(answered));
  EXPECT_FALSE(HasBranch(answered));
  // The merged task's worktree directory is gone already (an operator, a crash):
  // its admin files under .git/worktrees are pruned all the same.
  fs::remove_all(dir_.path() + "/worktrees/app/loom-" + std::to_string(merged));

  GcReport report = maintenance_->RunOnce();
  EXPECT_TRUE(report.errors.empty()) << report.errors.front();
  // Merged: worktree and snapshot gone, the branch kept as the record.
  EXPECT_FALSE(HasWorktree(merged));
  EXPECT_FALSE(HasSnapshot(merged));
  EXPECT_TRUE(HasBranch(merged));
  EXPECT_TRUE(store_->Get(merged)->branch.has_value());
  // Rejected, answered, cancelled: everything gone, the branch forgotten.
  for (int64_t id : {rejected, answered, cancelled}) {
    EXPECT_FALSE(HasWorktree(id)) << id;
    EXPECT_FALSE(HasSnapshot(id)) << id;
    EXPECT_FALSE(HasBranch(id)) << id;
    EXPECT_FALSE(store_->Get(id)->branch.has_value()) << id;
  }
  // Live tasks and a failed one within its retention are untouched.
  for (int64_t id : {failed, review, running}) {
    EXPECT_TRUE(HasWorktree(id)) << id;
    EXPECT_TRUE(HasSnapshot(id)) << id;
    EXPECT_TRUE(HasBranch(id)) << id;
  }
  EXPECT_EQ(report.worktrees_removed, 3);
  EXPECT_EQ(report.branches_deleted, 2);

  // Past retention.failed_hours (168 by default) the failed task's go too.
  clock_.AdvanceMs(167 * 3'600'000LL);
  EXPECT_EQ(maintenance_->RunOnce().worktrees_removed, 0);
  EXPECT_TRUE(HasWorktree(failed));
  clock_.AdvanceMs(2 * 3'600'000LL);
  report = maintenance_->RunOnce();
  EXPECT_EQ(report.worktrees_removed, 1);
  EXPECT_EQ(report.branches_deleted, 1);
  EXPECT_FALSE(HasWorktree(failed));
  EXPECT_FALSE(HasBranch(failed));
  EXPECT_TRUE(HasWorktree(review));
  EXPECT_TRUE(HasWorktree(running));
  lifecycle_->Release(running);
}

TEST_F(MaintenanceTest, TheRepositorysPolicySetsRetentionAndBranches) {
  auto policy = policies::ParsePolicy(
      "[retention]\nfailed_hours = 1\nkeep_merged_branch = false\nkeep_rejected_branch = true\n",
      "app.toml");
  ASSERT_TRUE(policy.ok()) << policy.status().ToString();
  policies_.Replace({{"app", *policy}});
  int64_t merged = TaskIn(TaskState::kMerged);
  int64_t rejected = TaskIn(TaskState::kRejected);
  int64_t failed = TaskIn(TaskState::kFailed);
  clock_.AdvanceMs(3'600'000LL + 1);
  GcReport report = maintenance_->RunOnce();
  EXPECT_EQ(report.worktrees_removed, 3);
  EXPECT_EQ(report.branches_deleted, 2);
  EXPECT_FALSE(HasBranch(merged));
  EXPECT_TRUE(HasBranch(rejected));
  EXPECT_TRUE(store_->Get(rejected)->branch.has_value());
  EXPECT_FALSE(HasBranch(failed));
  for (int64_t id : {merged, rejected, failed}) EXPECT_FALSE(HasWorktree(id)) << id;
}

TEST_F(MaintenanceTest, PacksObjectsAndRefsAndEveryObjectStaysReadable) {
  TaskIn(TaskState::kMerged);
  EXPECT_EQ(maintenance_->RunOnce().worktrees_removed, 1);  // its snapshot commits go
  int64_t review = TaskIn(TaskState::kReview);
  std::string objects =
      testing::CommandOutput("git -C " + repo_ + " rev-list --all --objects | sort");
  ASSERT_GT(*repos::CountLooseObjects(repo_), 0);
  GcReport report = maintenance_->RunOnce();
  EXPECT_GT(report.loose_objects_packed, 0);
  EXPECT_EQ(report.loose_objects_left, 0);
  EXPECT_GT(report.refs_packed, 0);
  EXPECT_EQ(*repos::CountLooseObjects(repo_), 0);
  EXPECT_EQ(report.packs_merged, 2);  // the first pass's pack and this one's
  EXPECT_EQ(testing::CommandOutput("ls " + repo_ + "/.git/objects/pack | grep -c pack$"), "1\n");
  EXPECT_EQ(testing::CommandOutput("find " + repo_ + "/.git/refs -type f | wc -l"), "0\n");
  EXPECT_EQ(testing::CommandOutput("git -C " + repo_ + " rev-list --all --objects | sort"),
            objects);
  EXPECT_EQ(testing::CommandOutput("git -C " + repo_ + " fsck --full --no-dangling 2>&1"), "");
  // The task in review still works on its packed objects and refs.
  auto repo = repos::Repository::Open({"app", repo_, "", "", {}}, dir_.path() + "/worktrees/app");
  ASSERT_TRUE(repo.ok());
  auto ws = (*repo)->OpenWorkspace(std::to_string(review));
  ASSERT_TRUE(ws.ok()) << ws.status().ToString();
  EXPECT_TRUE((*ws)->WriteFile("g.py", "z = 3\n").ok());
  EXPECT_TRUE((*repo)->DiffBranch(std::to_string(review)).ok());
}

TEST_F(MaintenanceTest, RemovesBaseCopiesOfAnOlderLoomdAndStaleScratchTrees) {
  fs::create_directories(dir_.path() + "/base/12/src");
  std::ofstream(dir_.path() + "/base/12/src/a.py") << "print(1)\n";
  fs::create_directories(dir_.path() + "/scratch/verify-3-1");
  fs::create_directories(dir_.path() + "/scratch/verify-4-2");
  fs::last_write_time(dir_.path() + "/scratch/verify-3-1",
                      fs::file_time_type::clock::now() - std::chrono::hours(72));
  GcReport report = maintenance_->RunOnce();
  EXPECT_EQ(report.base_copies_removed, 2);
  EXPECT_FALSE(fs::exists(dir_.path() + "/base/12"));
  EXPECT_FALSE(fs::exists(dir_.path() + "/scratch/verify-3-1"));
  EXPECT_TRUE(fs::exists(dir_.path() + "/scratch/verify-4-2"));  // may be in use
}

TEST_F(MaintenanceTest, APassByHandIsAnsweredFromTheMaintenanceThread) {
  int64_t rejected = TaskIn(TaskState::kRejected);
  std::promise<Json> answer;
  maintenance_->RunByHand([&](const GcReport& r) { answer.set_value(r.ToJson()); });
  auto future = answer.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  Json report = future.get();
  EXPECT_EQ(report["worktrees_removed"], 1);
  EXPECT_EQ(report["branches_deleted"], 1);
  EXPECT_TRUE(report["errors"].empty());
  EXPECT_FALSE(HasWorktree(rejected));
  // Once stopped, a request is still answered, saying so.
  maintenance_->Stop();
  Json stopped;
  maintenance_->RunByHand([&](const GcReport& r) { stopped = r.ToJson(); });
  ASSERT_EQ(stopped["errors"].size(), 1u);
}

}  // namespace
}  // namespace loom
