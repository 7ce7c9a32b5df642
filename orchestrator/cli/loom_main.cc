// Minimal `loom` entry point for the sandbox module's commands; the lead merges it
// with the full main (which registers every module's commands).
#include <CLI/CLI.hpp>

#include "orchestrator/cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"loom: the Loom command line"};
  loom::cli::GlobalOptions global;
  app.add_flag("--json", global.json, "Machine-readable output");
  app.require_subcommand(1);
  int exit_code = loom::cli::kExitOk;
  loom::cli::AddSandboxCommands(app, global, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? loom::cli::kExitOk : loom::cli::kExitUsage;
  }
  return exit_code;
}
