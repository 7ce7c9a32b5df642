// Repositories on a git server, end to end: an in-process loomd whose repository
// is registered by URL on a real git server on loopback (git-http-backend behind
// lighttpd with basic authentication, tests/support/git_server.h), the replay
// model as the agent, and the server's repository read with the git CLI. The
// branch is pushed when its task reaches review and again after a revision, a
// lease refusal and a refused credential each leave the task in review with an
// infrastructure escalation, the target is fetched before a task starts and
// before it is verified, a merge made on the server is noticed, a rejection
// deletes the branch there, an approval merges and pushes the target. Skipped,
// saying what to install, only when the server's binaries are missing.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/crypto.h"
#include "common/json.h"
#include "orchestrator/remote_sync.h"
#include "orchestrator/replay_model.h"
#include "orchestrator/repo_store.h"
#include "orchestrator/schema.h"
#include "orchestrator/secrets.h"
#include "repos/workspace.h"
#include "tests/support/daemon_fixture.h"
#include "tests/support/fake_forge.h"
#include "tests/support/git_server.h"
#include "tests/support/replay_script.h"
#include "tests/support/subprocess.h"
#include "tests/support/test_paths.h"

namespace loom {
namespace {

namespace fs = std::filesystem;
using testing::GitHttpServer;
using testing::Script;
using testing::Step;

std::string Sh(const std::string& command) { return testing::CommandOutput(command); }

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

Json ReadJsonFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseJson(ss.str()).value_or(Json());
}

constexpr const char* kToken = "token-for-alice-1234";

class RemotePushTest : public testing::DaemonFixture {
 protected:
  void SetUp() override {
    if (std::string missing = GitHttpServer::Missing(); !missing.empty()) GTEST_SKIP() << missing;
    ASSERT_TRUE(server_.Start(dir_.path() + "/http", "alice", kToken)) << server_.error();
    // The server's repository: examples/calc with one commit on main.
    std::string work = dir_.path() + "/calc-work";
    fs::copy(std::string(LOOM_SOURCE_DIR) + "/examples/calc", work, fs::copy_options::recursive);
    fs::remove_all(work + "/__pycache__");
    fs::remove_all(work + "/tests/__pycache__");
    ASSERT_TRUE(repos::InitRepository(work, "main", "initial").ok());
    upstream_ = server_.repos_dir() + "/calc.git";
    Sh("git clone -q --bare " + work + " " + upstream_ + " && git -C " + upstream_ +
       " config http.receivepack true");
    // The token, in loomd's secret store before loomd starts.
    ASSERT_TRUE(MigrateDatabase(DatabasePath(dir_.path())).ok());
    auto secrets = SecretStore::Open(DatabasePath(dir_.path()), dir_.path());
    ASSERT_TRUE(secrets.ok()) << secrets.status().ToString();
    secrets_ = std::move(*secrets);
    ASSERT_TRUE(secrets_->Put("GIT_TOKEN", kToken).ok());
  }

  void TearDown() override {
    DaemonFixture::TearDown();
    if (replay_) replay_->Stop();
  }

  // The demo's conversation (the calc bug fixed), then `more` replies.
  void Start(Json more = Json::array()) {
    Json demo = ReadJsonFile(std::string(LOOM_SOURCE_DIR) + "/examples/calc-demo.json");
    Json replies = demo["replay"]["conversations"][0]["replies"];
    for (auto& r : more) replies.push_back(r);
    title_ = demo["feedback"]["title"];
    auto replay = ReplayModel::Start(Script(replies));
    ASSERT_TRUE(replay.ok()) << replay.status().ToString();
    replay_ = std::move(*replay);
    StartDaemon({{"llm.url", replay_->url()},
                 {"llm.retries", "1"},
                 {"remote.pass_interval_s", "1"},
                 {"remote.attempts", "2"},
                 {"remote.backoff_ms", "20"}});
    Json body = {{"name", "calc"},
                 {"path", server_.Url("calc.git")},
                 {"test_command", "python3 -m unittest discover -s tests -t ."},
                 {"username", "alice"},
                 {"password_secret", "GIT_TOKEN"}};
    auto r = Call("POST", "/v1/repos", admin_, DumpJson(body));
    ASSERT_EQ(r.status, 201) << r.body;
  }

  int64_t FileBug() {
    Json fb = {
        {"kind", "bug"}, {"title", title_}, {"body", "average([2, 4]) is 6"}, {"repo", "calc"}};
    auto r = Call("POST", "/v1/feedback", reporter_, DumpJson(fb));
    EXPECT_EQ(r.status, 201) << r.body;
    return ParseJson(r.body).value_or(Json::object()).value("id", int64_t{0});
  }

  std::string Path(const Json& task) { return "/v1/tasks/" + std::to_string(Id(task)); }
  static int64_t Id(const Json& task) { return task.value("id", int64_t{0}); }

  std::vector<Json> Events(const Json& task, const std::string& type) {
    std::vector<Json> out;
    Json events = Get(Path(task) + "/events");
    for (auto& e : events["items"]) {
      if (e["type"] == type) out.push_back(e);
    }
    return out;
  }

  std::string Upstream(const std::string& rev) {
    return Trim(Sh("git -C " + upstream_ + " rev-parse --verify -q " + rev));
  }

  // A commit on the server's `branch` made by someone else (straight into the
  // bare repository, as another person's push would); returns it.
  std::string TheirCommit(const std::string& branch, const std::string& file) {
    std::string other = dir_.path() + "/someone-" + file;
    Sh("git clone -q " + upstream_ + " " + other + " && cd " + other + " && git checkout -q " +
       branch + " && echo theirs > " + file + " && git add " + file +
       " && git -c user.name=Someone -c user.email=s@example.com commit -q -m 'their change' && "
       "git push -q origin " +
       branch);
    return Upstream(branch);
  }

  // The bug filed and fixed: the task in review, its branch pushed.
  Json InReview() {
    Json task = WaitSettled(FileBug());
    EXPECT_EQ(task["state"], "review") << task.dump();
    return WaitFor(task, [&](const Json& t) { return !Events(t, "pushed").empty(); });
  }

  testing::ClientResponse Decide(const Json& task, const std::string& what,
                                 const std::string& body = "") {
    return Call("POST", "/v1/reviews/" + std::to_string(Id(task)) + "/" + what, engineer_, body);
  }

  // Polls task `task` until `done` holds on it (a failure after 20 s).
  template <typename Pred>
  Json WaitFor(const Json& task, Pred done) {
    for (int i = 0; i < 400; ++i) {
      Json t = Get(Path(task));
      if (done(t)) return t;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "task " << Id(task) << " did not get there";
    return Get(Path(task));
  }

  std::vector<Json> OpenInfrastructureEscalations(const Json& task) {
    std::vector<Json> out;
    Json escalations = Get("/v1/escalations");
    for (auto& e : escalations["items"]) {
      if (e.value("task_id", int64_t{0}) == Id(task) && e["kind"] == "infrastructure") {
        out.push_back(e);
      }
    }
    return out;
  }

  GitHttpServer server_;
  std::unique_ptr<SecretStore> secrets_;
  std::unique_ptr<ReplayModel> replay_;
  std::string upstream_, title_;
};

// The revision the reviewer asks for in RequestChanges-style tests.
Json Revision() {
  return Json::array(
      {Step("replace_in_file",
            {{"path", "calc.py"},
             {"old", "    \"\"\"The arithmetic mean. Raises ValueError for an empty list.\"\"\""},
             {"new",
              "    \"\"\"The arithmetic mean (sum / count). Raises ValueError for an empty "
              "list.\"\"\""}}),
       Step("finish", {{"summary", "Fix average() and say how it is computed"}})});
}

TEST_F(RemotePushTest, RegistersSecretNamesAndShowsThemWithoutValues) {
  Start();
  auto r = Call("GET", "/v1/repos", engineer_);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body.find(kToken), std::string::npos) << "a secret's value is never shown";
  Json repo = ParseJson(r.body).value_or(Json::object())["items"][0];
  EXPECT_EQ(repo["remote"]["url"], server_.Url("calc.git"));
  EXPECT_EQ(repo["remote"]["username"], "alice");
  EXPECT_EQ(repo["remote"]["password_secret"], "GIT_TOKEN");
  // A secret that is not stored, or of the wrong kind for the URL, is refused.
  Json body = {{"name", "calc2"},
               {"path", server_.Url("calc.git")},
               {"test_command", "true"},
               {"username", "alice"},
               {"password_secret", "NOT_STORED"}};
  r = Call("POST", "/v1/repos", admin_, DumpJson(body));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("NOT_STORED"), std::string::npos) << r.body;
  body["password_secret"] = "GIT_TOKEN";
  body["ssh_key_secret"] = "GIT_TOKEN";
  EXPECT_EQ(Call("POST", "/v1/repos", admin_, DumpJson(body)).status, 400);
  // Without credentials the server refuses the clone.
  body.erase("ssh_key_secret");
  body.erase("password_secret");
  body.erase("username");
  r = Call("POST", "/v1/repos", admin_, DumpJson(body));
  EXPECT_NE(r.status, 201) << r.body;
}

TEST_F(RemotePushTest, PushesTheBranchOnReviewAndAgainAfterARevision) {
  Start(Revision());
  std::string main_at_start = Upstream("main");
  Json task = InReview();
  std::string branch = task["branch"];

  // It started from the server's head, and says so.
  EXPECT_EQ(task["base_commit"], main_at_start);
  auto fetched = Events(task, "fetched");
  ASSERT_GE(fetched.size(), 2u);
  EXPECT_EQ(fetched[0]["data"]["purpose"], "start");
  EXPECT_EQ(fetched[0]["data"]["commit"], main_at_start);
  EXPECT_EQ(fetched[1]["data"]["purpose"], "verification");

  auto pushed = Events(task, "pushed");
  ASSERT_EQ(pushed.size(), 1u);
  const Json first = pushed[0]["data"];
  EXPECT_EQ(first["remote"], server_.Url("calc.git"));
  EXPECT_EQ(first["branch"], branch);
  EXPECT_TRUE(first["previous"].is_null());
  EXPECT_EQ(first["commit"], Upstream(branch));

  auto r = Decide(task, "request-changes",
                  R"({"comment": "Please say in the docstring how the mean is computed."})");
  ASSERT_EQ(r.status, 200) << r.body;
  task = WaitFor(task, [&](const Json& t) {
    return t["state"] == "review" && Events(t, "pushed").size() == 2u;
  });
  pushed = Events(task, "pushed");
  ASSERT_EQ(pushed.size(), 2u);
  EXPECT_EQ(pushed[1]["data"]["previous"], first["commit"]);
  EXPECT_EQ(pushed[1]["data"]["commit"], Upstream(branch));
  EXPECT_NE(pushed[1]["data"]["commit"], first["commit"]);
  EXPECT_TRUE(OpenInfrastructureEscalations(task).empty());
}

// Issue 15's loop end to end with the git side for real: an issue webhook
// files feedback -> the agent (scripted) fixes it -> its branch is pushed to the
// HTTP git server and that push opens a pull request on a loopback GitHub -> a
// review requesting changes, with a line comment, sends it back -> the revised
// branch is pushed under the lease and the pull request updated -> a merged
// webhook marks the task merged.
TEST_F(RemotePushTest, AForgeIssueBecomesAPushedBranchAndAPullRequestThroughToMerged) {
  testing::FakeForge github;
  const std::string hook_key = "forge-webhook-key-123";
  fs::create_directories(dir_.path() + "/policies");
  std::ofstream(dir_.path() + "/policies/calc.toml")
      << "[forge]\nkind = \"github\"\napi_url = \"" << github.url()
      << "\"\nproject = \"acme/calc\"\ntoken_secret = \"GH_TOKEN\"\n"
         "webhook_secret = \"GH_HOOK\"\n";
  ASSERT_TRUE(secrets_->Put("GH_TOKEN", "ghp_e2e_token_123").ok());
  ASSERT_TRUE(secrets_->Put("GH_HOOK", hook_key).ok());
  // GitHub's answers, in the order Loom asks: open the pull request, tell the
  // issue, then update the pull request after the revision's push.
  github.Then({201, R"({"number": 7, "html_url": "https://github.com/acme/calc/pull/7",
                       "draft": false, "node_id": "PR_7"})"});
  github.Then({201, R"({"id": 1})"});
  github.Then({200, R"({"number": 7, "node_id": "PR_7", "draft": false})"});
  Start(Revision());
  auto webhook = [&](const std::string& event, const std::string& id, const Json& body) {
    std::string text = DumpJson(body);
    return Call("POST", "/v1/hooks/github", "", text,
                {{"X-GitHub-Event", event},
                 {"X-GitHub-Delivery", id},
                 {"X-Hub-Signature-256", "sha256=" + HmacSha256Hex(hook_key, text)}});
  };
  auto seen_at_least = [&](size_t n) {
    for (int i = 0; i < 400 && github.seen().size() < n; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return github.seen();
  };
  Json repository = {{"full_name", "acme/calc"}};

  // 1. An issue labelled for Loom becomes feedback.
  Json issue = {{"action", "opened"},
                {"issue",
                 {{"number", 12},
                  {"title", title_},
                  {"body", "average([2, 4]) is 6"},
                  {"html_url", "https://github.com/acme/calc/issues/12"},
                  {"user", {{"login", "octocat"}}},
                  {"labels", Json::array({{{"name", "loom"}}, {{"name", "bug"}}})}}},
                {"repository", repository}};
  auto r = webhook("issues", "e2e-1", issue);
  ASSERT_EQ(r.status, 200) << r.body;
  std::string outcome = ParseJson(r.body)->value("outcome", "");
  ASSERT_EQ(outcome.rfind("feedback ", 0), 0u) << r.body;

  // 2. The agent fixes it; the branch is pushed to the git server.
  Json task = WaitSettled(std::stoll(outcome.substr(9)));
  ASSERT_EQ(task["state"], "review") << task.dump();
  task = WaitFor(task, [&](const Json& t) { return !Events(t, "pushed").empty(); });
  const std::string branch = task["branch"];
  const Json first = Events(task, "pushed").at(0)["data"];
  EXPECT_EQ(first["remote"], server_.Url("calc.git"));
  EXPECT_EQ(Upstream(branch), first["commit"]) << "the server has the task's branch";

  // 3. That push opens the pull request (ready: verified) and tells the issue.
  auto seen = seen_at_least(2);
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].target, "/repos/acme/calc/pulls");
  Json pr = ParseJson(seen[0].body).value_or(Json::object());
  EXPECT_EQ(pr["head"], branch);
  EXPECT_EQ(pr["base"], "main");
  EXPECT_EQ(seen[1].target, "/repos/acme/calc/issues/12/comments");

  // 4. A review requests changes with a line comment: back to the agent.
  Json pull = {{"number", 7}, {"html_url", "https://github.com/acme/calc/pull/7"}};
  r = webhook("pull_request_review_comment", "e2e-2",
              {{"action", "created"},
               {"comment",
                {{"id", 70},
                 {"pull_request_review_id", 700},
                 {"path", "calc.py"},
                 {"line", 4},
                 {"body", "Say how the mean is computed."}}},
               {"pull_request", pull},
               {"repository", repository}});
  ASSERT_EQ(r.status, 200) << r.body;
  r = webhook("pull_request_review", "e2e-3",
              {{"action", "submitted"},
               {"review",
                {{"id", 700},
                 {"state", "changes_requested"},
                 {"body", "One docstring, please."},
                 {"user", {{"login", "reviewer"}}}}},
               {"pull_request", pull},
               {"repository", repository}});
  ASSERT_EQ(r.status, 200) << r.body;

  // 5. The revision is pushed again, under the lease, and the pull request updated.
  task = WaitFor(task, [&](const Json& t) {
    return t["state"] == "review" && Events(t, "pushed").size() == 2u;
  });
  std::string turn = DumpJson(replay_->requests().back()["messages"]);
  EXPECT_NE(turn.find("- calc.py:4\\n    Say how the mean is computed."), std::string::npos)
      << turn;
  const Json second = Events(task, "pushed").at(1)["data"];
  EXPECT_EQ(second["previous"], first["commit"]);
  EXPECT_NE(second["commit"], first["commit"]);
  EXPECT_EQ(Upstream(branch), second["commit"]);
  seen = seen_at_least(3);
  ASSERT_GE(seen.size(), 3u);
  EXPECT_EQ(seen[2].method, "PATCH");
  EXPECT_EQ(seen[2].target, "/repos/acme/calc/pulls/7");

  // 6. Merged on GitHub: the task is merged.
  r = webhook("pull_request", "e2e-4",
              {{"action", "closed"},
               {"pull_request", {{"number", 7}, {"merged", true}, {"merge_commit_sha", "abc123"}}},
               {"repository", repository},
               {"sender", {{"login", "maintainer"}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Get(Path(task))["state"], "merged");
  EXPECT_TRUE(OpenInfrastructureEscalations(task).empty());
}

TEST_F(RemotePushTest, ABranchSomeoneElseMovedIsNotOverwritten) {
  Start(Revision());
  Json task = InReview();
  std::string branch = task["branch"];
  std::string theirs = TheirCommit(branch, "REVIEWER.md");

  auto r = Decide(task, "request-changes",
                  R"({"comment": "Please say in the docstring how the mean is computed."})");
  ASSERT_EQ(r.status, 200) << r.body;
  task = WaitFor(task, [&](const Json& t) { return t["state"] == "review"; });
  // Refused: their commit stays, the task stays in review with its branch, a
  // person is asked.
  task = WaitFor(task, [&](const Json&) { return !Events(task, "push_failed").empty(); });
  EXPECT_EQ(Upstream(branch), theirs);
  EXPECT_EQ(Events(task, "pushed").size(), 1u);
  EXPECT_EQ(task["state"], "review");
  EXPECT_EQ(task["branch"], branch);
  std::string error = Events(task, "push_failed")[0]["data"]["error"];
  EXPECT_NE(error.find(theirs), std::string::npos) << error;
  auto escalations = OpenInfrastructureEscalations(task);
  ASSERT_EQ(escalations.size(), 1u);
  EXPECT_NE(escalations[0]["summary"].get<std::string>().find("someone else moved"),
            std::string::npos)
      << escalations[0].dump();
  // The passes try again, but raise no second escalation while one is open.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(OpenInfrastructureEscalations(task).size(), 1u);
}

TEST_F(RemotePushTest, ARefusedCredentialIsEscalatedAndNothingIsLost) {
  Start(Revision());
  // The token is changed (revoked) after the repository was registered.
  ASSERT_TRUE(secrets_->Put("GIT_TOKEN", "revoked-token-0000").ok());
  Json task = WaitSettled(FileBug());
  // The start's fetch was refused: parked with an infrastructure escalation.
  ASSERT_EQ(task["state"], "blocked") << task.dump();
  auto escalations = OpenInfrastructureEscalations(task);
  ASSERT_EQ(escalations.size(), 1u);
  EXPECT_NE(escalations[0]["summary"].get<std::string>().find("credential"), std::string::npos)
      << escalations[0].dump();
  EXPECT_EQ(escalations[0]["summary"].get<std::string>().find("revoked-token"), std::string::npos);

  // Fixed and answered: the task starts again, and its branch is pushed.
  ASSERT_TRUE(secrets_->Put("GIT_TOKEN", kToken).ok());
  auto r = Call(
      "POST", "/v1/escalations/" + std::to_string(escalations[0]["id"].get<int64_t>()) + "/answer",
      engineer_, R"({"text": "token renewed"})");
  ASSERT_EQ(r.status, 200) << r.body;
  task = WaitFor(
      task, [&](const Json& t) { return t["state"] == "review" && !Events(t, "pushed").empty(); });
  EXPECT_EQ(Events(task, "pushed").size(), 1u);

  // Revoked again while in review: the revision's push fails and is
  // escalated; the task stays in review with its branch.
  ASSERT_TRUE(secrets_->Put("GIT_TOKEN", "revoked-token-0000").ok());
  std::string branch = task["branch"];
  std::string pushed = Upstream(branch);
  r = Decide(task, "request-changes",
             R"({"comment": "Please say in the docstring how the mean is computed."})");
  ASSERT_EQ(r.status, 200) << r.body;
  task = WaitFor(task, [&](const Json& t) {
    return t["state"] == "review" && !Events(t, "push_failed").empty();
  });
  EXPECT_EQ(task["branch"], branch);
  EXPECT_EQ(Upstream(branch), pushed);
  escalations = OpenInfrastructureEscalations(task);
  ASSERT_EQ(escalations.size(), 1u);
  EXPECT_NE(escalations[0]["summary"].get<std::string>().find("credential"), std::string::npos)
      << escalations[0].dump();
}

TEST_F(RemotePushTest, FetchesBeforeVerificationWhenTheUpstreamMoved) {
  // The agent takes its time on its first reply: the server's main moves meanwhile.
  Json demo = ReadJsonFile(std::string(LOOM_SOURCE_DIR) + "/examples/calc-demo.json");
  Json replies = demo["replay"]["conversations"][0]["replies"];
  replies[0]["delay_ms"] = 1500;
  title_ = demo["feedback"]["title"];
  auto replay = ReplayModel::Start(Script(replies));
  ASSERT_TRUE(replay.ok());
  replay_ = std::move(*replay);
  StartDaemon({{"llm.url", replay_->url()}, {"llm.retries", "1"}, {"remote.pass_interval_s", "0"}});
  Json body = {{"name", "calc"},
               {"path", server_.Url("calc.git")},
               {"test_command", "python3 -m unittest discover -s tests -t ."},
               {"username", "alice"},
               {"password_secret", "GIT_TOKEN"}};
  ASSERT_EQ(Call("POST", "/v1/repos", admin_, DumpJson(body)).status, 201);
  std::string before = Upstream("main");
  int64_t fb = FileBug();
  Json item;
  for (int i = 0; i < 200 && !item.contains("task_id"); ++i) {
    item = Get("/v1/feedback/" + std::to_string(fb));
    if (!item.contains("task_id")) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Json task = {{"id", item.value("task_id", int64_t{0})}};
  WaitFor(task, [&](const Json&) { return !Events(task, "fetched").empty(); });
  std::string moved = TheirCommit("main", "UPSTREAM.md");
  ASSERT_NE(moved, before);

  task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "review") << task.dump();
  auto fetched = Events(task, "fetched");
  ASSERT_EQ(fetched.size(), 2u);
  EXPECT_EQ(fetched[0]["data"]["commit"], before);
  EXPECT_EQ(fetched[1]["data"]["purpose"], "verification");
  EXPECT_EQ(fetched[1]["data"]["previous"], before);
  EXPECT_EQ(fetched[1]["data"]["commit"], moved);
  // The review's diff is against the moved target: its merge base is still the
  // task's start, and the target the reviewer merges into is the server's.
  Json diff = Get(Path(task) + "/diff");
  EXPECT_EQ(diff["base_commit"], before);
  auto r = Decide(task, "approve");
  ASSERT_EQ(r.status, 200) << r.body;
  std::string merged = Upstream("main");
  EXPECT_EQ(Trim(Sh("git -C " + upstream_ + " merge-base --is-ancestor " + moved + " " + merged +
                    " && echo yes")),
            "yes");
  EXPECT_EQ(Trim(Sh("git -C " + upstream_ + " merge-base --is-ancestor " +
                    task["branch"].get<std::string>() + " " + merged + " && echo yes")),
            "yes");
  EXPECT_EQ(Get(Path(task))["state"], "merged");
}

TEST_F(RemotePushTest, AMergeOnTheServerIsNoticed) {
  Start();
  Json task = InReview();
  std::string branch = task["branch"];
  std::string head = Upstream(branch);
  // Someone merges the branch on the server (a fast-forward of main).
  Sh("git -C " + upstream_ + " update-ref refs/heads/main " + head);
  task = WaitFor(task, [](const Json& t) { return t["state"] == "merged"; });
  Json last = Events(task, "state").back()["data"];
  EXPECT_EQ(last["to"], "merged");
  EXPECT_EQ(last["how"], "upstream");
  EXPECT_EQ(last["commit"], head);
  EXPECT_EQ(Get("/v1/feedback/" + std::to_string(task["feedback_ids"][0].get<int64_t>()))["status"],
            "merged");
}

TEST_F(RemotePushTest, RejectDeletesTheBranchOnTheServer) {
  Start();
  Json task = InReview();
  std::string branch = task["branch"];
  ASSERT_NE(Upstream(branch), "");
  auto r = Decide(task, "reject", R"({"reason": "not now"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Upstream(branch), "");
  auto deleted = Events(task, "remote_branch_deleted");
  ASSERT_EQ(deleted.size(), 1u);
  EXPECT_EQ(deleted[0]["data"]["branch"], branch);
}

TEST_F(RemotePushTest, CancellingARevisionDeletesTheBranchOnTheServer) {
  Json revision = Revision();
  revision[0]["delay_ms"] = 3000;  // the revision is still running when cancelled
  Start(revision);
  Json task = InReview();
  std::string branch = task["branch"];
  ASSERT_NE(Upstream(branch), "");
  auto r = Decide(task, "request-changes", R"({"comment": "Say how the mean is computed."})");
  ASSERT_EQ(r.status, 200) << r.body;
  WaitFor(task, [](const Json& t) { return t["state"] == "running"; });
  r = Call("POST", Path(task) + "/cancel", engineer_, R"({"reason": "not needed"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Upstream(branch), "");
  EXPECT_EQ(Events(task, "remote_branch_deleted").size(), 1u);
}

TEST_F(RemotePushTest, ApproveMergesIntoTheServersBranchAndPushesIt) {
  Start();
  Json task = InReview();
  std::string head = Upstream(task["branch"].get<std::string>());
  auto r = Decide(task, "approve");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Upstream("main"), head) << "a fast-forward of the server's main";
  EXPECT_EQ(Get(Path(task))["state"], "merged");
}

// The same loop over SSH: the key and the server's known_hosts line are secrets
// the repository names; the branch reaches the server when the task is in review.
TEST_F(RemotePushTest, PushesOverSshWithAKeyAndKnownHosts) {
  if (std::string missing = testing::GitSshServer::Missing(); !missing.empty()) {
    GTEST_SKIP() << missing;
  }
  testing::GitSshServer ssh;
  ASSERT_TRUE(ssh.Start(dir_.path() + "/ssh")) << ssh.error();
  ASSERT_TRUE(secrets_->Put("DEPLOY_KEY", ssh.client_key()).ok());
  ASSERT_TRUE(secrets_->Put("GIT_HOSTS", ssh.known_hosts()).ok());
  Json demo = ReadJsonFile(std::string(LOOM_SOURCE_DIR) + "/examples/calc-demo.json");
  title_ = demo["feedback"]["title"];
  auto replay = ReplayModel::Start(demo["replay"]);
  ASSERT_TRUE(replay.ok());
  replay_ = std::move(*replay);
  StartDaemon({{"llm.url", replay_->url()}, {"llm.retries", "1"}});
  Json body = {{"name", "calc"},
               {"path", ssh.Url(upstream_)},
               {"test_command", "python3 -m unittest discover -s tests -t ."},
               {"ssh_key_secret", "DEPLOY_KEY"},
               {"known_hosts_secret", "GIT_HOSTS"}};
  auto r = Call("POST", "/v1/repos", admin_, DumpJson(body));
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.body.find("BEGIN OPENSSH"), std::string::npos);
  Json task = InReview();
  Json pushed = Events(task, "pushed")[0]["data"];
  EXPECT_EQ(pushed["remote"], ssh.Url(upstream_));
  EXPECT_EQ(pushed["commit"], Upstream(task["branch"].get<std::string>()));
}

TEST(UrlWithoutCredentialsTest, DropsTheUserOfAnHttpUrlOnly) {
  EXPECT_EQ(UrlWithoutCredentials("https://alice@git.example.com/team/app.git"),
            "https://git.example.com/team/app.git");
  EXPECT_EQ(UrlWithoutCredentials("http://127.0.0.1:8080/git/app.git"),
            "http://127.0.0.1:8080/git/app.git");
  EXPECT_EQ(UrlWithoutCredentials("git@github.com:team/app.git"), "git@github.com:team/app.git");
}

// Branch and worktree names are owned by the data dir that made them: a new
// data dir on a repository an earlier one worked on never adopts its branches.
class InstanceTest : public testing::DaemonFixture {
 protected:
  void TearDown() override {
    DaemonFixture::TearDown();
    if (replay_) replay_->Stop();
  }
  std::unique_ptr<ReplayModel> replay_;
};

TEST_F(InstanceTest, ANewDataDirNeverAdoptsAnEarlierInstancesBranch) {
  Json demo = ReadJsonFile(std::string(LOOM_SOURCE_DIR) + "/examples/calc-demo.json");
  auto replay = ReplayModel::Start(demo["replay"]);
  ASSERT_TRUE(replay.ok());
  replay_ = std::move(*replay);
  StartDaemon({{"llm.url", replay_->url()}, {"llm.retries", "1"}});
  std::string repo = RegisterCalc();
  // What an earlier data dir's task 1 left in the shared repository.
  Sh("git -C " + repo + " branch loom/1-earlier-work main");
  std::string earlier = Trim(Sh("git -C " + repo + " rev-parse loom/1-earlier-work"));

  Json fb = {{"kind", "bug"},
             {"title", demo["feedback"]["title"]},
             {"body", demo["feedback"]["body"]},
             {"repo", "calc"}};
  auto r = Call("POST", "/v1/feedback", reporter_, DumpJson(fb));
  ASSERT_EQ(r.status, 201) << r.body;
  Json task = WaitSettled(ParseJson(r.body)->value("id", int64_t{0}));
  ASSERT_EQ(task["state"], "review") << task.dump();
  ASSERT_EQ(task["id"], 1);
  std::string branch = task["branch"];
  // loom/<instance>-1-<slug>: this data dir's, not the earlier one's.
  EXPECT_EQ(branch.rfind("loom/i", 0), 0u) << branch;
  EXPECT_NE(branch.find("-1-"), std::string::npos) << branch;
  EXPECT_EQ(Trim(Sh("git -C " + repo + " rev-parse loom/1-earlier-work")), earlier);
  EXPECT_FALSE(fs::exists(dir_.path() + "/worktrees/calc/loom-1"));
  // Another data dir gets another instance id.
  testing::TempDir other;
  ASSERT_TRUE(MigrateDatabase(DatabasePath(other.path())).ok());
  auto db = StoreDb::Open(DatabasePath(other.path()));
  ASSERT_TRUE(db.ok());
  RepoStore other_repos(*db);
  auto id = other_repos.InstanceId();
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(branch.find("loom/" + *id + "-"), std::string::npos);
}

}  // namespace
}  // namespace loom
