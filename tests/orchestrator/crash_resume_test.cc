// kill -9 of loomd at random points of a scripted multi-task run (during model
// calls, edits, test runs, verification and commits), restarting it each time:
// every task must still reach review with no lost step, no edit applied twice,
// no duplicated commit, no tool call answered twice, no task leased twice at
// once and no sandbox process outliving loomd. Then the approves, killed too: no
// merge is ever left half-done in the registered checkout.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "common/auth.h"
#include "common/json.h"
#include "orchestrator/replay_model.h"
#include "orchestrator/schema.h"
#include "repos/workspace.h"
#include "tests/support/http_client.h"
#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_paths.h"

namespace loom {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

std::string Output(const std::string& cmd) { return loom::testing::CommandOutput(cmd); }

class CrashResumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::chmod(dir_.path().c_str(), 0711);
    data_ = dir_.path() + "/data";
    repo_ = dir_.path() + "/calc";
    fs::copy(std::string(LOOM_SOURCE_DIR) + "/examples/calc", repo_, fs::copy_options::recursive);
    ASSERT_TRUE(repos::InitRepository(repo_, "main", "initial").ok());
    fs::create_directories(data_);
    ASSERT_TRUE(MigrateDatabase(DatabasePath(data_)).ok());
    auto tokens = TokenStore::Open(DatabasePath(data_));
    ASSERT_TRUE(tokens.ok());
    admin_ = *(*tokens)->Create(Role::kAdmin, "admin");
    reporter_ = *(*tokens)->Create(Role::kReporter, "reporter");

    // The demo's conversation for every task, each reply a little slow so that
    // kills land in every phase.
    std::ifstream in(std::string(LOOM_SOURCE_DIR) + "/examples/calc-demo.json");
    std::stringstream ss;
    ss << in.rdbuf();
    Json demo = *ParseJson(ss.str());
    Json replies = demo["replay"]["conversations"][0]["replies"];
    for (auto& r : replies) r["delay_ms"] = 40;
    auto model = ReplayModel::Start({{"conversations", {{{"replies", replies}}}}});
    ASSERT_TRUE(model.ok());
    model_ = std::move(*model);
    port_ = testing::FreePort();
  }

  void TearDown() override {
    if (pid_ > 0) testing::KillAndWait(pid_, SIGKILL);
    if (model_) model_->Stop();
  }

  // With `crash_point`, loomd dies (SIGKILL) when it reaches that point
  // (common/crash_point.h).
  void StartLoomd(const std::string& crash_point = "") {
    std::vector<std::string> argv = {std::string(LOOM_BIN_DIR) + "/loomd",
                                     "--data-dir",
                                     data_,
                                     "--listen",
                                     "127.0.0.1:" + std::to_string(port_),
                                     "--llm-url",
                                     model_->url(),
                                     "--set",
                                     "agents=2",
                                     "--set",
                                     "llm.retries=2",
                                     "--set",
                                     "log.level=warning"};
    if (!crash_point.empty()) {
      argv.insert(argv.begin(), {"/usr/bin/env", "LOOM_CRASH_POINT=" + crash_point});
    }
    pid_ = testing::Spawn(argv, dir_.path() + "/loomd.log");
    ASSERT_GT(pid_, 0);
    auto deadline = steady_clock::now() + std::chrono::seconds(10);
    while (Call("GET", "/healthz").status != 200) {
      ASSERT_LT(steady_clock::now(), deadline) << "loomd did not start";
      std::this_thread::sleep_for(milliseconds(10));
    }
  }

  testing::ClientResponse Call(const std::string& method, const std::string& target,
                               const std::string& body = "", const std::string& token = "") {
    std::map<std::string, std::string> h;
    h["Authorization"] = "Bearer " + (token.empty() ? admin_ : token);
    return testing::HttpCall(port_, method, target, body, h);
  }

  Json Tasks() {
    auto r = Call("GET", "/v1/tasks?limit=500");
    return r.status == 200 ? *ParseJson(r.body) : Json::object();
  }

  int InReview() {
    int n = 0;
    for (const auto& t : Tasks().value("items", Json::array())) n += t["state"] == "review";
    return n;
  }

  // A merge that a kill may have cut short is done or undone, never half: the
  // registered checkout is on main and matches it (nothing staged, changed or
  // untracked, no merge journal left), and a task that reached review is merged
  // exactly when main holds its branch.
  void ExpectNoHalfMerge(const std::string& when) {
    EXPECT_EQ(Output("git -C " + repo_ + " symbolic-ref HEAD"), "refs/heads/main\n") << when;
    EXPECT_EQ(Output("git -C " + repo_ + " status --porcelain --untracked-files=all"), "")
        << when << ": the checkout of main is half-merged";
    EXPECT_FALSE(fs::exists(repo_ + "/.git/LOOM_MERGE")) << when;
    for (const auto& t : Tasks().value("items", Json::array())) {
      if (t["state"] != "review" && t["state"] != "merged") continue;
      std::string branch = t["branch"];
      bool in_main =
          testing::RunCommand("git -C " + repo_ + " merge-base --is-ancestor " + branch + " main")
              .exit_code == 0;
      EXPECT_EQ(t["state"] == "merged", in_main) << when << ": " << t.dump();
    }
  }

  // Waits for loomd to die of its crash point; false when it is still alive.
  bool WaitForCrash() {
    for (int i = 0; i < 500; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    return false;
  }

  // Sandbox processes still running on this test's worktrees.
  std::string SandboxLeftovers() {
    return Output("ps -eo comm=,args= | awk '$1 == \"bwrap\"' | grep -F " + data_ + " || true");
  }

  testing::TempDir dir_;
  std::string data_, repo_, admin_, reporter_;
  std::unique_ptr<ReplayModel> model_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// Run cgroups a killed loomd leaves behind are swept by the next one (a reused
// pid once made RunCgroup::Create fail with EEXIST here).
TEST_F(CrashResumeTest, EveryTaskReachesReviewDespiteKillsAtRandomPoints) {
  constexpr int kTasks = 4;
  // Kills here are not crashes of a call: a call interrupted again and again
  // must not fail its task (budgets.max_tool_attempts, tested on its own below).
  fs::create_directories(data_ + "/policies");
  std::ofstream(data_ + "/policies/calc.toml") << "[budgets]\nmax_tool_attempts = 100\n";
  StartLoomd();
  Json repo = {{"name", "calc"},
               {"path", repo_},
               {"test_command", "python3 -m unittest discover -s tests -t ."}};
  ASSERT_EQ(Call("POST", "/v1/repos", DumpJson(repo)).status, 201);
  for (int i = 0; i < kTasks; ++i) {
    Json fb = {{"kind", "bug"},
               {"title", std::string("average() is wrong on page ") + static_cast<char>('a' + i)},
               {"body", "average([2, 4]) is 6"},
               {"repo", "calc"}};
    ASSERT_EQ(Call("POST", "/v1/feedback", DumpJson(fb), reporter_).status, 201);
  }

  unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> delay_ms(50, 600);
  int kills = 0;
  for (; kills < 15 && InReview() < kTasks; ++kills) {
    std::this_thread::sleep_for(milliseconds(delay_ms(rng)));
    testing::KillAndWait(pid_, SIGKILL);
    pid_ = -1;
    // --die-with-parent: no sandboxed run outlives loomd.
    std::string left;
    for (int i = 0; i < 50; ++i) {
      left = SandboxLeftovers();
      if (left.empty()) break;
      std::this_thread::sleep_for(milliseconds(20));
    }
    EXPECT_EQ(left, "") << "after kill " << kills;
    StartLoomd();
  }
  auto deadline = steady_clock::now() + std::chrono::seconds(90);
  while (InReview() < kTasks && steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  Json tasks = Tasks()["items"];
  ASSERT_EQ(tasks.size(), static_cast<size_t>(kTasks));
  int resumed = 0;
  for (const auto& t : tasks) {
    if (t["state"] != "review") {
      auto ev =
          Call("GET", "/v1/tasks/" + std::to_string(t["id"].get<int64_t>()) + "/events?limit=5000");
      Json events = *ParseJson(ev.body);
      for (const auto& e : events["items"]) {
        std::string d =
            e["type"] == "tool_result" ? e["data"].value("content", "") : DumpJson(e["data"]);
        std::printf("  [%s] %s %s\n", DumpJson(e["seq"]).c_str(),
                    e["type"].get<std::string>().c_str(), d.substr(0, 300).c_str());
      }
    }
    ASSERT_EQ(t["state"], "review") << t.dump();
    std::string branch = t["branch"];
    EXPECT_EQ(Output("git -C " + repo_ + " rev-list --count main.." + branch), "1\n")
        << "exactly one commit on " << branch;
    std::string calc = Output("git -C " + repo_ + " show " + branch + ":calc.py");
    EXPECT_NE(calc.find("return total(values) / len(values)\n"), std::string::npos) << calc;
    EXPECT_EQ(calc.find("(len(values) - 1)"), std::string::npos) << calc;
    EXPECT_NE(Output("git -C " + repo_ + " show " + branch + ":tests/test_average.py")
                  .find("AverageRegressionTest"),
              std::string::npos);

    auto r =
        Call("GET", "/v1/tasks/" + std::to_string(t["id"].get<int64_t>()) + "/events?limit=5000");
    ASSERT_EQ(r.status, 200);
    std::map<std::string, int> results;
    std::string last_state;
    Json events = *ParseJson(r.body);
    for (const auto& e : events["items"]) {
      const Json& d = e["data"];
      if (e["type"] == "tool_result") {
        ++results[d["tool_call_id"].get<std::string>()];
        std::string name = d["name"];
        if (name == "write_file" || name == "replace_in_file") {
          EXPECT_FALSE(d["error"].get<bool>())
              << "an edit was redone on top of itself: " << d.dump();
        }
      }
      if (e["type"] == "state") {
        if (d["to"] == "running" && d["from"] == "queued") {
          EXPECT_NE(last_state, "running") << "task " << t["id"] << " leased while running";
        }
        last_state = d["to"];
        resumed += d["reason"] == "resumed after a restart";
      }
    }
    for (const auto& [id, n] : results)
      EXPECT_EQ(n, 1) << "tool call " << id << " answered " << n << " times";
    // 8 replies in the recorded conversation, each answered: no step lost.
    EXPECT_EQ(results.size(), 8u);
  }
  EXPECT_GT(kills, 0);
  EXPECT_GT(resumed, 0) << "no kill interrupted a task; the test proved nothing";

  // Then each task is approved with a kill at a random moment of its approve
  // (the first merge fast-forwards main and rewrites the registered checkout; the
  // others make merge commits). After every restart no merge is half-done.
  std::uniform_int_distribution<int> approve_kill_ms(0, 25);
  for (int round = 0; round < 3 * kTasks; ++round) {
    std::string id;
    for (const auto& t : Tasks().value("items", Json::array())) {
      if (t["state"] == "review") id = std::to_string(t["id"].get<int64_t>());
    }
    if (id.empty()) break;
    std::thread approve([&] { Call("POST", "/v1/reviews/" + id + "/approve"); });
    std::this_thread::sleep_for(milliseconds(approve_kill_ms(rng)));
    testing::KillAndWait(pid_, SIGKILL);
    pid_ = -1;
    approve.join();
    StartLoomd();
    ExpectNoHalfMerge("after a kill during the approve of task " + id);
  }
  for (const auto& t : Tasks().value("items", Json::array())) {
    if (t["state"] != "review") continue;
    auto r = Call("POST", "/v1/reviews/" + std::to_string(t["id"].get<int64_t>()) + "/approve");
    EXPECT_EQ(r.status, 200) << r.body;
  }
  for (const auto& t : Tasks().value("items", Json::array()))
    EXPECT_EQ(t["state"], "merged") << t.dump();
  ExpectNoHalfMerge("after every approve");
}

// kill -9 at each step of an approve (common/crash_point.h): before main moves,
// the restart leaves everything as before and approving again merges; from the
// moment main moved, the restart finishes the merge (the registered checkout is
// brought to main, the task recorded merged). Never a half-merged checkout.
TEST_F(CrashResumeTest, AnApproveKilledAtAnyStepIsFinishedOrUndoneByTheRestart) {
  struct Step {
    const char* point;
    bool merged_by_restart;
  };
  const std::vector<Step> steps = {
      {"merge.journaled", false},  {"merge.ref_moved", true}, {"merge.checkout_started", true},
      {"merge.checked_out", true}, {"approve.merged", true},  {"approve.recorded", true},
  };
  // One conversation per task, matched by the marker in its title: each adds two
  // files of its own, so that every merge rewrites the registered checkout.
  model_->Stop();
  Json conversations = Json::array();
  for (size_t i = 0; i < steps.size(); ++i) {
    std::string n = std::string("note-") + static_cast<char>('a' + i);
    auto write = [&](const std::string& file) {
      return Json{{"message",
                   {{"content", ""},
                    {"tool_calls",
                     {{{"name", "write_file"},
                       {"arguments", {{"path", "notes/" + file}, {"content", file + "\n"}}}}}}}}};
    };
    Json finish = {
        {"message",
         {{"content", ""},
          {"tool_calls", {{{"name", "finish"}, {"arguments", {{"summary", "Add " + n}}}}}}}}};
    conversations.push_back(
        Json{{"match", "[" + n + "]"},
             {"replies", Json::array({write(n + "-a.txt"), write(n + "-b.txt"), finish})}});
  }
  auto model = ReplayModel::Start({{"conversations", conversations}});
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  model_ = std::move(*model);
  StartLoomd();
  Json repo = {{"name", "calc"}, {"path", repo_}, {"test_command", "true"}};
  ASSERT_EQ(Call("POST", "/v1/repos", DumpJson(repo)).status, 201);
  for (size_t i = 0; i < steps.size(); ++i) {
    std::string n = std::string("note-") + static_cast<char>('a' + i);
    Json fb = {{"kind", "feature"},
               {"title", "Add the [" + n + "] files"},
               {"body", "Please add them"},
               {"repo", "calc"}};
    ASSERT_EQ(Call("POST", "/v1/feedback", DumpJson(fb), reporter_).status, 201);
  }
  auto deadline = steady_clock::now() + std::chrono::seconds(60);
  while (InReview() < static_cast<int>(steps.size()) && steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  ASSERT_EQ(InReview(), static_cast<int>(steps.size())) << Tasks().dump();

  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& step = steps[i];
    SCOPED_TRACE(step.point);
    std::string n = std::string("note-") + static_cast<char>('a' + i);
    int64_t id = 0;
    for (const auto& t : Tasks().value("items", Json::array())) {
      if (t["title"].get<std::string>().find(n) != std::string::npos) id = t["id"];
    }
    ASSERT_GT(id, 0) << Tasks().dump();
    const std::string review = "/v1/reviews/" + std::to_string(id);
    const std::string main_before = Output("git -C " + repo_ + " rev-parse main");

    testing::KillAndWait(pid_, SIGKILL);
    StartLoomd(step.point);
    Call("POST", review + "/approve");
    ASSERT_TRUE(WaitForCrash()) << "loomd did not die at " << step.point;
    StartLoomd();

    ExpectNoHalfMerge(std::string("after a crash at ") + step.point);
    auto task = ParseJson(Call("GET", "/v1/tasks/" + std::to_string(id)).body);
    ASSERT_TRUE(task.ok());
    if (step.merged_by_restart) {
      EXPECT_EQ((*task)["state"], "merged") << task->dump();
    } else {
      EXPECT_EQ((*task)["state"], "review") << task->dump();
      EXPECT_EQ(Output("git -C " + repo_ + " rev-parse main"), main_before);
      auto r = Call("POST", review + "/approve");
      EXPECT_EQ(r.status, 200) << r.body;
    }
    ExpectNoHalfMerge(std::string("after the merge past ") + step.point);
    EXPECT_TRUE(fs::exists(repo_ + "/notes/" + n + "-a.txt"));
    EXPECT_TRUE(fs::exists(repo_ + "/notes/" + n + "-b.txt"));
  }
}

// A tool call that loomd does not outlive (here: killed each time the call
// runs, as a crash would) is run again after a restart, but not forever: after
// budgets.max_tool_attempts starts the task fails with a reason, and the call
// gets an error result so that a retried task does not run it again.
TEST_F(CrashResumeTest, ACallThatKillsLoomdEveryTimeFailsItsTaskAfterMaxAttempts) {
  model_->Stop();
  Json replies =
      Json::array({{{"message",
                     {{"content", ""},
                      {"tool_calls", {{{"name", "run_tests"}, {"arguments", Json::object()}}}}}}}});
  auto model = ReplayModel::Start({{"conversations", {{{"replies", replies}}}}});
  ASSERT_TRUE(model.ok());
  model_ = std::move(*model);
  StartLoomd();
  Json repo = {{"name", "calc"}, {"path", repo_}, {"test_command", "sleep 30; echo LIVED"}};
  ASSERT_EQ(Call("POST", "/v1/repos", DumpJson(repo)).status, 201);
  Json fb = {{"kind", "feature"}, {"title", "sleepy"}, {"body", "x"}, {"repo", "calc"}};
  ASSERT_EQ(Call("POST", "/v1/feedback", DumpJson(fb), reporter_).status, 201);

  // The events of task 1 of `type`, once there are at least `n`.
  auto wait_events = [&](const std::string& type, size_t n) {
    auto deadline = steady_clock::now() + std::chrono::seconds(30);
    while (steady_clock::now() < deadline) {
      auto r = Call("GET", "/v1/tasks/1/events?limit=5000");
      std::vector<Json> out;
      if (r.status == 200) {
        Json events = ParseJson(r.body).value_or(Json::object());
        for (const auto& e : events["items"]) {
          if (e["type"] == type) out.push_back(e);
        }
      }
      if (out.size() >= n) return out;
      std::this_thread::sleep_for(milliseconds(20));
    }
    ADD_FAILURE() << "no " << n << " " << type << " events";
    return std::vector<Json>();
  };
  // Attempt 1 (live), 2 and 3 (replayed): each is killed while the tests sleep.
  for (size_t attempt = 1; attempt <= 3; ++attempt) {
    if (attempt == 1) {
      wait_events("llm_reply", 1);
    } else {
      auto retries = wait_events("tool_retry", attempt - 1);
      ASSERT_EQ(retries.size(), attempt - 1);
      EXPECT_EQ(retries.back()["data"]["attempt"], attempt);
    }
    std::this_thread::sleep_for(milliseconds(300));  // the sandboxed sleep is running
    testing::KillAndWait(pid_, SIGKILL);
    pid_ = -1;
    StartLoomd();
  }
  // The fourth start does not run it again.
  auto deadline = steady_clock::now() + std::chrono::seconds(30);
  Json task;
  while (steady_clock::now() < deadline) {
    auto r = Call("GET", "/v1/tasks/1");
    task = ParseJson(r.body).value_or(Json::object());
    if (task.value("state", "") == "failed") break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_EQ(task.value("state", ""), "failed") << task.dump();
  EXPECT_NE(task.value("reason", "").find("started 3 times"), std::string::npos) << task.dump();
  EXPECT_EQ(wait_events("tool_retry", 2).size(), 2u);
  auto results = wait_events("tool_result", 1);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0]["data"]["error"].get<bool>());
  // No start of the tests ever completed: none was left to run a fourth time.
  auto r = Call("GET", "/v1/tasks/1/events?limit=5000");
  EXPECT_EQ(r.body.find("\"test_run\""), std::string::npos);
}

// A run_command whose result was never recorded (loomd killed while it ran) is
// not run again after the restart: its effects are unknown (it may be what
// filled the disk). The model is told it was interrupted, and the task goes on.
TEST_F(CrashResumeTest, ACommandInterruptedByAKillIsNotRunAgain) {
  model_->Stop();
  auto step = [](const std::string& tool, Json args) {
    return Json{
        {"message", {{"content", ""}, {"tool_calls", {{{"name", tool}, {"arguments", args}}}}}}};
  };
  Json replies = Json::array({step("run_command", {{"command", "sleep 30; echo LIVED"}}),
                              step("write_file", {{"path", "NOTES.md"}, {"content", "x\n"}}),
                              step("finish", {{"summary", "notes"}})});
  auto model = ReplayModel::Start({{"conversations", {{{"replies", replies}}}}});
  ASSERT_TRUE(model.ok());
  model_ = std::move(*model);
  StartLoomd();
  Json repo = {{"name", "calc"}, {"path", repo_}, {"test_command", "true"}};
  ASSERT_EQ(Call("POST", "/v1/repos", DumpJson(repo)).status, 201);
  Json fb = {{"kind", "feature"}, {"title", "sleepy"}, {"body", "x"}, {"repo", "calc"}};
  ASSERT_EQ(Call("POST", "/v1/feedback", DumpJson(fb), reporter_).status, 201);
  auto events = [&](const std::string& type) {
    std::vector<Json> out;
    auto r = Call("GET", "/v1/tasks/1/events?limit=5000");
    if (r.status != 200) return out;
    Json all = ParseJson(r.body).value_or(Json::object());
    for (const auto& e : all["items"]) {
      if (e["type"] == type) out.push_back(e);
    }
    return out;
  };
  auto deadline = steady_clock::now() + std::chrono::seconds(30);
  while (events("command_started").empty() && steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_EQ(events("command_started").size(), 1u);
  std::this_thread::sleep_for(milliseconds(300));  // the sandboxed sleep is running
  testing::KillAndWait(pid_, SIGKILL);
  pid_ = -1;
  StartLoomd();

  Json task;
  deadline = steady_clock::now() + std::chrono::seconds(60);
  while (steady_clock::now() < deadline) {
    task = ParseJson(Call("GET", "/v1/tasks/1").body).value_or(Json::object());
    if (task.value("state", "") == "review") break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_EQ(task.value("state", ""), "review") << task.dump();
  EXPECT_EQ(events("command_started").size(), 1u) << "started once";
  EXPECT_TRUE(events("command_run").empty()) << "never ran to the end, never ran again";
  EXPECT_TRUE(events("tool_retry").empty());
  auto results = events("tool_result");
  ASSERT_GE(results.size(), 1u);
  EXPECT_EQ(results[0]["data"]["name"], "run_command");
  EXPECT_TRUE(results[0]["data"]["error"].get<bool>());
  std::string told = results[0]["data"]["content"];
  EXPECT_EQ(told.rfind("error: interrupted", 0), 0u) << told;
  EXPECT_NE(DumpJson(model_->requests().back()["messages"]).find("It was not run again"),
            std::string::npos);
}

}  // namespace
}  // namespace loom
