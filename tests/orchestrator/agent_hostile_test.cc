// Model-controlled input against the agent loop, end to end (in-process loomd,
// real SQLite, git and bubblewrap, the replay model as the LLM): every tool with
// hostile arguments, live and replayed from the event log after a restart, and
// events of any shape in the log. Each call must come back to the model as an
// error result; loomd must stay up and the review page readable.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "common/json.h"
#include "orchestrator/replay_model.h"
#include "orchestrator/stores.h"
#include "repos/workspace.h"
#include "tests/support/daemon_fixture.h"
#include "tests/support/replay_script.h"
#include "tests/support/test_paths.h"

namespace loom {
namespace {

using testing::Script;
using testing::Step;

namespace fs = std::filesystem;
using std::chrono::steady_clock;

// One reply that makes all `calls` ({"name", "arguments"}) at once.
Json Calls(Json calls) {
  return {{"message", {{"content", ""}, {"tool_calls", std::move(calls)}}}};
}

// The tools and their argument names (the contract in AgentToolSchemas).
const std::vector<std::pair<std::string, std::vector<std::string>>>& Tools() {
  static const std::vector<std::pair<std::string, std::vector<std::string>>> kTools = {
      {"list_files", {"path"}},
      {"read_file", {"path", "start_line", "end_line"}},
      {"search", {"pattern", "path"}},
      {"write_file", {"path", "content"}},
      {"replace_in_file", {"path", "old", "new"}},
      {"run_tests", {"args"}},
      {"run_command", {"command"}},
      {"request_human", {"kind", "summary", "secret_name"}},
      {"finish", {"summary"}},
  };
  return kTools;
}

// Argument texts no tool accepts: every argument of the wrong type, numbers that
// overflow, deep nesting, documents that are not objects. As text, since 1e400
// cannot be held in a Json.
std::vector<std::pair<std::string, std::string>> HostileCalls() {
  const std::vector<std::string> wrong = {"5",     "-1",
                                          "true",  "[]",
                                          "{}",    "{\"k\": [1]}",
                                          "1e400", "18446744073709551615",
                                          "1.5",   std::string(200, '[') + std::string(200, ']')};
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [tool, args] : Tools()) {
    for (const auto& v : wrong) {
      std::string text = "{";
      for (size_t i = 0; i < args.size(); ++i) text += (i ? ", \"" : "\"") + args[i] + "\": " + v;
      out.push_back({tool, text + "}"});
    }
    for (const char* doc : {"[1, 2]", "5", "\"calc.py\"", "{\"path\": 1e400}", "{not json",
                            "{\"path\": \"calc.py\", \"start_line\": 1e400}",
                            "{\"path\": \"calc.py\", \"start_line\": 99999999999}"}) {
      out.push_back({tool, doc});
    }
    out.push_back({tool, std::string(100000, '[')});
  }
  return out;
}

class AgentHostileTest : public testing::DaemonFixture {
 protected:
  void TearDown() override {
    DaemonFixture::TearDown();
    if (replay_) replay_->Stop();
  }

  // Budgets wide enough for a reply of a hundred calls, and no stuck detection.
  void WritePolicy() {
    fs::create_directories(dir_.path() + "/policies");
    std::ofstream(dir_.path() + "/policies/calc.toml") << "[budgets]\n"
                                                          "max_steps = 200\n"
                                                          "stuck_repeats = 100\n";
  }

  void StartModel(Json script) {
    auto replay = ReplayModel::Start(std::move(script));
    ASSERT_TRUE(replay.ok()) << replay.status().ToString();
    replay_ = std::move(*replay);
  }

  void StartLoomd(const std::string& agents = "1") {
    StartDaemon({{"llm.url", replay_->url()}, {"llm.retries", "1"}, {"agents", agents}});
  }

  void StopLoomd() {
    daemon_->Stop(std::chrono::milliseconds(100));
    daemon_.reset();
  }

  int64_t File(const std::string& title) {
    Json fb = {{"kind", "feature"}, {"title", title}, {"body", "x"}, {"repo", "calc"}};
    auto r = Call("POST", "/v1/feedback", reporter_, DumpJson(fb));
    EXPECT_EQ(r.status, 201) << r.body;
    return ParseJson(r.body).value_or(Json::object()).value("id", int64_t{0});
  }

  // Task `task_id` once it has left queued, running and verifying.
  Json WaitTaskSettled(int64_t task_id, std::chrono::seconds limit = std::chrono::seconds(90)) {
    auto deadline = steady_clock::now() + limit;
    while (steady_clock::now() < deadline) {
      Json task = Get("/v1/tasks/" + std::to_string(task_id));
      std::string state = task.value("state", "");
      if (state != "queued" && state != "running" && state != "verifying") return task;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "task " << task_id << " did not settle";
    return Json::object();
  }

  int64_t TaskOf(int64_t feedback_id) {
    auto deadline = steady_clock::now() + std::chrono::seconds(30);
    while (steady_clock::now() < deadline) {
      Json item = Get("/v1/feedback/" + std::to_string(feedback_id));
      if (item.contains("task_id")) return item["task_id"].get<int64_t>();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "feedback " << feedback_id << " got no task";
    return 0;
  }

  std::vector<Json> Events(int64_t task_id, const std::string& type) {
    Json r = Get("/v1/tasks/" + std::to_string(task_id) + "/events?limit=5000");
    std::vector<Json> out;
    for (auto& e : r["items"]) {
      if (e["type"] == type) out.push_back(e);
    }
    return out;
  }

  // The hostile calls as one reply's tool calls.
  static Json HostileReply() {
    Json calls = Json::array();
    for (const auto& [tool, args] : HostileCalls()) {
      calls.push_back({{"name", tool}, {"arguments", args}});
    }
    return calls;
  }

  // Every hostile call got exactly one result, an error.
  void ExpectAllRefused(int64_t task_id, size_t first_result) {
    auto results = Events(task_id, "tool_result");
    auto hostile = HostileCalls();
    ASSERT_GE(results.size(), first_result + hostile.size());
    std::set<std::string> ids;
    for (size_t i = 0; i < hostile.size(); ++i) {
      const Json& d = results[first_result + i]["data"];
      EXPECT_EQ(d["name"], hostile[i].first) << i;
      EXPECT_TRUE(d["error"].get<bool>())
          << hostile[i].first << " " << hostile[i].second.substr(0, 80) << " -> " << d.dump();
      EXPECT_TRUE(ids.insert(d["tool_call_id"].get<std::string>()).second) << "answered twice";
    }
  }

  // What every test ends with: an edit and a finish that reaches review.
  static Json Ending() {
    return Json::array({Step("write_file", {{"path", "NOTES.md"}, {"content", "notes\n"}}),
                        Step("finish", {{"summary", "notes"}})});
  }

  std::unique_ptr<ReplayModel> replay_;
};

TEST_F(AgentHostileTest, ReadFileWithAnOverflowingLineIsAnErrorForTheModel) {
  WritePolicy();
  Json replies =
      Json::array({Step("read_file", std::string(R"({"path": "calc.py", "start_line": 1e400})"))});
  for (auto& r : Ending()) replies.push_back(r);
  StartModel(Script(replies));
  StartLoomd();
  RegisterCalc();
  int64_t task = TaskOf(File("overflow"));
  Json t = WaitTaskSettled(task);
  auto results = Events(task, "tool_result");
  EXPECT_EQ(t["state"], "review") << t.dump() << "\n" << Json(results).dump();
  ASSERT_FALSE(results.empty());
  EXPECT_TRUE(results[0]["data"]["error"].get<bool>());
  EXPECT_NE(results[0]["data"]["content"].get<std::string>().find("number overflow"),
            std::string::npos)
      << results[0].dump();
}

TEST_F(AgentHostileTest, AFinishWithANumberSummaryLeavesTheReviewReadable) {
  WritePolicy();
  Json replies = Json::array({Step("write_file", {{"path", "NOTES.md"}, {"content", "notes\n"}}),
                              Step("finish", {{"summary", 5}}),
                              Step("finish", {{"summary", {{"nested", {1, 2}}}}}),
                              Step("finish", {{"summary", "notes"}})});
  StartModel(Script(replies));
  StartLoomd();
  RegisterCalc();
  int64_t task = TaskOf(File("summary"));
  Json t = WaitTaskSettled(task);
  ASSERT_EQ(t["state"], "review") << t.dump();
  auto results = Events(task, "tool_result");
  ASSERT_EQ(results.size(), 4u);
  EXPECT_NE(results[1]["data"]["content"].get<std::string>().find("summary must be a string"),
            std::string::npos)
      << results[1].dump();
  for (int i = 0; i < 3; ++i) {  // read again and again: every GET reads the stored events
    Json review = Get("/v1/reviews/" + std::to_string(task));
    EXPECT_EQ(review["summary"], "notes") << review.dump().substr(0, 300);
  }
  // The review routes with hostile bodies, on a task really in review.
  for (const std::string& body :
       {std::string(R"({"comment": 5})"), std::string(R"({"comment": {"a": 1e400}})"),
        std::string(R"([])"), std::string(60000, '{')}) {
    auto r =
        Call("POST", "/v1/reviews/" + std::to_string(task) + "/request-changes", engineer_, body);
    EXPECT_EQ(r.status, 400) << body.substr(0, 40) << " -> " << r.body;
    r = Call("POST", "/v1/reviews/" + std::to_string(task) + "/reject", engineer_, body);
    EXPECT_EQ(r.status, 400) << r.body;
  }
  EXPECT_EQ(Get("/v1/tasks/" + std::to_string(task))["state"], "review");
}

TEST_F(AgentHostileTest, EveryToolAnswersHostileArgumentsWithAnError) {
  WritePolicy();
  Json replies = Json::array({Calls(HostileReply())});
  for (auto& r : Ending()) replies.push_back(r);
  StartModel(Script(replies));
  StartLoomd();
  RegisterCalc();
  int64_t task = TaskOf(File("hostile tools"));
  Json t = WaitTaskSettled(task);
  EXPECT_EQ(t["state"], "review") << t.dump();
  ExpectAllRefused(task, 0);
  EXPECT_EQ(Call("GET", "/healthz", "").status, 200);
}

// The calls of a reply recorded just before loomd stopped run when it starts
// again; so do events of any shape, which the agent reads back to rebuild the
// conversation.
TEST_F(AgentHostileTest, HostileCallsAndEventsReplayedAfterARestartAreSurvived) {
  WritePolicy();
  // The replay model picks its reply by the number of assistant messages, which
  // the stored garbage makes hard to foresee: every reply edits and finishes.
  Json replies = Json::array();
  for (int i = 0; i < 40; ++i) {
    replies.push_back(Calls(
        {{{"name", "write_file"}, {"arguments", {{"path", "NOTES.md"}, {"content", "notes\n"}}}},
         {{"name", "finish"}, {"arguments", {{"summary", "notes"}}}}}));
  }
  StartModel(Script(replies));
  StartLoomd("0");
  RegisterCalc();
  int64_t fb = File("replayed");
  StopLoomd();

  int64_t task = 0;
  {
    auto stores = OrchestratorStores::Open(DatabasePath(dir_.path()));
    ASSERT_TRUE(stores.ok());
    TaskStore* store = stores->tasks.get();
    auto created = store->Triage();
    ASSERT_TRUE(created.ok() && created->size() == 1u);
    task = (*created)[0];
    auto leased = store->LeaseNext();  // -> running, as when loomd died mid-task
    ASSERT_TRUE(leased.ok() && leased->has_value());
    auto append = [&](const std::string& type, const Json& data) {
      ASSERT_TRUE(store->AppendEvent(task, ParseEventType(type), data).ok()) << type;
    };
    append("prompt", {{"system", 5}, {"user", {{"deep", Json::array()}}}});
    // Events of every wrong shape, as an older loomd or a hand edit might leave.
    for (const char* type : {"llm_reply", "tool_result", "note", "edit_started", "review_comment",
                             "escalation_answered", "tool_retry", "malformed", "command_started"}) {
      for (const Json& data :
           {Json(5), Json("s"), Json::array({1}), Json(nullptr),
            Json{{"message", 5},
                 {"tool_call_id", 7},
                 {"content", {1}},
                 {"name", false},
                 {"verified", "yes"},
                 {"step", "x"},
                 {"comment", 1.5},
                 {"answer", {{"a", {1, 2}}}},
                 {"text", {{"k", 1}}}},
            Json{{"message", {{"tool_calls", "x"}}}},
            Json{{"message",
                  {{"tool_calls", {5, {{"function", 5}}, {{"function", {{"name", 5}}}}}}}}}}) {
        append(type, data);
      }
    }
    // The last reply: every hostile call, none answered yet.
    Json calls = Json::array();
    int n = 0;
    for (const auto& [tool, args] : HostileCalls()) {
      calls.push_back({{"id", "h" + std::to_string(n++)},
                       {"type", "function"},
                       {"function", {{"name", tool}, {"arguments", args}}}});
    }
    append("llm_reply",
           {{"message", {{"role", "assistant"}, {"content", ""}, {"tool_calls", calls}}}});
  }
  StartLoomd("1");
  Json t = WaitTaskSettled(task);
  EXPECT_NE(t.value("state", ""), "") << "loomd answered";
  // The stored garbage replies before the last one add calls that have answers
  // or not; the hostile ones are answered in order after them.
  auto results = Events(task, "tool_result");
  std::vector<Json> hostile_results;
  for (const auto& r : results) {
    const Json& d = r["data"];
    std::string id = d.is_object() && d.contains("tool_call_id") && d["tool_call_id"].is_string()
                         ? d["tool_call_id"].get<std::string>()
                         : "";
    if (!id.empty() && id[0] == 'h') hostile_results.push_back(r);
  }
  auto hostile = HostileCalls();
  ASSERT_EQ(hostile_results.size(), hostile.size());
  for (size_t i = 0; i < hostile.size(); ++i) {
    const Json& d = hostile_results[i]["data"];
    EXPECT_EQ(d["tool_call_id"], "h" + std::to_string(i));
    EXPECT_TRUE(d["error"].get<bool>()) << d.dump().substr(0, 300);
  }
  EXPECT_EQ(Call("GET", "/healthz", "").status, 200);
  // And again: a restart after all that reads the same log.
  StopLoomd();
  StartLoomd("1");
  EXPECT_EQ(Call("GET", "/healthz", "").status, 200);
  Get("/v1/tasks/" + std::to_string(task) + "/events");
  (void)fb;
}

}  // namespace
}  // namespace loom
