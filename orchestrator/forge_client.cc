// GitHub and GitLab clients. See forge_client.h. One request path (Send) does
// the headers, the retries and the mapping of answers to Status; each forge
// is a small class that builds its paths and bodies and reads its answers.
#include "orchestrator/forge_client.h"

#include <strings.h>

#include <cctype>
#include <cstdlib>
#include <thread>
#include <vector>

#include "common/json.h"
#include "common/json_reader.h"
#include "orchestrator/http_client.h"

namespace loom {
namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;

std::string PercentEncode(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// The forge's own words from an error answer: GitHub {"message", "errors":
// [{"message"|"code"}]}, GitLab {"message": string | object | array} or {"error"}.
std::string ForgeMessage(const std::string& body) {
  auto parsed = ParseJson(body);
  if (!parsed.ok() || !parsed->is_object()) return body.substr(0, 200);
  std::string out;
  const Json& message = MemberOrNull(*parsed, "message");
  if (message.is_string()) {
    out = message.get<std::string>();
  } else if (!message.is_null()) {
    out = DumpJson(message);
  } else {
    out = StringOr(*parsed, "error");
  }
  const Json& errors = MemberOrNull(*parsed, "errors");
  if (errors.is_array()) {
    for (const Json& e : errors) {
      std::string m = e.is_string() ? e.get<std::string>() : StringOr(e, "message");
      if (m.empty()) m = StringOr(e, "code");
      if (!m.empty()) out += (out.empty() ? "" : ": ") + m;
    }
  }
  return out.substr(0, 500);
}

class RestClient : public ForgeClient {
 protected:
  explicit RestClient(ForgeClientOptions options) : options_(std::move(options)) {}

  virtual Headers AuthHeaders() const = 0;
  virtual const char* Name() const = 0;

  // One call with retries; the answer's JSON body on a 2xx.
  Result<Json> Send(const std::string& method, const std::string& url, const Json* body) {
    Headers headers = AuthHeaders();
    if (body) headers.emplace_back("Content-Type", "application/json");
    std::string text = body ? DumpJson(*body) : std::string();
    std::chrono::milliseconds backoff = options_.first_backoff;
    Status last = Status::Unavailable("no attempt made");
    for (int attempt = 1; attempt <= std::max(1, options_.max_attempts); ++attempt) {
      if (attempt > 1) {
        Wait(backoff);
        backoff = std::min(backoff * 2, options_.max_backoff);
      }
      auto r = http_.Call(method, url, text, headers, options_.timeout);
      if (!r.ok()) {
        last = Status::Unavailable(std::string(Name()) + " at " + options_.api_url +
                                   " cannot be reached: " + r.status().message());
        continue;
      }
      if (r->status >= 200 && r->status < 300) {
        if (r->body.empty()) return Json::object();
        auto parsed = ParseJson(r->body);
        if (!parsed.ok()) {
          return Status::Corruption(std::string(Name()) + " answered " + method + " " + url +
                                    " with something that is not JSON");
        }
        return *parsed;
      }
      std::string what = std::string(Name()) + " answered " + std::to_string(r->status) + " to " +
                         method + " " + url + ": " + ForgeMessage(r->body);
      if (r->status == 429 || r->status >= 500) {
        last = Status::Unavailable(what);
        for (const auto& [k, v] : r->headers) {
          if (k.size() == 11 && strncasecmp(k.c_str(), "Retry-After", 11) == 0) {
            char* end = nullptr;
            long seconds = std::strtol(v.c_str(), &end, 10);
            if (end != v.c_str() && seconds >= 0) {
              backoff = std::min(std::chrono::milliseconds(seconds * 1000), options_.max_backoff);
            }
          }
        }
        continue;
      }
      if (r->status == 401) {
        return Status::Unauthenticated(what + " (check the token in [forge] token_secret)");
      }
      if (r->status == 403) {
        return Status::PermissionDenied(what + " (the token lacks a permission)");
      }
      if (r->status == 404) return Status::NotFound(what);
      if (r->status == 409 || r->status == 422) return Status::FailedPrecondition(what);
      return Status::InvalidArgument(what);
    }
    return last;
  }

  void Wait(std::chrono::milliseconds d) {
    if (options_.sleep) {
      options_.sleep(d);
    } else {
      std::this_thread::sleep_for(d);
    }
  }

  ForgeClientOptions options_;
  HttpClient http_;
};

class GithubClient : public RestClient {
 public:
  explicit GithubClient(ForgeClientOptions options) : RestClient(std::move(options)) {}

  Result<PullRequestInfo> OpenPullRequest(const PullRequestSpec& spec) override {
    Json body = {{"title", spec.title},
                 {"head", spec.head},
                 {"base", spec.base},
                 {"body", spec.body},
                 {"draft", spec.draft}};
    LOOM_ASSIGN_OR_RETURN(Json pr, Send("POST", Repo() + "/pulls", &body));
    PullRequestInfo info{IntOr(pr, "number", 0), StringOr(pr, "html_url"),
                         BoolOr(pr, "draft", spec.draft)};
    if (info.number < 1) {
      return Status::Corruption("GitHub answered the new pull request without its number");
    }
    return info;
  }

  Result<std::optional<PullRequestInfo>> FindOpenPullRequest(const std::string& head) override {
    // head=OWNER:BRANCH, the owner being the repository's.
    std::string owner = options_.project.substr(0, options_.project.find('/'));
    LOOM_ASSIGN_OR_RETURN(
        Json list,
        Send("GET", Repo() + "/pulls?state=open&head=" + PercentEncode(owner + ":" + head),
             nullptr));
    if (!list.is_array() || list.empty()) return std::optional<PullRequestInfo>();
    const Json& pr = list[0];
    return std::optional<PullRequestInfo>(PullRequestInfo{
        IntOr(pr, "number", 0), StringOr(pr, "html_url"), BoolOr(pr, "draft", false)});
  }

  Status UpdatePullRequest(int64_t number, const PullRequestSpec& spec, bool was_draft) override {
    Json body = {{"title", spec.title}, {"body", spec.body}};
    LOOM_ASSIGN_OR_RETURN(Json pr, Send("PATCH", Pull(number), &body));
    if (!was_draft || spec.draft) return Status::Ok();
    // REST cannot take a pull request out of draft; GraphQL's
    // markPullRequestReadyForReview does, given its node id.
    std::string node_id = StringOr(pr, "node_id");
    if (node_id.empty()) return Status::Corruption("GitHub answered without the node_id");
    Json query = {{"query",
                   "mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: "
                   "$id}) { pullRequest { isDraft } } }"},
                  {"variables", {{"id", node_id}}}};
    LOOM_ASSIGN_OR_RETURN(Json answer, Send("POST", GraphqlUrl(), &query));
    const Json& errors = MemberOrNull(answer, "errors");
    if (errors.is_array() && !errors.empty()) {
      return Status::FailedPrecondition("GitHub did not mark #" + std::to_string(number) +
                                        " ready: " + ForgeMessage(DumpJson(answer)));
    }
    return Status::Ok();
  }

  Status CommentOnPullRequest(int64_t number, const std::string& body) override {
    return CommentOnIssue(number, body);  // a pull request's conversation is its issue's
  }

  Status CommentOnIssue(int64_t number, const std::string& body) override {
    Json b = {{"body", body}};
    return Send("POST", Repo() + "/issues/" + std::to_string(number) + "/comments", &b).status();
  }

  Status ClosePullRequest(int64_t number) override {
    Json b = {{"state", "closed"}};
    return Send("PATCH", Pull(number), &b).status();
  }

 private:
  Headers AuthHeaders() const override {
    return {{"Authorization", "Bearer " + options_.token},
            {"Accept", "application/vnd.github+json"},
            {"X-GitHub-Api-Version", "2022-11-28"},
            {"User-Agent", "loom"}};
  }
  const char* Name() const override { return "GitHub"; }
  std::string Repo() const { return options_.api_url + "/repos/" + options_.project; }
  std::string Pull(int64_t n) const { return Repo() + "/pulls/" + std::to_string(n); }
  // api.github.com/graphql; GitHub Enterprise: https://HOST/api/graphql beside /api/v3.
  std::string GraphqlUrl() const {
    const std::string& base = options_.api_url;
    if (base.size() >= 7 && base.compare(base.size() - 7, 7, "/api/v3") == 0) {
      return base.substr(0, base.size() - 3) + "/graphql";
    }
    return base + "/graphql";
  }
};

class GitlabClient : public RestClient {
 public:
  explicit GitlabClient(ForgeClientOptions options) : RestClient(std::move(options)) {}

  Result<PullRequestInfo> OpenPullRequest(const PullRequestSpec& spec) override {
    // GitLab makes a merge request a draft by its title's "Draft: " prefix.
    Json body = {{"source_branch", spec.head},
                 {"target_branch", spec.base},
                 {"title", Title(spec)},
                 {"description", spec.body}};
    LOOM_ASSIGN_OR_RETURN(Json mr, Send("POST", Project() + "/merge_requests", &body));
    PullRequestInfo info{IntOr(mr, "iid", 0), StringOr(mr, "web_url"),
                         BoolOr(mr, "draft", spec.draft)};
    if (info.number < 1) {
      return Status::Corruption("GitLab answered the new merge request without its iid");
    }
    return info;
  }

  Result<std::optional<PullRequestInfo>> FindOpenPullRequest(const std::string& head) override {
    LOOM_ASSIGN_OR_RETURN(
        Json list,
        Send("GET", Project() + "/merge_requests?state=opened&source_branch=" + PercentEncode(head),
             nullptr));
    if (!list.is_array() || list.empty()) return std::optional<PullRequestInfo>();
    const Json& mr = list[0];
    return std::optional<PullRequestInfo>(
        PullRequestInfo{IntOr(mr, "iid", 0), StringOr(mr, "web_url"), BoolOr(mr, "draft", false)});
  }

  Status UpdatePullRequest(int64_t number, const PullRequestSpec& spec, bool was_draft) override {
    PullRequestSpec s = spec;
    s.draft = was_draft && spec.draft;  // never back to draft
    Json body = {{"title", Title(s)}, {"description", spec.body}};
    return Send("PUT", MergeRequest(number), &body).status();
  }

  Status CommentOnPullRequest(int64_t number, const std::string& body) override {
    Json b = {{"body", body}};
    return Send("POST", MergeRequest(number) + "/notes", &b).status();
  }

  Status CommentOnIssue(int64_t number, const std::string& body) override {
    Json b = {{"body", body}};
    return Send("POST", Project() + "/issues/" + std::to_string(number) + "/notes", &b).status();
  }

  Status ClosePullRequest(int64_t number) override {
    Json b = {{"state_event", "close"}};
    return Send("PUT", MergeRequest(number), &b).status();
  }

 private:
  Headers AuthHeaders() const override { return {{"PRIVATE-TOKEN", options_.token}}; }
  const char* Name() const override { return "GitLab"; }
  static std::string Title(const PullRequestSpec& s) {
    return s.draft ? "Draft: " + s.title : s.title;
  }
  std::string Project() const {
    return options_.api_url + "/projects/" + PercentEncode(options_.project);
  }
  std::string MergeRequest(int64_t n) const {
    return Project() + "/merge_requests/" + std::to_string(n);
  }
};

}  // namespace

Result<std::unique_ptr<ForgeClient>> ForgeClient::Make(ForgeClientOptions options) {
  if (options.kind != "github" && options.kind != "gitlab") {
    return Status::InvalidArgument("forge kind must be github or gitlab, not \"" + options.kind +
                                   "\"");
  }
  if (options.api_url.empty()) {
    options.api_url =
        options.kind == "github" ? "https://api.github.com" : "https://gitlab.com/api/v4";
  }
  while (!options.api_url.empty() && options.api_url.back() == '/') options.api_url.pop_back();
  if (options.api_url.rfind("https://", 0) != 0 && options.api_url.rfind("http://", 0) != 0) {
    return Status::InvalidArgument("forge api_url must start with https:// or http://");
  }
  if (options.project.empty()) return Status::InvalidArgument("the forge project is not set");
  if (options.token.empty()) return Status::InvalidArgument("the forge token is empty");
  if (options.kind == "github") return std::unique_ptr<ForgeClient>(new GithubClient(options));
  return std::unique_ptr<ForgeClient>(new GitlabClient(options));
}

}  // namespace loom
