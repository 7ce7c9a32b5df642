// The agent loop without bubblewrap or git: a real TaskStore (SQLite in a temp
// dir), and the fakes of tests/fakes for the model, the workspace, the sandbox and
// the clock. Each test scripts the model's replies, runs the loop, records its
// outcome as the scheduler does, and checks the outcome, the task's state and its
// event log.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/auth.h"
#include "common/db.h"
#include "feedback/intake.h"
#include "orchestrator/agent.h"
#include "orchestrator/lifecycle.h"
#include "orchestrator/schema.h"
#include "orchestrator/stores.h"
#include "repos/workspace.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_executor.h"
#include "tests/fakes/fake_llm.h"
#include "tests/fakes/fake_workspace.h"
#include "tests/support/store_fixture.h"
#include "tests/support/temp_dir.h"

namespace loom {
namespace {

class AgentLoopTest : public testing::StoreFixture {
 protected:
  void SetUp() override {
    OpenStores();
    // Triage needs a registered repository (a real one, one commit); the loop
    // itself works on the fake workspace.
    RegisterRepo("app", "make test");
    lifecycle_ = std::make_unique<TaskLifecycle>(
        store_, stores_.escalations.get(), stores_.repos.get(), LifecycleOptions{dir_.path()});
    workspace_ = std::make_unique<FakeWorkspace>(
        dir_.path(), FakeWorkspace::Files{{"app.py", "def f():\n    return 1\n"},
                                          {"tests/test_app.py", "assert f() == 1\n"}});
  }

  // A task of `kind`, leased (running).
  Task Lease(const std::string& kind) {
    feedback::Item item;
    item.kind = kind;
    item.title = "a " + kind;
    item.body = "body of the " + kind;
    item.repo = "app";
    item.token_id = token_id_;
    EXPECT_TRUE(feedback_->SubmitAndWait(std::move(item)).ok());
    EXPECT_TRUE(store_->Triage().ok());
    auto leased = lifecycle_->Lease();
    EXPECT_TRUE(leased.ok() && leased->has_value());
    return leased.ok() && leased->has_value() ? **leased : Task{};
  }

  AgentEnv Env(const Task& task) {
    phases_ = std::make_unique<LifecyclePhases>(lifecycle_.get(), task.id);
    AgentEnv env;
    env.store = store_;
    env.escalations = stores_.escalations.get();
    env.llm = &llm_;
    env.workspace = workspace_.get();
    env.executor = &executor_;
    env.test_argv = {"/bin/sh", "-c", "make test"};
    env.policy = &policy_;
    env.require_failing_test = false;
    env.scratch_dir = dir_.path();
    env.phases = phases_.get();
    env.clock = &clock_;
    return env;
  }

  // Runs the loop on a new task of `kind` and records its outcome as the
  // scheduler does.
  AgentOutcome Run(const std::string& kind, AgentBudgets budgets = {}) {
    task_ = Lease(kind);
    AgentEnv env = Env(task_);
    env.budgets = budgets;
    AgentOutcome outcome = RunAgent(task_, env);
    Status recorded = lifecycle_->RecordOutcome(task_.id, outcome);
    EXPECT_TRUE(recorded.ok()) << recorded.ToString();
    return outcome;
  }

  Task Reload() {
    auto t = store_->Get(task_.id);
    EXPECT_TRUE(t.ok());
    return t.ok() ? *t : Task{};
  }

  std::vector<Json> Events(EventType type) {
    std::vector<Json> out;
    auto events = store_->Events(task_.id);
    EXPECT_TRUE(events.ok());
    for (const auto& e : *events) {
      if (e.type == type) out.push_back(e.data);
    }
    return out;
  }

  // From now on the real database refuses events of `type` (a trigger).
  void RefuseEvents(const std::string& type) {
    auto db = Db::Open(DatabasePath(dir_.path()), LoomMigrations());
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    ASSERT_TRUE((*db)
                    ->Exec("CREATE TRIGGER refuse_" + type +
                           " BEFORE INSERT ON events WHEN NEW.type = '" + type +
                           "' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
                    .ok());
  }

  std::vector<std::string> Results() {
    std::vector<std::string> out;
    for (const Json& d : Events(EventType::kToolResult)) out.push_back(StringOr(d, "content"));
    return out;
  }

  std::unique_ptr<FakeWorkspace> workspace_;
  FakeLlm llm_;
  FakeExecutor executor_;
  FakeClock clock_;
  policies::Policy policy_;
  std::unique_ptr<TaskLifecycle> lifecycle_;
  std::unique_ptr<LifecyclePhases> phases_;
  Task task_;
};

TEST_F(AgentLoopTest, EveryToolIsDispatchedAndAFinishedChangeGoesToReview) {
  llm_.Add(FakeLlm::Call("list_files", {{"path", "."}}));
  llm_.Add(FakeLlm::Call("read_file", {{"path", "app.py"}, {"start_line", 2}}));
  llm_.Add(FakeLlm::Call("search", {{"pattern", "return"}}));
  llm_.Add(FakeLlm::Call("replace_in_file",
                         {{"path", "app.py"}, {"old", "return 1"}, {"new", "return 2"}}));
  llm_.Add(FakeLlm::Call("write_file", {{"path", "NOTES.md"}, {"content", "notes\n"}}));
  llm_.Add(FakeLlm::Call("run_tests", {{"args", "-k app"}}));
  llm_.Add(FakeLlm::Call("run_command", {{"command", "ls"}}));
  llm_.Add(FakeLlm::Call("finish", {{"summary", "f returns 2"}}));
  AgentOutcome outcome = Run("feature");
  EXPECT_EQ(outcome.result, AgentResult::kFinished) << outcome.reason;
  EXPECT_EQ(Reload().state, TaskState::kReview);
  auto results = Results();
  ASSERT_EQ(results.size(), 8u);
  EXPECT_EQ(results[0], "app.py\ntests/\n");
  EXPECT_EQ(results[1], "    return 1\n");
  EXPECT_EQ(results[2], "app.py:2:     return 1\n");
  EXPECT_EQ(results[3], "replaced in app.py");
  EXPECT_EQ(results[4], "wrote NOTES.md (6 bytes)");
  EXPECT_EQ(results[5].rfind("tests passed: exit code 0", 0), 0u) << results[5];
  EXPECT_EQ(results[6].rfind("exit code 0", 0), 0u) << results[6];
  EXPECT_NE(results[7].find("verified and committed commit-1"), std::string::npos);
  EXPECT_EQ(workspace_->files().at("app.py"), "def f():\n    return 2\n");
  EXPECT_EQ(workspace_->commits(), 1);
  // run_tests with its words, run_command, and the suite at finish.
  ASSERT_EQ(executor_.runs().size(), 3u);
  EXPECT_EQ(executor_.runs()[0].argv.back(), "app");
  EXPECT_EQ(executor_.runs()[1].argv, (std::vector<std::string>{"/bin/sh", "-c", "ls"}));
  EXPECT_EQ(executor_.runs()[2].argv, (std::vector<std::string>{"/bin/sh", "-c", "make test"}));
  EXPECT_EQ(Reload().test_runs, 2);
  // running -> verifying (the loop asked) -> review (the outcome recorded).
  std::vector<std::string> states;
  for (const Json& d : Events(EventType::kState)) states.push_back(StringOr(d, "to"));
  EXPECT_EQ(states, (std::vector<std::string>{"running", "verifying", "review"}));
}

TEST_F(AgentLoopTest, BadCallsAreAnsweredAsErrorsAndTheTaskGoesOn) {
  llm_.Add(FakeLlm::Call("delete_everything", Json::object()));
  llm_.Add(FakeLlm::Call("write_file", Json("{not json")));
  llm_.Add(FakeLlm::Call("read_file", Json::object()));
  llm_.Add(FakeLlm::Call("read_file", {{"path", "app.py"}, {"mode", "fast"}}));
  llm_.Add(FakeLlm::Call("read_file", {{"path", 7}}));
  llm_.Add(FakeLlm::Call("request_human", {{"kind", "pizza"}, {"summary", "hungry"}}));
  llm_.Add(FakeLlm::Call("write_file", {{"path", "../x"}, {"content", "x"}}));
  llm_.Add(FakeLlm::Call("finish", {{"summary", "nothing"}}));
  AgentOutcome outcome = Run("feature");
  // finish with no change: verified, but nothing to commit and no change held.
  auto results = Results();
  ASSERT_EQ(results.size(), 8u);
  EXPECT_EQ(results[0],
            "error: unknown tool 'delete_everything'; the tools are list_files, read_file, "
            "search, write_file, replace_in_file, run_tests, run_command, request_human, finish");
  EXPECT_NE(results[1].find("not a JSON object"), std::string::npos) << results[1];
  EXPECT_EQ(results[2], "error: read_file needs the argument 'path'");
  EXPECT_EQ(results[3],
            "error: read_file has no argument 'mode'; its arguments are: end_line, path, "
            "start_line");
  EXPECT_NE(results[4].find("(in read_file)"), std::string::npos) << results[4];
  EXPECT_EQ(results[5],
            "error: kind must be one of api_key, gpu, network, approval, question or "
            "infrastructure (got 'pizza')");
  EXPECT_NE(results[6].find("outside the worktree"), std::string::npos) << results[6];
  for (const Json& d : Events(EventType::kToolResult)) EXPECT_TRUE(BoolOr(d, "error", false));
  EXPECT_EQ(outcome.result, AgentResult::kFailed) << outcome.reason;
  EXPECT_NE(outcome.reason.find("script has ended"), std::string::npos) << outcome.reason;
}

TEST_F(AgentLoopTest, ACancelledTaskStopsBeforeItsNextModelCall) {
  llm_.Add(FakeLlm::Call("list_files", {{"path", "."}}));
  task_ = Lease("feature");
  AgentEnv env = Env(task_);
  ASSERT_TRUE(lifecycle_->Cancel(task_.id, "not needed", 1).ok());
  env.cancel = lifecycle_->CancelFlag(task_.id);
  ASSERT_NE(env.cancel, nullptr);
  AgentOutcome outcome = RunAgent(task_, env);
  EXPECT_EQ(outcome.result, AgentResult::kCancelled);
  EXPECT_EQ(llm_.calls(), 0);
  EXPECT_TRUE(lifecycle_->RecordOutcome(task_.id, outcome).ok());
  EXPECT_EQ(Reload().state, TaskState::kCancelled);
}

TEST_F(AgentLoopTest, ARetriedTaskStartsANewConversationWithItsBudgetCountedAfresh) {
  AgentBudgets budgets;
  budgets.max_steps = 2;
  llm_.Add(FakeLlm::Call("list_files", {{"path", "."}}));
  llm_.Add(FakeLlm::Call("read_file", {{"path", "app.py"}}));
  AgentOutcome first = Run("feature", budgets);
  ASSERT_EQ(first.result, AgentResult::kFailed);
  EXPECT_NE(first.reason.find("step budget (2"), std::string::npos) << first.reason;
  lifecycle_->Release(task_.id);
  ASSERT_TRUE(lifecycle_->Retry(task_.id, 1, {false, 1, 0}).ok());
  auto leased = lifecycle_->Lease();
  ASSERT_TRUE(leased.ok() && leased->has_value());
  task_ = **leased;
  llm_.Add(FakeLlm::Call("list_files", {{"path", "."}}));
  llm_.Add(FakeLlm::Call("read_file", {{"path", "app.py"}}));
  llm_.Add(FakeLlm::Call("search", {{"pattern", "return"}}));
  AgentEnv env = Env(task_);
  env.budgets = budgets;
  AgentOutcome second = RunAgent(task_, env);
  // Three calls after the retry (the policy's 2 and 1 extra), the first of them
  // with only the new prompt.
  EXPECT_EQ(second.result, AgentResult::kFailed);
  EXPECT_NE(second.reason.find("step budget (3"), std::string::npos) << second.reason;
  ASSERT_EQ(llm_.calls(), 5);
  EXPECT_EQ(llm_.sent()[2].size(), 2u);
  EXPECT_EQ(llm_.sent()[4].size(), 6u);
  EXPECT_EQ(Events(EventType::kPrompt).size(), 2u);
  EXPECT_EQ(Reload().steps, 5);
}

TEST_F(AgentLoopTest, MalformedRepliesAreToldThenFailTheTask) {
  llm_.Add(FakeLlm::Text("I think the bug is in app.py"));
  llm_.Add(Status::Corruption("not a completion"));
  llm_.Add(FakeLlm::Text("still thinking"));
  llm_.Add(FakeLlm::Text("done?"));
  AgentOutcome outcome = Run("feature");
  EXPECT_EQ(outcome.result, AgentResult::kFailed);
  EXPECT_NE(outcome.reason.find("4 malformed replies in a row"), std::string::npos)
      << outcome.reason;
  EXPECT_EQ(Reload().state, TaskState::kFailed);
  EXPECT_EQ(Events(EventType::kMalformed).size(), 4u);
  // The model was told after each but the last, and the notes are in the log.
  EXPECT_EQ(Events(EventType::kNote).size(), 3u);
  const Json& last = llm_.sent().back();
  EXPECT_NE(StringOr(last.back(), "content").find("called no tool"), std::string::npos);
}

TEST_F(AgentLoopTest, ANoteThatCannotBeRecordedFailsTheTaskWithTheReason) {
  RefuseEvents("note");
  llm_.Add(FakeLlm::Text("no tool"));
  llm_.Add(FakeLlm::Call("list_files", {{"path", "."}}));
  AgentOutcome outcome = Run("feature");
  EXPECT_EQ(outcome.result, AgentResult::kFailed);
  EXPECT_NE(outcome.reason.find("cannot record a note"), std::string::npos) << outcome.reason;
  EXPECT_EQ(Reload().state, TaskState::kFailed);
  // The model never saw a message that the log, and so a resumed task, lacks.
  EXPECT_EQ(llm_.calls(), 1);
}

TEST_F(AgentLoopTest, ATestRunThatCannotBeRecordedDoesNotStopTheTask) {
  RefuseEvents("test_run");
  llm_.Add(FakeLlm::Call("write_file", {{"path", "NOTES.md"}, {"content", "x\n"}}));
  llm_.Add(FakeLlm::Call("run_tests", Json::object()));
  llm_.Add(FakeLlm::Call("finish", {{"summary", "notes"}}));
  AgentOutcome outcome = Run("feature");
  EXPECT_EQ(outcome.result, AgentResult::kFinished) << outcome.reason;
  EXPECT_EQ(Reload().state, TaskState::kReview);
  EXPECT_TRUE(Events(EventType::kTestRun).empty());
  EXPECT_EQ(Reload().test_runs, 2);  // counted with the tool results, which were recorded
}

TEST_F(AgentLoopTest, TheStepBudgetEndsATask) {
  for (int i = 0; i < 5; ++i) llm_.Add(FakeLlm::Call("list_files", {{"path", std::to_string(i)}}));
  AgentBudgets budgets;
  budgets.max_steps = 3;
  AgentOutcome outcome = Run("feature", budgets);
  EXPECT_EQ(outcome.result, AgentResult::kFailed);
  EXPECT_NE(outcome.reason.find("step budget"), std::string::npos);
  EXPECT_EQ(llm_.calls(), 3);
  EXPECT_EQ(Reload().steps, 3);
}

TEST_F(AgentLoopTest, TheWallBudgetExpiresOnTheInjectedClock) {
  for (int i = 0; i < 10; ++i) llm_.Add(FakeLlm::Call("list_files", {{"path", std::to_string(i)}}));
  // Each model call takes 40 minutes of the fake clock; the budget is 90.
  llm_.set_on_call([this] { clock_.AdvanceMs(40 * 60 * 1000); });
  AgentOutcome outcome = Run("feature");
  EXPECT_EQ(outcome.result, AgentResult::kFailed);
  EXPECT_NE(outcome.reason.find("wall-time budget (90 minutes)"), std::string::npos)
      << outcome.reason;
  EXPECT_EQ(llm_.calls(), 3);  // at 0, 40 and 80 minutes; at 120 the budget is spent
}

TEST_F(AgentLoopTest, TheSameFailingTestRunRepeatedFinishesAsStuck) {
  // Each run takes a different time, in the sandbox's report and in the output.
  int run = 0;
  executor_.set_handler([&run](const sandbox::RunSpec&) -> Result<sandbox::Outcome> {
    ++run;
    return FakeExecutor::Exited(
        1, "FAIL: test_f\nRan 3 tests in 0.0" + std::to_string(run) + "s\nFAILED (failures=1)\n",
        100 + run * 7);
  });
  for (int i = 0; i < 10; ++i) llm_.Add(FakeLlm::Call("run_tests", Json::object()));
  AgentOutcome outcome = Run("feature");
  EXPECT_EQ(outcome.result, AgentResult::kFailed);
  EXPECT_NE(outcome.reason.find("stuck: the same run_tests call returned the same result 6 times"),
            std::string::npos)
      << outcome.reason;
  auto notes = Events(EventType::kNote);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(StringOr(notes[0], "text").find("same run_tests call"), std::string::npos);
  EXPECT_EQ(llm_.calls(), 6);
}

TEST_F(AgentLoopTest, TestRunsThatChangeAreNotStuck) {
  int run = 0;
  executor_.set_handler([&run](const sandbox::RunSpec&) -> Result<sandbox::Outcome> {
    ++run;
    return FakeExecutor::Exited(1, std::to_string(run) + " failures\n");
  });
  for (int i = 0; i < 8; ++i) llm_.Add(FakeLlm::Call("run_tests", Json::object()));
  AgentOutcome outcome = Run("feature");
  EXPECT_EQ(outcome.result, AgentResult::kFailed);
  EXPECT_NE(outcome.reason.find("script has ended"), std::string::npos) << outcome.reason;
  EXPECT_TRUE(Events(EventType::kNote).empty());
}

TEST(WithoutRunTimes, TakesOutDurationsOnly) {
  EXPECT_EQ(WithoutRunTimes("exit code 1 (123 ms)\nRan 3 tests in 0.013s\nOK (0.01 sec)"),
            "exit code 1 (# ms)\nRan 3 tests in #s\nOK (# sec)");
  EXPECT_EQ(WithoutRunTimes("3 tests, 2 failures, x1s, v2.5s, 10 seconds"),
            "3 tests, 2 failures, x1s, v2.5s, # seconds");
  EXPECT_EQ(WithoutRunTimes("5 sessions 7ms"), "5 sessions #ms");
}

TEST_F(AgentLoopTest, AQuestionEndsWithItsAnswerAndNoChange) {
  llm_.Add(FakeLlm::Call("read_file", {{"path", "app.py"}}));
  llm_.Add(FakeLlm::Call("write_file", {{"path", "app.py"}, {"content", "broken\n"}}));
  llm_.Add(FakeLlm::Call("replace_in_file",
                         {{"path", "app.py"}, {"old", "return 1"}, {"new", "return 2"}}));
  llm_.Add(FakeLlm::Call("finish", {{"summary", "f() returns 1, always."}}));
  AgentOutcome outcome = Run("question");
  ASSERT_EQ(outcome.result, AgentResult::kAnswered) << outcome.reason;
  EXPECT_EQ(outcome.answer, "f() returns 1, always.");
  Task task = Reload();
  EXPECT_EQ(task.state, TaskState::kAnswered);
  EXPECT_EQ(task.answer, "f() returns 1, always.");
  // The edits were refused to the model, the suite never ran, nothing committed.
  auto results = Results();
  ASSERT_EQ(results.size(), 4u);
  for (int i : {1, 2}) {
    EXPECT_NE(results[i].find("this task is a question"), std::string::npos) << results[i];
  }
  EXPECT_TRUE(executor_.runs().empty());
  EXPECT_EQ(workspace_->files().at("app.py"), "def f():\n    return 1\n");
  EXPECT_EQ(workspace_->commits(), 0);
  EXPECT_TRUE(Events(EventType::kTestRun).empty());
  // The prompt told the model how a question ends.
  std::string user = StringOr(Events(EventType::kPrompt)[0], "user");
  EXPECT_NE(user.find("call finish(summary) with your answer"), std::string::npos) << user;
}

TEST_F(AgentLoopTest, AnAnsweredQuestionRestartedBeforeItsStateMovedEndsWithTheAnswer) {
  llm_.Add(FakeLlm::Call("finish", {{"summary", "Yes."}}));
  task_ = Lease("question");
  AgentEnv env = Env(task_);
  AgentOutcome first = RunAgent(task_, env);
  ASSERT_EQ(first.result, AgentResult::kAnswered);
  // loomd died before recording the outcome: the next run ends at once, no model call.
  AgentOutcome again = RunAgent(task_, env);
  EXPECT_EQ(again.result, AgentResult::kAnswered);
  EXPECT_EQ(again.answer, "Yes.");
  EXPECT_EQ(llm_.calls(), 1);
}

TEST_F(AgentLoopTest, AFailedVerificationGoesBackToRunningAndTheModelIsTold) {
  int run = 0;
  executor_.set_handler([&run](const sandbox::RunSpec&) -> Result<sandbox::Outcome> {
    ++run;
    return FakeExecutor::Exited(run == 1 ? 1 : 0, run == 1 ? "1 failure" : "ok");
  });
  llm_.Add(FakeLlm::Call("write_file", {{"path", "NOTES.md"}, {"content", "x\n"}}));
  llm_.Add(FakeLlm::Call("finish", {{"summary", "first try"}}));
  llm_.Add(FakeLlm::Call("finish", {{"summary", "second try"}}));
  AgentOutcome outcome = Run("feature");
  EXPECT_EQ(outcome.result, AgentResult::kFinished) << outcome.reason;
  auto results = Results();
  ASSERT_EQ(results.size(), 3u);
  EXPECT_NE(results[1].find("not finished: the test suite fails"), std::string::npos);
  std::vector<std::string> states;
  for (const Json& d : Events(EventType::kState)) states.push_back(StringOr(d, "to"));
  EXPECT_EQ(states,
            (std::vector<std::string>{"running", "verifying", "running", "verifying", "review"}));
}

TEST_F(AgentLoopTest, TheAgentCanAskForInfrastructure) {
  llm_.Add(FakeLlm::Call(
      "request_human", {{"kind", "infrastructure"}, {"summary", "no C compiler in the sandbox"}}));
  AgentOutcome outcome = Run("feature");
  EXPECT_EQ(outcome.result, AgentResult::kBlocked) << outcome.reason;
  EXPECT_EQ(Reload().state, TaskState::kBlocked);
  auto open = stores_.escalations->List(true);
  ASSERT_TRUE(open.ok());
  ASSERT_EQ(open->size(), 1u);
  EXPECT_EQ((*open)[0].kind, "infrastructure");
  EXPECT_EQ((*open)[0].raised_by, "agent");
}

TEST(EscalationKinds, NameEveryKindLoomRaises) {
  const auto& kinds = EscalationKinds();
  for (const char* kind : {"api_key", "gpu", "network", "approval", "question", "infrastructure"}) {
    EXPECT_NE(std::find(kinds.begin(), kinds.end(), kind), kinds.end()) << kind;
  }
}

TEST_F(AgentLoopTest, AModelServerThatIsDownParksTheTask) {
  llm_.Add(Status::Unavailable("connection refused"));
  AgentOutcome outcome = Run("bug");
  EXPECT_EQ(outcome.result, AgentResult::kBlocked);
  EXPECT_EQ(Reload().state, TaskState::kBlocked);
  auto open = stores_.escalations->List(true);
  ASSERT_TRUE(open.ok());
  ASSERT_EQ(open->size(), 1u);
  EXPECT_EQ((*open)[0].kind, "gpu");
  EXPECT_EQ(Reload().steps, 0);
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

// An api_key the policy does not list could never be given (the API refuses it):
// the agent is told at once instead of parking the task on it.
TEST_F(AgentLoopTest, AnApiKeyThePolicyDoesNotAllowIsRefusedAtOnce) {
  policy_.secrets.allowed = {"DEPLOY_TOKEN"};
  llm_.Add(FakeLlm::Call("request_human", {{"kind", "api_key"},
                                           {"summary", "the suite needs the database"},
                                           {"secret_name", "PROD_DB_PASSWORD"}}));
  llm_.Add(FakeLlm::Call("finish", {{"summary", "answered without it"}}));
  AgentOutcome outcome = Run("question");
  auto results = Results();
  ASSERT_GE(results.size(), 1u);
  EXPECT_NE(results[0].find("does not allow the secret 'PROD_DB_PASSWORD' ([secrets] allowed: "
                            "DEPLOY_TOKEN)"),
            std::string::npos)
      << results[0];
  auto open = stores_.escalations->List(true);
  ASSERT_TRUE(open.ok());
  EXPECT_TRUE(open->empty());
  EXPECT_EQ(outcome.result, AgentResult::kAnswered) << outcome.reason;
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

// The executor's Unavailable (a Slurm pool down after its own retries) parks the
// task on an infrastructure escalation after that call, the call's result kept;
// answering it resumes the task.
TEST_F(AgentLoopTest, ASandboxPoolThatIsDownParksTheTaskWithAnInfrastructureEscalation) {
  executor_.set_handler([](const sandbox::RunSpec&) -> Result<sandbox::Outcome> {
    return Status::Unavailable("slurm: the pool is down: no step could start in 3 tries");
  });
  llm_.Add(FakeLlm::Call("run_tests", Json::object()));
  AgentOutcome outcome = Run("bug");
  EXPECT_EQ(outcome.result, AgentResult::kBlocked) << outcome.reason;
  EXPECT_EQ(Reload().state, TaskState::kBlocked);
  auto open = stores_.escalations->List(true);
  ASSERT_TRUE(open.ok());
  ASSERT_EQ(open->size(), 1u);
  EXPECT_EQ((*open)[0].kind, "infrastructure");
  EXPECT_EQ((*open)[0].raised_by, "orchestrator");
  EXPECT_NE((*open)[0].summary.find("the pool is down"), std::string::npos) << (*open)[0].summary;
  ASSERT_EQ(Results().size(), 1u);  // the call's result is recorded before the task parks
  EXPECT_EQ(executor_.runs().size(), 1u);
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

// A granted GPU escalation gives the task's runs its GPUs for the grant's time
// left (whole minutes, on the injected clock); once it ran out, runs have none.
TEST_F(AgentLoopTest, RunsCarryTheTasksGpuGrantUntilItEnds) {
  task_ = Lease("feature");
  auto esc = stores_.escalations->Escalate(task_.id, "gpu", "CUDA suite", "agent");
  ASSERT_TRUE(esc.ok());
  Json grant = {{"approved", true},
                {"gpu",
                 {{"type", "h100"},
                  {"count", 1},
                  {"minutes", 10},
                  {"until_ms", clock_.NowMs() + 10 * 60'000}}},
                {"text", "granted"}};
  ASSERT_TRUE(stores_.escalations->Answer(*esc, grant, 0).ok());
  executor_.set_handler([this](const sandbox::RunSpec&) -> Result<sandbox::Outcome> {
    clock_.AdvanceMs(11 * 60'000);  // the grant ends after the first run
    return FakeExecutor::Exited(0);
  });
  llm_.Add(FakeLlm::Call("run_tests", Json::object()));
  llm_.Add(FakeLlm::Call("run_tests", {{"args", "-k again"}}));
  AgentEnv env = Env(task_);
  RunAgent(task_, env);
  ASSERT_EQ(executor_.runs().size(), 2u);
  ASSERT_TRUE(executor_.runs()[0].gpus.has_value());
  EXPECT_EQ(executor_.runs()[0].gpus->type, "h100");
  EXPECT_EQ(executor_.runs()[0].gpus->count, 1u);
  EXPECT_EQ(executor_.runs()[0].gpus->time_left, std::chrono::minutes(10));
  EXPECT_FALSE(executor_.runs()[1].gpus.has_value());
}

}  // namespace
}  // namespace loom
