// TaskStore on a real SQLite file: the state machine's compare-and-set, leases
// that never hand one task out twice, triage linking feedback and tasks both
// ways, the event log, recovery after a crash, and escalations.
#include "orchestrator/task_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "common/auth.h"
#include "feedback/intake.h"
#include "orchestrator/schema.h"
#include "orchestrator/stores.h"
#include "repos/workspace.h"
#include "tests/fakes/fake_clock.h"
#include "tests/support/store_fixture.h"
#include "tests/support/temp_dir.h"

namespace loom {
namespace {

// Titles whose fingerprints differ (digits are normalised away): "ab", "bb", ...
std::string Word(int i) {
  return {static_cast<char>('a' + i % 26), static_cast<char>('a' + i / 26)};
}

class TaskStoreTest : public testing::StoreFixture {
 protected:
  void SetUp() override { OpenStores(&clock_); }

  int64_t File(const std::string& title, const std::string& kind = "bug",
               std::optional<std::string> repo = std::nullopt) {
    feedback::Item item;
    item.kind = kind;
    item.title = title;
    item.body = "body of " + title;
    item.repo = repo;
    item.token_id = token_id_;
    auto r = feedback_->SubmitAndWait(std::move(item));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->id : 0;
  }

  void AddRepo(const std::string& name) { RegisterRepo(name, "make test"); }

  int64_t OneQueuedTask() {
    AddRepo("app");
    File("Crash on save");
    auto created = store_->Triage();
    EXPECT_TRUE(created.ok());
    return created.ok() && created->size() == 1 ? (*created)[0] : 0;
  }

  FakeClock clock_;
};

TEST_F(TaskStoreTest, TriageMakesOneTaskPerOriginalAndLinksBothWays) {
  AddRepo("app");
  int64_t first = File("Crash on save");
  int64_t dup = File("Crash on save");  // same fingerprint: a duplicate
  int64_t other = File("Export is slow", "feature");
  auto created = store_->Triage();
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  ASSERT_EQ(created->size(), 2u);
  auto task = store_->Get((*created)[0]);
  ASSERT_TRUE(task.ok());
  EXPECT_EQ(task->state, TaskState::kQueued);
  EXPECT_EQ(task->repo, "app");
  EXPECT_EQ(task->feedback_ids, (std::vector<int64_t>{first, dup}));
  auto item = feedback_->Get(first);
  ASSERT_TRUE(item.ok());
  EXPECT_EQ(item->task_id, task->id);
  EXPECT_EQ(item->status, "triaged");
  auto dup_item = feedback_->Get(dup);
  ASSERT_TRUE(dup_item.ok());
  EXPECT_EQ(dup_item->task_id, task->id);
  auto feature = store_->Get((*created)[1]);
  ASSERT_TRUE(feature.ok());
  EXPECT_EQ(feature->kind, "feature");
  EXPECT_EQ(feature->feedback_ids, (std::vector<int64_t>{other}));
  // A second round finds nothing new.
  auto again = store_->Triage();
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
}

TEST_F(TaskStoreTest, FeedbackForAnUnknownRepositoryWaitsUntilItIsRegistered) {
  AddRepo("app");
  AddRepo("web");
  File("Button misaligned", "bug", "mobile");
  File("No repo named, two registered");
  auto created = store_->Triage();
  ASSERT_TRUE(created.ok());
  EXPECT_TRUE(created->empty());
  AddRepo("mobile");
  created = store_->Triage();
  ASSERT_TRUE(created.ok());
  ASSERT_EQ(created->size(), 1u);
  EXPECT_EQ(store_->Get((*created)[0])->repo, "mobile");
}

TEST_F(TaskStoreTest, TransitionIsACompareAndSet) {
  int64_t id = OneQueuedTask();
  ASSERT_TRUE(store_->Transition(id, TaskState::kQueued, TaskState::kRunning, "test").ok());
  Status stale = store_->Transition(id, TaskState::kQueued, TaskState::kRunning, "again");
  EXPECT_EQ(stale.code(), StatusCode::kFailedPrecondition);
  Status illegal = store_->Transition(id, TaskState::kRunning, TaskState::kMerged, "skip review");
  EXPECT_EQ(illegal.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->Get(id)->state, TaskState::kRunning);
  auto events = store_->Events(id);
  ASSERT_TRUE(events.ok());
  int transitions = 0;
  for (const auto& e : *events) transitions += e.type == EventType::kState;
  EXPECT_EQ(transitions, 1) << "a refused transition must leave no event";
}

TEST_F(TaskStoreTest, AnAnswerIsStoredOnTheTaskAndShownOnItsFeedback) {
  int64_t id = OneQueuedTask();
  ASSERT_TRUE(store_->Transition(id, TaskState::kQueued, TaskState::kRunning, "test").ok());
  EXPECT_EQ(store_->RecordAnswer(id, TaskState::kQueued, "too late").code(),
            StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store_->RecordAnswer(id, TaskState::kRunning, "Use --verbose.").ok());
  auto task = store_->Get(id);
  ASSERT_TRUE(task.ok());
  EXPECT_EQ(task->state, TaskState::kAnswered);
  EXPECT_EQ(task->answer.value_or(""), "Use --verbose.");
  EXPECT_EQ(task->ToJson()["answer"], "Use --verbose.");
  EXPECT_FALSE(TransitionAllowed(TaskState::kAnswered, TaskState::kQueued));
  EXPECT_TRUE(TransitionAllowed(TaskState::kCancelled, TaskState::kQueued));
  EXPECT_EQ(FeedbackStatusFor(TaskState::kAnswered), "answered");
  EXPECT_EQ(FeedbackStatusFor(TaskState::kCancelled), "cancelled");
}

TEST_F(TaskStoreTest, ConcurrentLeasesNeverHandOutATaskTwice) {
  AddRepo("app");
  for (int i = 0; i < 30; ++i) File("problem in module " + Word(i));
  ASSERT_EQ(store_->Triage()->size(), 30u);
  std::mutex mu;
  std::vector<int64_t> leased;
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      while (true) {
        auto next = store_->LeaseNext();
        ASSERT_TRUE(next.ok());
        if (!next->has_value()) return;
        std::lock_guard<std::mutex> lock(mu);
        leased.push_back((*next)->id);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(leased.size(), 30u);
  EXPECT_EQ(std::set<int64_t>(leased.begin(), leased.end()).size(), 30u);
}

TEST_F(TaskStoreTest, EventsAreNumberedAndAddUsage) {
  int64_t id = OneQueuedTask();
  auto a = store_->AppendEvent(id, EventType::kLlmReply, {{"n", 1}}, Usage{1, 100, 20, 0});
  auto b = store_->AppendEvent(id, EventType::kToolResult, {{"n", 2}}, Usage{0, 0, 0, 1});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*b, *a + 1);
  auto task = store_->Get(id);
  EXPECT_EQ(task->steps, 1);
  EXPECT_EQ(task->prompt_tokens, 100);
  EXPECT_EQ(task->completion_tokens, 20);
  EXPECT_EQ(task->test_runs, 1);
  auto after = store_->Events(id, *a);
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ((*after)[0].type, EventType::kToolResult);
  EXPECT_EQ((*after)[0].data["n"], 2);
}

TEST_F(TaskStoreTest, RecoverInterruptedRequeuesRunningAndVerifyingTasks) {
  AddRepo("app");
  File("first problem");
  File("second problem");
  File("third problem");
  auto ids = *store_->Triage();
  ASSERT_EQ(ids.size(), 3u);
  ASSERT_TRUE(store_->Transition(ids[0], TaskState::kQueued, TaskState::kRunning, "").ok());
  ASSERT_TRUE(store_->Transition(ids[1], TaskState::kQueued, TaskState::kRunning, "").ok());
  ASSERT_TRUE(store_->Transition(ids[1], TaskState::kRunning, TaskState::kVerifying, "").ok());
  // A new store on the same file, as after kill -9.
  stores_ = {};
  auto reopened = OrchestratorStores::Open(DatabasePath(dir_.path()));
  ASSERT_TRUE(reopened.ok());
  auto n = reopened->tasks->RecoverInterrupted();
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2);
  for (int64_t id : ids) EXPECT_EQ(reopened->tasks->Get(id)->state, TaskState::kQueued);
}

TEST_F(TaskStoreTest, StampsEventsAndStateChangesWithTheInjectedClock) {
  int64_t id = OneQueuedTask();
  int64_t created = clock_.NowMs();
  clock_.AdvanceMs(5'000);
  ASSERT_TRUE(store_->Transition(id, TaskState::kQueued, TaskState::kRunning, "").ok());
  auto task = store_->Get(id);
  ASSERT_TRUE(task.ok());
  EXPECT_EQ(task->created_at_ms, created);
  EXPECT_EQ(task->updated_at_ms, created + 5'000);
  auto events = store_->Events(id);
  ASSERT_TRUE(events.ok() && events->size() == 2u);
  EXPECT_EQ(events->front().created_at_ms, created);
  EXPECT_EQ(events->back().created_at_ms, created + 5'000);
}

TEST_F(TaskStoreTest, AnsweringAnEscalationRequeuesTheBlockedTask) {
  int64_t id = OneQueuedTask();
  ASSERT_TRUE(store_->Transition(id, TaskState::kQueued, TaskState::kRunning, "").ok());
  EscalationStore* escalations = stores_.escalations.get();
  auto esc = escalations->Escalate(id, "gpu", "no model answered", "orchestrator");
  ASSERT_TRUE(esc.ok());
  ASSERT_TRUE(store_->Transition(id, TaskState::kRunning, TaskState::kBlocked, "waiting").ok());
  EXPECT_EQ(escalations->List(true)->size(), 1u);
  ASSERT_TRUE(escalations->Answer(*esc, {{"text", "loom-infer is up"}}, 7).ok());
  EXPECT_EQ(store_->Get(id)->state, TaskState::kQueued);
  EXPECT_TRUE(escalations->List(true)->empty());
  EXPECT_EQ(escalations->Answer(*esc, {{"text", "twice"}}, 7).code(),
            StatusCode::kFailedPrecondition);
  auto events = store_->Events(id);
  ASSERT_TRUE(events.ok());
  bool answered = false;
  for (const auto& e : *events) answered |= e.type == EventType::kEscalationAnswered;
  EXPECT_TRUE(answered);
}

// review.max_waiting: a repository with as many tasks in review as its bound is
// passed over (its queued tasks say why) until a review ends; others go on.
TEST_F(TaskStoreTest, ARepositoryAtItsReviewBoundIsPassedOverUntilAReviewEnds) {
  AddRepo("app");
  AddRepo("lib");
  for (int i = 0; i < 4; ++i) {
    File("app problem " + Word(i), "bug", "app");
    ASSERT_EQ(store_->Triage()->size(), 1u);
  }
  File("lib problem", "bug", "lib");
  ASSERT_EQ(store_->Triage()->size(), 1u);
  auto bound = [](const std::string& repo) -> int64_t { return repo == "app" ? 2 : 100; };
  // Two app tasks go through to review.
  std::vector<int64_t> in_review;
  for (int i = 0; i < 2; ++i) {
    auto t = store_->LeaseNext(bound);
    ASSERT_TRUE(t.ok() && t->has_value());
    EXPECT_EQ((*t)->repo, "app");
    ASSERT_TRUE(store_->Transition((*t)->id, TaskState::kRunning, TaskState::kVerifying, "").ok());
    ASSERT_TRUE(store_->Transition((*t)->id, TaskState::kVerifying, TaskState::kReview, "").ok());
    in_review.push_back((*t)->id);
  }
  // app is at its bound: the older app tasks wait, the lib task is leased.
  auto t = store_->LeaseNext(bound);
  ASSERT_TRUE(t.ok() && t->has_value());
  EXPECT_EQ((*t)->repo, "lib");
  t = store_->LeaseNext(bound);
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->has_value());
  auto queued = store_->List(TaskState::kQueued, 0, 10);
  ASSERT_EQ(queued->size(), 2u);
  for (const Task& q : *queued) {
    EXPECT_NE(q.reason.find("2 tasks of app are in review (review.max_waiting)"), std::string::npos)
        << q.reason;
  }
  // A review ends: the next app task is leased.
  ASSERT_TRUE(store_->RecordReview(in_review[0], ReviewDecision::kRejected, "no", 1).ok());
  t = store_->LeaseNext(bound);
  ASSERT_TRUE(t.ok() && t->has_value());
  EXPECT_EQ((*t)->repo, "app");
  EXPECT_EQ((*t)->id, (*queued)[0].id);
  EXPECT_EQ(store_->Get((*t)->id)->reason, "leased");
  ASSERT_TRUE(store_->Transition((*t)->id, TaskState::kRunning, TaskState::kVerifying, "").ok());
  ASSERT_TRUE(store_->Transition((*t)->id, TaskState::kVerifying, TaskState::kReview, "").ok());
  t = store_->LeaseNext(bound);  // at the bound again
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->has_value());
  t = store_->LeaseNext();  // no bound: nothing is held
  ASSERT_TRUE(t.ok() && t->has_value());
  EXPECT_EQ((*t)->id, (*queued)[1].id);
}

TEST_F(TaskStoreTest, ATasksEscalationsAreReadByIndex) {
  AddRepo("app");
  File("first problem");
  File("second problem");
  auto ids = *store_->Triage();
  ASSERT_EQ(ids.size(), 2u);
  EscalationStore* escalations = stores_.escalations.get();
  auto a = escalations->Escalate(ids[0], "approval", "edit setup.py?", "agent");
  auto b = escalations->Escalate(ids[1], "question", "which file?", "agent");
  auto c = escalations->Escalate(ids[0], "api_key", "need a key", "agent", "KEY");
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  auto mine = escalations->ForTask(ids[0]);
  ASSERT_TRUE(mine.ok()) << mine.status().ToString();
  ASSERT_EQ(mine->size(), 2u);
  EXPECT_EQ((*mine)[0].id, *a);
  EXPECT_EQ((*mine)[1].id, *c);
  EXPECT_TRUE(escalations->ForTask(12345)->empty());
  auto db = Db::OpenMigrated(DatabasePath(dir_.path()));
  ASSERT_TRUE(db.ok());
  auto plan =
      (*db)->Prepare("EXPLAIN QUERY PLAN SELECT id FROM escalations WHERE task_id=? ORDER BY id");
  ASSERT_TRUE(plan.ok());
  ASSERT_TRUE(*(*plan)->Step());
  EXPECT_NE((*plan)->Text(3).find("USING COVERING INDEX escalations_task"), std::string::npos)
      << (*plan)->Text(3);
}

}  // namespace
}  // namespace loom
