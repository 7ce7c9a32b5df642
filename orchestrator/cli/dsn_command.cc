// loom dsn create | list | revoke: the DSNs apps' Sentry SDKs send crashes
// with (docs/crash-reports.md).
#include <CLI/CLI.hpp>
#include <iostream>

#include "orchestrator/cli/api_client.h"

namespace loom::cli {
namespace {

// The DSN as SDKs take it: scheme://public_key@host[:port]/project_id, with
// the host of `public_url` (what the apps reach loomd by) when given.
std::string DsnFor(const Json& key, const std::string& public_url) {
  std::string dsn = Str(key, "dsn");
  if (public_url.empty()) return dsn;
  std::string url = public_url;
  while (!url.empty() && url.back() == '/') url.pop_back();
  size_t scheme = url.find("://");
  if (scheme == std::string::npos) return dsn;
  return url.substr(0, scheme + 3) + Str(key, "public_key") + "@" + url.substr(scheme + 3) + "/" +
         std::to_string(key.value("project_id", int64_t{0}));
}

}  // namespace

void AddDsnCommands(CLI::App& app, GlobalOptions& global, int& exit_code) {
  auto* dsn =
      app.add_subcommand("dsn", "DSNs for apps' Sentry SDKs: their crashes become feedback");
  dsn->require_subcommand(1);

  struct CreateArgs {
    std::string repo, public_url;
    int64_t token_id = 0;
  };
  auto args = std::make_shared<CreateArgs>();
  auto* create = dsn->add_subcommand(
      "create", "Create a DSN whose crashes are filed against a repository (needs an admin token)");
  create->add_option("--repo", args->repo, "The repository the app's crashes are about")
      ->required();
  create->add_option("--token", args->token_id,
                     "File the crashes under this reporter token (default: a new one of its own)");
  create->add_option("--public-url", args->public_url,
                     "How the app reaches loomd (https://loom.example), when not as this CLI does");
  create->callback([&global, &exit_code, args] {
    Json body = {{"repo", args->repo}};
    if (args->token_id > 0) body["token_id"] = args->token_id;
    ApiReply r = CallApi(global, "POST", "/v1/sentry/dsns", &body);
    if (r.exit_code != kExitOk) {
      exit_code = ReportFailure(global, r);
      return;
    }
    if (global.json) {
      Json out = r.body;
      out["dsn"] = DsnFor(r.body, args->public_url);
      std::cout << DumpJson(out) << "\n";
      return;
    }
    std::cout << DsnFor(r.body, args->public_url) << "\n";
    std::cerr << "Set it as the DSN of the app's Sentry SDK (Sentry.init({dsn: ...}) or "
                 "SENTRY_DSN); its crashes become feedback on "
              << TerminalSafe(args->repo) << ".\n";
  });

  auto* list = dsn->add_subcommand("list", "List DSNs (needs an admin token)");
  list->callback([&global, &exit_code] {
    PrintReply(global, CallApi(global, "GET", "/v1/sentry/dsns"), exit_code, [](const Json& r) {
      std::cout << "PROJECT  STATE    TOKEN  REPO  DSN\n";
      for (const auto& k : r.value("items", Json::array())) {
        bool revoked = k.contains("revoked_at");
        std::cout << k.value("project_id", int64_t{0}) << "  " << (revoked ? "revoked" : "active")
                  << "  " << k.value("token_id", int64_t{0}) << "  " << TerminalSafe(Str(k, "repo"))
                  << "  " << TerminalSafe(Str(k, "dsn")) << "\n";
      }
    });
  });

  auto revoke_id = std::make_shared<int64_t>(0);
  auto* revoke = dsn->add_subcommand(
      "revoke", "Refuse a DSN's crash reports from now on (needs an admin token)");
  revoke->add_option("project_id", *revoke_id, "The DSN's project id (see loom dsn list)")
      ->required();
  revoke->callback([&global, &exit_code, revoke_id] {
    PrintReply(global, CallApi(global, "DELETE", "/v1/sentry/dsns/" + std::to_string(*revoke_id)),
               exit_code, [](const Json& k) {
                 std::cout << "Revoked the DSN of project " << k.value("project_id", int64_t{0})
                           << "\n";
               });
  });
}

}  // namespace loom::cli
