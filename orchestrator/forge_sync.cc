// The pull request sync. See forge_sync.h for the contract; the design:
//
// - The task event log is the queue: the sync reads the events of the types it
//   acts on after its cursor (forge_cursors), acts, then moves the cursor past
//   them. A stop between acting and moving the cursor acts again at the next
//   pass, and every act first checks what is recorded (forge_pulls, the issue's
//   commented_task_id), so it is done once.
// - The forge's answers decide: Unavailable stops the pass (the cursor waits
//   before the event); any other error is logged and passed over.
// - The pull request's body is built from the task's event log and its
//   feedback, the same facts `loom review show` gives.
#include "orchestrator/forge_sync.h"

#include <sstream>

#include "common/json_reader.h"
#include "common/log.h"

namespace loom {
namespace {

std::string Plural(int64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

std::string Duration(int64_t ms) {
  int64_t s = ms / 1000;
  if (s < 60) return std::to_string(s) + " s";
  if (s < 3600) return std::to_string(s / 60) + " min " + std::to_string(s % 60) + " s";
  return std::to_string(s / 3600) + " h " + std::to_string((s % 3600) / 60) + " min";
}

// Markdown-safe enough for one line: no newlines, no table or HTML breakers.
std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  return s;
}

}  // namespace

ForgeSync::ForgeSync(ForgeSyncDeps deps) : deps_(std::move(deps)) {
  if (!deps_.make_client) deps_.make_client = ForgeClient::Make;
}

ForgeSync::~ForgeSync() { Stop(); }

void ForgeSync::Start() {
  MutexLock lock(&mu_);
  if (thread_.joinable() || stop_) return;
  thread_ = std::thread([this] { Loop(); });
}

void ForgeSync::Wake() {
  {
    MutexLock lock(&mu_);
    woken_ = true;
  }
  wake_.notify_all();
}

void ForgeSync::Stop() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ForgeSync::Loop() {
  while (true) {
    {
      MutexLock lock(&mu_);
      auto next = std::chrono::steady_clock::now() + deps_.interval;
      while (!stop_ && !woken_ && std::chrono::steady_clock::now() < next) {
        lock.WaitUntil(&wake_, next);
      }
      if (stop_) return;
      woken_ = false;
    }
    Status s = RunOnce();
    if (!s.ok()) {
      LOOM_LOG(kWarning) << "pull request sync: " << s.ToString() << "; tried again";
    }
  }
}

Status ForgeSync::RunOnce() {
  MutexLock pass(&pass_mu_);
  static const std::vector<std::string> kTypes = {"pushed", "state"};
  constexpr int kBatch = 200;
  LOOM_ASSIGN_OR_RETURN(int64_t cursor, deps_.forge->Cursor(kConsumer));
  while (true) {
    LOOM_ASSIGN_OR_RETURN(int64_t last, deps_.forge->LastEventId());
    LOOM_ASSIGN_OR_RETURN(std::vector<LoggedEvent> events,
                          deps_.forge->EventsAfter(cursor, kTypes, kBatch));
    for (const LoggedEvent& e : events) {
      LOOM_RETURN_IF_ERROR(Handle(e));
      cursor = e.id;
      LOOM_RETURN_IF_ERROR(deps_.forge->SetCursor(kConsumer, cursor));
    }
    if (static_cast<int>(events.size()) < kBatch) {
      // Nothing of interest up to `last` (read before the query): skip what
      // lies between, so that the next pass does not scan it again.
      if (last > cursor) LOOM_RETURN_IF_ERROR(deps_.forge->SetCursor(kConsumer, last));
      return Status::Ok();
    }
  }
}

Status ForgeSync::Handle(const LoggedEvent& event) {
  auto task = deps_.tasks->Get(event.task_id);
  if (!task.ok()) return Status::Ok();  // a task that is gone has nothing to sync
  const auto& forge = PolicyFor(*deps_.policies->Snapshot(), task->repo).forge;
  if (forge.kind.empty()) return Status::Ok();
  Status s;
  if (event.type == "pushed") {
    s = Pushed(*task, event);
  } else if (StringOr(event.data, "to") == "review") {
    s = ReachedReview(*task);
  } else if (StringOr(event.data, "to") == "rejected") {
    s = Rejected(*task);
  }
  if (s.code() == StatusCode::kUnavailable) return s;
  if (!s.ok()) {
    LOOM_LOG(kError) << "pull request sync, task " << task->id << " (" << event.type
                     << "): " << s.ToString() << "; passed over";
  }
  return Status::Ok();
}

Result<std::unique_ptr<ForgeClient>> ForgeSync::ClientFor(const policies::ForgePolicy& forge) {
  if (forge.token_secret.empty()) {
    return Status::FailedPrecondition("[forge] token_secret is not set");
  }
  LOOM_ASSIGN_OR_RETURN(SecretList secrets, deps_.secrets->Get({forge.token_secret}));
  if (secrets.empty()) {
    return Status::FailedPrecondition("the secret " + forge.token_secret +
                                      " ([forge] token_secret) is not stored: loom secrets");
  }
  ForgeClientOptions options;
  options.kind = forge.kind;
  options.api_url = forge.api_url;
  options.project = forge.project;
  options.token = secrets[0].second;
  return deps_.make_client(std::move(options));
}

Result<PullRequestSpec> ForgeSync::SpecFor(const Task& task, const std::string& branch,
                                           const std::string& commit) {
  LOOM_ASSIGN_OR_RETURN(std::vector<Event> events, deps_.tasks->Events(task.id));
  std::string summary;
  Json last_run, fail_to_pass;
  int64_t first_ms = 0, last_ms = 0;
  for (const Event& e : events) {
    if (first_ms == 0) first_ms = e.created_at_ms;
    last_ms = e.created_at_ms;
    if (e.type == EventType::kTestRun && StringOr(e.data, "tree") == "branch") {
      last_run = e.data;
    } else if (e.type == EventType::kFailToPass) {
      fail_to_pass = e.data;
    } else if (e.type == EventType::kLlmReply) {
      const Json& calls = MemberOrNull(MemberOrNull(e.data, "message"), "tool_calls");
      if (!calls.is_array()) continue;
      for (const Json& tc : calls) {
        const Json& fn = MemberOrNull(tc, "function");
        if (StringOr(fn, "name") != "finish") continue;
        auto args = ParseJson(StringOr(fn, "arguments", "{}"));
        if (args.ok()) summary = StringOr(*args, "summary");
      }
    }
  }
  const bool verified = task.state == TaskState::kReview || task.state == TaskState::kMerged;
  std::ostringstream body;
  body << (summary.empty() ? "(The agent gave no summary.)" : summary) << "\n\n";
  body << "### Feedback\n\n";
  LOOM_ASSIGN_OR_RETURN(std::vector<ForgeIssue> issues, deps_.forge->IssuesOfTask(task.id));
  for (int64_t id : task.feedback_ids) {
    auto item = deps_.feedback->Get(id);
    if (!item.ok()) continue;
    body << "- " << item->kind << " #" << item->id << ": " << OneLine(item->title) << " ("
         << Plural(item->reporter_count, "reporter", "reporters") << ")";
    bool linked = false;
    for (const ForgeIssue& i : issues) {
      if (i.feedback_id == id) {
        body << ", from " << (i.url.empty() ? "#" + std::to_string(i.number) : i.url);
        linked = true;
      }
    }
    if (!linked && item->url) body << ", " << OneLine(*item->url);
    body << "\n";
  }
  if (task.feedback_ids.empty()) body << "- (none: the task was made by hand)\n";
  body << "\n### Verification\n\n";
  if (!verified) {
    body << "Not verified yet: this stays a draft until the test suite passes on the branch.\n";
  }
  if (fail_to_pass.is_object()) {
    std::string tests;
    const Json& list = MemberOrNull(fail_to_pass, "tests");
    if (list.is_array()) {
      for (const Json& t : list) {
        if (t.is_string()) tests += (tests.empty() ? "`" : ", `") + t.get<std::string>() + "`";
      }
    }
    body << "- FAIL_TO_PASS: " << (tests.empty() ? "(no test named)" : tests)
         << " fails on the base commit (exit "
         << IntOr(MemberOrNull(fail_to_pass, "base"), "exit_code", -1) << ")"
         << (verified ? " and passes on this branch" : "") << ".\n";
  }
  if (last_run.is_object()) {
    int64_t exit_code = IntOr(MemberOrNull(last_run, "outcome"), "exit_code", -1);
    body << "- PASS_TO_PASS: the whole suite "
         << (exit_code == 0 ? "passes" : "fails (exit " + std::to_string(exit_code) + ")")
         << " on the branch";
    if (int64_t ms = IntOr(last_run, "ms", 0); ms > 0) body << " (" << Duration(ms) << ")";
    body << ".\n";
  } else {
    body << "- The suite has not run on the branch yet.\n";
  }
  body << "\n### Cost\n\n"
       << "- " << (task.prompt_tokens + task.completion_tokens) << " tokens (" << task.prompt_tokens
       << " prompt, " << task.completion_tokens << " completion), "
       << Plural(task.steps, "model call", "model calls") << ", "
       << Plural(task.test_runs, "test run", "test runs") << "\n"
       << "- " << Duration(std::max<int64_t>(0, last_ms - first_ms))
       << " from the task's start to this push\n\n"
       << "---\nLoom task #" << task.id << ", branch `" << branch << "`"
       << (commit.empty() ? "" : ", commit `" + commit.substr(0, 12) + "`") << ".\n";
  const auto& repo_policy = PolicyFor(*deps_.policies->Snapshot(), task.repo);
  PullRequestSpec spec;
  spec.title = OneLine(task.title);
  spec.body = body.str();
  spec.head = branch;
  spec.base = repo_policy.repo.target_branch;
  spec.draft = !verified;
  return spec;
}

Status ForgeSync::Pushed(const Task& task, const LoggedEvent& event) {
  const auto& forge = PolicyFor(*deps_.policies->Snapshot(), task.repo).forge;
  std::string branch = StringOr(event.data, "branch");
  if (branch.empty()) branch = task.branch.value_or("");
  if (branch.empty()) return Status::InvalidArgument("the pushed event names no branch");
  if (branch.rfind("refs/heads/", 0) == 0) branch = branch.substr(11);
  LOOM_ASSIGN_OR_RETURN(std::unique_ptr<ForgeClient> client, ClientFor(forge));
  LOOM_ASSIGN_OR_RETURN(PullRequestSpec spec,
                        SpecFor(task, branch, StringOr(event.data, "commit")));
  LOOM_ASSIGN_OR_RETURN(std::optional<ForgePull> pull, deps_.forge->PullOfTask(task.id));
  if (!pull) {
    auto opened = client->OpenPullRequest(spec);
    if (opened.status().code() == StatusCode::kFailedPrecondition) {
      // One is open for the branch already: opened before a stop of loomd
      // let it be recorded. It is this task's.
      LOOM_ASSIGN_OR_RETURN(std::optional<PullRequestInfo> found,
                            client->FindOpenPullRequest(branch));
      if (!found || found->number < 1) return opened.status();
      opened = *found;
    }
    if (!opened.ok()) return opened.status();
    pull = ForgePull{task.id,        task.repo,   forge.kind,   forge.project,
                     opened->number, opened->url, opened->draft};
    LOOM_RETURN_IF_ERROR(deps_.forge->PutPull(*pull));
    LOOM_LOG(kInfo) << "task " << task.id << ": pull request " << opened->url
                    << (opened->draft ? " (draft)" : "");
    if (pull->draft && !spec.draft) {
      LOOM_RETURN_IF_ERROR(client->UpdatePullRequest(pull->number, spec, true));
      pull->draft = false;
      LOOM_RETURN_IF_ERROR(deps_.forge->PutPull(*pull));
    }
  } else {
    LOOM_RETURN_IF_ERROR(client->UpdatePullRequest(pull->number, spec, pull->draft));
    pull->draft = pull->draft && spec.draft;
    LOOM_RETURN_IF_ERROR(deps_.forge->PutPull(*pull));
  }
  if (!spec.draft) return TellIssues(task, *pull, *client);
  return Status::Ok();
}

Status ForgeSync::ReachedReview(const Task& task) {
  LOOM_ASSIGN_OR_RETURN(std::optional<ForgePull> pull, deps_.forge->PullOfTask(task.id));
  if (!pull) return Status::Ok();  // opened, ready, when its branch is pushed
  const auto& forge = PolicyFor(*deps_.policies->Snapshot(), task.repo).forge;
  LOOM_ASSIGN_OR_RETURN(std::unique_ptr<ForgeClient> client, ClientFor(forge));
  if (pull->draft && task.state == TaskState::kReview) {
    LOOM_ASSIGN_OR_RETURN(PullRequestSpec spec, SpecFor(task, task.branch.value_or(""), ""));
    spec.head = task.branch.value_or("");
    LOOM_RETURN_IF_ERROR(client->UpdatePullRequest(pull->number, spec, true));
    pull->draft = false;
    LOOM_RETURN_IF_ERROR(deps_.forge->PutPull(*pull));
  }
  return TellIssues(task, *pull, *client);
}

Status ForgeSync::Rejected(const Task& task) {
  LOOM_ASSIGN_OR_RETURN(std::optional<ForgePull> pull, deps_.forge->PullOfTask(task.id));
  if (!pull) return Status::Ok();
  const auto& forge = PolicyFor(*deps_.policies->Snapshot(), task.repo).forge;
  LOOM_ASSIGN_OR_RETURN(std::unique_ptr<ForgeClient> client, ClientFor(forge));
  LOOM_RETURN_IF_ERROR(client->ClosePullRequest(pull->number));
  LOOM_LOG(kInfo) << "task " << task.id << " rejected: closed " << pull->url;
  return Status::Ok();
}

Status ForgeSync::TellIssues(const Task& task, const ForgePull& pull, ForgeClient& client) {
  LOOM_ASSIGN_OR_RETURN(std::vector<ForgeIssue> issues, deps_.forge->IssuesOfTask(task.id));
  for (const ForgeIssue& issue : issues) {
    if (issue.commented_task_id == task.id) continue;
    if (issue.forge != pull.forge || issue.project != pull.project) continue;
    std::string text = "Loom made a change for this issue and it is ready for review: " +
                       (pull.url.empty() ? "#" + std::to_string(pull.number) : pull.url) +
                       " (Loom task #" + std::to_string(task.id) + ").";
    LOOM_RETURN_IF_ERROR(client.CommentOnIssue(issue.number, text));
    LOOM_RETURN_IF_ERROR(deps_.forge->MarkIssueCommented(issue.feedback_id, task.id));
  }
  return Status::Ok();
}

}  // namespace loom
