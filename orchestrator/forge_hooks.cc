// Inbound forge webhooks. See forge_hooks.h for the contract; the design:
//
// - Verify before parsing: the signature (GitHub) or token (GitLab) is checked
//   against the webhook secret of every repository whose policy names the
//   forge, so an unauthenticated body is never parsed. The payload's project
//   then picks among the repositories that verified (two may share a secret).
// - Record, then apply, then finish: the delivery row commits before anything
//   acts on it, and is marked finished with its outcome after. Each step of
//   applying is idempotent (feedback by an idempotency key per issue, review
//   transitions by the task's state, line comments by the delivery that took
//   them), so a delivery applied twice (a restart between) acts once.
// - Payloads are read tolerantly (MemberOrNull/StringOr): a member of the
//   wrong shape is treated as absent, and what is required is checked with a
//   message naming it.
#include "orchestrator/forge_hooks.h"

#include <algorithm>
#include <cctype>

#include "common/crypto.h"
#include "common/json_reader.h"
#include "common/log.h"

namespace loom {

struct ForgeHooks::IssueFields {
  int64_t number = 0;
  std::string title;
  std::string body;
  std::string author;
  std::string url;
  std::vector<std::string> labels;
};

namespace {

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// At most `max` bytes of `s`, cut at a UTF-8 character boundary.
std::string TruncateUtf8(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return s.substr(0, end);
}

// A delivery id: what the forges send is a UUID or a hex digest.
bool ValidDeliveryId(std::string_view id) {
  if (id.empty() || id.size() > 200) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
           c == ':';
  });
}

// An integer member, also when a forge sends it as a string of digits.
int64_t NumberOr(const Json& object, std::string_view name, int64_t fallback) {
  const Json& v = MemberOrNull(object, name);
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (!s.empty() && s.size() < 19 &&
        std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::stoll(s);
    }
  }
  return fallback;
}

// An id member (a number or a string) as text; empty when absent.
std::string IdText(const Json& object, std::string_view name) {
  const Json& v = MemberOrNull(object, name);
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_string()) return v.get<std::string>();
  return {};
}

std::vector<std::string> LabelNames(const Json& labels, const char* key) {
  std::vector<std::string> out;
  if (!labels.is_array()) return out;
  for (const Json& l : labels) {
    std::string name = StringOr(l, key);
    if (!name.empty()) out.push_back(name);
  }
  return out;
}

bool HasLabel(const std::vector<std::string>& labels, const std::string& label) {
  return std::any_of(labels.begin(), labels.end(),
                     [&](const std::string& l) { return Lower(l) == Lower(label); });
}

// bug | feature | question from an issue's labels; bug when none says.
std::string KindFromLabels(const std::vector<std::string>& labels) {
  for (const std::string& raw : labels) {
    std::string l = Lower(raw);
    if (l == "question") return "question";
    if (l == "enhancement" || l == "feature" || l == "feature request" || l == "feature-request" ||
        l == "type::feature") {
      return "feature";
    }
  }
  return "bug";
}

const char* ForgeTitle(const std::string& forge) { return forge == "github" ? "GitHub" : "GitLab"; }

HttpResponse Answer(int status, const Json& body) {
  return HttpResponse::Json(status, DumpJson(body));
}

}  // namespace

ForgeHooks::ForgeHooks(ForgeHooksDeps deps, int threads)
    : deps_(std::move(deps)), pool_(std::make_unique<BlockingPool>(std::max(1, threads))) {}

ForgeHooks::~ForgeHooks() = default;

void ForgeHooks::Register(Router& router) {
  for (const char* forge : {"github", "gitlab"}) {
    std::string name = forge;
    router.Add("POST", "/v1/hooks/" + name,
               [this, name](HttpRequest& request, std::shared_ptr<HttpExchange> ex) {
                 pool_->Post([this, name, req = request, ex]() {
                   ex->Respond(name == "github" ? HandleGithub(req) : HandleGitlab(req));
                 });
               });
  }
}

HttpResponse ForgeHooks::HandleGithub(const HttpRequest& request) {
  return Handle("github", request);
}
HttpResponse ForgeHooks::HandleGitlab(const HttpRequest& request) {
  return Handle("gitlab", request);
}

HttpResponse ForgeHooks::Handle(const std::string& forge, const HttpRequest& request) {
  const bool github = forge == "github";
  // 1. Which repositories' webhook secrets does the request carry?
  std::string given(github ? request.Header("X-Hub-Signature-256")
                           : request.Header("X-Gitlab-Token"));
  if (given.empty()) {
    return ErrorResponse(Status::Unauthenticated(
        github ? "X-Hub-Signature-256 is missing: set the webhook's secret on GitHub"
               : "X-Gitlab-Token is missing: set the webhook's secret token on GitLab"));
  }
  auto policies = deps_.policies->Snapshot();
  std::vector<std::string> names;
  for (const auto& [repo, policy] : *policies) {
    if (policy.forge.kind == forge && !policy.forge.webhook_secret.empty()) {
      names.push_back(policy.forge.webhook_secret);
    }
  }
  auto secrets = deps_.secrets->Get(names);
  if (!secrets.ok()) return ErrorResponse(secrets.status());
  std::vector<std::string> verified;  // repositories
  for (const auto& [repo, policy] : *policies) {
    if (policy.forge.kind != forge || policy.forge.webhook_secret.empty()) continue;
    for (const auto& [name, value] : *secrets) {
      if (name != policy.forge.webhook_secret) continue;
      std::string expected = github ? "sha256=" + HmacSha256Hex(value, request.body) : value;
      if (ConstantTimeEquals(given, expected)) verified.push_back(repo);
    }
  }
  if (verified.empty()) {
    return ErrorResponse(Status::Unauthenticated(
        std::string(github ? "X-Hub-Signature-256" : "X-Gitlab-Token") +
        " matches the webhook secret of no repository with [forge] kind = \"" + forge +
        "\" (its webhook_secret names a secret in loomd's secret store)"));
  }
  // 2. Verified: now the headers and the body are worth reading.
  std::string event(github ? request.Header("X-GitHub-Event") : request.Header("X-Gitlab-Event"));
  std::string id(github ? request.Header("X-GitHub-Delivery") : request.Header("Idempotency-Key"));
  if (!github && id.empty()) id = std::string(request.Header("X-Gitlab-Event-UUID"));
  if (event.empty() || event.size() > 100) {
    return ErrorResponse(Status::InvalidArgument(
        std::string(github ? "X-GitHub-Event" : "X-Gitlab-Event") + " is missing"));
  }
  if (!ValidDeliveryId(id)) {
    return ErrorResponse(Status::InvalidArgument(
        github ? "X-GitHub-Delivery must be the delivery's id (a GUID)"
               : "Idempotency-Key or X-Gitlab-Event-UUID must be the delivery's id"));
  }
  auto body = ParseJson(request.body);
  if (!body.ok()) return ErrorResponse(body.status());
  if (!body->is_object()) {
    return ErrorResponse(Status::InvalidArgument("the payload must be a JSON object"));
  }
  if (github && event == "ping") return Answer(200, {{"pong", true}});
  // 3. The repository: the one that verified whose project the payload names.
  std::string full_name, path, project_id;
  if (github) {
    full_name = Lower(StringOr(MemberOrNull(*body, "repository"), "full_name"));
  } else {
    const Json& project = MemberOrNull(*body, "project");
    path = Lower(StringOr(project, "path_with_namespace"));
    project_id = IdText(project, "id");
  }
  std::string repo;
  for (const std::string& r : verified) {
    std::string configured = Lower(PolicyFor(*policies, r).forge.project);
    if (github ? configured == full_name
               : (configured == path || (!project_id.empty() && configured == project_id))) {
      repo = r;
      break;
    }
  }
  if (repo.empty()) {
    std::string named = github ? full_name : (path.empty() ? project_id : path);
    return ErrorResponse(Status::InvalidArgument(
        "the payload's project \"" + named +
        "\" is not the [forge] project of the repository whose secret verified it"));
  }
  // 4. Durable before anything acts on it, and before any 2xx.
  ForgeDelivery delivery;
  delivery.forge = forge;
  delivery.id = id;
  delivery.repo = repo;
  delivery.event = event;
  delivery.body = request.body;
  auto stored = deps_.forge->RecordDelivery(delivery);
  if (!stored.ok()) return ErrorResponse(stored.status());
  if (stored->finished) {
    return Answer(200, {{"delivery", id}, {"duplicate", true}, {"outcome", stored->outcome}});
  }
  auto outcome = Apply(*stored);
  if (!outcome.ok()) {
    LOOM_LOG(kError) << forge << " delivery " << id << " (" << event
                     << "): " << outcome.status().ToString() << "; applied again at redelivery "
                     << "or restart";
    return ErrorResponse(outcome.status());
  }
  Status finished = deps_.forge->FinishDelivery(forge, id, *outcome);
  if (!finished.ok()) return ErrorResponse(finished);
  LOOM_LOG(kInfo) << forge << " delivery " << id << " (" << event << ", " << repo
                  << "): " << *outcome;
  return Answer(200, {{"delivery", id}, {"outcome", *outcome}});
}

Status ForgeHooks::ResumeUnfinished() {
  LOOM_ASSIGN_OR_RETURN(std::vector<ForgeDelivery> pending, deps_.forge->UnfinishedDeliveries());
  for (const ForgeDelivery& d : pending) {
    auto outcome = Apply(d);
    if (!outcome.ok()) {
      LOOM_LOG(kError) << d.forge << " delivery " << d.id << ": " << outcome.status().ToString();
      continue;
    }
    LOOM_RETURN_IF_ERROR(deps_.forge->FinishDelivery(d.forge, d.id, *outcome));
    LOOM_LOG(kInfo) << d.forge << " delivery " << d.id
                    << " (finished after a restart): " << *outcome;
  }
  return Status::Ok();
}

Result<std::string> ForgeHooks::Apply(const ForgeDelivery& d) {
  // Recorded only after it parsed as an object; a row edited by hand may not.
  auto body = ParseJson(d.body);
  if (!body.ok() || !body->is_object()) return std::string("ignored: the stored body is no object");
  return d.forge == "github" ? ApplyGithub(d, *body) : ApplyGitlab(d, *body);
}

Result<std::string> ForgeHooks::ApplyGithub(const ForgeDelivery& d, const Json& body) {
  std::string action = StringOr(body, "action");
  const auto& forge_policy = PolicyFor(*deps_.policies->Snapshot(), d.repo).forge;
  if (d.event == "issues") {
    const Json& issue = MemberOrNull(body, "issue");
    IssueFields f;
    f.number = NumberOr(issue, "number", 0);
    f.title = StringOr(issue, "title");
    f.body = StringOr(issue, "body");
    f.author = StringOr(MemberOrNull(issue, "user"), "login");
    f.url = StringOr(issue, "html_url");
    f.labels = LabelNames(MemberOrNull(issue, "labels"), "name");
    if (f.number < 1) return std::string("ignored: the issue has no number");
    if (!MemberOrNull(issue, "pull_request").is_null()) {
      return std::string("ignored: #") + std::to_string(f.number) + " is a pull request";
    }
    const std::string& label = forge_policy.issue_label;
    if (action == "opened") {
      if (!label.empty() && !HasLabel(f.labels, label)) {
        return "ignored: issue #" + std::to_string(f.number) + " has no label \"" + label + "\"";
      }
      return FileIssue(d, f);
    }
    if (action == "labeled") {
      std::string added = StringOr(MemberOrNull(body, "label"), "name");
      if (label.empty() || Lower(added) != Lower(label)) {
        return "ignored: the label \"" + added + "\" is not \"" + label + "\"";
      }
      return FileIssue(d, f);
    }
    return "ignored: issue action \"" + action + "\"";
  }
  if (d.event == "pull_request_review") {
    const Json& review = MemberOrNull(body, "review");
    int64_t number = NumberOr(MemberOrNull(body, "pull_request"), "number", 0);
    if (action != "submitted" || Lower(StringOr(review, "state")) != "changes_requested") {
      return "ignored: review " + action + " (" + StringOr(review, "state") + ")";
    }
    return ChangesRequested(d, number, IdText(review, "id"), StringOr(review, "body"),
                            StringOr(MemberOrNull(review, "user"), "login"),
                            StringOr(review, "html_url"));
  }
  if (d.event == "pull_request_review_comment") {
    if (action != "created") return "ignored: review comment " + action;
    const Json& c = MemberOrNull(body, "comment");
    int64_t number = NumberOr(MemberOrNull(body, "pull_request"), "number", 0);
    LineComment comment{StringOr(c, "path"), NumberOr(c, "line", 0), StringOr(c, "body")};
    if (comment.line < 1) comment.line = NumberOr(c, "original_line", 0);
    if (Status s = ValidateLineComment(comment); !s.ok()) {
      return "ignored: a line comment Loom cannot use: " + s.message();
    }
    std::string comment_id = IdText(c, "id");
    if (comment_id.empty() || number < 1) return std::string("ignored: the comment has no id");
    LOOM_RETURN_IF_ERROR(
        deps_.forge->AddPendingComment(d.forge, forge_policy.project, number, comment_id,
                                       IdText(c, "pull_request_review_id"), comment));
    return "line comment on " + comment.path + ":" + std::to_string(comment.line) +
           " kept for its review of #" + std::to_string(number);
  }
  if (d.event == "pull_request") {
    const Json& pr = MemberOrNull(body, "pull_request");
    if (action != "closed") return "ignored: pull request " + action;
    return Closed(d, NumberOr(pr, "number", 0), BoolOr(pr, "merged", false),
                  StringOr(MemberOrNull(body, "sender"), "login"), StringOr(pr, "html_url"),
                  StringOr(pr, "merge_commit_sha"));
  }
  return "ignored: event \"" + d.event + "\" is not one Loom acts on";
}

Result<std::string> ForgeHooks::ApplyGitlab(const ForgeDelivery& d, const Json& body) {
  const Json& attrs = MemberOrNull(body, "object_attributes");
  std::string action = StringOr(attrs, "action");
  std::string actor = StringOr(MemberOrNull(body, "user"), "username");
  const auto& forge_policy = PolicyFor(*deps_.policies->Snapshot(), d.repo).forge;
  if (d.event == "Issue Hook") {
    IssueFields f;
    f.number = NumberOr(attrs, "iid", 0);
    f.title = StringOr(attrs, "title");
    f.body = StringOr(attrs, "description");
    f.author = actor;
    f.url = StringOr(attrs, "url");
    f.labels = LabelNames(MemberOrNull(body, "labels"), "title");
    if (f.number < 1) return std::string("ignored: the issue has no iid");
    const std::string& label = forge_policy.issue_label;
    if (action == "open") {
      if (!label.empty() && !HasLabel(f.labels, label)) {
        return "ignored: issue #" + std::to_string(f.number) + " has no label \"" + label + "\"";
      }
      return FileIssue(d, f);
    }
    if (action == "update") {
      const Json& changes = MemberOrNull(MemberOrNull(body, "changes"), "labels");
      std::vector<std::string> before = LabelNames(MemberOrNull(changes, "previous"), "title");
      std::vector<std::string> after = LabelNames(MemberOrNull(changes, "current"), "title");
      if (label.empty() || !HasLabel(after, label) || HasLabel(before, label)) {
        return "ignored: the update did not add the label \"" + label + "\"";
      }
      return FileIssue(d, f);
    }
    return "ignored: issue action \"" + action + "\"";
  }
  if (d.event == "Note Hook") {
    if (StringOr(attrs, "noteable_type") != "MergeRequest") {
      return std::string("ignored: a note on no merge request");
    }
    const Json& position = MemberOrNull(attrs, "position");
    int64_t number = NumberOr(MemberOrNull(body, "merge_request"), "iid", 0);
    if (!position.is_object()) return std::string("ignored: a note on no line");
    LineComment comment{StringOr(position, "new_path"), NumberOr(position, "new_line", 0),
                        StringOr(attrs, "note")};
    if (comment.line < 1) {
      comment.path = StringOr(position, "old_path");
      comment.line = NumberOr(position, "old_line", 0);
    }
    if (Status s = ValidateLineComment(comment); !s.ok()) {
      return "ignored: a line comment Loom cannot use: " + s.message();
    }
    std::string comment_id = IdText(attrs, "id");
    if (comment_id.empty() || number < 1) return std::string("ignored: the note has no id");
    LOOM_RETURN_IF_ERROR(deps_.forge->AddPendingComment(d.forge, forge_policy.project, number,
                                                        comment_id, "", comment));
    return "line comment on " + comment.path + ":" + std::to_string(comment.line) +
           " kept for the review of !" + std::to_string(number);
  }
  if (d.event == "Merge Request Hook") {
    int64_t number = NumberOr(attrs, "iid", 0);
    std::string url = StringOr(attrs, "url");
    if (action == "merge") {
      return Closed(d, number, true, actor, url, StringOr(attrs, "merge_commit_sha"));
    }
    if (action == "close") return Closed(d, number, false, actor, url, "");
    if (action == "update") {
      // A review submitted with "Request changes": the reviewer's state in
      // changes.reviewers.current becomes requested_changes.
      const Json& reviewers = MemberOrNull(MemberOrNull(body, "changes"), "reviewers");
      const Json& before = MemberOrNull(reviewers, "previous");
      const Json& after = MemberOrNull(reviewers, "current");
      if (after.is_array()) {
        for (const Json& r : after) {
          if (StringOr(r, "state") != "requested_changes") continue;
          bool already = false;
          if (before.is_array()) {
            for (const Json& p : before) {
              already |=
                  IdText(p, "id") == IdText(r, "id") && StringOr(p, "state") == "requested_changes";
            }
          }
          if (!already) {
            return ChangesRequested(d, number, "", "", StringOr(r, "username"), url);
          }
        }
      }
      return std::string("ignored: an update that requests no changes");
    }
    return "ignored: merge request action \"" + action + "\"";
  }
  return "ignored: event \"" + d.event + "\" is not one Loom acts on";
}

Result<int64_t> ForgeHooks::ForgeTokenId(const std::string& forge) {
  // Feedback belongs to a token: the forge's own reporter token, made once and
  // never shown (its secret is dropped), so that triage's fairness counts the
  // forge as one reporter source among others.
  MutexLock lock(&token_mu_);
  if (auto it = token_ids_.find(forge); it != token_ids_.end()) return it->second;
  const std::string name = "forge:" + forge;
  LOOM_ASSIGN_OR_RETURN(std::vector<TokenInfo> tokens, deps_.tokens->List());
  for (const TokenInfo& t : tokens) {
    if (t.name == name && t.role == Role::kReporter && !t.revoked_at_ms) {
      token_ids_[forge] = t.id;
      return t.id;
    }
  }
  LOOM_ASSIGN_OR_RETURN(std::string token, deps_.tokens->Create(Role::kReporter, name));
  LOOM_ASSIGN_OR_RETURN(Principal who, deps_.tokens->Lookup(token));
  token_ids_[forge] = who.token_id;
  return who.token_id;
}

Result<std::string> ForgeHooks::FileIssue(const ForgeDelivery& d, const IssueFields& issue) {
  const auto& forge_policy = PolicyFor(*deps_.policies->Snapshot(), d.repo).forge;
  feedback::Limits limits;
  feedback::Item item;
  item.kind = KindFromLabels(issue.labels);
  item.title = TruncateUtf8(issue.title, limits.title);
  if (item.title.empty()) item.title = "Issue #" + std::to_string(issue.number);
  item.body = TruncateUtf8(issue.body, limits.body);
  if (item.body.empty()) item.body = "(The issue has no description.)";
  if (!issue.author.empty()) {
    item.reporter = TruncateUtf8(d.forge + ":" + issue.author, limits.short_field);
  }
  if (!issue.url.empty() && issue.url.size() <= limits.url) item.url = issue.url;
  item.repo = d.repo;
  item.context = {{"forge", d.forge},
                  {"project", forge_policy.project},
                  {"issue", issue.number},
                  {"labels", issue.labels}};
  if (!IsValidUtf8(item.title) || !IsValidUtf8(item.body)) {
    return std::string("ignored: the issue's text is not UTF-8");
  }
  LOOM_ASSIGN_OR_RETURN(item.token_id, ForgeTokenId(d.forge));
  std::string key = d.forge + ":" + forge_policy.project + "#" + std::to_string(issue.number);
  LOOM_ASSIGN_OR_RETURN(feedback::SubmitResult filed,
                        deps_.feedback->SubmitAndWait(std::move(item), key));
  LOOM_RETURN_IF_ERROR(deps_.forge->PutIssue(
      {filed.id, d.repo, d.forge, forge_policy.project, issue.number, issue.url, std::nullopt}));
  if (deps_.wake) deps_.wake();
  if (filed.replayed) {
    return "issue #" + std::to_string(issue.number) + " was filed before, as feedback " +
           std::to_string(filed.id);
  }
  return "feedback " + std::to_string(filed.id) + " filed from issue #" +
         std::to_string(issue.number);
}

Result<std::string> ForgeHooks::ChangesRequested(const ForgeDelivery& d, int64_t number,
                                                 const std::string& review_id,
                                                 const std::string& text, const std::string& who,
                                                 const std::string& url) {
  const auto& forge_policy = PolicyFor(*deps_.policies->Snapshot(), d.repo).forge;
  LOOM_ASSIGN_OR_RETURN(std::optional<ForgePull> pull,
                        deps_.forge->PullByNumber(d.forge, forge_policy.project, number));
  if (!pull) return "ignored: no task has pull request #" + std::to_string(number);
  LOOM_ASSIGN_OR_RETURN(Task task, deps_.tasks->Get(pull->task_id));
  if (task.state != TaskState::kReview) {
    // Already sent back by this delivery before a restart, or the task moved on.
    return "ignored: task " + std::to_string(task.id) + " is " +
           std::string(TaskStateName(task.state)) + ", not in review";
  }
  LOOM_ASSIGN_OR_RETURN(
      std::vector<LineComment> comments,
      deps_.forge->TakePendingComments(d.forge, forge_policy.project, number, review_id, d.id));
  std::string comment = text;
  if (comment.empty() && comments.empty()) {
    comment = (who.empty() ? std::string("A reviewer") : who) + " requested changes on " +
              ForgeTitle(d.forge) + (url.empty() ? "" : " (" + url + ")") +
              " without saying which: look at the review there.";
  }
  Json extra = {{"forge", {{"forge", d.forge}, {"delivery", d.id}, {"by", who}, {"url", url}}}};
  if (!comments.empty()) extra["comments"] = LineCommentsToJson(comments);
  Status s = deps_.lifecycle->RequestChanges(task.id, 0, comment, std::move(extra));
  if (s.code() == StatusCode::kFailedPrecondition) {
    return "ignored: task " + std::to_string(task.id) + " left review meanwhile";
  }
  LOOM_RETURN_IF_ERROR(s);
  if (deps_.wake) deps_.wake();
  return "task " + std::to_string(task.id) + " sent back to the agent with " +
         std::to_string(comments.size()) + " line comment" + (comments.size() == 1 ? "" : "s");
}

Result<std::string> ForgeHooks::Closed(const ForgeDelivery& d, int64_t number, bool merged,
                                       const std::string& who, const std::string& url,
                                       const std::string& commit) {
  const auto& forge_policy = PolicyFor(*deps_.policies->Snapshot(), d.repo).forge;
  LOOM_ASSIGN_OR_RETURN(std::optional<ForgePull> pull,
                        deps_.forge->PullByNumber(d.forge, forge_policy.project, number));
  if (!pull) return "ignored: no task has pull request #" + std::to_string(number);
  LOOM_ASSIGN_OR_RETURN(Task task, deps_.tasks->Get(pull->task_id));
  if (task.state != TaskState::kReview) {
    return "ignored: task " + std::to_string(task.id) + " is " +
           std::string(TaskStateName(task.state)) + ", not in review";
  }
  std::string by = who.empty() ? "" : " by " + who;
  std::string where = std::string(ForgeTitle(d.forge)) + (url.empty() ? "" : " (" + url + ")");
  Status s = merged
                 ? deps_.lifecycle->Merged(task.id, 0, "merged on " + where + by,
                                           {{"how", "forge"},
                                            {"forge", d.forge},
                                            {"url", url},
                                            {"by", who},
                                            {"commit", commit},
                                            {"delivery", d.id}})
                 : deps_.lifecycle->Reject(task.id, 0, "closed without merging on " + where + by);
  if (s.code() == StatusCode::kFailedPrecondition) {
    return "ignored: task " + std::to_string(task.id) + " left review meanwhile";
  }
  LOOM_RETURN_IF_ERROR(s);
  if (deps_.wake) deps_.wake();
  return "task " + std::to_string(task.id) + (merged ? " merged" : " rejected");
}

}  // namespace loom
