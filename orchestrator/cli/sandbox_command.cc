// `loom sandbox run`: runs one command in the bubblewrap sandbox, for people and
// scripts. The command's stdout/stderr are replayed on ours once it ends (or its
// outcome is printed as JSON with --json); the exit status mirrors the command's:
// its own code, 128+N for signal N, kExitLimit (124) when a sandbox limit ended it,
// and kExitError (1, with a message) when it could not be run sandboxed at all.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "common/json.h"
#include "orchestrator/cli/commands.h"
#include "sandbox/executor.h"

namespace loom::cli {
namespace {

struct SandboxRunFlags {
  std::string dir;
  std::vector<std::string> read_only;
  std::vector<std::string> env;
  double timeout_s = 600;
  uint64_t memory_mb = 4096;
  uint32_t pids = 512;
  uint64_t output_limit = uint64_t{4} << 20;
  std::string network = "none";
  bool json = false;
  std::vector<std::string> command;
};

void WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

int RunSandbox(const SandboxRunFlags& flags, bool json) {
  sandbox::RunSpec spec;
  spec.argv = flags.command;
  spec.worktree = flags.dir;
  spec.read_only_paths = flags.read_only;
  // A usable default environment; --env overrides or adds.
  std::map<std::string, std::string> env = {
      {"PATH", "/usr/local/bin:/usr/bin:/bin"}, {"HOME", "/tmp"}, {"LANG", "C.UTF-8"}};
  for (const auto& kv : flags.env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::cerr << "loom sandbox run: --env wants K=V, got '" << kv << "'\n";
      return kExitUsage;
    }
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  spec.env.assign(env.begin(), env.end());
  spec.limits.wall_time = std::chrono::milliseconds(static_cast<int64_t>(flags.timeout_s * 1000));
  spec.limits.memory_bytes = flags.memory_mb << 20;
  spec.limits.max_processes = flags.pids;
  spec.limits.max_output_bytes = flags.output_limit;
  spec.network =
      flags.network == "loopback" ? sandbox::Network::kLoopback : sandbox::Network::kNone;

  auto executor = sandbox::MakeBwrapExecutor({});
  Result<sandbox::Outcome> outcome =
      executor.ok() ? (*executor)->Run(spec) : Result<sandbox::Outcome>(executor.status());
  if (!outcome.ok()) {
    if (json) {
      std::cout << DumpJson(Json{{"error", outcome.status().ToString()}}) << "\n";
    }
    std::cerr << "loom sandbox run: " << outcome.status().message() << "\n";
    return kExitError;
  }
  const sandbox::Outcome& o = *outcome;
  if (json) {
    std::cout << DumpJson(o.ToJson()) << "\n";
  } else {
    WriteAll(STDOUT_FILENO, o.stdout_data);
    WriteAll(STDERR_FILENO, o.stderr_data);
    if (o.stdout_truncated || o.stderr_truncated) {
      std::cerr << "loom sandbox run: output truncated at " << flags.output_limit << " bytes\n";
    }
  }
  if (o.limit != sandbox::LimitHit::kNone) {
    if (!json) {
      std::cerr << "loom sandbox run: killed by the " << sandbox::LimitHitName(o.limit)
                << " limit after " << o.wall_ms << " ms\n";
    }
    return kExitLimit;
  }
  if (o.signal) return 128 + *o.signal;
  return o.exit_code.value_or(kExitError);
}

}  // namespace

void AddSandboxCommands(CLI::App& app, GlobalOptions& global, int& exit_code) {
  CLI::App* sandbox = app.add_subcommand("sandbox", "Run commands in the bubblewrap sandbox");
  sandbox->require_subcommand(1);
  auto flags = std::make_shared<SandboxRunFlags>();
  CLI::App* run = sandbox->add_subcommand(
      "run",
      "Run CMD sandboxed with DIR as its only writable directory; exits with CMD's status, "
      "128+N for signal N, 124 when a limit ended it");
  run->add_option("--dir", flags->dir, "The worktree: writable, the working directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  // One value per flag, repeatable: a vector option would swallow the command.
  run->add_option("--ro", flags->read_only, "A host path to bind read-only (repeatable)")
      ->allow_extra_args(false);
  run->add_option("--env", flags->env, "K=V for the command's environment (repeatable)")
      ->allow_extra_args(false);
  run->add_option("--timeout", flags->timeout_s, "Wall-clock limit in seconds")
      ->check(CLI::PositiveNumber);
  run->add_option("--memory", flags->memory_mb, "Memory limit in MiB")->check(CLI::PositiveNumber);
  run->add_option("--pids", flags->pids, "Process and thread limit")->check(CLI::PositiveNumber);
  run->add_option("--output-limit", flags->output_limit, "stdout+stderr cap in bytes")
      ->check(CLI::PositiveNumber);
  run->add_option("--network", flags->network, "none (default) or loopback (a private one)")
      ->check(CLI::IsMember({"none", "loopback"}));
  run->add_flag("--json", flags->json, "Print the outcome as JSON");
  run->add_option("command", flags->command, "CMD ARGS... (after --)")->required();
  run->callback(
      [flags, &global, &exit_code] { exit_code = RunSandbox(*flags, flags->json || global.json); });
}

}  // namespace loom::cli
