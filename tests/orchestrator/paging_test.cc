// Every list of the HTTP API pages by the one rule of common/paging.h, over
// loopback against an in-process loomd: feedback, tasks, reviews, escalations
// and a task's events. For each: the first page, next_after handed back as
// `after`, the last page (next_after null), `after=0` as the start, and a bad
// `after` or `limit` answered 400 with the field named.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/json.h"
#include "orchestrator/stores.h"
#include "tests/support/daemon_fixture.h"

namespace loom {
namespace {

class PagingTest : public testing::DaemonFixture {
 protected:
  // loomd without agents (nothing moves the tasks but this test), with five
  // feedback items made into tasks, three of them in review, three escalations
  // (one answered) and a task with seven events.
  void SetUp() override {
    StartDaemon({{"agents", "0"}});
    RegisterCalc();
    for (const char* title :
         {"Crash on save", "Export is slow", "Wrong total", "Blank page", "Login loops"}) {
      Json body = {{"kind", "bug"}, {"title", title}, {"body", "b"}};
      ASSERT_EQ(Call("POST", "/v1/feedback", reporter_, DumpJson(body)).status, 201);
    }
    // Triage as loomd's triage thread would, on a connection of the test's own.
    auto stores = OrchestratorStores::Open(DatabasePath(dir_.path()));
    ASSERT_TRUE(stores.ok()) << stores.status().ToString();
    auto created = stores->tasks->Triage();
    ASSERT_TRUE(created.ok() && created->size() == 5u);
    tasks_ = *created;
    for (int64_t id : {tasks_[0], tasks_[2], tasks_[4]}) {
      for (auto [from, to] : {std::pair{TaskState::kQueued, TaskState::kRunning},
                              std::pair{TaskState::kRunning, TaskState::kVerifying},
                              std::pair{TaskState::kVerifying, TaskState::kReview}}) {
        ASSERT_TRUE(stores->tasks->Transition(id, from, to, "test").ok());
      }
    }
    for (int64_t task : {tasks_[1], tasks_[3], tasks_[1]}) {
      auto id = stores->escalations->Escalate(task, "question", "which file?", "agent");
      ASSERT_TRUE(id.ok());
      escalations_.push_back(*id);
    }
    ASSERT_TRUE(stores->escalations->Answer(escalations_[1], {{"text", "app.py"}}, 1).ok());
    // Task 0: created, three state changes, and three more events: seven.
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(stores->tasks->AppendEvent(tasks_[0], EventType::kToolResult, {{"n", i}}).ok());
    }
  }

  // Pages through `target` (with or without a query) two items at a time and
  // checks the rule on every page; returns the keys (`key` of each item) seen.
  std::vector<int64_t> PageThrough(const std::string& target, const char* key = "id") {
    const char* sep = target.find('?') == std::string::npos ? "?" : "&";
    std::vector<int64_t> keys;
    int64_t after = 0;
    for (int pages = 0; pages < 20; ++pages) {
      Json page = Get(target + sep + "limit=2&after=" + std::to_string(after));
      EXPECT_TRUE(page["items"].is_array()) << target;
      EXPECT_TRUE(page.contains("next_after")) << target;
      for (const auto& item : page["items"]) keys.push_back(item[key].get<int64_t>());
      if (page["items"].size() < 2u) {
        EXPECT_TRUE(page["next_after"].is_null()) << target << ": a short page is the last";
        return keys;
      }
      EXPECT_EQ(page["next_after"], keys.back()) << target << ": a full page names its last key";
      after = keys.back();
    }
    ADD_FAILURE() << target << " never ended";
    return keys;
  }

  // Bad `after` and `limit` values: 400 naming the field. `max` is the list's
  // largest limit, which is accepted.
  void ExpectBadPagesRefused(const std::string& target, int max = 500) {
    const char* sep = target.find('?') == std::string::npos ? "?" : "&";
    for (const char* after : {"-1", "x", "1.5", "1e3", "99999999999999999999"}) {
      auto r = Call("GET", target + sep + "after=" + after, engineer_);
      EXPECT_EQ(r.status, 400) << target << " after=" << after;
      auto body = ParseJson(r.body).value_or(Json::object());
      EXPECT_EQ(body["error"]["field"], "after") << r.body;
      EXPECT_NE(body["error"]["message"].get<std::string>().find("after must be an integer >= 0"),
                std::string::npos)
          << r.body;
    }
    for (std::string limit :
         {std::string("0"), std::string("-3"), std::string("x"), std::to_string(max + 1)}) {
      auto r = Call("GET", target + sep + "limit=" + limit, engineer_);
      EXPECT_EQ(r.status, 400) << target << " limit=" << limit;
      auto body = ParseJson(r.body).value_or(Json::object());
      EXPECT_EQ(body["error"]["field"], "limit") << r.body;
      EXPECT_EQ(body["error"]["message"],
                "limit must be an integer from 1 to " + std::to_string(max))
          << r.body;
    }
    EXPECT_EQ(Call("GET", target + sep + "after=0&limit=" + std::to_string(max), engineer_).status,
              200)
        << target;
  }

  std::vector<int64_t> tasks_, escalations_;
};

TEST_F(PagingTest, FeedbackPagesByIdFromZero) {
  std::vector<int64_t> ids = PageThrough("/v1/feedback");
  EXPECT_EQ(ids, (std::vector<int64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(PageThrough("/v1/feedback?status=in_review"), (std::vector<int64_t>{1, 3, 5}));
  // A reporter pages through their own items by the same rule.
  auto r = Call("GET", "/v1/feedback?after=0&limit=5", reporter_);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseJson(r.body)->at("items").size(), 5u);
  EXPECT_EQ(Get("/v1/feedback?after=0"), Get("/v1/feedback"));
  ExpectBadPagesRefused("/v1/feedback");
}

TEST_F(PagingTest, TasksPageByIdFromZero) {
  EXPECT_EQ(PageThrough("/v1/tasks"), tasks_);
  EXPECT_EQ(PageThrough("/v1/tasks?state=queued"), (std::vector<int64_t>{tasks_[1], tasks_[3]}));
  EXPECT_EQ(Get("/v1/tasks?after=0"), Get("/v1/tasks"));
  ExpectBadPagesRefused("/v1/tasks");
}

TEST_F(PagingTest, ReviewsArePaged) {
  EXPECT_EQ(PageThrough("/v1/reviews"), (std::vector<int64_t>{tasks_[0], tasks_[2], tasks_[4]}));
  Json first = Get("/v1/reviews?limit=1");
  ASSERT_EQ(first["items"].size(), 1u);
  EXPECT_EQ(first["next_after"], tasks_[0]);
  EXPECT_EQ(Get("/v1/reviews")["next_after"], Json()) << "three fit the default page";
  ExpectBadPagesRefused("/v1/reviews");
}

TEST_F(PagingTest, EscalationsArePaged) {
  EXPECT_EQ(PageThrough("/v1/escalations"),
            (std::vector<int64_t>{escalations_[0], escalations_[2]}));
  EXPECT_EQ(PageThrough("/v1/escalations?state=all"), escalations_);
  ExpectBadPagesRefused("/v1/escalations");
  ExpectBadPagesRefused("/v1/escalations?state=all");
}

TEST_F(PagingTest, EventsPageBySeqWithLargerPages) {
  const std::string events = "/v1/tasks/" + std::to_string(tasks_[0]) + "/events";
  EXPECT_EQ(PageThrough(events, "seq"), (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7}));
  // Following a task: the last seq seen is the next `after`.
  Json tail = Get(events + "?after=5");
  ASSERT_EQ(tail["items"].size(), 2u);
  EXPECT_EQ(tail["items"][0]["seq"], 6);
  EXPECT_TRUE(tail["next_after"].is_null());
  EXPECT_TRUE(Get(events + "?after=7")["items"].empty());
  ExpectBadPagesRefused(events, 5000);
}

}  // namespace
}  // namespace loom
