// loom feedback submit | list | show
#include <CLI/CLI.hpp>
#include <iostream>

#include "orchestrator/cli/api_client.h"

namespace loom::cli {
namespace {

void PrintItem(const Json& it) {
  std::cout << "#" << Str(it, "id") << "  " << Str(it, "kind") << "  " << Str(it, "status");
  if (it.contains("duplicate_of")) std::cout << " of #" << Str(it, "duplicate_of");
  std::cout << "  reporters: " << Str(it, "reporter_count") << "\n";
  std::cout << "title: " << Str(it, "title") << "\n";
  for (const char* f : {"reporter", "repo", "app_version", "commit", "url"}) {
    if (!Str(it, f).empty()) std::cout << f << ": " << Str(it, f) << "\n";
  }
  if (!Str(it, "resolution").empty()) {
    std::cout << (Str(it, "status") == "answered" ? "answer: " : "why: ") << Str(it, "resolution")
              << "\n";
  }
  std::cout << "\n" << Str(it, "body") << "\n";
  if (!Str(it, "stack_trace").empty())
    std::cout << "\nstack trace:\n" << Str(it, "stack_trace") << "\n";
  if (!Str(it, "logs").empty()) std::cout << "\nlogs:\n" << Str(it, "logs") << "\n";
}

}  // namespace

void AddFeedbackCommands(CLI::App& app, GlobalOptions& global, int& exit_code) {
  auto* fb = app.add_subcommand("feedback", "File and read feedback");
  fb->require_subcommand(1);

  struct SubmitArgs {
    std::string kind, title, body, reporter, app_version, commit, url, logs, stack_trace, repo,
        context, idempotency_key;
  };
  auto args = std::make_shared<SubmitArgs>();
  auto* submit = fb->add_subcommand("submit", "File a bug report, feature request or question");
  submit->add_option("--kind", args->kind, "bug, feature or question")->required();
  submit->add_option("--title", args->title, "One line summary")->required();
  submit->add_option("--body", args->body, "What happened / what is wanted")->required();
  submit->add_option("--reporter", args->reporter, "Who reports it");
  submit->add_option("--app-version", args->app_version);
  submit->add_option("--commit", args->commit);
  submit->add_option("--url", args->url);
  submit->add_option("--logs", args->logs);
  submit->add_option("--stack-trace", args->stack_trace);
  submit->add_option("--repo", args->repo, "Registered repository the feedback is about");
  submit->add_option("--context", args->context, "A JSON object of extra context");
  submit->add_option("--idempotency-key", args->idempotency_key,
                     "Retrying with the same key returns the first item instead of a new one");
  submit->callback([&global, &exit_code, args] {
    Json body = {{"kind", args->kind}, {"title", args->title}, {"body", args->body}};
    auto opt = [&](const char* name, const std::string& v) {
      if (!v.empty()) body[name] = v;
    };
    opt("reporter", args->reporter);
    opt("app_version", args->app_version);
    opt("commit", args->commit);
    opt("url", args->url);
    opt("logs", args->logs);
    opt("stack_trace", args->stack_trace);
    opt("repo", args->repo);
    if (!args->context.empty()) {
      auto ctx = ParseJson(args->context);
      if (!ctx.ok() || !ctx->is_object()) {
        std::cerr << "loom: --context must be a JSON object\n";
        exit_code = kExitUsage;
        return;
      }
      body["context"] = *ctx;
    }
    ApiReply r = CallApi(global, "POST", "/v1/feedback", &body, args->idempotency_key);
    if (r.exit_code != kExitOk) {
      exit_code = ReportFailure(global, r);
      return;
    }
    if (global.json) {
      std::cout << DumpJson(r.body) << "\n";
    } else if (r.body.contains("duplicate_of")) {
      std::cout << "Filed feedback #" << r.body["id"] << " (duplicate of #"
                << r.body["duplicate_of"] << ")\n";
    } else {
      std::cout << "Filed feedback #" << r.body["id"] << "\n";
    }
  });

  struct ListArgs {
    std::string status, kind, repo;
    int limit = 50;
    int64_t after = 0;
    bool all = false;
  };
  auto largs = std::make_shared<ListArgs>();
  auto* list = fb->add_subcommand("list", "List feedback items (oldest first)");
  list->add_option("--status", largs->status, "new, duplicate, ...");
  list->add_option("--kind", largs->kind, "bug, feature or question");
  list->add_option("--repo", largs->repo);
  list->add_option("--limit", largs->limit, "Items per page (1-500)");
  list->add_option("--after", largs->after, "Show items after this id");
  list->add_flag("--all", largs->all, "Follow pages to the end");
  list->callback([&global, &exit_code, largs] {
    std::string query;
    if (!largs->status.empty()) query += "&status=" + UrlEncode(largs->status);
    if (!largs->kind.empty()) query += "&kind=" + UrlEncode(largs->kind);
    if (!largs->repo.empty()) query += "&repo=" + UrlEncode(largs->repo);
    std::string path = "/v1/feedback" + (query.empty() ? "" : "?" + query.substr(1));
    ApiReply r = GetPages(global, path, {largs->limit, largs->after, largs->all});
    if (r.exit_code != kExitOk) {
      exit_code = ReportFailure(global, r);
      return;
    }
    if (global.json) {
      std::cout << DumpJson(r.body) << "\n";
      return;
    }
    const Json& all = r.body["items"];
    if (all.empty()) std::cout << "No feedback.\n";
    for (const auto& it : all) {
      std::string status = Str(it, "status");
      if (it.contains("duplicate_of")) status += " of #" + Str(it, "duplicate_of");
      std::printf("#%-6s %-9s %-18s %3s  %s\n", Str(it, "id").c_str(), Str(it, "kind").c_str(),
                  status.c_str(), Str(it, "reporter_count").c_str(), Str(it, "title").c_str());
      if (Str(it, "status") == "unroutable")
        std::printf("        %s\n", Str(it, "resolution").c_str());
    }
    PrintMore(r.body);
  });

  auto show_id = std::make_shared<int64_t>(0);
  auto* show = fb->add_subcommand("show", "Show one feedback item");
  show->add_option("id", *show_id, "Feedback id")->required();
  show->callback([&global, &exit_code, show_id] {
    ApiReply r = CallApi(global, "GET", "/v1/feedback/" + std::to_string(*show_id));
    if (r.exit_code != kExitOk) {
      exit_code = ReportFailure(global, r);
      return;
    }
    if (global.json) {
      std::cout << DumpJson(r.body) << "\n";
    } else {
      PrintItem(r.body);
    }
  });
}

}  // namespace loom::cli
