// Triage on a real SQLite file with real registered repositories: items it
// cannot route are set aside as unroutable with the reason and come back when
// their repository is registered; one reporter token's backlog, routable or
// not, delays another's item by one round at most; and the scheduler's triage
// thread turns a routable item into a task within a second behind 1,000
// unroutable ones. Through loomd's API: the reporter and engineers see an
// unroutable item and why, and registering its repository routes it.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "common/auth.h"
#include "feedback/intake.h"
#include "orchestrator/lifecycle.h"
#include "orchestrator/scheduler.h"
#include "orchestrator/task_store.h"
#include "tests/fakes/fake_executor.h"
#include "tests/support/daemon_fixture.h"
#include "tests/support/store_fixture.h"

namespace loom {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// Titles whose fingerprints differ (digits are normalised away): "aaa", "baa", ...
std::string Word(int i) {
  std::string w;
  for (int k = 0; k < 3; ++k, i /= 26) w += static_cast<char>('a' + i % 26);
  return w;
}

class TriageTest : public testing::StoreFixture {
 protected:
  void SetUp() override {
    OpenStores();
    auto tokens = TokenStore::Open(DatabasePath(dir_.path()));
    ASSERT_TRUE(tokens.ok());
    auto secret = (*tokens)->Create(Role::kReporter, "another app");
    ASSERT_TRUE(secret.ok());
    other_token_id_ = (*tokens)->Lookup(*secret)->token_id;
  }

  feedback::Item Item(int64_t token, const std::string& title,
                      std::optional<std::string> repo = std::nullopt) {
    feedback::Item item;
    item.kind = "bug";
    item.title = title;
    item.body = "body of " + title;
    item.repo = std::move(repo);
    item.token_id = token;
    return item;
  }

  int64_t File(int64_t token, const std::string& title,
               std::optional<std::string> repo = std::nullopt) {
    auto r = feedback_->SubmitAndWait(Item(token, title, std::move(repo)));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->id : 0;
  }

  // `n` distinct items from `token`, submitted at once (group-committed).
  void FileMany(int64_t token, int n, std::optional<std::string> repo) {
    std::mutex mu;
    std::condition_variable cv;
    int done = 0;
    for (int i = 0; i < n; ++i) {
      feedback_->Submit(Item(token, "backlog " + Word(i), repo), "",
                        [&](Result<feedback::SubmitResult> r) {
                          EXPECT_TRUE(r.ok()) << r.status().ToString();
                          std::lock_guard<std::mutex> lock(mu);
                          ++done;
                          cv.notify_all();
                        });
    }
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done == n; });
  }

  feedback::Item Get(int64_t id) { return feedback_->Get(id).value_or(feedback::Item{}); }

  int64_t other_token_id_ = 0;
};

TEST_F(TriageTest, UnroutableItemsAreSetAsideWithTheReasonUntilTheirRepositoryIsRegistered) {
  RegisterRepo("app", "true");
  RegisterRepo("web", "true");
  int64_t mobile = File(token_id_, "Button misaligned", "mobile");
  int64_t again = File(other_token_id_, "Button misaligned", "mobile");  // its duplicate
  int64_t unnamed = File(token_id_, "No repository named, two registered");
  auto round = store_->TriageBatch();
  ASSERT_TRUE(round.ok()) << round.status().ToString();
  EXPECT_TRUE(round->created.empty());
  EXPECT_EQ(round->unroutable, 3);
  for (int64_t id : {mobile, again}) {
    EXPECT_EQ(Get(id).status, "unroutable");
    EXPECT_EQ(Get(id).resolution.value_or(""),
              "no repository named 'mobile' is registered; it is triaged once an admin "
              "registers it");
  }
  EXPECT_EQ(Get(unnamed).status, "unroutable");
  EXPECT_NE(Get(unnamed).resolution.value_or("").find("names no repository and 2 are registered"),
            std::string::npos);
  // Out of the queue: the next round has nothing to do.
  EXPECT_EQ(store_->TriageBatch()->moved(), 0);

  RegisterRepo("mobile", "true");
  EXPECT_EQ(Get(mobile).status, "new");
  EXPECT_EQ(Get(again).status, "duplicate");
  EXPECT_EQ(Get(mobile).resolution, std::nullopt);
  EXPECT_EQ(Get(unnamed).status, "unroutable");  // still three repositories to choose from
  auto created = store_->Triage();
  ASSERT_TRUE(created.ok());
  ASSERT_EQ(created->size(), 1u);
  auto task = store_->Get((*created)[0]);
  EXPECT_EQ(task->repo, "mobile");
  EXPECT_EQ(task->feedback_ids, (std::vector<int64_t>{mobile, again}));
  EXPECT_EQ(Get(again).task_id, std::optional<int64_t>(task->id));
}

TEST_F(TriageTest, ItemsFiledBeforeAnyRepositoryGoToTheFirstOneRegistered) {
  int64_t id = File(token_id_, "Crash on save");
  ASSERT_TRUE(store_->Triage().ok());
  EXPECT_EQ(Get(id).status, "unroutable");
  EXPECT_EQ(Get(id).resolution.value_or(""),
            "no repository is registered yet; it is triaged once one is");
  RegisterRepo("app", "true");
  auto created = store_->Triage();
  ASSERT_TRUE(created.ok());
  ASSERT_EQ(created->size(), 1u);
  EXPECT_EQ(store_->Get((*created)[0])->repo, "app");
  EXPECT_EQ(Get(id).status, "triaged");
}

TEST_F(TriageTest, ALaterDuplicateOfAnUnroutableItemIsSetAsideToo) {
  RegisterRepo("app", "true");
  int64_t original = File(token_id_, "Crash in settings", "settings");
  ASSERT_TRUE(store_->Triage().ok());
  int64_t dup = File(other_token_id_, "Crash in settings", "settings");
  EXPECT_EQ(Get(dup).duplicate_of, std::optional<int64_t>(original));
  auto round = store_->TriageBatch();
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(round->unroutable, 1);
  EXPECT_EQ(Get(dup).status, "unroutable");
  EXPECT_EQ(Get(dup).resolution, Get(original).resolution);
}

TEST_F(TriageTest, OneReportersRoutableBacklogDelaysAnothersItemByOneRoundAtMost) {
  RegisterRepo("app", "true");
  FileMany(token_id_, 1000, std::nullopt);
  int64_t theirs = File(other_token_id_, "Export is slow");
  auto round = store_->TriageBatch();
  ASSERT_TRUE(round.ok()) << round.status().ToString();
  EXPECT_EQ(round->created.size(), static_cast<size_t>(TaskStore::kTriageBatch));
  ASSERT_TRUE(Get(theirs).task_id.has_value())
      << "the other reporter's item waits behind a backlog";
  EXPECT_EQ(Get(theirs).status, "triaged");
  // The rest of the backlog follows, round by round.
  auto rest = store_->Triage();
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(rest->size() + round->created.size(), 1001u);
}

TEST_F(TriageTest, OneReportersUnroutableBacklogDelaysAnothersItemByOneRoundAtMost) {
  RegisterRepo("app", "true");
  FileMany(token_id_, 1000, "mobile");
  int64_t theirs = File(other_token_id_, "Export is slow");
  auto round = store_->TriageBatch();
  ASSERT_TRUE(round.ok()) << round.status().ToString();
  EXPECT_EQ(round->created.size(), 1u);
  EXPECT_EQ(round->unroutable, TaskStore::kTriageBatch - 1);
  EXPECT_TRUE(Get(theirs).task_id.has_value());
}

// The scheduler's triage thread, as loomd runs it: 1,000 unroutable items from
// one reporter, then a routable item from another, which becomes a task within
// a second of being filed.
TEST_F(TriageTest, TheTriageThreadMakesATaskWithinASecondBehindAThousandUnroutableItems) {
  RegisterRepo("app", "true");
  TaskLifecycle lifecycle(store_, stores_.escalations.get(), stores_.repos.get(),
                          LifecycleOptions{dir_.path() + "/data"});
  FakeExecutor executor;
  SchedulerOptions options;
  options.agents = 1;
  options.data_dir = dir_.path() + "/data";
  options.llm.url = "http://127.0.0.1:1/v1";  // nothing listens: a task that runs escalates
  options.llm.max_retries = 0;
  options.disk_reserve_bytes = 0;
  options.idle_recheck = std::chrono::minutes(1);  // only wake-ups move it
  std::filesystem::create_directories(options.data_dir);
  auto scheduler = Scheduler::Start(store_, stores_.escalations.get(), stores_.repos.get(),
                                    &lifecycle, &executor, options);
  ASSERT_TRUE(scheduler.ok()) << scheduler.status().ToString();

  FileMany(token_id_, 1000, "mobile");
  (*scheduler)->Wake();  // as the feedback API does once an item is stored
  auto filed = steady_clock::now();
  int64_t theirs = File(other_token_id_, "Export is slow");
  (*scheduler)->Wake();
  std::optional<int64_t> task_id;
  while (!task_id && steady_clock::now() - filed < milliseconds(1000)) {
    std::this_thread::sleep_for(milliseconds(10));
    task_id = Get(theirs).task_id;
  }
  auto took = std::chrono::duration_cast<milliseconds>(steady_clock::now() - filed);
  ASSERT_TRUE(task_id.has_value()) << "no task after " << took.count() << " ms";
  EXPECT_EQ(store_->Get(*task_id)->repo, "app");
  // Meanwhile the thread sets the backlog aside, round after round, without
  // waiting for another wake-up.
  feedback::ListQuery unroutable;
  unroutable.status = "unroutable";
  unroutable.limit = 2000;
  size_t set_aside = 0;
  while (set_aside < 1000 && steady_clock::now() - filed < std::chrono::seconds(10)) {
    std::this_thread::sleep_for(milliseconds(20));
    set_aside = feedback_->List(unroutable)->size();
  }
  EXPECT_EQ(set_aside, 1000u);
  (*scheduler)->Stop();
}

class TriageDaemonTest : public testing::DaemonFixture {
 protected:
  // Item `id` as `token` sees it, once `done` holds for it (an empty object, and
  // a failure, after five seconds).
  Json WaitFor(int64_t id, const std::string& token, const std::function<bool(const Json&)>& done) {
    auto deadline = steady_clock::now() + std::chrono::seconds(5);
    while (steady_clock::now() < deadline) {
      auto r = Call("GET", "/v1/feedback/" + std::to_string(id), token);
      Json item = ParseJson(r.body).value_or(Json::object());
      if (r.status == 200 && done(item)) return item;
      std::this_thread::sleep_for(milliseconds(20));
    }
    ADD_FAILURE() << "feedback " << id << " never got there";
    return Json::object();
  }
};

TEST_F(TriageDaemonTest, TheReporterSeesWhyAnItemIsUnroutableAndRegisteringItsRepositoryRoutesIt) {
  StartDaemon({{"llm.url", "http://127.0.0.1:1/v1"}, {"llm.retries", "0"}});
  Json fb = {{"kind", "bug"}, {"title", "Wrong total"}, {"body", "2+2=5"}, {"repo", "calc"}};
  auto filed = Call("POST", "/v1/feedback", reporter_, DumpJson(fb));
  ASSERT_EQ(filed.status, 201) << filed.body;
  int64_t id = ParseJson(filed.body)->at("id").get<int64_t>();
  Json seen = WaitFor(id, reporter_, [](const Json& j) { return j["status"] == "unroutable"; });
  EXPECT_EQ(seen.value("resolution", ""),
            "no repository named 'calc' is registered; it is triaged once an admin registers it");
  EXPECT_FALSE(seen.contains("task_id"));
  Json listed = Get("/v1/feedback?status=unroutable");
  ASSERT_EQ(listed["items"].size(), 1u);
  EXPECT_EQ(listed["items"][0]["id"], id);
  auto mine = Call("GET", "/v1/feedback?status=unroutable", reporter_);
  EXPECT_EQ(ParseJson(mine.body)->at("items").size(), 1u);
  auto theirs = Call("GET", "/v1/feedback?status=unroutable", other_reporter_);
  EXPECT_TRUE(ParseJson(theirs.body)->at("items").empty());

  RegisterCalc();  // wakes triage, which finds the item back in its queue
  Json routed = WaitFor(id, reporter_, [](const Json& j) { return j.contains("task_id"); });
  EXPECT_NE(routed.value("status", ""), "unroutable");
  EXPECT_EQ(Get("/v1/tasks/" + std::to_string(routed["task_id"].get<int64_t>()))["repo"], "calc");
  EXPECT_TRUE(Get("/v1/feedback?status=unroutable")["items"].empty());
}

}  // namespace
}  // namespace loom
