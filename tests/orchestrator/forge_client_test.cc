// The GitHub and GitLab clients against a local HTTP server (real HTTP on
// loopback) that checks each request against the shape the forges document —
// method, path, headers, JSON members — and answers as they document,
// errors included. No live forge is used.
#include "orchestrator/forge_client.h"

#include <gtest/gtest.h>

#include <deque>
#include <mutex>

#include "common/json.h"
#include "tests/support/fake_forge.h"

namespace loom {
namespace {

using testing::FakeForge;
using testing::Reply;
using testing::Seen;

ForgeClientOptions Options(const std::string& kind, const std::string& url,
                           std::vector<std::chrono::milliseconds>* waits = nullptr) {
  ForgeClientOptions o;
  o.kind = kind;
  o.api_url = url;
  o.project = kind == "github" ? "acme/calc" : "acme/lab";
  o.token = "token-1234567890";
  o.sleep = [waits](std::chrono::milliseconds d) {
    if (waits) waits->push_back(d);
  };
  return o;
}

void ExpectGithubHeaders(const Seen& s) {
  EXPECT_EQ(s.headers.at("authorization"), "Bearer token-1234567890");
  EXPECT_EQ(s.headers.at("accept"), "application/vnd.github+json");
  EXPECT_EQ(s.headers.at("x-github-api-version"), "2022-11-28");
  EXPECT_FALSE(s.headers.at("user-agent").empty());
}

PullRequestSpec Spec(bool draft) {
  return {"Fix average()", "Summary\n\nFAIL_TO_PASS: ...", "loom/7-fix-average", "main", draft};
}

TEST(GithubClientTest, OpensADraftPullRequestAsDocumented) {
  FakeForge forge;
  forge.Then({201, R"({"id": 1, "node_id": "PR_kwDO", "number": 1347,
                     "html_url": "https://github.com/acme/calc/pull/1347",
                     "state": "open", "draft": true})"});
  auto client = ForgeClient::Make(Options("github", forge.url("/api/v3")));
  ASSERT_TRUE(client.ok());
  auto pr = (*client)->OpenPullRequest(Spec(true));
  ASSERT_TRUE(pr.ok()) << pr.status().ToString();
  EXPECT_EQ(pr->number, 1347);
  EXPECT_EQ(pr->url, "https://github.com/acme/calc/pull/1347");
  EXPECT_TRUE(pr->draft);
  auto seen = forge.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].target, "/api/v3/repos/acme/calc/pulls");
  ExpectGithubHeaders(seen[0]);
  EXPECT_EQ(seen[0].headers.at("content-type"), "application/json");
  EXPECT_EQ(ParseJson(seen[0].body).value(), Json({{"title", "Fix average()"},
                                                   {"head", "loom/7-fix-average"},
                                                   {"base", "main"},
                                                   {"body", "Summary\n\nFAIL_TO_PASS: ..."},
                                                   {"draft", true}}));
}

TEST(GithubClientTest, UpdatesTheBodyAndMarksADraftReadyThroughGraphql) {
  FakeForge forge;
  forge.Then({200, R"({"number": 1347, "node_id": "PR_kwDO", "draft": true})"});
  forge.Then({200, R"({"data": {"markPullRequestReadyForReview":
                                  {"pullRequest": {"isDraft": false}}}})"});
  forge.Then({200, R"({"number": 1347, "node_id": "PR_kwDO", "draft": false})"});
  auto client = ForgeClient::Make(Options("github", forge.url("/api/v3")));
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE((*client)->UpdatePullRequest(1347, Spec(false), /*was_draft=*/true).ok());
  // Already ready: only the body changes.
  ASSERT_TRUE((*client)->UpdatePullRequest(1347, Spec(false), /*was_draft=*/false).ok());
  auto seen = forge.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].method, "PATCH");
  EXPECT_EQ(seen[0].target, "/api/v3/repos/acme/calc/pulls/1347");
  EXPECT_EQ(ParseJson(seen[0].body).value(),
            Json({{"title", "Fix average()"}, {"body", "Summary\n\nFAIL_TO_PASS: ..."}}));
  EXPECT_EQ(seen[1].method, "POST");
  EXPECT_EQ(seen[1].target, "/api/graphql");  // GitHub Enterprise: beside /api/v3
  ExpectGithubHeaders(seen[1]);
  Json q = ParseJson(seen[1].body).value();
  EXPECT_NE(q["query"].get<std::string>().find("markPullRequestReadyForReview"), std::string::npos);
  EXPECT_EQ(q["variables"]["id"], "PR_kwDO");
  EXPECT_EQ(seen[2].method, "PATCH");
}

TEST(GithubClientTest, CommentsAndCloses) {
  FakeForge forge;
  forge.Then({201, R"({"id": 1, "body": "Loom is on it"})"});
  forge.Then({200, R"({"number": 1347, "state": "closed"})"});
  auto client = ForgeClient::Make(Options("github", forge.url()));
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE((*client)->CommentOnIssue(12, "Loom is on it").ok());
  ASSERT_TRUE((*client)->ClosePullRequest(1347).ok());
  auto seen = forge.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].target, "/repos/acme/calc/issues/12/comments");
  EXPECT_EQ(ParseJson(seen[0].body).value(), Json({{"body", "Loom is on it"}}));
  EXPECT_EQ(seen[1].method, "PATCH");
  EXPECT_EQ(seen[1].target, "/repos/acme/calc/pulls/1347");
  EXPECT_EQ(ParseJson(seen[1].body).value(), Json({{"state", "closed"}}));
}

TEST(GithubClientTest, RefusalsBecomeStatusesThatSayWhatToDo) {
  FakeForge forge;
  forge.Then({401, R"({"message": "Bad credentials",
                     "documentation_url": "https://docs.github.com/rest"})"});
  forge.Then({422, R"({"message": "Validation Failed", "errors": [{"resource": "PullRequest",
                     "code": "custom", "message": "A pull request already exists for acme:loom/7."}],
                     "documentation_url": "https://docs.github.com/rest"})"});
  forge.Then({404, R"({"message": "Not Found"})"});
  forge.Then({403, R"({"message": "Resource not accessible by personal access token"})"});
  auto client = ForgeClient::Make(Options("github", forge.url()));
  ASSERT_TRUE(client.ok());
  auto r = (*client)->OpenPullRequest(Spec(true));
  EXPECT_EQ(r.status().code(), StatusCode::kUnauthenticated);
  EXPECT_NE(r.status().message().find("Bad credentials"), std::string::npos);
  r = (*client)->OpenPullRequest(Spec(true));
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("already exists"), std::string::npos) << r.status().message();
  EXPECT_EQ((*client)->ClosePullRequest(9).code(), StatusCode::kNotFound);
  EXPECT_EQ((*client)->ClosePullRequest(9).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(forge.seen().size(), 4u) << "refusals are not retried";
}

TEST(GithubClientTest, ServerErrorsAndRateLimitsAreRetriedWithBackoff) {
  FakeForge forge;
  forge.Then({502, "<html>Bad gateway</html>"});
  forge.Then({429, R"({"message": "API rate limit exceeded"})", {{"Retry-After", "2"}}});
  forge.Then({201, R"({"number": 5, "html_url": "https://github.com/acme/calc/pull/5",
                     "draft": false})"});
  std::vector<std::chrono::milliseconds> waits;
  auto client = ForgeClient::Make(Options("github", forge.url(), &waits));
  ASSERT_TRUE(client.ok());
  auto pr = (*client)->OpenPullRequest(Spec(false));
  ASSERT_TRUE(pr.ok()) << pr.status().ToString();
  EXPECT_EQ(pr->number, 5);
  EXPECT_EQ(forge.seen().size(), 3u);
  ASSERT_EQ(waits.size(), 2u);
  EXPECT_EQ(waits[0], std::chrono::milliseconds(500));
  EXPECT_EQ(waits[1], std::chrono::milliseconds(2000)) << "Retry-After is honoured";
  // A server that keeps failing: Unavailable after max_attempts.
  for (int i = 0; i < 4; ++i) forge.Then({503, R"({"message": "unavailable"})"});
  EXPECT_EQ((*client)->ClosePullRequest(5).code(), StatusCode::kUnavailable);
  EXPECT_EQ(forge.seen().size(), 7u);
}

TEST(GithubClientTest, AServerThatIsDownIsUnavailable) {
  std::string url;
  {
    FakeForge gone;
    url = gone.url();
  }
  auto client = ForgeClient::Make(Options("github", url));
  ASSERT_TRUE(client.ok());
  EXPECT_EQ((*client)->CommentOnIssue(1, "x").code(), StatusCode::kUnavailable);
}

TEST(GitlabClientTest, MergeRequestsAndNotesAsDocumented) {
  FakeForge forge;
  forge.Then({201, DumpJson(Json{
                       {"id", 99},
                       {"iid", 12},
                       {"project_id", 3},
                       {"title", "Draft: Fix average()"},
                       {"draft", true},
                       {"web_url", "https://gitlab.example.com/acme/lab/-/merge_requests/12"}})});
  forge.Then({200, R"({"iid": 12, "draft": false})"});
  forge.Then({201, R"({"id": 302, "body": "note"})"});
  forge.Then({201, R"({"id": 303, "body": "note"})"});
  forge.Then({200, R"({"iid": 12, "state": "closed"})"});
  auto client = ForgeClient::Make(Options("gitlab", forge.url("/api/v4/")));
  ASSERT_TRUE(client.ok());
  auto mr = (*client)->OpenPullRequest(Spec(true));
  ASSERT_TRUE(mr.ok()) << mr.status().ToString();
  EXPECT_EQ(mr->number, 12);
  EXPECT_EQ(mr->url, "https://gitlab.example.com/acme/lab/-/merge_requests/12");
  ASSERT_TRUE((*client)->UpdatePullRequest(12, Spec(false), true).ok());
  ASSERT_TRUE((*client)->CommentOnPullRequest(12, "Revised").ok());
  ASSERT_TRUE((*client)->CommentOnIssue(23, "Loom is on it").ok());
  ASSERT_TRUE((*client)->ClosePullRequest(12).ok());
  auto seen = forge.seen();
  ASSERT_EQ(seen.size(), 5u);
  for (const Seen& s : seen) {
    EXPECT_EQ(s.headers.at("private-token"), "token-1234567890");
    EXPECT_EQ(s.headers.count("authorization"), 0u);
  }
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].target, "/api/v4/projects/acme%2Flab/merge_requests");
  EXPECT_EQ(ParseJson(seen[0].body).value(),
            Json({{"source_branch", "loom/7-fix-average"},
                  {"target_branch", "main"},
                  {"title", "Draft: Fix average()"},
                  {"description", "Summary\n\nFAIL_TO_PASS: ..."}}));
  EXPECT_EQ(seen[1].method, "PUT");
  EXPECT_EQ(seen[1].target, "/api/v4/projects/acme%2Flab/merge_requests/12");
  EXPECT_EQ(ParseJson(seen[1].body).value()["title"], "Fix average()") << "ready: no Draft:";
  EXPECT_EQ(seen[2].target, "/api/v4/projects/acme%2Flab/merge_requests/12/notes");
  EXPECT_EQ(ParseJson(seen[2].body).value(), Json({{"body", "Revised"}}));
  EXPECT_EQ(seen[3].target, "/api/v4/projects/acme%2Flab/issues/23/notes");
  EXPECT_EQ(seen[4].method, "PUT");
  EXPECT_EQ(ParseJson(seen[4].body).value(), Json({{"state_event", "close"}}));
}

TEST(GitlabClientTest, AConflictIsAFailedPreconditionWithGitlabsMessage) {
  FakeForge forge;
  forge.Then(
      {409,
       R"({"message": ["Another open merge request already exists for this source branch: !12"]})"});
  forge.Then({401, R"({"message": "401 Unauthorized"})"});
  auto client = ForgeClient::Make(Options("gitlab", forge.url()));
  ASSERT_TRUE(client.ok());
  auto r = (*client)->OpenPullRequest(Spec(true));
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("already exists"), std::string::npos);
  EXPECT_EQ((*client)->ClosePullRequest(1).code(), StatusCode::kUnauthenticated);
}

TEST(ForgeClientTest, FindsTheOpenPullRequestOfABranch) {
  FakeForge forge;
  forge.Then({200, R"([{"number": 3, "html_url": "https://github.com/acme/calc/pull/3",
                      "draft": true}])"});
  forge.Then({200, "[]"});
  forge.Then({200, R"([{"iid": 4, "web_url": "https://gitlab.example.com/mr/4"}])"});
  auto github = ForgeClient::Make(Options("github", forge.url()));
  auto found = (*github)->FindOpenPullRequest("loom/7-fix");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->number, 3);
  EXPECT_TRUE((*found)->draft);
  found = (*github)->FindOpenPullRequest("loom/8-other");
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
  auto gitlab = ForgeClient::Make(Options("gitlab", forge.url()));
  found = (*gitlab)->FindOpenPullRequest("loom/7-fix");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->number, 4);
  auto seen = forge.seen();
  EXPECT_EQ(seen[0].target, "/repos/acme/calc/pulls?state=open&head=acme%3Aloom%2F7-fix");
  EXPECT_EQ(seen[2].target,
            "/projects/acme%2Flab/merge_requests?state=opened&source_branch=loom%2F7-fix");
}

TEST(ForgeClientTest, RefusesWhatCannotWork) {
  ForgeClientOptions o = Options("bitbucket", "https://x");
  EXPECT_EQ(ForgeClient::Make(o).status().code(), StatusCode::kInvalidArgument);
  o = Options("github", "ftp://x");
  EXPECT_EQ(ForgeClient::Make(o).status().code(), StatusCode::kInvalidArgument);
  o = Options("github", "");
  o.token.clear();
  EXPECT_EQ(ForgeClient::Make(o).status().code(), StatusCode::kInvalidArgument);
  o = Options("gitlab", "");
  EXPECT_TRUE(ForgeClient::Make(o).ok()) << "empty api_url: gitlab.com";
}

}  // namespace
}  // namespace loom
