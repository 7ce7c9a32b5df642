// TaskLifecycle on a real SQLite file and a real git repository: cancel and
// retry by intent, what they refuse, the files a cancelled task loses, its
// escalations closed, and the reason or answer its feedback item carries.
#include "orchestrator/lifecycle.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/auth.h"
#include "feedback/intake.h"
#include "orchestrator/schema.h"
#include "orchestrator/stores.h"
#include "repos/workspace.h"
#include "tests/support/store_fixture.h"
#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

class LifecycleTest : public testing::StoreFixture {
 protected:
  void SetUp() override {
    OpenStores();
    repo_ = RegisterRepo("app", "true", "app.py", "x = 1\n");
    fs::create_directories(dir_.path() + "/worktrees/app");
    fs::create_directories(dir_.path() + "/base");
    lifecycle_ = std::make_unique<TaskLifecycle>(
        store_, stores_.escalations.get(), stores_.repos.get(), LifecycleOptions{dir_.path()});
  }

  // A queued task made of a new feedback item of `kind`.
  Task Queued(const std::string& kind = "bug") {
    feedback::Item item;
    item.kind = kind;
    item.title = "Crash on save";
    item.body = "it crashes";
    item.repo = "app";
    item.token_id = token_id_;
    auto r = feedback_->SubmitAndWait(std::move(item));
    EXPECT_TRUE(r.ok());
    feedback_id_ = r.ok() ? r->id : 0;
    auto ids = store_->Triage();
    EXPECT_TRUE(ids.ok() && ids->size() == 1u);
    return store_->Get(ids->at(0)).value_or(Task{});
  }

  // Leases `task` and gives it a workspace and a base copy, as a slot does.
  Task Running(const Task& task) {
    auto leased = lifecycle_->Lease();
    EXPECT_TRUE(leased.ok() && leased->has_value() && (*leased)->id == task.id);
    auto repo = repos::Repository::Open({"app", repo_, "", "", {}}, dir_.path() + "/worktrees/app");
    EXPECT_TRUE(repo.ok()) << repo.status().ToString();
    auto ws = (*repo)->CreateWorkspace(std::to_string(task.id), "crash-on-save");
    EXPECT_TRUE(ws.ok()) << ws.status().ToString();
    worktree_ = (*ws)->info().path;
    EXPECT_TRUE(store_->SetBranch(task.id, (*ws)->info().branch, (*ws)->info().base_commit).ok());
    fs::create_directories(dir_.path() + "/base/" + std::to_string(task.id));
    return store_->Get(task.id).value_or(Task{});
  }

  std::string Branches() {
    return testing::CommandOutput("git -C " + repo_ + " branch --list 'loom/*'");
  }

  feedback::Item Feedback() { return feedback_->Get(feedback_id_).value_or(feedback::Item{}); }

  std::unique_ptr<TaskLifecycle> lifecycle_;
  int64_t feedback_id_ = 0;
  std::string repo_, worktree_;
};

TEST_F(LifecycleTest, AQueuedTaskIsCancelledAtOnceAndItsReporterToldWhy) {
  Task task = Queued();
  auto cancelled = lifecycle_->Cancel(task.id, "cancelled by an engineer: a duplicate", 7);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status().ToString();
  EXPECT_EQ(cancelled->state, TaskState::kCancelled);
  EXPECT_EQ(cancelled->reason, "cancelled by an engineer: a duplicate");
  EXPECT_EQ(Feedback().status, "cancelled");
  EXPECT_EQ(Feedback().resolution, "cancelled by an engineer: a duplicate");
  auto events = store_->Events(task.id);
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(events->back().type, EventType::kState);
  EXPECT_EQ(events->back().data["to"], "cancelled");
  EXPECT_EQ(events->back().data["by"], 7);
  // Nothing is left to lease.
  auto next = lifecycle_->Lease();
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next->has_value());
}

TEST_F(LifecycleTest, CancelAndRetryRefuseStatesThatDoNotAllowThem) {
  Task task = Queued();
  Status retry = lifecycle_->Retry(task.id, 7, {}).status();
  EXPECT_EQ(retry.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(retry.message().find("only failed or cancelled"), std::string::npos) << retry.message();
  ASSERT_TRUE(lifecycle_->Cancel(task.id, "stop", 7).ok());
  Status again = lifecycle_->Cancel(task.id, "stop", 7).status();
  EXPECT_EQ(again.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(again.message().find("is cancelled"), std::string::npos) << again.message();
  EXPECT_EQ(lifecycle_->Cancel(12345, "stop", 7).status().code(), StatusCode::kNotFound);
}

TEST_F(LifecycleTest, ABlockedTaskLosesItsWorktreeBranchAndBaseAndItsEscalationsClose) {
  Task task = Running(Queued());
  ASSERT_TRUE(fs::exists(worktree_));
  ASSERT_NE(Branches(), "");
  auto esc = stores_.escalations->Escalate(task.id, "question", "which file?", "agent");
  ASSERT_TRUE(esc.ok());
  ASSERT_TRUE(lifecycle_->RecordOutcome(task.id, {AgentResult::kBlocked, "waiting", ""}).ok());
  lifecycle_->Release(task.id);
  auto cancelled = lifecycle_->Cancel(task.id, "not needed", 7);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status().ToString();
  EXPECT_FALSE(cancelled->branch.has_value());
  EXPECT_FALSE(fs::exists(worktree_));
  EXPECT_FALSE(fs::exists(dir_.path() + "/base/" + std::to_string(task.id)));
  EXPECT_EQ(Branches(), "");
  EXPECT_EQ(stores_.escalations->Get(*esc)->state, "closed");
  Status answer = lifecycle_->AnswerEscalation(*esc, {{"text", "too late"}}, 7);
  EXPECT_EQ(answer.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(answer.message().find("closed"), std::string::npos);
}

TEST_F(LifecycleTest, ARunningTaskIsFlaggedAndCleanedUpWhenItsSlotLetsGo) {
  Task task = Running(Queued());
  const std::atomic<bool>* flag = lifecycle_->CancelFlag(task.id);
  ASSERT_NE(flag, nullptr);
  EXPECT_FALSE(flag->load());
  ASSERT_TRUE(lifecycle_->Cancel(task.id, "wrong repository", 7).ok());
  EXPECT_TRUE(flag->load());
  // The slot still holds the worktree: nothing is removed under it, and a retry
  // waits until it lets go.
  EXPECT_TRUE(fs::exists(worktree_));
  EXPECT_EQ(lifecycle_->Retry(task.id, 7, {}).status().code(), StatusCode::kFailedPrecondition);
  // Whatever the agent returns, the cancellation stands.
  EXPECT_TRUE(lifecycle_->RecordOutcome(task.id, {AgentResult::kFailed, "killed", ""}).ok());
  lifecycle_->Release(task.id);
  EXPECT_EQ(store_->Get(task.id)->state, TaskState::kCancelled);
  EXPECT_FALSE(fs::exists(worktree_));
  EXPECT_EQ(Branches(), "");
}

TEST_F(LifecycleTest, ARetryStartsAfreshWithMoreBudgetAndSaysWho) {
  Task task = Running(Queued());
  ASSERT_TRUE(
      store_->AppendEvent(task.id, EventType::kNote, {{"text", "x"}}, {3, 100, 20, 1}).ok());
  ASSERT_TRUE(lifecycle_->RecordOutcome(task.id, {AgentResult::kFailed, "step budget", ""}).ok());
  lifecycle_->Release(task.id);
  EXPECT_EQ(Feedback().status, "failed");
  EXPECT_EQ(Feedback().resolution, "step budget");
  auto retried = lifecycle_->Retry(task.id, 9, {true, 5, 0});
  ASSERT_TRUE(retried.ok()) << retried.status().ToString();
  EXPECT_EQ(retried->state, TaskState::kQueued);
  EXPECT_FALSE(retried->branch.has_value());
  EXPECT_EQ(retried->extra_steps, AgentBudgets{}.max_steps + 5);
  EXPECT_EQ(retried->extra_tokens, AgentBudgets{}.max_tokens);
  EXPECT_FALSE(fs::exists(worktree_));
  EXPECT_EQ(Branches(), "");
  EXPECT_EQ(Feedback().status, "in_progress");
  EXPECT_FALSE(Feedback().resolution.has_value());
  auto events = store_->Events(task.id);
  ASSERT_TRUE(events.ok());
  const Event& last = events->back();
  EXPECT_EQ(last.type, EventType::kRetried);
  EXPECT_EQ(last.data["by"], 9);
  EXPECT_EQ(last.data["steps"], 3);
  EXPECT_EQ(last.data["tokens"], 120);
}

TEST_F(LifecycleTest, AnAnsweredItemCarriesTheAnswer) {
  Task task = Queued("question");
  ASSERT_TRUE(lifecycle_->Lease().ok());
  ASSERT_TRUE(
      lifecycle_->RecordOutcome(task.id, {AgentResult::kAnswered, "", "Use --verbose."}).ok());
  EXPECT_EQ(Feedback().status, "answered");
  EXPECT_EQ(Feedback().resolution, "Use --verbose.");
  EXPECT_EQ(Feedback().ToJson()["resolution"], "Use --verbose.");
}

TEST_F(LifecycleTest, ARestartRemovesWhatACancelledTaskLeftBehind) {
  Task task = Running(Queued());
  ASSERT_TRUE(lifecycle_->Cancel(task.id, "stop", 7).ok());
  // loomd dies before the slot lets go: a new lifecycle at the next start.
  TaskLifecycle fresh(store_, stores_.escalations.get(), stores_.repos.get(),
                      LifecycleOptions{dir_.path()});
  ASSERT_TRUE(fresh.RecoverInterrupted().ok());
  EXPECT_FALSE(fs::exists(worktree_));
  EXPECT_EQ(Branches(), "");
  EXPECT_FALSE(store_->Get(task.id)->branch.has_value());
}

// A task's workspace is named by this data dir's instance and its id; a task
// whose branch an older loomd made keeps that name.
TEST(TaskWorkspaceKeyTest, CarriesTheInstanceUnlessAnOlderLoomdMadeTheBranch) {
  Task task;
  task.id = 12;
  EXPECT_EQ(TaskWorkspaceKey(task, "i0a1b2c3d"), "i0a1b2c3d-12");
  task.branch = "loom/i0a1b2c3d-12-fix-parser";
  EXPECT_EQ(TaskWorkspaceKey(task, "i0a1b2c3d"), "i0a1b2c3d-12");
  task.branch = "loom/12-fix-parser";
  EXPECT_EQ(TaskWorkspaceKey(task, "i0a1b2c3d"), "12");
  task.branch = "loom/120-other-task";
  EXPECT_EQ(TaskWorkspaceKey(task, "i0a1b2c3d"), "i0a1b2c3d-12");
  EXPECT_EQ(TaskWorkspaceKey(Task{}, ""), "0");
}

}  // namespace
}  // namespace loom
