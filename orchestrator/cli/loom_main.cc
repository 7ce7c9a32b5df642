// loom: the command line for engineers and operators.
#include <CLI/CLI.hpp>
#include <cstdlib>

#include "common/version.h"
#include "orchestrator/cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"loom: file feedback, manage tokens and run Loom's tools"};
  app.set_version_flag("--version", loom::VersionText("loom"));
  app.require_subcommand(1);
  loom::cli::GlobalOptions global;
  if (const char* s = std::getenv("LOOM_SERVER")) global.server = s;
  if (global.server.empty()) global.server = "http://127.0.0.1:7700";
  if (const char* t = std::getenv("LOOM_TOKEN")) global.token = t;
  app.add_option("--server", global.server, "loomd address (or LOOM_SERVER)");
  app.add_option("--token", global.token, "API token (or LOOM_TOKEN)");
  app.add_flag("--json", global.json, "Machine-readable JSON output");
  app.fallthrough();

  int exit_code = loom::cli::kExitOk;
  loom::cli::AddFeedbackCommands(app, global, exit_code);
  loom::cli::AddTokenCommands(app, global, exit_code);
  loom::cli::AddDsnCommands(app, global, exit_code);
  loom::cli::AddSandboxCommands(app, global, exit_code);
  loom::cli::AddOrchestratorCommands(app, global, exit_code);
  loom::cli::AddGcCommand(app, global, exit_code);
  loom::cli::AddDemoCommand(app, global, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : loom::cli::kExitUsage;
  }
  return exit_code;
}
