// loom repo add|list, loom task list|show|log|cancel|retry, loom escalations list|show|answer.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "common/json_reader.h"
#include "orchestrator/cli/api_client.h"
#include "repos/remote.h"

namespace loom::cli {
namespace {

// --limit and --after on a list command, which pages through from there to the end.
void AddPageFlags(CLI::App* list, PageOptions* page) {
  list->add_option("--limit", page->limit, "Items per request (1-500, default 50)");
  list->add_option("--after", page->after, "Start after this id");
}

// The first line of `text`, at most `max` bytes, with "..." when cut.
std::string FirstLine(const std::string& text, size_t max = 100) {
  std::string line = text.substr(0, text.find('\n'));
  if (line.size() > max) return line.substr(0, max) + "...";
  return line.size() < text.size() ? line + " ..." : line;
}

// "GPU grant: 2 x gpu:a100 for 60 min (until 2026-...Z)" for an escalation or a
// task that carries one; empty otherwise.
std::string GrantLine(const Json& j) {
  const Json* g = nullptr;
  if (j.contains("gpu_grant") && j["gpu_grant"].is_object()) {
    g = &j["gpu_grant"];
  } else if (j.contains("answer") && j["answer"].is_object() && j["answer"].contains("gpu") &&
             j["answer"]["gpu"].is_object()) {
    g = &j["answer"]["gpu"];
  }
  if (g == nullptr) return "";
  std::time_t until = static_cast<std::time_t>(g->value("until_ms", int64_t{0}) / 1000);
  char when[32] = "";
  std::tm tm{};
  if (gmtime_r(&until, &tm) != nullptr) std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return "GPU grant: " + std::to_string(g->value("count", int64_t{0})) +
         " x gpu:" + g->value("type", std::string("?")) + " for " +
         std::to_string(g->value("minutes", int64_t{0})) + " min (until " + when + ")";
}

void PrintTask(const Json& t) {
  std::cout << "task #" << Str(t, "id") << "  " << Str(t, "kind") << "  " << Str(t, "state") << "\n"
            << "title:   " << Str(t, "title") << "\n"
            << "repo:    " << Str(t, "repo") << "\n";
  if (!Str(t, "branch").empty()) std::cout << "branch:  " << Str(t, "branch") << "\n";
  if (!Str(t, "reason").empty()) std::cout << "reason:  " << Str(t, "reason") << "\n";
  if (!Str(t, "answer").empty()) std::cout << "answer:  " << Str(t, "answer") << "\n";
  if (std::string grant = GrantLine(t); !grant.empty()) std::cout << grant << "\n";
  if (!Str(t, "extra_steps").empty() || !Str(t, "extra_tokens").empty()) {
    std::cout << "extra budget: " << IntOr(t, "extra_steps", 0) << " steps, "
              << IntOr(t, "extra_tokens", 0) << " tokens (retries)\n";
  }
  std::cout << "feedback: " << Str(t, "feedback_ids") << "\n"
            << "steps " << Str(t, "steps") << ", tokens " << Str(t, "prompt_tokens") << " in / "
            << Str(t, "completion_tokens") << " out, test runs " << Str(t, "test_runs") << "\n";
}

const Json& ArrayOrEmpty(const Json& object, std::string_view name) {
  static const Json kEmpty = Json::array();
  const Json& member = MemberOrNull(object, name);
  return member.is_array() ? member : kEmpty;
}

// `loom review show`: what was asked, what the agent says it did, the diff (with
// edits of protected paths called out), the FAIL_TO_PASS evidence and the
// verification.
void PrintReview(const Json& r) {
  PrintTask(MemberOrNull(r, "task"));
  for (const auto& f : ArrayOrEmpty(r, "feedback")) {
    std::cout << "\nfeedback #" << Str(f, "id") << " (" << Str(f, "kind") << ", "
              << Str(f, "reporter_count") << " reporter(s)): " << Str(f, "title") << "\n"
              << Str(f, "body") << "\n";
  }
  std::cout << "\ntime to review: " << Str(r, "seconds_to_review") << " s\n"
            << "tool calls: " << Str(r, "tool_calls") << "\n\nsummary:\n"
            << Str(r, "summary") << "\n\n";
  const Json& diff = MemberOrNull(r, "diff");
  for (const auto& f : ArrayOrEmpty(diff, "files")) {
    std::printf("  %-50s +%s -%s%s\n", Str(f, "path").c_str(), Str(f, "additions").c_str(),
                Str(f, "deletions").c_str(),
                BoolOr(f, "protected", false) ? "  PROTECTED (edit approved by a person)" : "");
  }
  std::cout << "\n" << Str(diff, "unified");
  const Json& f2p = MemberOrNull(r, "fail_to_pass");
  if (f2p.is_object()) {
    const Json& o = MemberOrNull(f2p, "base");
    std::string tests;
    for (const auto& t : ArrayOrEmpty(f2p, "tests"))
      if (t.is_string()) tests += " " + t.get<std::string>();
    std::cout << "\n--- FAIL_TO_PASS: the agent's tests on the base tree (exit "
              << Str(o, "exit_code") << ", so they reproduce the bug):" << tests << " ---\n"
              << Str(o, "stdout") << Str(o, "stderr");
  }
  const Json& v = MemberOrNull(r, "verification");
  if (v.is_object()) {
    const Json& o = MemberOrNull(v, "outcome");
    std::cout << "\n--- verification on the branch (exit " << Str(o, "exit_code") << ") ---\n"
              << Str(o, "stdout") << Str(o, "stderr");
  }
}

}  // namespace

int FollowTaskEvents(const GlobalOptions& global, int64_t id, int64_t after, bool follow,
                     bool full) {
  const std::string base = "/v1/tasks/" + std::to_string(id);
  while (true) {
    ApiReply r = CallApi(global, "GET", base + "/events?after=" + std::to_string(after));
    if (r.exit_code != kExitOk) return ReportFailure(global, r);
    const Json& items = MemberOrNull(r.body, "items");
    for (const auto& e : ArrayOrEmpty(r.body, "items")) {
      std::cout << (global.json ? DumpJson(e) : FormatEvent(e, full)) << "\n" << std::flush;
      after = std::max(after, IntOr(e, "seq", after));
    }
    // A full page: the next one follows at once (next_after), with or without --follow.
    if (MemberOrNull(r.body, "next_after").is_number_integer()) continue;
    if (!follow) return kExitOk;
    if (!items.is_array() || items.empty()) {
      ApiReply t = CallApi(global, "GET", base);
      if (t.exit_code != kExitOk) return ReportFailure(global, t);
      std::string state = Str(t.body, "state");
      if (state != "queued" && state != "running" && state != "verifying") return kExitOk;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
  }
}

namespace {

// A secret's value from the file `path`, or from stdin when it is "-": read
// whole, without one trailing newline (what `echo` and editors add).
Result<std::string> ReadSecretValue(const std::string& path) {
  std::string value;
  if (path == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    value = ss.str();
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status::NotFound("cannot read the secret file " + path);
    std::ostringstream ss;
    ss << in.rdbuf();
    value = ss.str();
  }
  if (value.ends_with("\r\n")) {
    value.resize(value.size() - 2);
  } else if (value.ends_with("\n")) {
    value.pop_back();
  }
  if (value.empty()) return Status::InvalidArgument("the secret read from " + path + " is empty");
  return value;
}

void AddRepoCommands(CLI::App& app, GlobalOptions& global, int& exit_code) {
  auto* repo = app.add_subcommand("repo", "Register and list repositories");
  repo->require_subcommand(1);
  struct AddArgs {
    std::string name, path, test, branch = "main";
    // The names of secrets in loomd's secret store (loom secret set), never values.
    std::string username, password_secret, ssh_key_secret, ssh_passphrase_secret,
        known_hosts_secret;
    bool accept_any_host_key = false;
  };
  auto args = std::make_shared<AddArgs>();
  auto* add = repo->add_subcommand("add", "Register a git repository agents may work on");
  add->add_option("name", args->name, "Name ([A-Za-z0-9._-]+)")->required();
  add->add_option("path", args->path,
                  "Path of the repository on loomd's machine, or a URL (https://, ssh://, "
                  "user@host:path, file://) that loomd clones into its data dir")
      ->required();
  add->add_option("--test", args->test, "Test command, run in the sandbox")->required();
  add->add_option("--branch", args->branch, "Target branch (default main)");
  add->add_option("--username", args->username,
                  "HTTPS: the user the token belongs to (GitHub: any; GitLab: oauth2); SSH: the "
                  "user when the URL names none");
  add->add_option("--password-secret", args->password_secret,
                  "HTTPS: the name of the secret holding the password or token");
  add->add_option("--ssh-key-secret", args->ssh_key_secret,
                  "SSH: the name of the secret holding the private key");
  add->add_option("--ssh-passphrase-secret", args->ssh_passphrase_secret,
                  "SSH: the name of the secret holding the key's passphrase");
  add->add_option("--known-hosts-secret", args->known_hosts_secret,
                  "SSH: the name of the secret holding the server's known_hosts lines");
  add->add_flag("--accept-any-host-key", args->accept_any_host_key,
                "SSH: do not check the server's host key (never on a network you do not own)");
  add->callback([&global, &exit_code, args] {
    char cwd[4096];
    std::string path = args->path;
    Result<repos::RemoteUrl> url = repos::ParseRemoteUrl(path);
    bool is_url = url.ok() && url->kind != repos::RemoteKind::kLocalPath;
    if (!is_url && !path.empty() && path[0] != '/' && getcwd(cwd, sizeof cwd))
      path = std::string(cwd) + "/" + path;
    Json body = {{"name", args->name},
                 {"path", path},
                 {"test_command", args->test},
                 {"branch", args->branch}};
    for (const auto& [field, value] :
         {std::pair{"username", &args->username},
          std::pair{"password_secret", &args->password_secret},
          std::pair{"ssh_key_secret", &args->ssh_key_secret},
          std::pair{"ssh_passphrase_secret", &args->ssh_passphrase_secret},
          std::pair{"known_hosts_secret", &args->known_hosts_secret}}) {
      if (!value->empty()) body[field] = *value;
    }
    if (args->accept_any_host_key) body["accept_any_host_key"] = true;
    PrintReply(global, CallApi(global, "POST", "/v1/repos", &body), exit_code, [](const Json& r) {
      std::cout << "Registered " << Str(r, "name") << " (" << Str(r, "path") << ", branch "
                << Str(r, "branch") << ")\n";
    });
  });
  // loom secret set NAME [--from-file PATH]: the value from a file or stdin,
  // never from argv (the process list).
  auto* secret = app.add_subcommand("secret", "Store secrets in loomd's secret store");
  secret->require_subcommand(1);
  struct SecretArgs {
    std::string name, file = "-";
  };
  auto sargs = std::make_shared<SecretArgs>();
  auto* set = secret->add_subcommand(
      "set", "Store a secret (a git server's token, an SSH key or known_hosts lines)");
  set->add_option("name", sargs->name, "Name ([A-Z_][A-Z0-9_]*)")->required();
  set->add_option("--from-file", sargs->file, "Read the value from this file (default: stdin)");
  set->callback([&global, &exit_code, sargs] {
    auto value = ReadSecretValue(sargs->file);
    if (!value.ok()) {
      std::cerr << "loom: " << value.status().message() << "\n";
      exit_code = kExitError;
      return;
    }
    Json body = {{"name", sargs->name}, {"value", *value}};
    PrintReply(global, CallApi(global, "POST", "/v1/secrets", &body), exit_code,
               [](const Json& r) { std::cout << "Stored the secret " << Str(r, "name") << "\n"; });
  });
  auto* list = repo->add_subcommand("list", "List registered repositories");
  list->callback([&global, &exit_code] {
    PrintReply(global, CallApi(global, "GET", "/v1/repos"), exit_code, [](const Json& r) {
      if (r["items"].empty()) std::cout << "No repositories.\n";
      for (const auto& it : r["items"]) {
        std::printf("%-20s %-8s %-40s %s\n", Str(it, "name").c_str(), Str(it, "branch").c_str(),
                    Str(it, "path").c_str(), Str(it, "test_command").c_str());
        if (it.contains("remote") && it["remote"].is_object()) {
          std::string secrets;
          for (const char* f : {"password_secret", "ssh_key_secret", "ssh_passphrase_secret",
                                "known_hosts_secret"}) {
            if (!Str(it["remote"], f).empty())
              secrets += std::string(" ") + f + "=" + Str(it["remote"], f);
          }
          std::printf("  remote %s%s\n", Str(it["remote"], "url").c_str(), secrets.c_str());
        }
      }
    });
  });
}

void AddTaskCommands(CLI::App& app, GlobalOptions& global, int& exit_code) {
  auto* task = app.add_subcommand("task", "Follow what the agents do");
  task->require_subcommand(1);
  auto state = std::make_shared<std::string>();
  auto task_pages = std::make_shared<PageOptions>();
  auto* list = task->add_subcommand("list", "List tasks (oldest first)");
  list->add_option("--state", *state, "queued, running, blocked, review, failed, ...");
  AddPageFlags(list, task_pages.get());
  list->callback([&global, &exit_code, state, task_pages] {
    std::string path = "/v1/tasks";
    if (!state->empty()) path += "?state=" + UrlEncode(*state);
    PrintReply(global, GetPages(global, path, *task_pages), exit_code, [](const Json& r) {
      if (r["items"].empty()) std::cout << "No tasks.\n";
      for (const auto& t : r["items"]) {
        std::printf("#%-5s %-8s %-10s %-28s %s\n", Str(t, "id").c_str(), Str(t, "kind").c_str(),
                    Str(t, "state").c_str(), Str(t, "branch").c_str(), Str(t, "title").c_str());
      }
    });
  });
  auto show_id = std::make_shared<int64_t>(0);
  auto* show = task->add_subcommand("show", "Show one task");
  show->add_option("id", *show_id, "Task id")->required();
  show->callback([&global, &exit_code, show_id] {
    PrintReply(global, CallApi(global, "GET", "/v1/tasks/" + std::to_string(*show_id)), exit_code,
               PrintTask);
  });
  struct LogArgs {
    int64_t id = 0, after = 0;
    bool follow = false, full = false;
  };
  auto largs = std::make_shared<LogArgs>();
  auto* log = task->add_subcommand("log", "Print a task's event log");
  log->add_option("id", largs->id, "Task id")->required();
  log->add_option("--after", largs->after, "Only events after this sequence number");
  log->add_flag("-f,--follow", largs->follow, "Keep printing until the task stops working");
  log->add_flag("--full", largs->full,
                "Each event whole (prompts, replies, tool output) instead of one line");
  log->callback([&global, &exit_code, largs] {
    exit_code = FollowTaskEvents(global, largs->id, largs->after, largs->follow, largs->full);
  });
  struct CancelArgs {
    int64_t id = 0;
    std::string reason;
  };
  auto cargs = std::make_shared<CancelArgs>();
  auto* cancel = task->add_subcommand(
      "cancel", "Stop a queued, running or blocked task; its worktree and branch are removed");
  cancel->add_option("id", cargs->id, "Task id")->required();
  cancel->add_option("--reason", cargs->reason, "Why (the reporter sees it)");
  cancel->callback([&global, &exit_code, cargs] {
    Json body = Json::object();
    if (!cargs->reason.empty()) body["reason"] = cargs->reason;
    PrintReply(global,
               CallApi(global, "POST", "/v1/tasks/" + std::to_string(cargs->id) + "/cancel", &body),
               exit_code, [&](const Json& t) {
                 std::cout << "Cancelled task #" << cargs->id << ": " << Str(t, "reason") << "\n";
               });
  });
  struct RetryArgs {
    int64_t id = 0, extra_steps = 0, extra_tokens = 0;
    bool more_budget = false;
  };
  auto rargs = std::make_shared<RetryArgs>();
  auto* retry = task->add_subcommand(
      "retry", "Start a failed or cancelled task again, on a fresh worktree from the target");
  retry->add_option("id", rargs->id, "Task id")->required();
  retry->add_flag("--more-budget", rargs->more_budget,
                  "Give it as many steps and tokens again as the policy's budget");
  retry->add_option("--extra-steps", rargs->extra_steps, "Model calls to add to its budget");
  retry->add_option("--extra-tokens", rargs->extra_tokens, "Tokens to add to its budget");
  retry->callback([&global, &exit_code, rargs] {
    Json body = Json::object();
    if (rargs->more_budget) body["more_budget"] = true;
    if (rargs->extra_steps) body["extra_steps"] = rargs->extra_steps;
    if (rargs->extra_tokens) body["extra_tokens"] = rargs->extra_tokens;
    PrintReply(global,
               CallApi(global, "POST", "/v1/tasks/" + std::to_string(rargs->id) + "/retry", &body),
               exit_code, [&](const Json& t) {
                 std::cout << "Task #" << rargs->id << " is " << Str(t, "state")
                           << " again, on a fresh worktree";
                 if (t.contains("extra_steps") || t.contains("extra_tokens")) {
                   std::cout << " (extra budget: " << IntOr(t, "extra_steps", 0) << " steps, "
                             << IntOr(t, "extra_tokens", 0) << " tokens)";
                 }
                 std::cout << ".\n";
               });
  });
}

void AddReviewCommands(CLI::App& app, GlobalOptions& global, int& exit_code) {
  auto* review = app.add_subcommand("review", "Review agent branches: approve, send back, reject");
  review->require_subcommand(1);
  auto review_pages = std::make_shared<PageOptions>();
  auto* list = review->add_subcommand("list", "Tasks waiting for review");
  AddPageFlags(list, review_pages.get());
  list->callback([&global, &exit_code, review_pages] {
    PrintReply(
        global, GetPages(global, "/v1/reviews", *review_pages), exit_code, [](const Json& r) {
          if (r["items"].empty()) std::cout << "Nothing to review.\n";
          for (const auto& t : r["items"]) {
            std::printf("#%-5s %-8s %-40s %s\n", Str(t, "id").c_str(), Str(t, "kind").c_str(),
                        Str(t, "branch").c_str(), Str(t, "title").c_str());
          }
        });
  });
  auto show_id = std::make_shared<int64_t>(0);
  auto* show = review->add_subcommand("show", "Diff, test results, transcript summary and cost");
  show->add_option("id", *show_id, "Task id")->required();
  show->callback([&global, &exit_code, show_id] {
    PrintReply(global, CallApi(global, "GET", "/v1/reviews/" + std::to_string(*show_id)), exit_code,
               PrintReview);
  });
  struct Decision {
    int64_t id = 0;
    std::string text;
  };
  auto approve = std::make_shared<Decision>();
  auto* ap = review->add_subcommand("approve", "Approve and merge into the target branch");
  ap->add_option("id", approve->id, "Task id")->required();
  ap->callback([&global, &exit_code, approve] {
    ApiReply r = CallApi(global, "POST", "/v1/reviews/" + std::to_string(approve->id) + "/approve");
    if (r.http_status == 409 && r.body.contains("conflicting_paths")) {
      if (global.json) {
        std::cout << DumpJson(r.body) << "\n";
      } else {
        std::cout << "Not merged: the branch conflicts with the target in "
                  << Str(r.body, "conflicting_paths") << "; task #" << approve->id
                  << " went back to the agent.\n";
      }
      exit_code = kExitError;
      return;
    }
    PrintReply(global, r, exit_code, [&](const Json& b) {
      if (!b.value("merged", false)) {
        std::cout << Str(b, "message") << "\n";
        return;
      }
      std::cout << "Merged task #" << approve->id << " (" << Str(b, "merge")
                << "): " << Str(b, "commit") << "\n";
    });
  });
  auto merge = std::make_shared<Decision>();
  auto* mg = review->add_subcommand("merge",
                                    "Merge an approved branch (when the policy does not "
                                    "merge on approval)");
  mg->add_option("id", merge->id, "Task id")->required();
  mg->callback([&global, &exit_code, merge] {
    PrintReply(global,
               CallApi(global, "POST", "/v1/reviews/" + std::to_string(merge->id) + "/merge"),
               exit_code, [&](const Json& b) {
                 std::cout << "Merged task #" << merge->id << " (" << Str(b, "merge")
                           << "): " << Str(b, "commit") << "\n";
               });
  });
  struct ChangesRequest {
    int64_t id = 0;
    std::string comment;
    std::vector<std::string> lines;  // PATH:LINE=TEXT
  };
  auto changes = std::make_shared<ChangesRequest>();
  auto* rc = review->add_subcommand("request-changes", "Send the branch back to the agent");
  rc->add_option("id", changes->id, "Task id")->required();
  rc->add_option("--comment", changes->comment, "What to change: the agent's next instruction");
  rc->add_option("--line", changes->lines,
                 "A comment on one line of the branch, PATH:LINE=TEXT (repeatable)");
  rc->callback([&global, &exit_code, changes] {
    if (changes->comment.empty() && changes->lines.empty()) {
      std::cerr << "loom: give --comment TEXT, --line PATH:LINE=TEXT, or both\n";
      exit_code = kExitUsage;
      return;
    }
    Json body = Json::object();
    if (!changes->comment.empty()) body["comment"] = changes->comment;
    for (const std::string& spec : changes->lines) {
      // The path may hold ':' and the text '=' and ':'; the first '=' ends
      // PATH:LINE and the last ':' before it starts LINE.
      size_t eq = spec.find('=');
      size_t colon = eq == std::string::npos ? std::string::npos : spec.rfind(':', eq);
      int64_t line = 0;
      bool ok = colon != std::string::npos && colon > 0 && colon + 1 < eq && eq + 1 < spec.size();
      for (size_t i = colon + 1; ok && i < eq; ++i) {
        ok = std::isdigit(static_cast<unsigned char>(spec[i])) && line < 100'000'000;
        line = line * 10 + (spec[i] - '0');
      }
      if (!ok) {
        std::cerr << "loom: --line takes PATH:LINE=TEXT (e.g. src/app.py:12=\"check for "
                     "None\"), not: "
                  << spec << "\n";
        exit_code = kExitUsage;
        return;
      }
      body["comments"].push_back(
          {{"path", spec.substr(0, colon)}, {"line", line}, {"body", spec.substr(eq + 1)}});
    }
    PrintReply(global,
               CallApi(global, "POST",
                       "/v1/reviews/" + std::to_string(changes->id) + "/request-changes", &body),
               exit_code, [&](const Json&) {
                 std::cout << "Task #" << changes->id << " is back with the agent.\n";
               });
  });
  auto reject = std::make_shared<Decision>();
  auto* rj = review->add_subcommand("reject", "Close the task without merging");
  rj->add_option("id", reject->id, "Task id")->required();
  rj->add_option("--reason", reject->text, "Why (the reporter sees the outcome)")->required();
  rj->callback([&global, &exit_code, reject] {
    Json body = {{"reason", reject->text}};
    PrintReply(
        global,
        CallApi(global, "POST", "/v1/reviews/" + std::to_string(reject->id) + "/reject", &body),
        exit_code, [&](const Json&) { std::cout << "Rejected task #" << reject->id << ".\n"; });
  });
}

void AddEscalationCommands(CLI::App& app, GlobalOptions& global, int& exit_code) {
  auto* esc = app.add_subcommand("escalations", "What agents asked people for");
  esc->require_subcommand(1);
  auto all = std::make_shared<bool>(false);
  auto esc_pages = std::make_shared<PageOptions>();
  auto* list = esc->add_subcommand("list", "List open escalations");
  list->add_flag("--all", *all, "Answered ones too");
  AddPageFlags(list, esc_pages.get());
  list->callback([&global, &exit_code, all, esc_pages] {
    std::string path = std::string("/v1/escalations?state=") + (*all ? "all" : "open");
    PrintReply(global, GetPages(global, path, *esc_pages), exit_code, [](const Json& r) {
      if (r["items"].empty()) std::cout << "No escalations.\n";
      for (const auto& e : r["items"]) {
        std::printf("#%-5s task #%-5s %-9s %-9s %s\n", Str(e, "id").c_str(),
                    Str(e, "task_id").c_str(), Str(e, "kind").c_str(), Str(e, "state").c_str(),
                    FirstLine(Str(e, "summary")).c_str());
        if (std::string grant = GrantLine(e); !grant.empty()) {
          std::printf("       %s\n", grant.c_str());
        }
      }
    });
  });
  auto show_id = std::make_shared<int64_t>(0);
  auto* show = esc->add_subcommand("show", "Show one escalation");
  show->add_option("id", *show_id, "Escalation id")->required();
  show->callback([&global, &exit_code, show_id] {
    PrintReply(global, CallApi(global, "GET", "/v1/escalations/" + std::to_string(*show_id)),
               exit_code, [](const Json& e) {
                 std::cout << "escalation #" << Str(e, "id") << " (" << Str(e, "kind") << ", "
                           << Str(e, "state") << ") for task #" << Str(e, "task_id")
                           << ", raised by " << Str(e, "raised_by") << "\n\n"
                           << Str(e, "summary") << "\n";
                 if (!Str(e, "answer").empty())
                   std::cout << "\nanswer: " << Str(e, "answer") << "\n";
                 if (std::string grant = GrantLine(e); !grant.empty()) {
                   std::cout << grant << "\n";
                 }
               });
  });
  struct AnswerArgs {
    int64_t id = 0;
    std::string text, secret, secret_file, reason, gpu;
    int64_t minutes = 60;
    bool approve = false, deny = false;
  };
  auto aargs = std::make_shared<AnswerArgs>();
  auto* answer = esc->add_subcommand("answer", "Answer an escalation; its task resumes");
  answer->add_option("id", aargs->id, "Escalation id")->required();
  answer->add_option("--text", aargs->text, "An answer the agent will read");
  answer->add_option("--secret", aargs->secret,
                     "NAME=VALUE: stored encrypted, given to the task's sandbox runs as $NAME "
                     "(visible to other local users in the process list: prefer --secret-file)");
  answer->add_option("--secret-file", aargs->secret_file,
                     "NAME=PATH: the secret's value is read from PATH, or from stdin with '-' "
                     "(one trailing newline is dropped)");
  answer->add_flag("--approve", aargs->approve, "Approve what was asked");
  answer->add_flag("--deny", aargs->deny, "Deny it (with --reason)");
  answer->add_option("--reason", aargs->reason, "Why it is denied");
  answer->add_option("--gpu", aargs->gpu,
                     "TYPE:COUNT: grant GPUs (a gpu escalation); the task's runs get them as "
                     "--gres=gpu:TYPE:COUNT on the Slurm pool");
  answer->add_option("--minutes", aargs->minutes, "How long a --gpu grant lasts (default 60)");
  answer->callback([&global, &exit_code, aargs] {
    int given = !aargs->text.empty() + !aargs->secret.empty() + !aargs->secret_file.empty() +
                aargs->approve + aargs->deny + !aargs->gpu.empty();
    if (given != 1 || (aargs->deny && aargs->reason.empty())) {
      std::cerr << "loom: give exactly one of --text, --secret NAME=VALUE, --secret-file "
                   "NAME=PATH, --approve, --deny --reason TEXT, --gpu TYPE:COUNT\n";
      exit_code = kExitUsage;
      return;
    }
    Json body;
    if (!aargs->gpu.empty()) {
      auto colon = aargs->gpu.rfind(':');
      int64_t count = 0;
      std::string digits = colon == std::string::npos ? "" : aargs->gpu.substr(colon + 1);
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), count);
      if (colon == 0 || digits.empty() || ec != std::errc() ||
          end != digits.data() + digits.size()) {
        std::cerr << "loom: --gpu expects TYPE:COUNT (e.g. a100:2)\n";
        exit_code = kExitUsage;
        return;
      }
      body = {
          {"gpu",
           {{"type", aargs->gpu.substr(0, colon)}, {"count", count}, {"minutes", aargs->minutes}}}};
    } else if (!aargs->secret_file.empty()) {
      auto eq = aargs->secret_file.find('=');
      if (eq == std::string::npos || eq + 1 == aargs->secret_file.size()) {
        std::cerr << "loom: --secret-file expects NAME=PATH (PATH '-' reads stdin)\n";
        exit_code = kExitUsage;
        return;
      }
      std::string path = aargs->secret_file.substr(eq + 1);
      auto value = ReadSecretValue(path);
      if (!value.ok()) {
        std::cerr << "loom: " << value.status().message() << "\n";
        exit_code = kExitUsage;
        return;
      }
      body = {{"secret", {{"name", aargs->secret_file.substr(0, eq)}, {"value", *value}}}};
    } else if (!aargs->secret.empty()) {
      auto eq = aargs->secret.find('=');
      if (eq == std::string::npos) {
        std::cerr << "loom: --secret expects NAME=VALUE\n";
        exit_code = kExitUsage;
        return;
      }
      body = {{"secret",
               {{"name", aargs->secret.substr(0, eq)}, {"value", aargs->secret.substr(eq + 1)}}}};
    } else if (aargs->approve) {
      body = {{"approve", true}};
    } else if (aargs->deny) {
      body = {{"deny", true}, {"reason", aargs->reason}};
    } else {
      body = {{"text", aargs->text}};
    }
    PrintReply(
        global,
        CallApi(global, "POST", "/v1/escalations/" + std::to_string(aargs->id) + "/answer", &body),
        exit_code, [](const Json& e) {
          std::cout << "Answered escalation #" << Str(e, "id") << "; task #" << Str(e, "task_id")
                    << " is queued again\n";
        });
  });
}

}  // namespace

std::string FormatEvent(const Json& e, bool full) {
  const Json& d = e.contains("data") ? e["data"] : Json::object();
  std::string type = Str(e, "type");
  // One line an event, each text cut to `max`; or, with `full`, every text whole.
  auto cut = [full](const std::string& text, size_t max) {
    return full ? text : FirstLine(text, max);
  };
  std::string out = "[" + Str(e, "seq") + "] ";
  if (type == "state") {
    out += "state " + Str(d, "from") + " -> " + Str(d, "to");
    if (!Str(d, "reason").empty()) out += ": " + cut(Str(d, "reason"), 160);
  } else if (type == "prompt") {
    out += "prompt: " + cut(Str(d, "user"), 120);
    if (full) out += "\nsystem: " + Str(d, "system");
  } else if (type == "llm_reply") {
    const Json& m = d.contains("message") ? d["message"] : Json::object();
    out += "model (" + Str(d, "prompt_tokens") + "+" + Str(d, "completion_tokens") + " tokens, " +
           Str(d, "ms") + " ms):";
    if (!Str(m, "content").empty()) out += " " + cut(Str(m, "content"), 100);
    if (m.contains("tool_calls")) {
      for (const auto& tc : m["tool_calls"]) {
        const Json& fn = tc.contains("function") ? tc["function"] : Json::object();
        out += " " + Str(fn, "name") + "(" + cut(Str(fn, "arguments"), 80) + ")";
      }
    }
  } else if (type == "tool_result") {
    out += Str(d, "name") + (BoolOr(d, "error", false) ? " failed: " : " -> ") +
           cut(Str(d, "content"), 140);
  } else if (type == "note" || type == "malformed") {
    out += type + ": " + cut(Str(d, type == "note" ? "text" : "what"), 140);
  } else {
    out += type + " " + (full ? DumpJson(d, 2) : cut(DumpJson(d), 140));
  }
  return out;
}

void AddOrchestratorCommands(CLI::App& app, GlobalOptions& global, int& exit_code) {
  AddRepoCommands(app, global, exit_code);
  AddTaskCommands(app, global, exit_code);
  AddReviewCommands(app, global, exit_code);
  AddEscalationCommands(app, global, exit_code);
}

}  // namespace loom::cli
