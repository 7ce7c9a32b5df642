// Clients of the forges' REST APIs for a task's pull request: GitHub REST v3
// (pull requests, issue comments; GraphQL only to mark a draft ready, which
// REST cannot) and GitLab REST v4 (merge requests and their notes). The API
// base URL is configurable, for self-hosted instances (GitHub Enterprise's
// https://HOST/api/v3, a GitLab's https://HOST/api/v4).
//
// Requests carry the documented headers (GitHub: `Authorization: Bearer`,
// `Accept: application/vnd.github+json`, `X-GitHub-Api-Version`, a
// `User-Agent`; GitLab: `PRIVATE-TOKEN`) and JSON bodies. A 429 or 5xx answer,
// or a server that cannot be reached, is retried with exponential backoff
// (honouring Retry-After up to the backoff's cap); then Unavailable. Other
// refusals map to a Status naming what to do: 401 Unauthenticated (the token),
// 403 PermissionDenied (its scopes), 404 NotFound (the project or number),
// 409/422 FailedPrecondition with the forge's message (a pull request already
// open for the branch, a branch the forge does not have).
//
// No live forge was used to build these: they were tested against a local
// server that checks the documented request shapes (docs/forges.md).
//
// Thread-compatible: one client per thread (it holds a curl handle).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"

namespace loom {

struct ForgeClientOptions {
  std::string kind;     // github | gitlab
  std::string api_url;  // empty: https://api.github.com or https://gitlab.com/api/v4
  std::string project;  // GitHub "owner/name"; GitLab "group/name" or a numeric id
  std::string token;    // never logged; masked by the secret store's masker
  int max_attempts = 4;
  std::chrono::milliseconds first_backoff{500};
  std::chrono::milliseconds max_backoff{8000};
  std::chrono::milliseconds timeout{30000};
  // How the client waits between attempts (tests make it instant). Empty: sleep.
  std::function<void(std::chrono::milliseconds)> sleep;
};

struct PullRequestSpec {
  std::string title;
  std::string body;  // Markdown
  std::string head;  // the task's branch
  std::string base;  // the target branch
  bool draft = true;
};

struct PullRequestInfo {
  int64_t number = 0;  // GitHub's number, GitLab's iid
  std::string url;     // the page people open
  bool draft = false;
};

class ForgeClient {
 public:
  // InvalidArgument for an unknown kind, a missing project or token, or an
  // api_url that is not http(s).
  static Result<std::unique_ptr<ForgeClient>> Make(ForgeClientOptions options);
  virtual ~ForgeClient() = default;

  // Opens a pull/merge request from spec.head into spec.base (a draft when
  // spec.draft).
  virtual Result<PullRequestInfo> OpenPullRequest(const PullRequestSpec& spec) = 0;
  // The open pull/merge request from branch `head`, if there is one (to
  // recover one opened before loomd could record it).
  virtual Result<std::optional<PullRequestInfo>> FindOpenPullRequest(const std::string& head) = 0;
  // Replaces its title and body; a draft becomes ready when !spec.draft
  // (`was_draft` says whether it is one now). A ready one is never made a draft.
  virtual Status UpdatePullRequest(int64_t number, const PullRequestSpec& spec, bool was_draft) = 0;
  // A comment on the pull/merge request's conversation.
  virtual Status CommentOnPullRequest(int64_t number, const std::string& body) = 0;
  // A comment on an issue.
  virtual Status CommentOnIssue(int64_t number, const std::string& body) = 0;
  // Closes it without merging.
  virtual Status ClosePullRequest(int64_t number) = 0;
};

}  // namespace loom
