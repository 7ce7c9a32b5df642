// loom token create | bootstrap
#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>

#include "common/auth.h"
#include "common/schema.h"
#include "orchestrator/cli/api_client.h"

namespace loom::cli {

void AddTokenCommands(CLI::App& app, GlobalOptions& global, int& exit_code) {
  auto* tok = app.add_subcommand("token", "Create API tokens");
  tok->require_subcommand(1);

  struct CreateArgs {
    std::string role, name;
  };
  auto args = std::make_shared<CreateArgs>();
  auto* create = tok->add_subcommand("create", "Create a token (needs an admin token)");
  create->add_option("--role", args->role, "reporter, engineer or admin")
      ->required()
      ->check(CLI::IsMember({"reporter", "engineer", "admin"}));
  create->add_option("--name", args->name, "Who or what the token is for");
  create->callback([&global, &exit_code, args] {
    Json body = {{"role", args->role}, {"name", args->name}};
    ApiReply r = CallApi(global, "POST", "/v1/tokens", &body);
    if (r.exit_code != kExitOk) {
      exit_code = ReportFailure(global, r);
      return;
    }
    if (global.json) {
      std::cout << DumpJson(r.body) << "\n";
    } else {
      std::cout << r.body["token"].get<std::string>() << "\n";
      std::cerr << "Created a " << args->role << " token. It is shown only once: keep it safe.\n";
    }
  });

  struct BootstrapArgs {
    std::string data_dir = ".loom";
    bool force = false;
  };
  auto bargs = std::make_shared<BootstrapArgs>();
  auto* boot = tok->add_subcommand(
      "bootstrap",
      "Create the first admin token directly in the data directory (run on the loomd host)");
  boot->add_option("--data-dir", bargs->data_dir, "loomd's data directory")->capture_default_str();
  boot->add_flag("--force", bargs->force, "Create another admin token even if one exists");
  boot->callback([&global, &exit_code, bargs] {
    std::error_code ec;
    std::filesystem::create_directories(bargs->data_dir, ec);
    auto store = TokenStore::Open(DatabasePath(bargs->data_dir));
    if (!store.ok()) {
      std::cerr << "loom: " << store.status().message() << "\n";
      exit_code = kExitError;
      return;
    }
    auto has = (*store)->HasAdmin();
    if (has.ok() && *has && !bargs->force) {
      std::cerr << "loom: an admin token already exists; use `loom token create --role admin` "
                   "with it, or --force\n";
      exit_code = kExitError;
      return;
    }
    auto token = (*store)->Create(Role::kAdmin, "bootstrap");
    if (!token.ok()) {
      std::cerr << "loom: " << token.status().message() << "\n";
      exit_code = kExitError;
      return;
    }
    if (global.json) {
      std::cout << DumpJson(Json{{"token", *token}, {"role", "admin"}}) << "\n";
    } else {
      std::cout << *token << "\n";
      std::cerr
          << "Created the first admin token. It is shown only once: export LOOM_TOKEN=<it>.\n";
    }
  });
}

}  // namespace loom::cli
