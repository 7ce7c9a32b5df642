// The `loom` command line: each module's commands register themselves on the
// CLI11 app. A command's callback sets `exit_code` (see kExit* below) and prints
// human text, or JSON when global.json is set.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace loom::cli {

// Exit codes scripts can rely on.
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;        // the command failed (message on stderr)
inline constexpr int kExitUsage = 2;        // bad flags or arguments
inline constexpr int kExitNotFound = 3;     // the named item does not exist
inline constexpr int kExitAuth = 4;         // missing or rejected token
inline constexpr int kExitUnavailable = 5;  // the server cannot be reached
// `loom sandbox run` exits with the command's own status, 128+signal when a signal
// ended it, and 124 when a sandbox limit (timeout, memory, ...) ended it.
inline constexpr int kExitLimit = 124;

struct GlobalOptions {
  std::string server;  // --server or LOOM_SERVER, default http://127.0.0.1:7700
  std::string token;   // --token or LOOM_TOKEN
  bool json = false;   // --json: machine-readable output
};

void AddFeedbackCommands(CLI::App& app, GlobalOptions& global, int& exit_code);
void AddTokenCommands(CLI::App& app, GlobalOptions& global, int& exit_code);
// loom dsn: DSNs for apps' Sentry SDKs (docs/crash-reports.md).
void AddDsnCommands(CLI::App& app, GlobalOptions& global, int& exit_code);
void AddSandboxCommands(CLI::App& app, GlobalOptions& global, int& exit_code);
// loom repo, loom task, loom escalations.
void AddOrchestratorCommands(CLI::App& app, GlobalOptions& global, int& exit_code);
// loom gc: loomd's maintenance pass by hand, and what it freed.
void AddGcCommand(CLI::App& app, GlobalOptions& global, int& exit_code);
// loom demo: the whole loop on examples/, with a replayed (or a real) model.
void AddDemoCommand(CLI::App& app, GlobalOptions& global, int& exit_code);

}  // namespace loom::cli
