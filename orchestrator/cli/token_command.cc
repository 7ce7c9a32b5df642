// loom token create | list | revoke | bootstrap
#include <CLI/CLI.hpp>
#include <ctime>
#include <filesystem>
#include <iostream>

#include "common/auth.h"
#include "common/private_dir.h"
#include "orchestrator/cli/api_client.h"
#include "orchestrator/schema.h"

namespace loom::cli {
namespace {

// "90s", "15m", "12h", "30d", "2w" -> seconds; 0 when malformed.
int64_t ParseDuration(const std::string& text) {
  if (text.size() < 2) return 0;
  int64_t n = 0;
  for (size_t i = 0; i + 1 < text.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(text[i])) || n > 1'000'000'000) return 0;
    n = n * 10 + (text[i] - '0');
  }
  switch (text.back()) {
    case 's':
      return n;
    case 'm':
      return n * 60;
    case 'h':
      return n * 3600;
    case 'd':
      return n * 86400;
    case 'w':
      return n * 7 * 86400;
    default:
      return 0;
  }
}

std::string FormatTime(const Json& ms) {
  if (!ms.is_number_integer()) return "-";
  std::time_t secs = ms.get<int64_t>() / 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

}  // namespace

void AddTokenCommands(CLI::App& app, GlobalOptions& global, int& exit_code) {
  auto* tok = app.add_subcommand("token", "Create, list and revoke API tokens");
  tok->require_subcommand(1);

  struct CreateArgs {
    std::string role, name, expires;
    std::vector<std::string> origins;
  };
  auto args = std::make_shared<CreateArgs>();
  auto* create = tok->add_subcommand("create", "Create a token (needs an admin token)");
  create->add_option("--role", args->role, "reporter, engineer or admin")
      ->required()
      ->check(CLI::IsMember({"reporter", "engineer", "admin"}));
  create->add_option("--name", args->name, "Who or what the token is for");
  create->add_option("--expires", args->expires,
                     "Lifetime: 90s, 15m, 12h, 30d, 2w (default: until revoked)");
  create->add_option("--origin", args->origins,
                     "A web origin whose pages may use this reporter token (the feedback "
                     "widget), like https://app.example (repeatable)");
  create->callback([&global, &exit_code, args] {
    Json body = {{"role", args->role}, {"name", args->name}};
    if (!args->origins.empty()) body["origins"] = args->origins;
    if (!args->expires.empty()) {
      int64_t seconds = ParseDuration(args->expires);
      if (seconds <= 0) {
        std::cerr << "loom: --expires expects a number and a unit (s, m, h, d, w), like 30d\n";
        exit_code = kExitUsage;
        return;
      }
      body["expires_in_s"] = seconds;
    }
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

  auto* list = tok->add_subcommand("list", "List tokens (needs an admin token)");
  list->callback([&global, &exit_code] {
    PrintReply(global, CallApi(global, "GET", "/v1/tokens"), exit_code, [](const Json& r) {
      std::cout << "ID  ROLE      STATE     EXPIRES               NAME\n";
      for (const auto& t : r.value("items", Json::array())) {
        std::string state = t.value("revoked_at_ms", Json()).is_null() ? "active" : "revoked";
        char line[160];
        std::snprintf(line, sizeof line, "%-3lld %-9s %-9s %-21s ",
                      static_cast<long long>(t.value("id", int64_t{0})),
                      t.value("role", "").c_str(), state.c_str(),
                      FormatTime(t.value("expires_at_ms", Json())).c_str());
        // The name is whatever its creator typed: no terminal control characters.
        std::string name;
        for (unsigned char c : t.value("name", std::string()))
          name += c < 0x20 || c == 0x7f ? '?' : c;
        std::cout << line << name << "\n";
      }
    });
  });

  auto revoke_id = std::make_shared<int64_t>(0);
  auto* revoke = tok->add_subcommand(
      "revoke", "Revoke a token: requests with it are refused at once (needs an admin token)");
  revoke->add_option("id", *revoke_id, "Token id (see loom token list)")->required();
  revoke->callback([&global, &exit_code, revoke_id] {
    PrintReply(
        global, CallApi(global, "POST", "/v1/tokens/" + std::to_string(*revoke_id) + "/revoke"),
        exit_code,
        [](const Json& t) { std::cout << "Revoked token #" << t.value("id", int64_t{0}) << "\n"; });
  });

  struct UpdateArgs {
    int64_t id = 0;
    std::vector<std::string> origins;
    bool no_origins = false;
  };
  auto uargs = std::make_shared<UpdateArgs>();
  auto* update = tok->add_subcommand(
      "update", "Set the web origins a reporter token may be used from (needs an admin token)");
  update->add_option("id", uargs->id, "Token id (see loom token list)")->required();
  auto* origin_opt = update->add_option(
      "--origin", uargs->origins,
      "An origin whose pages may use the token, like https://app.example (repeatable; the "
      "list replaces the token's)");
  auto* none_opt =
      update->add_flag("--no-origins", uargs->no_origins, "Allow no origin: browsers are refused");
  origin_opt->excludes(none_opt);
  update->callback([&global, &exit_code, uargs] {
    if (uargs->origins.empty() && !uargs->no_origins) {
      std::cerr << "loom: give --origin ORIGIN (repeatable) or --no-origins\n";
      exit_code = kExitUsage;
      return;
    }
    Json body = {{"origins", uargs->origins}};
    PrintReply(
        global,
        CallApi(global, "PUT", "/v1/tokens/" + std::to_string(uargs->id) + "/origins", &body),
        exit_code, [](const Json& t) {
          std::cout << "Token #" << t.value("id", int64_t{0});
          const Json& origins = t.value("origins", Json::array());
          if (origins.empty()) {
            std::cout << " may be used from no web origin\n";
          } else {
            std::cout << " may be used from pages of:";
            for (const auto& o : origins)
              std::cout << " " << (o.is_string() ? o.get<std::string>() : "?");
            std::cout << "\n";
          }
        });
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
    if (Status s = MakePrivateDir(bargs->data_dir, DirAccess::kSandboxTraverses); !s.ok()) {
      std::cerr << "loom: " << s.message() << "\n";
      exit_code = kExitError;
      return;
    }
    // Bootstrap may come before loomd's first start: the database is made here.
    Status migrated = MigrateDatabase(DatabasePath(bargs->data_dir));
    auto store = migrated.ok() ? TokenStore::Open(DatabasePath(bargs->data_dir))
                               : Result<std::unique_ptr<TokenStore>>(migrated);
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
