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
  std::vector<int64_t> UntriagedIds(int limit = 100) {
    auto items = TriageQueue(db_.get()).Untriaged(limit, &cursor_);
    EXPECT_TRUE(items.ok()) << items.status().ToString();
    std::vector<int64_t> ids;
    for (const Item& it : items.ok() ? *items : std::vector<Item>{}) ids.push_back(it.id);
    return ids;
  }
  // Items filed by token `token`, titled `prefix` + a distinct word each.
  std::vector<int64_t> FileAs(int64_t token, const std::string& prefix, int n,
                              std::optional<std::string> repo = std::nullopt) {
    std::vector<int64_t> ids;
    for (int i = 0; i < n; ++i) {
      Item it = MakeItem(prefix + " " + std::string(1, static_cast<char>('a' + i)));
      it.token_id = token;
      it.repo = repo;
      auto r = store_->SubmitAndWait(std::move(it));
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      ids.push_back(r.ok() ? r->id : 0);
    }
    return ids;
  }
  int64_t NewToken() {
    auto tokens = TokenStore::Open(path_);
    auto secret = (*tokens)->Create(Role::kReporter, "another");
    return (*tokens)->Lookup(*secret)->token_id;
  }
  std::unique_ptr<Db> db_;
  int64_t cursor_ = 0;
};

TEST_F(TriageQueueTest, TakesEachTokensOldestItemsRankByRank) {
  int64_t two = NewToken(), three = NewToken();
  std::vector<int64_t> a = FileAs(1, "first token", 5);
  std::vector<int64_t> b = FileAs(two, "second token", 1);
  std::vector<int64_t> c = FileAs(three, "third token", 2);
  // Three places: the oldest of each token, however long the first one's backlog.
  EXPECT_EQ(UntriagedIds(3), (std::vector<int64_t>{a[0], b[0], c[0]}));
  // Six: two of each token that has them; the place the second token leaves
  // goes to whoever has more.
  cursor_ = 0;
  EXPECT_EQ(UntriagedIds(6), (std::vector<int64_t>{a[0], a[1], a[2], b[0], c[0], c[1]}));
  cursor_ = 0;
  EXPECT_EQ(UntriagedIds(100).size(), 8u);
}

TEST_F(TriageQueueTest, TokensLeftOutOfARoundComeFirstInTheNext) {
  int64_t two = NewToken(), three = NewToken();
  std::vector<int64_t> a = FileAs(1, "first token", 3);
  std::vector<int64_t> b = FileAs(two, "second token", 3);
  std::vector<int64_t> c = FileAs(three, "third token", 3);
  EXPECT_EQ(UntriagedIds(2), (std::vector<int64_t>{a[0], b[0]}));
  EXPECT_EQ(cursor_, two);
  // Starts after the second token, and wraps around to the first.
  EXPECT_EQ(UntriagedIds(2), (std::vector<int64_t>{a[0], c[0]}));
  EXPECT_EQ(cursor_, 1);
}

TEST_F(TriageQueueTest, UnroutableItemsLeaveTheQueueUntilTheirRepositoryIsRegistered) {
  std::vector<int64_t> mobile = FileAs(1, "mobile", 2, "mobile");
  std::vector<int64_t> unnamed = FileAs(1, "unnamed", 1);
  TriageQueue queue(db_.get());
  for (int64_t id : {mobile[0], mobile[1], unnamed[0]}) {
    ASSERT_TRUE(queue.MarkUnroutable(id, "no repository named 'mobile' is registered").ok());
  }
  EXPECT_TRUE(UntriagedIds().empty());
  EXPECT_EQ(store_->Get(mobile[0])->status, "unroutable");
  EXPECT_EQ(store_->Get(mobile[0])->resolution.value_or(""),
            "no repository named 'mobile' is registered");
  EXPECT_EQ(*queue.UnroutableReason(mobile[1]),
            std::optional<std::string>("no repository named 'mobile' is registered"));
  EXPECT_EQ(*queue.UnroutableReason(7), std::nullopt);
  // Another repository: nothing comes back.
  EXPECT_EQ(*queue.RequeueUnroutable("web", TriageQueue::Unnamed::kStay), 0);
  EXPECT_EQ(*queue.RequeueUnroutable("mobile", TriageQueue::Unnamed::kStay), 2);
  EXPECT_EQ(UntriagedIds(), mobile);
  EXPECT_EQ(store_->Get(mobile[0])->status, "new");
  EXPECT_EQ(store_->Get(mobile[0])->resolution, std::nullopt);
  EXPECT_EQ(*queue.RequeueUnroutable("web", TriageQueue::Unnamed::kRequeue), 1);
  EXPECT_EQ(UntriagedIds(), (std::vector<int64_t>{mobile[0], mobile[1], unnamed[0]}));
}

TEST_F(TriageQueueTest, NoStatementScansTheTable) {
  for (const std::string& sql : TriageQueue::StatementsForPlanCheck()) {
    auto plan = db_->Prepare("EXPLAIN QUERY PLAN " + sql);
    ASSERT_TRUE(plan.ok()) << sql << ": " << plan.status().ToString();
    int rows = 0;
    while (*(*plan)->Step()) {
      std::string detail = (*plan)->Text(3);
      ++rows;
      EXPECT_EQ(detail.find("SCAN"), std::string::npos) << sql << ": " << detail;
      EXPECT_NE(detail.find("USING"), std::string::npos) << sql << ": " << detail;
    }
    EXPECT_GT(rows, 0) << sql;
  }
}

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
