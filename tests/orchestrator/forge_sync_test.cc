// The pull request sync over real stores (SQLite in a temp dir) and a forge's
// REST API on loopback (tests/support/fake_forge.h): a `pushed` event opens the
// pull request with the task's story in its body, the next updates it, review
// tells the forge issue the feedback came from, rejection closes it; the
// cursor survives a new instance; an unreachable forge is tried again.
#include "orchestrator/forge_sync.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/auth.h"
#include "orchestrator/schema.h"
#include "orchestrator/stores.h"
#include "repos/workspace.h"
#include "tests/support/fake_forge.h"
#include "tests/support/temp_dir.h"

namespace loom {
namespace {

class ForgeSyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string db = DatabasePath(dir_.path());
    ASSERT_TRUE(MigrateDatabase(db).ok());
    auto stores = OrchestratorStores::Open(db);
    ASSERT_TRUE(stores.ok());
    stores_ = std::move(*stores);
    auto fb = feedback::Store::Open(db);
    ASSERT_TRUE(fb.ok());
    feedback_ = std::move(*fb);
    auto secrets = SecretStore::Open(db, dir_.path());
    ASSERT_TRUE(secrets.ok());
    secrets_ = std::move(*secrets);
    ASSERT_TRUE(secrets_->Put("GH_TOKEN", "ghp_token_1234567890").ok());
    auto tokens = TokenStore::Open(db);
    ASSERT_TRUE(tokens.ok());
    auto token = (*tokens)->Create(Role::kReporter, "app");
    ASSERT_TRUE(token.ok());
    token_id_ = (*tokens)->Lookup(*token)->token_id;
    // A repository to route feedback to.
    std::string repo = dir_.path() + "/calc";
    std::filesystem::create_directories(repo);
    std::ofstream(repo + "/calc.py") << "x = 1\n";
    ASSERT_TRUE(repos::InitRepository(repo, "main", "initial").ok());
    repos::RepoRecord record;
    record.name = "calc";
    record.path = repo;
    record.test_command = "true";
    record.settings.target_branch = "main";
    ASSERT_TRUE(stores_.repos->Register(record).ok());
    policies::Policy policy = policies::DefaultPolicy();
    policy.forge.kind = "github";
    policy.forge.api_url = forge_.url();
    policy.forge.project = "acme/calc";
    policy.forge.token_secret = "GH_TOKEN";
    policies_.Replace({{"calc", policy}});
    forge_store_ = std::make_unique<ForgeStore>(stores_.db);
  }

  std::unique_ptr<ForgeSync> Sync() {
    ForgeSyncDeps deps;
    deps.forge = forge_store_.get();
    deps.tasks = stores_.tasks.get();
    deps.feedback = feedback_.get();
    deps.policies = &policies_;
    deps.secrets = secrets_.get();
    deps.make_client = [](ForgeClientOptions o) {
      o.max_attempts = 2;
      o.sleep = [](std::chrono::milliseconds) {};
      return ForgeClient::Make(std::move(o));
    };
    return std::make_unique<ForgeSync>(std::move(deps));
  }

  // A task made of a bug report (with a forge issue), verified and in review.
  int64_t TaskInReview() {
    feedback::Item item;
    item.kind = "bug";
    item.title = "average() of [2, 4] is 6";
    item.body = "Steps";
    item.repo = "calc";
    item.url = "https://github.com/acme/calc/issues/12";
    item.token_id = token_id_;
    auto filed = feedback_->SubmitAndWait(item);
    EXPECT_TRUE(filed.ok());
    EXPECT_TRUE(forge_store_
                    ->PutIssue({filed->id, "calc", "github", "acme/calc", 12,
                                "https://github.com/acme/calc/issues/12", std::nullopt})
                    .ok());
    auto made = stores_.tasks->Triage();
    EXPECT_TRUE(made.ok() && made->size() == 1u);
    int64_t id = made->at(0);
    auto& tasks = *stores_.tasks;
    EXPECT_TRUE(tasks.Transition(id, TaskState::kQueued, TaskState::kRunning, "t").ok());
    Json finish = {
        {"role", "assistant"},
        {"content", ""},
        {"tool_calls",
         Json::array(
             {{{"id", "c1"},
               {"type", "function"},
               {"function",
                {{"name", "finish"}, {"arguments", R"({"summary": "Divide by the count."})"}}}}})}};
    EXPECT_TRUE(tasks.AppendEvent(id, EventType::kLlmReply, {{"message", finish}}).ok());
    EXPECT_TRUE(
        tasks
            .AppendEvent(id, EventType::kFailToPass,
                         {{"tests", {"tests/test_average.py"}}, {"base", {{"exit_code", 1}}}})
            .ok());
    EXPECT_TRUE(
        tasks
            .AppendEvent(id, EventType::kTestRun,
                         {{"tree", "branch"}, {"outcome", {{"exit_code", 0}}}, {"ms", 1200}})
            .ok());
    EXPECT_TRUE(tasks.Transition(id, TaskState::kRunning, TaskState::kVerifying, "t").ok());
    EXPECT_TRUE(tasks.Transition(id, TaskState::kVerifying, TaskState::kReview, "t").ok());
    return id;
  }

  void Pushed(int64_t task, const std::string& commit) {
    ASSERT_TRUE(stores_.tasks
                    ->AppendEvent(task, EventType::kPushed,
                                  {{"remote", "origin"},
                                   {"branch", "loom/" + std::to_string(task) + "-average"},
                                   {"commit", commit},
                                   {"previous", nullptr}})
                    .ok());
  }

  testing::TempDir dir_;
  testing::FakeForge forge_;
  OrchestratorStores stores_;
  std::unique_ptr<feedback::Store> feedback_;
  std::unique_ptr<SecretStore> secrets_;
  int64_t token_id_ = 0;
  PolicySet policies_;
  std::unique_ptr<ForgeStore> forge_store_;
};

TEST_F(ForgeSyncTest, APushOpensThePullRequestAndTellsTheIssue) {
  int64_t task = TaskInReview();
  // Reaching review before any push: nothing to do yet (no pull request).
  auto sync = Sync();
  ASSERT_TRUE(sync->RunOnce().ok());
  EXPECT_TRUE(forge_.seen().empty());

  Pushed(task, "0123456789abcdef0123");
  forge_.Then({201, R"({"number": 31, "html_url": "https://github.com/acme/calc/pull/31",
                      "draft": false, "node_id": "PR_1"})"});
  forge_.Then({201, R"({"id": 9})"});
  ASSERT_TRUE(sync->RunOnce().ok());
  auto seen = forge_.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].target, "/repos/acme/calc/pulls");
  EXPECT_EQ(seen[0].headers.at("authorization"), "Bearer ghp_token_1234567890");
  Json pr = ParseJson(seen[0].body).value();
  EXPECT_EQ(pr["head"], "loom/" + std::to_string(task) + "-average");
  EXPECT_EQ(pr["base"], "main");
  EXPECT_EQ(pr["draft"], false) << "verified: the task is in review";
  EXPECT_EQ(pr["title"], "average() of [2, 4] is 6");
  std::string body = pr["body"];
  for (const char* part :
       {"Divide by the count.", "1 reporter", "https://github.com/acme/calc/issues/12",
        "FAIL_TO_PASS: `tests/test_average.py` fails on the base commit (exit 1) and passes",
        "PASS_TO_PASS: the whole suite passes", "tokens", "0123456789ab"}) {
    EXPECT_NE(body.find(part), std::string::npos) << part << " not in:\n" << body;
  }
  EXPECT_EQ(seen[1].target, "/repos/acme/calc/issues/12/comments");
  EXPECT_NE(ParseJson(seen[1].body)
                .value()["body"]
                .get<std::string>()
                .find("https://github.com/acme/calc/pull/31"),
            std::string::npos);
  auto pull = forge_store_->PullOfTask(task);
  ASSERT_TRUE(pull.ok() && pull->has_value());
  EXPECT_EQ((*pull)->number, 31);

  // The next push (a revision) updates the body; the issue is not told twice.
  Pushed(task, "fedcba9876543210fedc");
  forge_.Then({200, R"({"number": 31, "node_id": "PR_1", "draft": false})"});
  ASSERT_TRUE(sync->RunOnce().ok());
  seen = forge_.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[2].method, "PATCH");
  EXPECT_EQ(seen[2].target, "/repos/acme/calc/pulls/31");
  EXPECT_NE(ParseJson(seen[2].body).value()["body"].get<std::string>().find("fedcba987654"),
            std::string::npos);

  // A new instance resumes from the stored cursor: nothing is sent again.
  auto again = Sync();
  ASSERT_TRUE(again->RunOnce().ok());
  EXPECT_EQ(forge_.seen().size(), 3u);

  // Rejected: the pull request is closed.
  ASSERT_TRUE(stores_.tasks->RecordReview(task, ReviewDecision::kRejected, "no", 0).ok());
  forge_.Then({200, R"({"number": 31, "state": "closed"})"});
  ASSERT_TRUE(again->RunOnce().ok());
  seen = forge_.seen();
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(ParseJson(seen[3].body).value(), Json({{"state", "closed"}}));
}

TEST_F(ForgeSyncTest, AnUnreachableForgeIsTriedAgainAndNothingIsLost) {
  int64_t task = TaskInReview();
  Pushed(task, "0123456789abcdef0123");
  auto sync = Sync();
  forge_.Then({503, R"({"message": "down"})"});
  forge_.Then({503, R"({"message": "down"})"});
  EXPECT_EQ(sync->RunOnce().code(), StatusCode::kUnavailable);
  EXPECT_FALSE(forge_store_->PullOfTask(task)->has_value());
  forge_.Then({201, R"({"number": 32, "html_url": "https://github.com/acme/calc/pull/32"})"});
  forge_.Then({201, R"({"id": 9})"});
  ASSERT_TRUE(sync->RunOnce().ok());
  ASSERT_TRUE(forge_store_->PullOfTask(task)->has_value());
  EXPECT_EQ((*forge_store_->PullOfTask(task))->number, 32);
  EXPECT_EQ(forge_.seen().size(), 4u);
}

TEST_F(ForgeSyncTest, ARefusalIsPassedOverSoLaterEventsDoNotWait) {
  int64_t task = TaskInReview();
  Pushed(task, "0123456789abcdef0123");
  Pushed(task, "1111111111111111aaaa");
  forge_.Then({422, R"({"message": "Validation Failed",
                      "errors": [{"message": "head: branch does not exist"}]})"});
  forge_.Then({200, "[]"});  // no pull request open for the branch either
  forge_.Then({201, R"({"number": 33, "html_url": "https://github.com/acme/calc/pull/33"})"});
  forge_.Then({201, R"({"id": 9})"});
  auto sync = Sync();
  ASSERT_TRUE(sync->RunOnce().ok());
  EXPECT_EQ((*forge_store_->PullOfTask(task))->number, 33);
}

// Opened, then loomd stopped before recording it: the next pass finds it by
// its branch instead of failing on "already exists".
TEST_F(ForgeSyncTest, APullRequestOpenedBeforeAStopIsFoundByItsBranch) {
  int64_t task = TaskInReview();
  Pushed(task, "0123456789abcdef0123");
  forge_.Then({422, R"({"message": "Validation Failed", "errors": [{"message":
                      "A pull request already exists for acme:loom/1-average."}]})"});
  forge_.Then({200, R"([{"number": 40, "html_url": "https://github.com/acme/calc/pull/40",
                       "draft": false}])"});
  forge_.Then({201, R"({"id": 9})"});
  ASSERT_TRUE(Sync()->RunOnce().ok());
  auto seen = forge_.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1].method, "GET");
  EXPECT_EQ(seen[1].target, "/repos/acme/calc/pulls?state=open&head=acme%3Aloom%2F" +
                                std::to_string(task) + "-average");
  EXPECT_EQ((*forge_store_->PullOfTask(task))->number, 40);
  EXPECT_EQ(seen[2].target, "/repos/acme/calc/issues/12/comments");
}

TEST_F(ForgeSyncTest, RepositoriesWithoutAForgeAreLeftAlone) {
  policies_.Replace({});
  int64_t task = TaskInReview();
  Pushed(task, "0123456789abcdef0123");
  ASSERT_TRUE(Sync()->RunOnce().ok());
  EXPECT_TRUE(forge_.seen().empty());
  EXPECT_GT(*forge_store_->Cursor(ForgeSync::kConsumer), 0);
}

}  // namespace
}  // namespace loom
