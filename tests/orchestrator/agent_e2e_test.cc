// End to end: an in-process loomd with real SQLite, real git repositories
// (libgit2), real bubblewrap and the replay model as the LLM. Feedback goes in
// over HTTP; the test watches the task over HTTP until it settles and checks the
// outcome, the event log, the branch and what the model was sent.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "common/json.h"
#include "orchestrator/agent.h"
#include "orchestrator/cli/commands.h"
#include "orchestrator/replay_model.h"
#include "orchestrator/secrets.h"
#include "orchestrator/stores.h"
#include "repos/workspace.h"
#include "tests/support/daemon_fixture.h"
#include "tests/support/replay_script.h"
#include "tests/support/subprocess.h"
#include "tests/support/test_paths.h"

namespace loom {
namespace {

using testing::Script;
using testing::Step;

// Titles whose fingerprints differ (digits are normalised away): "ab", "bb", ...
std::string Word(int i) {
  return {static_cast<char>('a' + i % 26), static_cast<char>('a' + i / 26)};
}

namespace fs = std::filesystem;
using std::chrono::steady_clock;

Json ReadJsonFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = ParseJson(ss.str());
  EXPECT_TRUE(j.ok()) << path;
  return j.ok() ? *j : Json();
}

std::string Git(const std::string& args) { return loom::testing::CommandOutput("git " + args); }

// A task's workspace name in its repository (TaskWorkspaceKey: `<instance>-<id>`),
// read from its branch `loom/<key>-<slug>`.
std::string Key(const std::string& branch, int64_t id) {
  std::string tail = "-" + std::to_string(id) + "-";
  size_t at = branch.find(tail);
  return at == std::string::npos ? std::to_string(id) : branch.substr(5, at - 5 + tail.size() - 1);
}

class AgentEndToEndTest : public testing::DaemonFixture {
 protected:
  // Starts the replay model with `script` (unless `llm_url` is given) and loomd.
  void Start(Json script, std::vector<std::pair<std::string, std::string>> settings = {},
             std::string llm_url = "") {
    if (llm_url.empty()) {
      auto replay = ReplayModel::Start(std::move(script));
      ASSERT_TRUE(replay.ok()) << replay.status().ToString();
      replay_ = std::move(*replay);
      llm_url = replay_->url();
    }
    settings.emplace_back("llm.url", llm_url);
    settings.emplace_back("llm.retries", "1");
    StartDaemon(settings);
    repo_ = RegisterCalc();
  }

  void TearDown() override {
    DaemonFixture::TearDown();
    if (replay_) replay_->Stop();
  }

  int64_t File(const std::string& kind, const std::string& title, const std::string& body) {
    Json fb = {{"kind", kind}, {"title", title}, {"body", body}, {"repo", "calc"}};
    auto r = Call("POST", "/v1/feedback", reporter_, DumpJson(fb));
    EXPECT_EQ(r.status, 201) << r.body;
    return ParseJson(r.body).value_or(Json::object()).value("id", int64_t{0});
  }

  std::vector<Json> Events(const Json& task, const std::string& type = "") {
    Json r = Get("/v1/tasks/" + std::to_string(task["id"].get<int64_t>()) + "/events");
    std::vector<Json> out;
    for (auto& e : r["items"]) {
      if (type.empty() || e["type"] == type) out.push_back(e);
    }
    return out;
  }

  std::unique_ptr<ReplayModel> replay_;
  std::string repo_;
};

TEST_F(AgentEndToEndTest, FixesABugWithAReproducingTest) {
  Json demo = ReadJsonFile(std::string(LOOM_SOURCE_DIR) + "/examples/calc-demo.json");
  Start(demo["replay"]);
  int64_t fb = File("bug", demo["feedback"]["title"], demo["feedback"]["body"]);
  Json task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "review") << task.dump();
  EXPECT_EQ(task["feedback_ids"], Json::array({fb}));

  // FAIL_TO_PASS: the suite with the agent's test failed on the base tree.
  auto f2p = Events(task, "fail_to_pass");
  ASSERT_EQ(f2p.size(), 1u);
  EXPECT_EQ(f2p[0]["data"]["tests"], Json::array({"tests/test_average.py"}));
  EXPECT_NE(f2p[0]["data"]["base"]["exit_code"], 0);

  Json diff = Get("/v1/tasks/" + std::to_string(task["id"].get<int64_t>()) + "/diff");
  std::string unified = diff.value("unified", "");
  EXPECT_NE(unified.find("+    return total(values) / len(values)"), std::string::npos) << unified;
  EXPECT_NE(unified.find("tests/test_average.py"), std::string::npos);

  // The branch commit carries the trailers; main is untouched.
  std::string branch = task["branch"];
  std::string message = Git("-C " + repo_ + " log -1 --format=%B " + branch);
  EXPECT_NE(message.find("Fix average() dividing by n - 1"), std::string::npos) << message;
  EXPECT_NE(message.find("Loom-Task: " + Key(branch, task["id"].get<int64_t>())),
            std::string::npos);
  EXPECT_NE(message.find("Loom-Feedback: " + std::to_string(fb)), std::string::npos);
  EXPECT_EQ(Git("-C " + repo_ + " rev-list --count main"), "1\n");

  // What the model saw: the tool contract, the task, the instructions file.
  auto requests = replay_->requests();
  ASSERT_FALSE(requests.empty());
  std::set<std::string> tools;
  for (const auto& t : requests[0]["tools"]) tools.insert(t["function"]["name"]);
  EXPECT_EQ(tools, (std::set<std::string>{"list_files", "read_file", "search", "write_file",
                                          "replace_in_file", "run_tests", "run_command",
                                          "request_human", "finish"}));
  std::string system = requests[0]["messages"][0]["content"];
  EXPECT_NE(system.find("AGENTS.md"), std::string::npos);
  EXPECT_NE(system.find("Every bug fix comes with a test"), std::string::npos);
  EXPECT_NE(DumpJson(requests[0]["messages"][1]).find("report page"), std::string::npos);
  // Every step is in the log, with token counts.
  EXPECT_EQ(Events(task, "llm_reply").size(), 8u);
  EXPECT_GT(task["prompt_tokens"].get<int64_t>(), 0);
  EXPECT_EQ(task["steps"], 8);
}

// What a reviewer reads: the reporter's words, the evidence that the agent's test
// reproduces the bug, the verification; and the whole log for who needs it.
TEST_F(AgentEndToEndTest, TheReviewShowsTheFeedbackAndTheFailToPassEvidence) {
  Json demo = ReadJsonFile(std::string(LOOM_SOURCE_DIR) + "/examples/calc-demo.json");
  Start(demo["replay"]);
  std::string body = demo["feedback"]["body"];
  int64_t fb = File("bug", demo["feedback"]["title"], body);
  Json task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "review") << task.dump();
  std::string id = std::to_string(task["id"].get<int64_t>());

  Json review = Get("/v1/reviews/" + id);
  ASSERT_EQ(review["feedback"].size(), 1u) << review.dump();
  EXPECT_EQ(review["feedback"][0]["id"], fb);
  EXPECT_EQ(review["feedback"][0]["body"], body);
  EXPECT_EQ(review["fail_to_pass"]["tests"], Json::array({"tests/test_average.py"}));
  EXPECT_NE(review["fail_to_pass"]["base"]["exit_code"], 0);
  EXPECT_EQ(review["verification"]["outcome"]["exit_code"], 0);
  EXPECT_EQ(review["diff"]["protected_paths"], Json::array());
  // What it used and cost, at the default prices (docs/dashboard.md).
  const Json& usage = review["usage"];
  EXPECT_EQ(usage["prompt_tokens"], task["prompt_tokens"]);
  EXPECT_GE(usage["model_ms"].get<int64_t>(), 0);
  EXPECT_GT(usage["sandbox_cpu_ms"].get<int64_t>(), 0) << "the test runs used CPU";
  const Json& cost = review["cost"];
  double expected = task["prompt_tokens"].get<double>() / 1e6 * 0.5 +
                    task["completion_tokens"].get<double>() / 1e6 * 1.5 +
                    usage["sandbox_cpu_ms"].get<double>() / 3.6e6 * 0.05;
  EXPECT_NEAR(cost["total"].get<double>(), expected, 1e-12) << cost.dump();
  EXPECT_EQ(cost["prices"]["per_gpu_hour"], 2.0);
  Json fleet = Get("/v1/fleet");
  EXPECT_EQ(fleet["model"]["healthy"], true) << fleet.dump();
  EXPECT_EQ(fleet["queue"]["review"], 1);
  EXPECT_EQ(fleet["sandbox"]["kind"], "bubblewrap");

  auto loom = [&](const std::string& args) {
    return testing::RunCommand("LOOM_SERVER=http://127.0.0.1:" + std::to_string(daemon_->port()) +
                               " LOOM_TOKEN=" + engineer_ + " " + testing::LoomBinary() + " " +
                               args + " 2>&1");
  };
  auto show = loom("review show " + id);
  ASSERT_EQ(show.exit_code, 0) << show.out;
  EXPECT_NE(show.out.find(body.substr(0, body.find('\n'))), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("FAIL_TO_PASS"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("tests/test_average.py"), std::string::npos) << show.out;
  EXPECT_EQ(show.out.find("PROTECTED"), std::string::npos) << show.out;

  // The one-line log cuts the system prompt; --full prints it whole.
  auto requests = replay_->requests();
  std::string system = requests.at(0)["messages"][0]["content"];
  std::string tail = system.substr(system.size() - 60);
  auto brief = loom("task log " + id);
  auto full = loom("task log " + id + " --full");
  ASSERT_EQ(full.exit_code, 0) << full.out;
  EXPECT_GT(full.out.size(), brief.out.size() * 2);
  EXPECT_EQ(brief.out.find(tail), std::string::npos);
  EXPECT_NE(full.out.find(tail), std::string::npos);
  EXPECT_NE(full.out.find("Ran 9 tests"), std::string::npos) << full.out.substr(0, 3000);
}

TEST_F(AgentEndToEndTest, AddsAFeature) {
  Json replies = Json::array(
      {Step("replace_in_file", {{"path", "calc.py"},
                                {"old", "def percent(part, whole):"},
                                {"new",
                                 "def maximum(values):\n    \"\"\"The largest value.\"\"\"\n    "
                                 "return max(values)\n\n\n"
                                 "def percent(part, whole):"}}),
       Step("write_file",
            {{"path", "tests/test_maximum.py"},
             {"content",
              "import unittest\n\nimport calc\n\n\nclass MaximumTest(unittest.TestCase):\n"
              "    def test_largest(self):\n        self.assertEqual(calc.maximum([1, 7, 3]), "
              "7)\n"}}),
       Step("run_tests", Json::object()), Step("finish", {{"summary", "Add maximum()"}})});
  Start(Script(replies));
  int64_t fb =
      File("feature", "Add a maximum() helper", "The report page needs the largest value.");
  Json task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "review") << task.dump();
  EXPECT_TRUE(Events(task, "fail_to_pass").empty()) << "features need no failing test";
  auto runs = Events(task, "test_run");
  ASSERT_EQ(runs.size(), 2u);  // run_tests + verification
  EXPECT_EQ(runs[1]["data"]["outcome"]["exit_code"], 0);
}

TEST_F(AgentEndToEndTest, TestsSeeAnEditThatKeepsTheSizeWithinTheSameSecond) {
  // Python caches bytecode keyed on (mtime in seconds, size): after a run, `+x` -> `-x`
  // in the same second used to leave every later run on the old code.
  Json replies = Json::array(
      {Step("replace_in_file",
            {{"path", "calc.py"},
             {"old", "def percent(part, whole):"},
             {"new", "def negate(x):\n    return +x\n\n\ndef percent(part, whole):"}}),
       Step("write_file",
            {{"path", "tests/test_negate.py"},
             {"content",
              "import unittest\n\nimport calc\n\n\nclass NegateTest(unittest.TestCase):\n"
              "    def test_two(self):\n        self.assertEqual(calc.negate(2), -2)\n"}}),
       Step("run_tests", Json::object()),
       Step("replace_in_file", {{"path", "calc.py"}, {"old", "return +x"}, {"new", "return -x"}}),
       Step("run_tests", Json::object()), Step("finish", {{"summary", "Add negate()"}})});
  Start(Script(replies));
  Json task = WaitSettled(File("feature", "Add negate()", "The report needs negative values."));
  ASSERT_EQ(task["state"], "review") << task.dump();
  auto runs = Events(task, "test_run");
  ASSERT_EQ(runs.size(), 3u);  // two run_tests + verification
  EXPECT_NE(runs[0]["data"]["outcome"]["exit_code"], 0);
  EXPECT_EQ(runs[1]["data"]["outcome"]["exit_code"], 0) << runs[1].dump();
}

TEST_F(AgentEndToEndTest, RunTestsArgumentsReachTheTestCommand) {
  // `-k` selects tests by name: a name no test has runs none.
  Json replies = Json::array({Step("run_tests", {{"args", "-k nonexistent"}}),
                              Step("finish", {{"summary", "nothing to do"}})});
  Start(Script(replies));
  Json task = WaitSettled(File("feature", "Check the suite", "Nothing to change."));
  auto runs = Events(task, "test_run");
  ASSERT_GE(runs.size(), 1u) << task.dump();
  std::string out = runs[0]["data"]["outcome"].dump();
  EXPECT_NE(out.find("Ran 0 tests"), std::string::npos) << out;
}

TEST_F(AgentEndToEndTest, ABugFixWithoutAFailingTestIsSentBackToTheAgent) {
  Json replies = Json::array(
      {Step("replace_in_file", {{"path", "calc.py"},
                                {"old", "return total(values) / (len(values) - 1)"},
                                {"new", "return total(values) / len(values)"}}),
       Step("finish", {{"summary", "fix without a test"}}),
       // A test that passes on the old code too does not reproduce the bug.
       Step("write_file",
            {{"path", "tests/test_weak.py"},
             {"content",
              "import unittest\n\nimport calc\n\n\nclass Weak(unittest.TestCase):\n"
              "    def test_total(self):\n        self.assertEqual(calc.total([1]), 1)\n"}}),
       Step("finish", {{"summary", "fix with a weak test"}}),
       Step("write_file",
            {{"path", "tests/test_average.py"},
             {"content",
              "import unittest\n\nimport calc\n\n\nclass Avg(unittest.TestCase):\n"
              "    def test_two(self):\n        self.assertEqual(calc.average([2, 4]), 3)\n"}}),
       Step("finish", {{"summary", "Fix average()"}})});
  Start(Script(replies));
  int64_t fb = File("bug", "average is off", "average([2, 4]) is 6");
  Json task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "review") << task.dump();
  std::vector<std::string> finishes;
  for (const auto& e : Events(task, "tool_result")) {
    if (e["data"]["name"] == "finish") finishes.push_back(e["data"]["content"]);
  }
  ASSERT_EQ(finishes.size(), 3u);
  EXPECT_NE(finishes[0].find("add a test that reproduces the bug"), std::string::npos)
      << finishes[0];
  EXPECT_NE(finishes[1].find("pass on the original code too"), std::string::npos) << finishes[1];
  EXPECT_NE(finishes[2].find("verified and committed"), std::string::npos) << finishes[2];
  // Each refused verification went verifying -> running.
  int back = 0;
  for (const auto& e : Events(task, "state"))
    back += e["data"]["to"] == "running" && e["data"]["from"] == "verifying";
  EXPECT_EQ(back, 2);
}

TEST_F(AgentEndToEndTest, AQuestionIsAnsweredWithoutEditsTestsOrACommit) {
  Start(Script(Json::array(
      {Step("read_file", {{"path", "calc.py"}}),
       Step("write_file", {{"path", "calc.py"}, {"content", "def average(v):\n    return 0\n"}}),
       Step("finish", {{"summary", "average() divides the total by len(values) - 1."}})})));
  int64_t fb = File("question", "How does average() divide?", "By n or by n - 1?");
  Json task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "answered") << task.dump();
  EXPECT_EQ(task["answer"], "average() divides the total by len(values) - 1.");
  auto results = Events(task, "tool_result");
  ASSERT_EQ(results.size(), 3u);
  EXPECT_TRUE(results[1]["data"]["error"].get<bool>());
  EXPECT_NE(results[1]["data"]["content"].get<std::string>().find("this task is a question"),
            std::string::npos);
  // The suite never ran, nothing was committed, and once its slot let go the
  // task left no worktree or branch behind (an answer is all it leaves).
  EXPECT_TRUE(Events(task, "test_run").empty());
  EXPECT_EQ(Events(task, "llm_reply").size(), 3u);
  for (int i = 0; i < 250 && !Git("-C " + repo_ + " branch --list 'loom/*'").empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(Git("-C " + repo_ + " branch --list 'loom/*'"), "");
  EXPECT_EQ(Git("-C " + repo_ + " rev-list --count --all"), "1\n") << "no commit was made";
  EXPECT_FALSE(fs::exists(dir_.path() + "/worktrees/calc/loom-" +
                          std::to_string(task["id"].get<int64_t>())));
  Json item = Get("/v1/feedback/" + std::to_string(fb));
  EXPECT_EQ(item["status"], "answered");
  EXPECT_EQ(item["resolution"], "average() divides the total by len(values) - 1.")
      << "the reporter reads the answer on their item";
}

TEST_F(AgentEndToEndTest, GarbageFromTheModelFailsTheTaskWithAReason) {
  Start(Script(Json::array({{{"raw", "<html>definitely not a completion</html>"}}})));
  int64_t fb = File("feature", "anything", "anything");
  Json task = WaitSettled(fb);
  EXPECT_EQ(task["state"], "failed");
  EXPECT_NE(task["reason"].get<std::string>().find("malformed"), std::string::npos) << task.dump();
  EXPECT_EQ(Events(task, "malformed").size(), 4u);
}

TEST_F(AgentEndToEndTest, BadToolCallsAreAnsweredAsErrorsAndNothingEscapes) {
  std::string outside = dir_.path() + "/escaped.txt";
  Json replies =
      Json::array({Step("delete_everything", Json::object()),
                   Step("write_file", std::string("{not json")), Step("read_file", Json::object()),
                   Step("write_file", {{"path", "../escaped.txt"}, {"content", "x"}}),
                   Step("write_file", {{"path", outside}, {"content", "x"}}),
                   Step("write_file", {{"path", ".git/config"}, {"content", "x"}}),
                   Step("request_human", {{"kind", "pizza"}, {"summary", "hungry"}}),
                   Step("run_command", {{"command", "echo hi > /outside.txt; echo done"}}),
                   Step("write_file", {{"path", "NOTES.md"}, {"content", "notes\n"}}),
                   Step("finish", {{"summary", "notes"}})});
  Start(Script(replies));
  int64_t fb = File("feature", "try bad calls", "x");
  Json task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "review") << task.dump();
  auto results = Events(task, "tool_result");
  ASSERT_EQ(results.size(), 10u);
  EXPECT_NE(
      results[0]["data"]["content"].get<std::string>().find("unknown tool 'delete_everything'"),
      std::string::npos);
  EXPECT_NE(results[1]["data"]["content"].get<std::string>().find("not a JSON object"),
            std::string::npos);
  EXPECT_NE(results[2]["data"]["content"].get<std::string>().find("needs the argument 'path'"),
            std::string::npos);
  for (int i = 0; i < 7; ++i) EXPECT_TRUE(results[i]["data"]["error"].get<bool>()) << i;
  EXPECT_NE(results[7]["data"]["content"].get<std::string>().find("done"), std::string::npos);
  EXPECT_FALSE(fs::exists(outside));
  EXPECT_FALSE(fs::exists("/outside.txt"));
  EXPECT_FALSE(fs::exists(dir_.path() + "/worktrees/escaped.txt"));
}

TEST_F(AgentEndToEndTest, AnEndlessLoopIsToldThenStoppedAsStuck) {
  Json replies = Json::array();
  for (int i = 0; i < 10; ++i) replies.push_back(Step("read_file", {{"path", "calc.py"}}));
  Start(Script(replies));
  int64_t fb = File("feature", "loop forever", "x");
  Json task = WaitSettled(fb);
  EXPECT_EQ(task["state"], "failed");
  EXPECT_NE(task["reason"].get<std::string>().find("stuck"), std::string::npos) << task.dump();
  auto notes = Events(task, "note");
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0]["data"]["text"].get<std::string>().find("same read_file call"),
            std::string::npos);
  EXPECT_EQ(Events(task, "llm_reply").size(), 6u);
}

TEST_F(AgentEndToEndTest, TheStepBudgetEndsATask) {
  Json replies = Json::array();
  for (int i = 0; i < 10; ++i) replies.push_back(Step("list_files", {{"path", std::to_string(i)}}));
  fs::create_directories(dir_.path() + "/policies");
  std::ofstream(dir_.path() + "/policies/calc.toml") << "[budgets]\nmax_steps = 3\n";
  Start(Script(replies));
  Json task = WaitSettled(File("feature", "wander", "x"));
  EXPECT_EQ(task["state"], "failed");
  EXPECT_NE(task["reason"].get<std::string>().find("step budget"), std::string::npos);
  EXPECT_EQ(task["steps"], 3);
}

TEST_F(AgentEndToEndTest, ModelServerDownParksTheTaskWithAnEscalation) {
  Start(Json(), {{"llm.timeout_ms", "2000"}}, "http://127.0.0.1:1/v1");
  int64_t fb = File("bug", "needs a model", "x");
  Json task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "blocked") << task.dump();
  Json open = Get("/v1/escalations");
  ASSERT_EQ(open["items"].size(), 1u);
  EXPECT_EQ(open["items"][0]["kind"], "gpu");
  EXPECT_EQ(open["items"][0]["task_id"], task["id"]);
  // An answer requeues the task; the model is still down, so it parks again.
  int64_t esc = open["items"][0]["id"];
  auto r = Call("POST", "/v1/escalations/" + std::to_string(esc) + "/answer", engineer_,
                R"({"text": "started loom-infer"})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto deadline = steady_clock::now() + std::chrono::seconds(30);
  while (Get("/v1/escalations")["items"].size() < 1 && steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  task = WaitSettled(fb);
  EXPECT_EQ(task["state"], "blocked");
  EXPECT_EQ(Get("/v1/escalations?state=all")["items"].size(), 2u);
  EXPECT_EQ(task["steps"], 0) << "no step is counted for a model that never answered";
}

TEST_F(AgentEndToEndTest, ASlowModelIsWaitedFor) {
  Json replies = Json::array({Step("write_file", {{"path", "NOTES.md"}, {"content", "x\n"}}),
                              Step("finish", {{"summary", "done"}})});
  replies[0]["delay_ms"] = 1500;
  Start(Script(replies), {{"llm.timeout_ms", "10000"}});
  Json task = WaitSettled(File("feature", "slow thinker", "x"));
  EXPECT_EQ(task["state"], "review") << task.dump();
  EXPECT_GE(Events(task, "llm_reply")[0]["data"]["ms"].get<int64_t>(), 1400);
}

// The entries of data_dir/worktrees/calc: the tasks' worktrees.
std::vector<std::string> Worktrees(const std::string& data_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(data_dir + "/worktrees/calc", ec))
    out.push_back(e.path().string());
  return out;
}

TEST_F(AgentEndToEndTest, CancellingARunningTaskKillsItsSandboxRunAndRemovesItsFiles) {
  Start(Script(Json::array({Step("run_command", {{"command", "sleep 120"}}),
                            Step("finish", {{"summary", "never reached"}})})));
  int64_t fb = File("feature", "sleep a while", "x");
  // Until the sleep runs in the sandbox.
  Json task;
  auto deadline = steady_clock::now() + std::chrono::seconds(60);
  while (steady_clock::now() < deadline) {
    Json item = Get("/v1/feedback/" + std::to_string(fb));
    if (item.contains("task_id")) {
      task = Get("/v1/tasks/" + std::to_string(item["task_id"].get<int64_t>()));
      if (!Events(task, "command_started").empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_FALSE(Events(task, "command_started").empty()) << task.dump();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::string id = std::to_string(task["id"].get<int64_t>());
  ASSERT_EQ(Worktrees(dir_.path()).size(), 1u);
  ASSERT_NE(Git("-C " + repo_ + " branch --list 'loom/*'"), "");

  auto started = steady_clock::now();
  auto r = Call("POST", "/v1/tasks/" + id + "/cancel", engineer_,
                R"({"reason": "filed against the wrong app"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseJson(r.body)->value("state", ""), "cancelled");
  // The slot lets go once the sleep is killed: then the worktree and the branch
  // are removed, and the task forgets its branch last.
  while (Get("/v1/tasks/" + id).contains("branch") &&
         steady_clock::now() - started < std::chrono::seconds(30)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_LT(steady_clock::now() - started, std::chrono::seconds(10)) << "the sleep was not killed";
  EXPECT_TRUE(Worktrees(dir_.path()).empty());
  EXPECT_EQ(Git("-C " + repo_ + " branch --list 'loom/*'"), "");
  EXPECT_FALSE(fs::exists(dir_.path() + "/base/" + id));
  task = Get("/v1/tasks/" + id);
  EXPECT_EQ(task["state"], "cancelled");
  EXPECT_FALSE(task.contains("branch"));
  auto results = Events(task, "tool_result");
  ASSERT_EQ(results.size(), 1u);
  EXPECT_NE(results[0]["data"]["content"].get<std::string>().find("cancelled"), std::string::npos)
      << results[0].dump();
  EXPECT_TRUE(Events(task, "llm_reply").size() == 1u) << "no model call after the cancel";
  Json item = Get("/v1/feedback/" + std::to_string(fb));
  EXPECT_EQ(item["status"], "cancelled");
  EXPECT_EQ(item["resolution"], "cancelled by an engineer: filed against the wrong app");
  // Nothing to cancel twice.
  EXPECT_EQ(Call("POST", "/v1/tasks/" + id + "/cancel", engineer_).status, 409);
  EXPECT_EQ(Call("POST", "/v1/tasks/" + id + "/cancel", reporter_).status, 403);
}

TEST_F(AgentEndToEndTest, CancellingABlockedTaskClosesItsEscalation) {
  Start(Json(), {{"llm.timeout_ms", "2000"}}, "http://127.0.0.1:1/v1");
  int64_t fb = File("bug", "needs a model", "x");
  Json task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "blocked") << task.dump();
  std::string id = std::to_string(task["id"].get<int64_t>());
  auto r = Call("POST", "/v1/tasks/" + id + "/cancel", engineer_, "");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(Get("/v1/escalations")["items"].empty());
  EXPECT_EQ(Get("/v1/escalations?state=all")["items"][0]["state"], "closed");
  EXPECT_EQ(Get("/v1/feedback/" + std::to_string(fb))["resolution"], "cancelled by an engineer");
  EXPECT_TRUE(Worktrees(dir_.path()).empty());
  EXPECT_EQ(Git("-C " + repo_ + " branch --list 'loom/*'"), "");
}

TEST_F(AgentEndToEndTest, ARetriedFailedTaskStartsAfreshAndSucceedsWithMoreBudget) {
  fs::create_directories(dir_.path() + "/policies");
  std::ofstream(dir_.path() + "/policies/calc.toml") << "[budgets]\nmax_steps = 2\n";
  Start(Script(Json::array({Step("write_file", {{"path", "NOTES.md"}, {"content", "notes\n"}}),
                            Step("list_files", {{"path", "."}}),
                            Step("finish", {{"summary", "Add notes"}})})));
  int64_t fb = File("feature", "write notes", "x");
  Json task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "failed") << task.dump();
  EXPECT_NE(task["reason"].get<std::string>().find("step budget (2"), std::string::npos);
  Json item = Get("/v1/feedback/" + std::to_string(fb));
  EXPECT_EQ(item["status"], "failed");
  EXPECT_EQ(item["resolution"], task["reason"]);
  std::string id = std::to_string(task["id"].get<int64_t>());

  EXPECT_EQ(Call("POST", "/v1/tasks/" + id + "/retry", engineer_, R"({"extra_steps": -1})").status,
            400);
  auto r = Call("POST", "/v1/tasks/" + id + "/retry", engineer_, R"({"extra_steps": 1})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseJson(r.body)->value("extra_steps", 0), 1);
  task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "review") << task.dump();
  EXPECT_EQ(task["steps"], 5) << "2 before the retry, 3 after";
  EXPECT_EQ(task["base_commit"], Git("-C " + repo_ + " rev-parse main").substr(0, 40));
  EXPECT_EQ(Git("-C " + repo_ + " show " + task["branch"].get<std::string>() + ":NOTES.md"),
            "notes\n");
  // The log says who retried it, and the model saw a new conversation.
  auto retried = Events(task, "retried");
  ASSERT_EQ(retried.size(), 1u);
  EXPECT_TRUE(retried[0]["data"]["by"].is_number_integer());
  EXPECT_GT(retried[0]["data"]["by"].get<int64_t>(), 0);
  EXPECT_EQ(Events(task, "prompt").size(), 2u);
  int fresh = 0;
  for (const auto& req : replay_->requests()) fresh += req["messages"].size() == 2;
  EXPECT_EQ(fresh, 2);
  EXPECT_EQ(Get("/v1/feedback/" + std::to_string(fb))["status"], "in_review");
}

TEST_F(AgentEndToEndTest, RetryAndCancelAreRefusedForATaskInReview) {
  Start(Script(Json::array({Step("write_file", {{"path", "NOTES.md"}, {"content", "notes\n"}}),
                            Step("finish", {{"summary", "Add notes"}})})));
  Json task = WaitSettled(File("feature", "write notes", "x"));
  ASSERT_EQ(task["state"], "review") << task.dump();
  std::string id = std::to_string(task["id"].get<int64_t>());
  auto retry = Call("POST", "/v1/tasks/" + id + "/retry", engineer_, R"({"more_budget": true})");
  EXPECT_EQ(retry.status, 409) << retry.body;
  EXPECT_NE(retry.body.find("is review: only failed or cancelled tasks can be retried"),
            std::string::npos)
      << retry.body;
  EXPECT_EQ(Call("POST", "/v1/tasks/" + id + "/cancel", engineer_).status, 409);
  EXPECT_EQ(Call("POST", "/v1/tasks/999/retry", engineer_).status, 404);
  EXPECT_EQ(Get("/v1/tasks/" + id)["state"], "review");
  EXPECT_NE(Git("-C " + repo_ + " branch --list 'loom/*'"), "");
}

// review.max_waiting: at the bound, a repository's next task waits in the queue
// (its reason says why) with slots free, and starts once a review ends.
TEST_F(AgentEndToEndTest, AtTheReviewBoundTheNextTaskWaitsUntilAReviewEnds) {
  fs::create_directories(dir_.path() + "/policies");
  std::ofstream(dir_.path() + "/policies/calc.toml") << "[review]\nmax_waiting = 1\n";
  Start(Script(Json::array({Step("write_file", {{"path", "NOTES.md"}, {"content", "x\n"}}),
                            Step("finish", {{"summary", "notes"}})})),
        {{"agents", "2"}});
  Json first = WaitSettled(File("feature", "first notes", "x"));
  ASSERT_EQ(first["state"], "review") << first.dump();
  int64_t second_fb = File("feature", "second notes", "x");
  Json second;
  for (int i = 0; i < 100; ++i) {  // triaged, and then passed over by both slots
    Json item = Get("/v1/feedback/" + std::to_string(second_fb));
    if (item.contains("task_id")) {
      second = Get("/v1/tasks/" + std::to_string(item["task_id"].get<int64_t>()));
      if (second.value("reason", "").find("review.max_waiting") != std::string::npos) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(second["state"], "queued") << second.dump();
  EXPECT_NE(second.value("reason", "").find("1 tasks of calc are in review"), std::string::npos)
      << second.dump();
  auto r = Call("POST", "/v1/reviews/" + std::to_string(first["id"].get<int64_t>()) + "/reject",
                engineer_, R"({"reason": "not now"})");
  ASSERT_EQ(r.status, 200) << r.body;
  // The rejection wakes the slots: the waiting task goes through at once.
  second = WaitSettled(second_fb, std::chrono::seconds(4));
  EXPECT_EQ(second["state"], "review") << second.dump();
}

TEST_F(AgentEndToEndTest, TwentyTasksOnFourSlots) {
  Json replies =
      Json::array({Step("write_file", {{"path", "NOTES.md"}, {"content", "x\n"}}),
                   Step("run_tests", Json::object()), Step("finish", {{"summary", "checked"}})});
  Start(Script(replies), {{"agents", "4"}});
  std::vector<int64_t> items;
  for (int i = 0; i < 20; ++i) {
    items.push_back(File("feature", "request about module " + Word(i), "x"));
  }
  size_t max_running = 0;
  auto deadline = steady_clock::now() + std::chrono::seconds(120);
  while (steady_clock::now() < deadline) {
    // One read of every task, so a task moving on is not counted twice.
    size_t active = 0, in_review = 0;
    Json tasks = Get("/v1/tasks?limit=500");
    for (const auto& t : tasks["items"]) {
      active += t["state"] == "running" || t["state"] == "verifying";
      in_review += t["state"] == "review";
    }
    max_running = std::max(max_running, active);
    if (in_review == 20) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_LE(max_running, 4u);
  std::set<std::string> branches;
  for (int64_t fb : items) {
    Json task = WaitSettled(fb, std::chrono::seconds(5));
    EXPECT_EQ(task["state"], "review") << task.dump();
    branches.insert(task.value("branch", ""));
    int leases = 0;
    for (const auto& e : Events(task, "state"))
      leases += e["data"]["to"] == "running" && e["data"]["from"] == "queued";
    EXPECT_EQ(leases, 1) << "task " << task["id"] << " ran more than once";
  }
  EXPECT_EQ(branches.size(), 20u);
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

// Reviews: the calc bug fixed by the recorded conversation, then decided on.
class ReviewTest : public AgentEndToEndTest {
 protected:
  // The demo's conversation, followed by `more` replies for after the review.
  Json ScriptThen(Json more) {
    Json demo = ReadJsonFile(std::string(LOOM_SOURCE_DIR) + "/examples/calc-demo.json");
    Json replies = demo["replay"]["conversations"][0]["replies"];
    for (auto& r : more) replies.push_back(r);
    title_ = demo["feedback"]["title"];
    return Script(replies);
  }

  Json FixedBug(const std::string& token) {
    Json fb = {
        {"kind", "bug"}, {"title", title_}, {"body", "average([2, 4]) is 6"}, {"repo", "calc"}};
    auto r = Call("POST", "/v1/feedback", token, DumpJson(fb));
    EXPECT_EQ(r.status, 201) << r.body;
    feedback_id_ = ParseJson(r.body).value_or(Json::object()).value("id", int64_t{0});
    Json task = WaitSettled(feedback_id_);
    EXPECT_EQ(task["state"], "review") << task.dump();
    return task;
  }

  testing::ClientResponse Decide(const Json& task, const std::string& what,
                                 const std::string& token, const std::string& body = "") {
    return Call("POST", "/v1/reviews/" + std::to_string(task["id"].get<int64_t>()) + "/" + what,
                token, body);
  }

  std::string title_;
  int64_t feedback_id_ = 0;
};

TEST_F(ReviewTest, ApproveMergesAndTheReporterSeesIt) {
  Start(ScriptThen(Json::array()));
  Json task = FixedBug(reporter_);
  Json review = Get("/v1/reviews/" + std::to_string(task["id"].get<int64_t>()));
  EXPECT_NE(review["diff"]["unified"].get<std::string>().find("len(values)"), std::string::npos);
  EXPECT_EQ(review["verification"]["outcome"]["exit_code"], 0);
  EXPECT_NE(review["summary"].get<std::string>().find("Fix average()"), std::string::npos);
  EXPECT_EQ(review["tool_calls"]["run_tests"], 2);
  EXPECT_EQ(Get("/v1/feedback/" + std::to_string(feedback_id_))["status"], "in_review");

  auto r = Decide(task, "approve", engineer_);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseJson(r.body)->value("merge", ""), "fast-forward");
  EXPECT_NE(Git("-C " + repo_ + " show main:calc.py").find("return total(values) / len(values)"),
            std::string::npos);
  EXPECT_EQ(Get("/v1/tasks/" + std::to_string(task["id"].get<int64_t>()))["state"], "merged");
  EXPECT_EQ(Get("/v1/feedback/" + std::to_string(feedback_id_))["status"], "merged");
  // Retention by the default policy: the worktree and snapshot ref go, the branch stays.
  const std::string id = Key(task["branch"], task["id"].get<int64_t>());
  EXPECT_FALSE(fs::exists(dir_.path() + "/worktrees/calc/loom-" + id));
  EXPECT_EQ(Git("-C " + repo_ + " for-each-ref refs/loom/snapshots/" + id), "");
  EXPECT_NE(Git("-C " + repo_ + " branch --list 'loom/" + id + "-*'"), "");
  auto again = Decide(task, "approve", engineer_);
  EXPECT_EQ(again.status, 409) << again.body;
}

TEST_F(ReviewTest, WhoeverRequestedATaskCannotApproveIt) {
  Start(ScriptThen(Json::array()));
  Json task = FixedBug(engineer_);
  auto r = Decide(task, "approve", engineer_);
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(Get("/v1/tasks/" + std::to_string(task["id"].get<int64_t>()))["state"], "review");
  EXPECT_EQ(Decide(task, "approve", admin_).status, 200);
  EXPECT_EQ(Decide(task, "approve", reporter_).status, 403) << "reporters never approve";
}

TEST_F(ReviewTest, RequestChangesGivesTheCommentToTheAgentOnTheSameBranch) {
  Start(ScriptThen(Json::array(
      {Step("replace_in_file",
            {{"path", "calc.py"},
             {"old", "    \"\"\"The arithmetic mean. Raises ValueError for an empty list.\"\"\""},
             {"new",
              "    \"\"\"The arithmetic mean (sum / count). Raises ValueError for an empty "
              "list.\"\"\""}}),
       Step("finish", {{"summary", "Fix average() and say how it is computed"}})})));
  Json task = FixedBug(reporter_);
  std::string branch = task["branch"];
  auto r = Decide(task, "request-changes", engineer_,
                  R"({"comment": "Please say in the docstring how the mean is computed."})");
  ASSERT_EQ(r.status, 200) << r.body;
  task = WaitSettled(feedback_id_);
  ASSERT_EQ(task["state"], "review") << task.dump();
  EXPECT_EQ(task["branch"], branch);
  EXPECT_EQ(Git("-C " + repo_ + " rev-list --count main.." + branch), "2\n");
  auto requests = replay_->requests();
  EXPECT_NE(DumpJson(requests.back()["messages"]).find("how the mean is computed"),
            std::string::npos);
  EXPECT_EQ(Events(task, "review_comment").size(), 1u);
}

// Line comments (file, line, text) reach the agent's next turn, from the CLI
// through the API and the "review_comment" event.
TEST_F(ReviewTest, LineCommentsReachTheAgentWithTheirFileAndLine) {
  Start(ScriptThen(Json::array(
      {Step("replace_in_file",
            {{"path", "calc.py"},
             {"old", "    \"\"\"The arithmetic mean. Raises ValueError for an empty list.\"\"\""},
             {"new",
              "    \"\"\"The arithmetic mean (sum / count). Raises ValueError for an empty "
              "list.\"\"\""}}),
       Step("finish", {{"summary", "Say how the mean is computed"}})})));
  Json task = FixedBug(reporter_);
  const std::string id = std::to_string(task["id"].get<int64_t>());
  auto loom = [&](const std::string& args) {
    return testing::RunCommand("LOOM_SERVER=http://127.0.0.1:" + std::to_string(daemon_->port()) +
                               " LOOM_TOKEN=" + engineer_ + " " + testing::LoomBinary() + " " +
                               args + " 2>&1");
  };
  // Refused before anything is sent: nothing to say, or a --line without its line.
  EXPECT_EQ(loom("review request-changes " + id).exit_code, cli::kExitUsage);
  EXPECT_EQ(loom("review request-changes " + id + " --line calc.py=oops").exit_code,
            cli::kExitUsage);
  EXPECT_EQ(loom("review request-changes " + id + " --line calc.py:x=oops").exit_code,
            cli::kExitUsage);
  EXPECT_EQ(Get("/v1/tasks/" + id)["state"], "review");
  auto r = loom("review request-changes " + id +
                " --comment 'Two things.' --line 'calc.py:4=Say how the mean is computed.'"
                " --line 'tests/test_calc.py:1=Keep: this import is needed'");
  ASSERT_EQ(r.exit_code, cli::kExitOk) << r.out;
  task = WaitSettled(feedback_id_);
  ASSERT_EQ(task["state"], "review") << task.dump();
  auto events = Events(task, "review_comment");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["data"]["comment"], "Two things.");
  EXPECT_EQ(events[0]["data"]["comments"],
            Json::parse(R"([{"path": "calc.py", "line": 4, "body": "Say how the mean is computed."},
                            {"path": "tests/test_calc.py", "line": 1,
                             "body": "Keep: this import is needed"}])"));
  // The turn after the review: the comment, then each file:line with its text.
  auto requests = replay_->requests();
  Json turn;
  for (const Json& m : requests.back()["messages"]) {
    if (m.value("role", "") == "user" &&
        m.value("content", "").find("requested changes") != std::string::npos) {
      turn = m;
    }
  }
  ASSERT_TRUE(turn.is_object()) << DumpJson(requests.back()["messages"]);
  std::string text = turn["content"];
  EXPECT_NE(text.find("Two things."), std::string::npos) << text;
  EXPECT_NE(text.find("- calc.py:4\n    Say how the mean is computed."), std::string::npos) << text;
  EXPECT_NE(text.find("- tests/test_calc.py:1\n    Keep: this import is needed"), std::string::npos)
      << text;
}

TEST_F(ReviewTest, RequestChangesRefusesLineCommentsItCannotUse) {
  Start(ScriptThen(Json::array()));
  Json task = FixedBug(reporter_);
  struct Case {
    const char* body;
    const char* field;
  };
  for (const Case& c : std::vector<Case>{
           {R"({})", "comment"},
           {R"({"comment": "", "comments": []})", "comment"},
           {R"({"comments": {}})", "comments"},
           {R"({"comments": [{"line": 3, "body": "b"}]})", "comments[0].path"},
           {R"({"comments": [{"path": "a.py", "body": "b"}]})", "comments[0].line"},
           {R"({"comments": [{"path": "a.py", "line": 0, "body": "b"}]})", "comments[0].line"},
           {R"({"comments": [{"path": "a.py", "line": "3", "body": "b"}]})", "comments[0].line"},
           {R"({"comments": [{"path": "a.py", "line": 3, "body": ""}]})", "comments[0].body"},
           {R"({"comments": [{"path": "a.py", "line": 3}]})", "comments[0].body"},
           {R"({"comments": [{"path": "/etc/passwd", "line": 3, "body": "b"}]})",
            "comments[0].path"},
           {R"({"comments": [{"path": "a/../../x", "line": 3, "body": "b"}]})", "comments[0].path"},
           {R"({"comments": [{"path": "a.py", "line": 1, "body": "b"},
                             {"path": "a.py", "line": 1, "body": "b", "side": "LEFT"}]})",
            "comments[1].side"},
       }) {
    auto r = Decide(task, "request-changes", engineer_, c.body);
    EXPECT_EQ(r.status, 400) << c.body << " -> " << r.body;
    EXPECT_EQ(ParseJson(r.body).value_or(Json::object())["error"].value("field", ""), c.field)
        << c.body << " -> " << r.body;
  }
  EXPECT_EQ(Get("/v1/tasks/" + std::to_string(task["id"].get<int64_t>()))["state"], "review");
  EXPECT_EQ(Events(task, "review_comment").size(), 0u);
}

TEST_F(ReviewTest, RejectClosesTheTaskAndTellsTheReporter) {
  Start(ScriptThen(Json::array()));
  Json task = FixedBug(reporter_);
  EXPECT_EQ(Decide(task, "reject", engineer_, "{}").status, 400);
  auto r = Decide(task, "reject", engineer_, R"({"reason": "not a bug: by design"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseJson(r.body)->value("state", ""), "rejected");
  EXPECT_EQ(Get("/v1/feedback/" + std::to_string(feedback_id_))["status"], "rejected");
  EXPECT_EQ(Git("-C " + repo_ + " rev-list --count main"), "1\n") << "nothing merged";
  // Retention by the default policy: worktree, snapshot ref and branch go.
  const std::string id = std::to_string(task["id"].get<int64_t>());
  const std::string key = Key(task["branch"], task["id"].get<int64_t>());
  EXPECT_FALSE(fs::exists(dir_.path() + "/worktrees/calc/loom-" + key));
  EXPECT_EQ(Git("-C " + repo_ + " for-each-ref refs/loom/snapshots/" + key), "");
  EXPECT_EQ(Git("-C " + repo_ + " branch --list 'loom/*'"), "");
  EXPECT_FALSE(Get("/v1/tasks/" + id).contains("branch"));
}

TEST_F(ReviewTest, AMergeConflictSendsTheTaskBackToTheAgent) {
  const std::string upstream = "return sum(values) / (len(values) - 1)  # upstream";
  Json test_file =
      ReadJsonFile(std::string(LOOM_SOURCE_DIR) +
                   "/examples/calc-demo.json")["replay"]["conversations"][0]["replies"][3]
                                              ["message"]["tool_calls"][0]["arguments"];
  Start(ScriptThen(Json::array(
      {Step("write_file", test_file),
       Step("replace_in_file",
            {{"path", "calc.py"}, {"old", upstream}, {"new", "return sum(values) / len(values)"}}),
       Step("finish", {{"summary", "Fix average() on the new main"}})})));
  Json task = FixedBug(reporter_);
  // Meanwhile someone changes the same line on main.
  std::string sh = "cd " + repo_ + " && sed -i 's|return total(values) / (len(values) - 1)|" +
                   upstream +
                   "|' calc.py && git -c user.name=T -c user.email=t@e commit -qam upstream";
  ASSERT_EQ(std::system(sh.c_str()), 0);
  auto r = Decide(task, "approve", engineer_);
  ASSERT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(ParseJson(r.body)->value("conflicting_paths", Json()), Json::array({"calc.py"}));
  task = WaitSettled(feedback_id_);
  ASSERT_EQ(task["state"], "review") << task.dump();
  r = Decide(task, "approve", engineer_);
  ASSERT_EQ(r.status, 200) << r.body;
  std::string main_calc = Git("-C " + repo_ + " show main:calc.py");
  EXPECT_NE(main_calc.find("return sum(values) / len(values)"), std::string::npos) << main_calc;
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

TEST_F(AgentEndToEndTest, ThePolicyDecidesPathsEscalationsAndTheTestCommand) {
  fs::create_directories(dir_.path() + "/policies");
  std::ofstream(dir_.path() + "/policies/calc.toml")
      << "[repo]\n"
         "test_command = \"python3 -m unittest discover -s tests -t . && echo POLICY-SUITE\"\n"
         "[paths]\n"
         "allowed = [\"calc.py\", \"tests/\"]\n"
         "[escalations]\n"
         "allowed = [\"question\"]\n";
  Json replies = Json::array(
      {Step("write_file", {{"path", "README.md"}, {"content", "outside the allowed paths"}}),
       Step("write_file", {{"path", "AGENTS.md"}, {"content", "protected"}}),
       Step("request_human", {{"kind", "network"}, {"summary", "needs pypi"}}),
       Step("write_file", {{"path", "tests/test_extra.py"}, {"content", "import unittest\n"}}),
       Step("finish", {{"summary", "done"}})});
  Start(Script(replies));
  Json task = WaitSettled(File("feature", "policy bound", "x"));
  ASSERT_EQ(task["state"], "review") << task.dump();
  auto results = Events(task, "tool_result");
  ASSERT_EQ(results.size(), 5u);
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(results[i]["data"]["error"].get<bool>()) << results[i].dump();
  EXPECT_NE(results[2]["data"]["content"].get<std::string>().find("policy does not let agents ask"),
            std::string::npos);
  EXPECT_FALSE(results[3]["data"]["error"].get<bool>());
  auto runs = Events(task, "test_run");
  ASSERT_FALSE(runs.empty());
  EXPECT_NE(runs.back()["data"]["outcome"]["stdout"].get<std::string>().find("POLICY-SUITE"),
            std::string::npos);
}

TEST(DaemonPolicyTest, AnInvalidPolicyStopsLoomdAndNamesFileLineAndField) {
  testing::TempDir dir;
  fs::create_directories(dir.path() + "/policies");
  std::ofstream(dir.path() + "/policies/web.toml") << "[budgets]\nmax_step = 3\n";
  Config config(DaemonConfigSchema());
  ASSERT_TRUE(config.Set("data_dir", dir.path(), "test").ok());
  ASSERT_TRUE(config.Set("listen", "127.0.0.1:0", "test").ok());
  auto d = Daemon::Start(config);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("web.toml:2:1"), std::string::npos) << d.status().ToString();
  EXPECT_NE(d.status().message().find("did you mean max_steps"), std::string::npos)
      << d.status().ToString();
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

TEST_F(AgentEndToEndTest, ASecretReachesTheSandboxButNeverTheLogTheModelOrTheDisk) {
  const std::string value = "s3cr3t-value-42";
  fs::create_directories(dir_.path() + "/policies");
  std::ofstream(dir_.path() + "/policies/calc.toml") << "[secrets]\nallowed = [\"DEPLOY_TOKEN\"]\n";
  Json replies = Json::array(
      {Step("request_human", {{"kind", "api_key"},
                              {"summary", "the suite needs a deploy token"},
                              {"secret_name", "DEPLOY_TOKEN"}}),
       Step("run_command",
            {{"command", "echo token=$DEPLOY_TOKEN; test ${#DEPLOY_TOKEN} -eq 15 && echo MATCH"}}),
       Step("write_file", {{"path", "NOTES.md"}, {"content", "x\n"}}),
       Step("finish", {{"summary", "done"}})});
  ::testing::internal::CaptureStderr();  // loomd's log, searched at the end
  Start(Script(replies));
  int64_t fb = File("feature", "needs a token", "x");
  Json task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "blocked") << task.dump();
  Json open = Get("/v1/escalations");
  ASSERT_EQ(open["items"].size(), 1u);
  EXPECT_EQ(open["items"][0]["kind"], "api_key");
  EXPECT_EQ(open["items"][0]["secret_name"], "DEPLOY_TOKEN");
  std::string target =
      "/v1/escalations/" + std::to_string(open["items"][0]["id"].get<int64_t>()) + "/answer";
  // Only a secret the policy allows is taken.
  auto refused =
      Call("POST", target, engineer_, R"({"secret": {"name": "OTHER", "value": "xxxxxxxx"}})");
  EXPECT_EQ(refused.status, 403) << refused.body;
  auto r = Call("POST", target, engineer_,
                DumpJson({{"secret", {{"name", "DEPLOY_TOKEN"}, {"value", value}}}}));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body.find(value), std::string::npos);
  task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "review") << task.dump();
  auto results = Events(task, "tool_result");
  std::string shown = results[1]["data"]["content"];
  EXPECT_NE(shown.find("token=[secret DEPLOY_TOKEN]"), std::string::npos) << shown;
  EXPECT_NE(shown.find("MATCH"), std::string::npos) << "the run had the secret: " << shown;
  Json all = Get("/v1/tasks/" + std::to_string(task["id"].get<int64_t>()) + "/events");
  EXPECT_EQ(DumpJson(all).find(value), std::string::npos);
  EXPECT_EQ(DumpJson(Get("/v1/escalations?state=all")).find(value), std::string::npos);
  for (const auto& req : replay_->requests())
    EXPECT_EQ(DumpJson(req).find(value), std::string::npos);
  daemon_->Stop(std::chrono::milliseconds(100));
  EXPECT_EQ(::testing::internal::GetCapturedStderr().find(value), std::string::npos)
      << "the log holds the secret";
  EXPECT_EQ(Git("-C " + repo_ + " cat-file --batch-all-objects --batch").find(value),
            std::string::npos)
      << "a git object holds the secret";
  for (const char* f : {"/loom.db", "/loom.db-wal"}) {
    std::ifstream in(dir_.path() + f, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    EXPECT_EQ(ss.str().find(value), std::string::npos) << f << " holds the secret in the clear";
  }
  struct stat st;
  ASSERT_EQ(::stat((dir_.path() + "/secret.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

TEST_F(AgentEndToEndTest, AnEditOfAProtectedPathWaitsForAnApproval) {
  Json replies =
      Json::array({Step("write_file", {{"path", "AGENTS.md"}, {"content", "# new instructions\n"}}),
                   Step("write_file", {{"path", "AGENTS.md"}, {"content", "# new instructions\n"}}),
                   Step("finish", {{"summary", "update the instructions"}})});
  Start(Script(replies));
  int64_t fb = File("feature", "update AGENTS.md", "x");
  Json task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "blocked") << task.dump();
  Json open = Get("/v1/escalations");
  ASSERT_EQ(open["items"].size(), 1u);
  EXPECT_EQ(open["items"][0]["kind"], "approval");
  EXPECT_EQ(open["items"][0]["raised_by"], "orchestrator");
  auto r =
      Call("POST",
           "/v1/escalations/" + std::to_string(open["items"][0]["id"].get<int64_t>()) + "/answer",
           engineer_, R"({"approve": true})");
  ASSERT_EQ(r.status, 200) << r.body;
  task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "review") << task.dump();
  auto results = Events(task, "tool_result");
  ASSERT_EQ(results.size(), 3u);
  EXPECT_TRUE(results[0]["data"]["error"].get<bool>());
  EXPECT_FALSE(results[1]["data"]["error"].get<bool>()) << results[1].dump();
  std::string diff =
      Get("/v1/tasks/" + std::to_string(task["id"].get<int64_t>()) + "/diff")["unified"];
  EXPECT_NE(diff.find("+# new instructions"), std::string::npos);
  // The reviewer sees the protected edit called out, though a person approved it.
  Json review = Get("/v1/reviews/" + std::to_string(task["id"].get<int64_t>()));
  EXPECT_EQ(review["diff"]["protected_paths"], Json::array({"AGENTS.md"})) << review.dump();
  ASSERT_EQ(review["diff"]["files"].size(), 1u);
  EXPECT_TRUE(review["diff"]["files"][0]["protected"].get<bool>());
  auto show =
      testing::RunCommand("LOOM_SERVER=http://127.0.0.1:" + std::to_string(daemon_->port()) +
                          " LOOM_TOKEN=" + engineer_ + " " + testing::LoomBinary() +
                          " review show " + std::to_string(task["id"].get<int64_t>()) + " 2>&1");
  EXPECT_NE(show.out.find("AGENTS.md"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("PROTECTED"), std::string::npos) << show.out;
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

TEST_F(ReviewTest, WithoutAutoMergeAnApprovalWaitsForAMerger) {
  fs::create_directories(dir_.path() + "/policies");
  std::ofstream(dir_.path() + "/policies/calc.toml")
      << "[review]\nauto_merge = false\nmergers = [\"admin\"]\n";
  Start(ScriptThen(Json::array()));
  Json task = FixedBug(reporter_);
  EXPECT_EQ(Decide(task, "merge", admin_).status, 409) << "not approved yet";
  auto r = Decide(task, "approve", engineer_);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(ParseJson(r.body)->value("merged", true));
  EXPECT_EQ(Git("-C " + repo_ + " rev-list --count main"), "1\n");
  EXPECT_EQ(Decide(task, "merge", engineer_).status, 403) << "engineers are not mergers here";
  r = Decide(task, "merge", admin_);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Get("/v1/tasks/" + std::to_string(task["id"].get<int64_t>()))["state"], "merged");
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

// A full disk: the data dir on a small tmpfs of its own (mounting needs root;
// the test is skipped otherwise, saying so).
class FullDiskTest : public AgentEndToEndTest {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a small tmpfs as the data dir";
    // 64 MiB: loomd's default reserve (16 MiB), the database, the repository and
    // its worktrees, and what the agent's command fills.
    if (::mount("tmpfs", dir_.path().c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
                "size=64m,mode=0711") != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs on " << dir_.path() << ": " << std::strerror(errno);
    }
    mounted_ = true;
  }

  void TearDown() override {
    AgentEndToEndTest::TearDown();
    if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
  }

  // Deletes the files named `name` under the data dir's worktrees.
  int Delete(const std::string& name) {
    int n = 0;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir_.path() + "/worktrees", ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->path().filename() == name) n += fs::remove(it->path(), ec) ? 1 : 0;
    }
    return n;
  }

  bool mounted_ = false;
};

TEST_F(FullDiskTest, ACommandThatFillsTheDiskParksTheTaskUntilSpaceIsFreed) {
  Json replies =
      Json::array({Step("run_command", {{"command", "cat /dev/zero > fill; echo exit=$?"}}),
                   Step("write_file", {{"path", "NOTES.md"}, {"content", "x\n"}}),
                   Step("finish", {{"summary", "notes"}})});
  Start(Script(replies));
  int64_t fb = File("feature", "fill the disk", "x");

  // The command fills the disk: the task parks with the reason, loomd is alive.
  Json task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "blocked") << task.dump();
  EXPECT_NE(task["reason"].get<std::string>().find("disk"), std::string::npos) << task.dump();
  EXPECT_EQ(Call("GET", "/healthz", "").status, 200);
  Json open = Get("/v1/escalations");
  ASSERT_EQ(open["items"].size(), 1u) << open.dump();
  EXPECT_EQ(open["items"][0]["kind"], "infrastructure");
  EXPECT_EQ(open["items"][0]["raised_by"], "orchestrator");
  EXPECT_NE(open["items"][0]["summary"].get<std::string>().find("full"), std::string::npos);
  auto results = Events(task, "tool_result");
  ASSERT_EQ(results.size(), 1u) << "the command's result is recorded";
  EXPECT_TRUE(results[0]["data"]["error"].get<bool>());

  // A person frees space and answers: the task continues where it stopped.
  ASSERT_EQ(Delete("fill"), 1);
  auto r =
      Call("POST",
           "/v1/escalations/" + std::to_string(open["items"][0]["id"].get<int64_t>()) + "/answer",
           engineer_, R"({"text": "freed the disk"})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto deadline = steady_clock::now() + std::chrono::seconds(30);
  while (Get("/v1/tasks/" + std::to_string(task["id"].get<int64_t>()))["state"] == "blocked" &&
         steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "review") << task.dump();
  EXPECT_EQ(Events(task, "command_started").size(), 1u) << "the command ran once";
  EXPECT_EQ(Get("/v1/escalations")["items"].size(), 0u);
  // The model was told what happened to its command.
  EXPECT_NE(DumpJson(replay_->requests().back()["messages"]).find("disk filled up"),
            std::string::npos);
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

// A reload reaches the next task; a bad file leaves the policies as they were.
TEST_F(AgentEndToEndTest, AReloadedPolicyGovernsTheNextTask) {
  fs::create_directories(dir_.path() + "/policies");
  auto write_policy = [&](const std::string& marker) {
    std::ofstream(dir_.path() + "/policies/calc.toml")
        << "[repo]\ntest_command = \"python3 -m unittest discover -s tests -t . && echo " << marker
        << "\"\n";
  };
  write_policy("POLICY-A");
  Json replies = Json::array(
      {Step("write_file", {{"path", "tests/test_extra.py"}, {"content", "import unittest\n"}}),
       Step("finish", {{"summary", "done"}})});
  Start(Script(replies));
  auto suite_output = [&](const Json& task) {
    auto runs = Events(task, "test_run");
    return runs.empty() ? std::string()
                        : runs.back()["data"]["outcome"]["stdout"].get<std::string>();
  };
  Json first = WaitSettled(File("feature", "first feature", "x"));
  ASSERT_EQ(first["state"], "review") << first.dump();
  EXPECT_NE(suite_output(first).find("POLICY-A"), std::string::npos);

  write_policy("POLICY-B");
  ASSERT_TRUE(daemon_->ReloadPolicies().ok());
  Json second = WaitSettled(File("feature", "second feature", "x"));
  ASSERT_EQ(second["state"], "review") << second.dump();
  EXPECT_NE(suite_output(second).find("POLICY-B"), std::string::npos);

  std::ofstream(dir_.path() + "/policies/calc.toml") << "[repo]\ntest_comand = \"false\"\n";
  Status bad = daemon_->ReloadPolicies();
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("calc.toml:2"), std::string::npos) << bad.ToString();
  Json third = WaitSettled(File("feature", "third feature", "x"));
  ASSERT_EQ(third["state"], "review") << third.dump();
  EXPECT_NE(suite_output(third).find("POLICY-B"), std::string::npos);
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

// A person grants the GPUs an agent asked for: the grant (type, count, minutes)
// is in the escalation's answer and on the task, and the task's later sandbox
// runs carry it (recorded with each run; the Slurm backend turns it into
// --gres=gpu:<type>:<n>, tests/sandbox/slurm_executor_test.cc). Only a gpu
// escalation takes a grant, and a malformed one is refused field by field.
TEST_F(AgentEndToEndTest, AGpuGrantIsShownAndGoesWithTheTasksLaterRuns) {
  Json replies = Json::array(
      {Step("request_human", {{"kind", "gpu"}, {"summary", "the CUDA suite needs 2 GPUs"}}),
       Step("run_tests", Json::object()),
       Step("write_file", {{"path", "NOTES.md"}, {"content", "x\n"}}),
       Step("finish", {{"summary", "done"}})});
  Start(Script(replies));
  int64_t fb = File("feature", "needs a gpu", "x");
  Json task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "blocked") << task.dump();
  Json open = Get("/v1/escalations");
  ASSERT_EQ(open["items"].size(), 1u);
  ASSERT_EQ(open["items"][0]["kind"], "gpu");
  std::string target =
      "/v1/escalations/" + std::to_string(open["items"][0]["id"].get<int64_t>()) + "/answer";
  auto bad =
      Call("POST", target, engineer_, R"({"gpu": {"type": "a100", "count": 0, "minutes": 5}})");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_NE(bad.body.find("gpu.count"), std::string::npos) << bad.body;
  auto odd =
      Call("POST", target, engineer_, R"({"gpu": {"type": "a100;x", "count": 1, "minutes": 5}})");
  EXPECT_EQ(odd.status, 400) << odd.body;
  auto r =
      Call("POST", target, engineer_, R"({"gpu": {"type": "a100", "count": 2, "minutes": 30}})");
  ASSERT_EQ(r.status, 200) << r.body;
  Json answered = Json::parse(r.body);
  EXPECT_EQ(answered["answer"]["gpu"]["type"], "a100");
  EXPECT_EQ(answered["answer"]["gpu"]["count"], 2);
  EXPECT_EQ(answered["answer"]["gpu"]["minutes"], 30);
  task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "review") << task.dump();
  Json shown = Get("/v1/tasks/" + std::to_string(task["id"].get<int64_t>()));
  ASSERT_TRUE(shown.contains("gpu_grant")) << shown.dump();
  EXPECT_EQ(shown["gpu_grant"]["type"], "a100");
  EXPECT_EQ(shown["gpu_grant"]["count"], 2);
  auto runs = Events(task, "test_run");
  ASSERT_FALSE(runs.empty());
  for (const auto& run : runs) {
    EXPECT_EQ(run["data"]["gpus"], Json({{"type", "a100"}, {"count", 2}})) << run.dump();
  }
}

TEST_F(AgentEndToEndTest, OnlyAGpuEscalationTakesAGpuGrant) {
  Json replies =
      Json::array({Step("request_human", {{"kind", "question"}, {"summary", "which?"}})});
  Start(Script(replies));
  Json task = WaitSettled(File("feature", "asks", "x"));
  ASSERT_EQ(task["state"], "blocked") << task.dump();
  Json open = Get("/v1/escalations");
  ASSERT_EQ(open["items"].size(), 1u);
  auto r =
      Call("POST",
           "/v1/escalations/" + std::to_string(open["items"][0]["id"].get<int64_t>()) + "/answer",
           engineer_, R"({"gpu": {"type": "a100", "count": 1, "minutes": 5}})");
  EXPECT_EQ(r.status, 400) << r.body;
}

}  // namespace
}  // namespace loom
