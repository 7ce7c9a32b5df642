// POST /v1/hooks/github and /v1/hooks/gitlab against a real loomd: payloads
// shaped as GitHub's and GitLab's webhook documentation shows them, signed
// with the repository's webhook secret (or not), replayed, out of order,
// malformed and oversized.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/crypto.h"
#include "common/json.h"
#include "orchestrator/forge_store.h"
#include "orchestrator/secrets.h"
#include "orchestrator/stores.h"
#include "tests/support/daemon_fixture.h"

namespace loom {
namespace {

constexpr const char* kGithubSecret = "It's a Secret to Everybody";
constexpr const char* kGitlabSecret = "gitlab-hook-token-1234";

class ForgeHooksTest : public testing::DaemonFixture {
 protected:
  void SetUp() override {
    namespace fs = std::filesystem;
    fs::create_directories(dir_.path() + "/policies");
    std::ofstream(dir_.path() + "/policies/calc.toml") << R"([forge]
kind = "github"
project = "Acme/Calc"
webhook_secret = "GH_HOOK"
issue_label = "loom"
)";
    std::ofstream(dir_.path() + "/policies/lab.toml") << R"([forge]
kind = "gitlab"
project = "acme/lab"
webhook_secret = "GL_HOOK"
)";
    ASSERT_TRUE(MigrateDatabase(DatabasePath(dir_.path())).ok());
    auto secrets = SecretStore::Open(DatabasePath(dir_.path()), dir_.path());
    ASSERT_TRUE(secrets.ok());
    ASSERT_TRUE((*secrets)->Put("GH_HOOK", kGithubSecret).ok());
    ASSERT_TRUE((*secrets)->Put("GL_HOOK", kGitlabSecret).ok());
    StartDaemon({{"agents", "0"}});
    RegisterCalc();
    auto stores = OrchestratorStores::Open(DatabasePath(dir_.path()));
    ASSERT_TRUE(stores.ok());
    stores_ = std::move(*stores);
    forge_ = std::make_unique<ForgeStore>(stores_.db);
  }

  testing::ClientResponse Github(const std::string& event, const std::string& delivery,
                                 const std::string& body,
                                 std::optional<std::string> signature = std::nullopt) {
    std::map<std::string, std::string> headers = {{"X-GitHub-Event", event},
                                                  {"X-GitHub-Delivery", delivery},
                                                  {"Content-Type", "application/json"}};
    std::string sig = signature.value_or("sha256=" + HmacSha256Hex(kGithubSecret, body));
    if (!sig.empty()) headers["X-Hub-Signature-256"] = sig;
    return Call("POST", "/v1/hooks/github", "", body, headers);
  }

  testing::ClientResponse Gitlab(const std::string& event, const std::string& uuid,
                                 const Json& body, const std::string& token = kGitlabSecret) {
    std::map<std::string, std::string> headers = {
        {"X-Gitlab-Event", event}, {"X-Gitlab-Event-UUID", uuid}, {"X-Gitlab-Token", token}};
    return Call("POST", "/v1/hooks/gitlab", "", DumpJson(body), headers);
  }

  static Json Repository() {
    return {{"id", 1296269}, {"name", "calc"}, {"full_name", "acme/calc"}};
  }

  // An "issues" event as GitHub documents it (the members Loom reads, and some it does not).
  static Json IssueEvent(const std::string& action, int64_t number,
                         const std::vector<std::string>& labels) {
    Json l = Json::array();
    for (const auto& name : labels) l.push_back({{"id", 208045946}, {"name", name}});
    return {{"action", action},
            {"issue",
             {{"url", "https://api.github.com/repos/acme/calc/issues/" + std::to_string(number)},
              {"html_url", "https://github.com/acme/calc/issues/" + std::to_string(number)},
              {"number", number},
              {"title", "average() of [2, 4] is 6"},
              {"body", "Steps: call average([2, 4]).\nExpected 3."},
              {"user", {{"login", "octocat"}, {"id", 1}}},
              {"labels", l},
              {"state", "open"}}},
            {"repository", Repository()},
            {"sender", {{"login", "octocat"}}}};
  }

  // A task of the calc repository, walked to `review`, with pull request `number`.
  int64_t TaskInReview(int64_t number, const std::string& title) {
    Json fb = {{"kind", "bug"}, {"title", title}, {"body", "b"}, {"repo", "calc"}};
    auto r = Call("POST", "/v1/feedback", reporter_, DumpJson(fb));
    EXPECT_EQ(r.status, 201) << r.body;
    auto made = stores_.tasks->Triage();
    EXPECT_TRUE(made.ok() && made->size() == 1u);
    int64_t id = made->at(0);
    EXPECT_TRUE(stores_.tasks->Transition(id, TaskState::kQueued, TaskState::kRunning, "t").ok());
    EXPECT_TRUE(
        stores_.tasks->Transition(id, TaskState::kRunning, TaskState::kVerifying, "t").ok());
    EXPECT_TRUE(stores_.tasks->Transition(id, TaskState::kVerifying, TaskState::kReview, "t").ok());
    EXPECT_TRUE(
        forge_
            ->PutPull({id, "calc", "github", "Acme/Calc", number,
                       "https://github.com/acme/calc/pull/" + std::to_string(number), false})
            .ok());
    return id;
  }

  std::string State(int64_t task) { return Get("/v1/tasks/" + std::to_string(task))["state"]; }

  std::vector<Json> Events(int64_t task, const std::string& type) {
    Json all = Get("/v1/tasks/" + std::to_string(task) + "/events");
    std::vector<Json> out;
    for (const Json& e : all.value("items", all)) {
      if (e.value("type", "") == type) out.push_back(e);
    }
    return out;
  }

  static std::string Outcome(const testing::ClientResponse& r) {
    return ParseJson(r.body).value_or(Json::object()).value("outcome", "");
  }

  OrchestratorStores stores_;
  std::unique_ptr<ForgeStore> forge_;
};

TEST_F(ForgeHooksTest, ALabelledIssueBecomesFeedbackOnce) {
  auto r = Github("issues", "d-1", DumpJson(IssueEvent("opened", 12, {"loom", "bug"})));
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(Outcome(r).rfind("feedback ", 0), 0u) << r.body;
  int64_t id = std::stoll(Outcome(r).substr(9));
  Json item = Get("/v1/feedback/" + std::to_string(id));
  EXPECT_EQ(item["kind"], "bug");
  EXPECT_EQ(item["reporter"], "github:octocat");
  EXPECT_EQ(item["url"], "https://github.com/acme/calc/issues/12");
  EXPECT_EQ(item["repo"], "calc");
  EXPECT_EQ(item["title"], "average() of [2, 4] is 6");
  EXPECT_EQ(item["context"]["issue"], 12);

  // The same delivery again: answered from the record, nothing filed.
  auto again = Github("issues", "d-1", DumpJson(IssueEvent("opened", 12, {"loom", "bug"})));
  EXPECT_EQ(again.status, 200);
  EXPECT_TRUE(ParseJson(again.body)->value("duplicate", false)) << again.body;
  // Another delivery about the same issue (labelled again): still one item.
  Json labeled = IssueEvent("labeled", 12, {"loom", "bug"});
  labeled["label"] = {{"name", "loom"}};
  auto later = Github("issues", "d-2", DumpJson(labeled));
  EXPECT_NE(Outcome(later).find("filed before, as feedback " + std::to_string(id)),
            std::string::npos)
      << later.body;
  // Without the label nothing is filed; labelling it later files it, as a feature.
  auto plain = Github("issues", "d-3", DumpJson(IssueEvent("opened", 13, {"enhancement"})));
  EXPECT_EQ(Outcome(plain).rfind("ignored", 0), 0u) << plain.body;
  Json add = IssueEvent("labeled", 13, {"enhancement", "loom"});
  add["label"] = {{"name", "loom"}};
  auto filed = Github("issues", "d-4", DumpJson(add));
  ASSERT_EQ(Outcome(filed).rfind("feedback ", 0), 0u) << filed.body;
  EXPECT_EQ(
      Get("/v1/feedback/" + Outcome(filed).substr(9, Outcome(filed).find(' ', 9) - 9))["kind"],
      "feature");
  EXPECT_EQ(Get("/v1/feedback")["items"].size(), 2u);
}

TEST_F(ForgeHooksTest, AnUnsignedOrWronglySignedDeliveryIsRefusedAndNothingIsKept) {
  std::string body = DumpJson(IssueEvent("opened", 12, {"loom"}));
  EXPECT_EQ(Github("issues", "d-1", body, "").status, 401);
  EXPECT_EQ(Github("issues", "d-1", body, "sha256=" + std::string(64, '0')).status, 401);
  EXPECT_EQ(Github("issues", "d-1", body, "sha256=" + HmacSha256Hex("another secret", body)).status,
            401);
  // Signed over another body (the payload was altered on the way).
  EXPECT_EQ(
      Github("issues", "d-1", body, "sha256=" + HmacSha256Hex(kGithubSecret, body + " ")).status,
      401);
  // GitLab's token: missing or wrong.
  EXPECT_EQ(Gitlab("Issue Hook", "u-1", Json::object(), "").status, 401);
  EXPECT_EQ(Gitlab("Issue Hook", "u-1", Json::object(), "wrong-token-000").status, 401);
  EXPECT_EQ(Get("/v1/feedback")["items"].size(), 0u);
  EXPECT_TRUE(forge_->UnfinishedDeliveries()->empty());
  // The same delivery id, now signed, is taken: a refused one left no record.
  auto r = Github("issues", "d-1", body);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(ParseJson(r.body)->value("duplicate", false));
}

TEST_F(ForgeHooksTest, MalformedOrOversizedDeliveriesGetAClear4xx) {
  struct Case {
    std::string body;
    std::string delivery;
    int status;
  };
  std::string deep(5000, '[');
  for (const Case& c : std::vector<Case>{
           {"not json", "m-1", 400},
           {"[1, 2]", "m-2", 400},
           {deep, "m-3", 400},
           {DumpJson(IssueEvent("opened", 1, {"loom"})), "", 400},
           {DumpJson(IssueEvent("opened", 1, {"loom"})), "bad id with spaces", 400},
       }) {
    auto r = Github("issues", c.delivery, c.body);
    EXPECT_EQ(r.status, c.status) << c.body.substr(0, 40) << ": " << r.body;
    EXPECT_NE(ParseJson(r.body).value_or(Json::object())["error"].value("message", ""), "")
        << r.body;
  }
  // Another project than the repository's: refused, naming it.
  Json other = IssueEvent("opened", 1, {"loom"});
  other["repository"]["full_name"] = "acme/other";
  auto r = Github("issues", "m-4", DumpJson(other));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("acme/other"), std::string::npos) << r.body;
  // Past the server's body limit (1 MiB by default): 413 before it is read.
  Json huge = IssueEvent("opened", 1, {"loom"});
  huge["issue"]["body"] = std::string(2 << 20, 'x');
  EXPECT_EQ(Github("issues", "m-5", DumpJson(huge)).status, 413);
  EXPECT_EQ(Get("/v1/feedback")["items"].size(), 0u);
  // An event Loom does not act on is recorded and answered 200 (no retry wanted).
  auto star =
      Github("star", "m-6", DumpJson(Json{{"action", "created"}, {"repository", Repository()}}));
  EXPECT_EQ(star.status, 200);
  EXPECT_EQ(Outcome(star).rfind("ignored", 0), 0u) << star.body;
  // A ping (sent when the webhook is made) is answered.
  EXPECT_EQ(Github("ping", "m-7",
                   DumpJson(Json{{"zen", "Keep it logically awesome."},
                                 {"hook_id", 1},
                                 {"repository", Repository()}}))
                .status,
            200);
}

TEST_F(ForgeHooksTest, AReviewRequestingChangesSendsTheTaskBackWithItsLineComments) {
  int64_t task = TaskInReview(7, "Average is wrong");
  auto pr = Json{{"number", 7}, {"html_url", "https://github.com/acme/calc/pull/7"}};
  // The line comments of review 99 arrive first (GitHub promises no order).
  for (auto [id, path, line, text] : std::vector<std::tuple<int, std::string, int, std::string>>{
           {501, "calc.py", 4, "Divide by len(values)."},
           {502, "tests/test_calc.py", 10, "Also test an empty list."}}) {
    Json comment = {{"action", "created"},
                    {"comment",
                     {{"id", id},
                      {"pull_request_review_id", 99},
                      {"path", path},
                      {"line", line},
                      {"original_line", line},
                      {"side", "RIGHT"},
                      {"body", text},
                      {"user", {{"login", "reviewer"}}}}},
                    {"pull_request", pr},
                    {"repository", Repository()}};
    auto r = Github("pull_request_review_comment", "c-" + std::to_string(id), DumpJson(comment));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_NE(Outcome(r).find("kept for its review"), std::string::npos) << r.body;
  }
  Json review = {{"action", "submitted"},
                 {"review",
                  {{"id", 99},
                   {"user", {{"login", "reviewer"}}},
                   {"body", "Close, but two things."},
                   {"state", "changes_requested"},
                   {"html_url", "https://github.com/acme/calc/pull/7#pullrequestreview-99"}}},
                 {"pull_request", pr},
                 {"repository", Repository()}};
  auto r = Github("pull_request_review", "r-1", DumpJson(review));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(Outcome(r).find("sent back to the agent with 2 line comments"), std::string::npos)
      << r.body;
  EXPECT_EQ(State(task), "queued");
  auto events = Events(task, "review_comment");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["data"]["comment"], "Close, but two things.");
  EXPECT_EQ(events[0]["data"]["comments"],
            Json::parse(R"([{"path": "calc.py", "line": 4, "body": "Divide by len(values)."},
                            {"path": "tests/test_calc.py", "line": 10,
                             "body": "Also test an empty list."}])"));
  EXPECT_EQ(events[0]["data"]["forge"]["by"], "reviewer");
  // Replayed: nothing more happens.
  auto again = Github("pull_request_review", "r-1", DumpJson(review));
  EXPECT_TRUE(ParseJson(again.body)->value("duplicate", false)) << again.body;
  EXPECT_EQ(Events(task, "review_comment").size(), 1u);
  // Out of order: a merge reported while the task is back with the agent is
  // recorded as not applying, and answered 200.
  Json closed = {{"action", "closed"},
                 {"pull_request", {{"number", 7}, {"merged", true}, {"html_url", "u"}}},
                 {"repository", Repository()},
                 {"sender", {{"login", "maintainer"}}}};
  auto late = Github("pull_request", "p-1", DumpJson(closed));
  EXPECT_EQ(late.status, 200);
  EXPECT_NE(Outcome(late).find("not in review"), std::string::npos) << late.body;
  EXPECT_EQ(State(task), "queued");
  // A review that approves, or of a pull request no task has, does nothing.
  review["review"]["state"] = "approved";
  EXPECT_EQ(Outcome(Github("pull_request_review", "r-2", DumpJson(review))).rfind("ignored", 0),
            0u);
  review["review"]["state"] = "changes_requested";
  review["pull_request"]["number"] = 8;
  EXPECT_NE(Outcome(Github("pull_request_review", "r-3", DumpJson(review))).find("no task"),
            std::string::npos);
}

TEST_F(ForgeHooksTest, AMergedPullRequestMergesItsTaskAndAClosedOneRejectsIt) {
  int64_t merged = TaskInReview(21, "One");
  int64_t closed = TaskInReview(22, "Two");
  auto event = [&](int64_t number, bool was_merged) {
    return DumpJson(
        Json{{"action", "closed"},
             {"number", number},
             {"pull_request",
              {{"number", number},
               {"state", "closed"},
               {"merged", was_merged},
               {"merge_commit_sha", was_merged ? "e5bd3914e2e596debea16f433f57875b5b90bcd6" : ""},
               {"html_url", "https://github.com/acme/calc/pull/" + std::to_string(number)}}},
             {"repository", Repository()},
             {"sender", {{"login", "maintainer"}}}});
  };
  auto r = Github("pull_request", "p-21", event(21, true));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(State(merged), "merged");
  auto states = Events(merged, "state");
  ASSERT_FALSE(states.empty());
  EXPECT_EQ(states.back()["data"]["how"], "forge");
  EXPECT_EQ(states.back()["data"]["commit"], "e5bd3914e2e596debea16f433f57875b5b90bcd6");
  r = Github("pull_request", "p-22", event(22, false));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(State(closed), "rejected");
  // The feedback's reporters see it.
  EXPECT_EQ(Get("/v1/feedback/1")["status"], "merged");
}

TEST_F(ForgeHooksTest, GitlabIssuesNotesAndMergeRequestEvents) {
  Json project = {{"id", 15}, {"path_with_namespace", "acme/lab"}};
  Json issue = {{"object_kind", "issue"},
                {"event_type", "issue"},
                {"user", {{"username", "root"}}},
                {"project", project},
                {"object_attributes",
                 {{"id", 301},
                  {"iid", 23},
                  {"title", "Export hangs"},
                  {"description", "Export never finishes."},
                  {"url", "https://gitlab.example.com/acme/lab/-/issues/23"},
                  {"action", "open"}}},
                {"labels", Json::array({{{"id", 206}, {"title", "question"}}})}};
  // issue_label defaults to "loom": this one has none.
  auto r = Gitlab("Issue Hook", "g-1", issue);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Outcome(r).rfind("ignored", 0), 0u) << r.body;
  issue["object_attributes"]["action"] = "update";
  issue["labels"].push_back({{"id", 207}, {"title", "loom"}});
  issue["changes"] = {{"labels",
                       {{"previous", Json::array({{{"title", "question"}}})},
                        {"current", Json::array({{{"title", "question"}}, {{"title", "loom"}}})}}}};
  r = Gitlab("Issue Hook", "g-2", issue);
  ASSERT_EQ(Outcome(r).rfind("feedback ", 0), 0u) << r.body;
  Json item = Get("/v1/feedback/" + Outcome(r).substr(9, Outcome(r).find(' ', 9) - 9));
  EXPECT_EQ(item["kind"], "question");
  EXPECT_EQ(item["reporter"], "gitlab:root");
  EXPECT_EQ(item["repo"], "lab");

  // A merge request of the lab repository, in review (a task of "calc" stands in).
  int64_t task = TaskInReview(90, "Lab task");
  ASSERT_TRUE(forge_->PutPull({task, "lab", "gitlab", "acme/lab", 5, "https://x/5", false}).ok());
  Json note = {{"object_kind", "note"},
               {"user", {{"username", "reviewer"}}},
               {"project", project},
               {"object_attributes",
                {{"id", 1244},
                 {"note", "Use a timeout here."},
                 {"noteable_type", "MergeRequest"},
                 {"position",
                  {{"old_path", "export.py"},
                   {"new_path", "export.py"},
                   {"old_line", nullptr},
                   {"new_line", 31}}}}},
               {"merge_request", {{"iid", 5}}}};
  r = Gitlab("Note Hook", "g-3", note);
  ASSERT_EQ(r.status, 200) << r.body;
  Json update = {
      {"object_kind", "merge_request"},
      {"user", {{"username", "reviewer"}}},
      {"project", project},
      {"object_attributes",
       {{"iid", 5}, {"action", "update"}, {"url", "https://gitlab.example.com/mr/5"}}},
      {"changes",
       {{"reviewers",
         {{"previous",
           Json::array({{{"id", 3}, {"username", "reviewer"}, {"state", "unreviewed"}}})},
          {"current",
           Json::array(
               {{{"id", 3}, {"username", "reviewer"}, {"state", "requested_changes"}}})}}}}}};
  r = Gitlab("Merge Request Hook", "g-4", update);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(Outcome(r).find("with 1 line comment"), std::string::npos) << r.body;
  auto events = Events(task, "review_comment");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["data"]["comments"][0]["path"], "export.py");
  EXPECT_EQ(events[0]["data"]["comments"][0]["line"], 31);
  EXPECT_EQ(State(task), "queued");
  // Walk it back to review; the merge request is merged.
  ASSERT_TRUE(stores_.tasks->Transition(task, TaskState::kQueued, TaskState::kRunning, "t").ok());
  ASSERT_TRUE(
      stores_.tasks->Transition(task, TaskState::kRunning, TaskState::kVerifying, "t").ok());
  ASSERT_TRUE(stores_.tasks->Transition(task, TaskState::kVerifying, TaskState::kReview, "t").ok());
  update["object_attributes"]["action"] = "merge";
  update.erase("changes");
  r = Gitlab("Merge Request Hook", "g-5", update);
  EXPECT_EQ(Outcome(r), "task " + std::to_string(task) + " merged") << r.body;
  EXPECT_EQ(State(task), "merged");
}

TEST_F(ForgeHooksTest, ADeliveryRecordedBeforeAStopIsAppliedAtTheNextStart) {
  int64_t task = TaskInReview(31, "Three");
  ForgeDelivery d;
  d.forge = "github";
  d.id = "crash-1";
  d.repo = "calc";
  d.event = "pull_request";
  d.body = DumpJson(Json{{"action", "closed"},
                         {"pull_request", {{"number", 31}, {"merged", false}}},
                         {"repository", Repository()}});
  ASSERT_TRUE(forge_->RecordDelivery(d).ok());  // as if loomd stopped right after recording
  daemon_->Stop(std::chrono::milliseconds(100));
  daemon_.reset();
  StartDaemon({{"agents", "0"}});
  EXPECT_EQ(State(task), "rejected");
  EXPECT_TRUE(forge_->UnfinishedDeliveries()->empty());
  // Its redelivery is answered from the record.
  auto r = Github("pull_request", "crash-1", d.body);
  EXPECT_TRUE(ParseJson(r.body)->value("duplicate", false)) << r.body;
}

}  // namespace
}  // namespace loom
