#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "common/auth.h"
#include "feedback/intake.h"
#include "tests/fakes/fake_clock.h"
#include "tests/support/temp_dir.h"

namespace loom::feedback {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.File("loom.db");
    // The tokens and feedback tables alone (loomd assembles every module's migrations).
    // The tasks items are triaged into are the orchestrator's; here, their key alone.
    const std::vector<Migration> tasks = {{2, "CREATE TABLE tasks(id INTEGER PRIMARY KEY);"}};
    ASSERT_TRUE(Db::Open(path_, AssembleMigrations({TokenMigrations(), Migrations(), tasks})).ok());
    auto tokens = TokenStore::Open(path_);
    ASSERT_TRUE(tokens.ok());
    ASSERT_TRUE((*tokens)->Create(Role::kReporter, "r").ok());  // token id 1
    auto s = Store::Open(path_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }

  Item MakeItem(const std::string& title, std::optional<std::string> reporter = std::nullopt) {
    Item it;
    it.kind = "bug";
    it.title = title;
    it.body = "body";
    it.reporter = std::move(reporter);
    it.token_id = 1;
    return it;
  }

  testing::TempDir dir_;
  std::string path_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, StoresAndReadsBack) {
  auto r = store_->SubmitAndWait(MakeItem("Crash"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, "new");
  auto got = store_->Get(r->id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->title, "Crash");
  EXPECT_EQ(store_->Get(999).status().code(), StatusCode::kNotFound);
}

TEST_F(StoreTest, StampsItemsWithTheInjectedClock) {
  FakeClock clock;
  clock.AdvanceMs(5000);
  store_.reset();
  auto s = Store::Open(path_, &clock);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto r = (*s)->SubmitAndWait(MakeItem("Clocked"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*s)->Get(r->id)->created_at_ms, clock.NowMs());
}

TEST_F(StoreTest, DuplicatesPointAtTheOriginalWhichCountsDistinctReporters) {
  auto a = *store_->SubmitAndWait(MakeItem("Crash on save 1", "ann"));
  auto b = *store_->SubmitAndWait(MakeItem("crash on save 2", "bob"));
  auto c = *store_->SubmitAndWait(MakeItem("Crash on save 3", "bob"));
  EXPECT_EQ(b.status, "duplicate");
  EXPECT_EQ(*b.duplicate_of, a.id);
  EXPECT_EQ(*c.duplicate_of, a.id);
  EXPECT_EQ(store_->Get(a.id)->reporter_count, 2);  // ann and bob
}

TEST_F(StoreTest, IdempotencyKeyReturnsTheFirstItem) {
  auto a = *store_->SubmitAndWait(MakeItem("Once"), "key-1");
  auto b = *store_->SubmitAndWait(MakeItem("Once again"), "key-1");
  EXPECT_EQ(a.id, b.id);
  EXPECT_TRUE(b.replayed);
  EXPECT_EQ(store_->List(ListQuery{})->size(), 1u);
}

TEST_F(StoreTest, ConcurrentSubmissionsAreGroupCommittedWithUniqueIds) {
  std::vector<std::thread> threads;
  std::mutex mu;
  std::set<int64_t> ids;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto r = store_->SubmitAndWait(
            MakeItem("item " + std::to_string(t) + " x" + std::string(i, 'a')));
        ASSERT_TRUE(r.ok());
        std::lock_guard<std::mutex> lock(mu);
        ids.insert(r->id);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ids.size(), 400u);
  ListQuery q;
  q.limit = 500;
  EXPECT_EQ(store_->List(q)->size(), 400u);
}

TEST_F(StoreTest, ListFiltersAndPages) {
  for (int i = 0; i < 5; ++i) {
    Item it = MakeItem("feature " + std::string(i + 1, 'z'));
    it.kind = i % 2 ? "feature" : "question";
    ASSERT_TRUE(store_->SubmitAndWait(std::move(it)).ok());
  }
  ListQuery q;
  q.kind = "feature";
  EXPECT_EQ(store_->List(q)->size(), 2u);
  ListQuery page;
  page.limit = 2;
  auto first = *store_->List(page);
  ASSERT_EQ(first.size(), 2u);
  page.after_id = first.back().id;
  auto second = *store_->List(page);
  ASSERT_EQ(second.size(), 2u);
  EXPECT_GT(second.front().id, first.back().id);
}

// Triage through the queue, on a connection of the caller's own.
class TriageQueueTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    auto db = Db::OpenMigrated(path_);
    ASSERT_TRUE(db.ok());
    db_ = std::move(*db);
    ASSERT_TRUE(db_->Exec("INSERT INTO tasks(id) VALUES(7)").ok());
  }
  std::vector<int64_t> UntriagedIds() {
    auto items = TriageQueue(db_.get()).Untriaged(100);
    EXPECT_TRUE(items.ok()) << items.status().ToString();
    std::vector<int64_t> ids;
    for (const Item& it : items.ok() ? *items : std::vector<Item>{}) ids.push_back(it.id);
    return ids;
  }
  std::unique_ptr<Db> db_;
};

TEST_F(TriageQueueTest, MarkingJoinsTheCallersTransaction) {
  auto a = *store_->SubmitAndWait(MakeItem("Crash on save 1", "ann"));
  auto b = *store_->SubmitAndWait(MakeItem("Crash on save 2", "bob"));
  EXPECT_EQ(UntriagedIds(), (std::vector<int64_t>{a.id, b.id}));
  TriageQueue queue(db_.get());
  {
    Transaction tx(db_.get());
    ASSERT_TRUE(tx.Begin().ok());
    ASSERT_TRUE(queue.MarkTriaged(a.id, 7).ok());
  }  // rolled back: the caller's transaction failed, so did the marking
  EXPECT_EQ(UntriagedIds(), (std::vector<int64_t>{a.id, b.id}));
  EXPECT_EQ(*queue.TaskOf(a.id), std::nullopt);
  {
    Transaction tx(db_.get());
    ASSERT_TRUE(tx.Begin().ok());
    ASSERT_TRUE(queue.MarkTriaged(a.id, 7).ok());
    ASSERT_TRUE(queue.MarkTriaged(b.id, 7).ok());
    ASSERT_TRUE(tx.Commit().ok());
  }
  EXPECT_TRUE(UntriagedIds().empty());
  EXPECT_EQ(*queue.TaskOf(a.id), std::optional<int64_t>(7));
  EXPECT_EQ(store_->Get(a.id)->status, "triaged");
  EXPECT_EQ(store_->Get(b.id)->status, "duplicate");  // a duplicate stays one
  ASSERT_TRUE(queue.SetTaskStatus(7, "in_review").ok());
  EXPECT_EQ(store_->Get(a.id)->status, "in_review");
  EXPECT_EQ(store_->Get(b.id)->status, "in_review");
}

TEST_F(StoreTest, SurvivesReopen) {
  int64_t id = store_->SubmitAndWait(MakeItem("Persist me"))->id;
  store_.reset();
  auto s = Store::Open(path_);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)->Get(id)->title, "Persist me");
}

}  // namespace
}  // namespace loom::feedback
