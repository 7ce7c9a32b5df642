// loomd: parse flags, load config, start the daemon, wait for SIGTERM/SIGINT
// (SIGHUP reloads the repository policies).
#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "common/log.h"
#include "common/version.h"
#include "orchestrator/daemon.h"

int main(int argc, char** argv) {
  // Everything loomd creates is its own: the database, task trees, scratch
  // copies (the sandbox reaches its trees through directories opened to it).
  ::umask(077);
  CLI::App app{"loomd: the Loom daemon (HTTP API, feedback intake, agents)"};
  app.set_version_flag("--version", loom::VersionText("loomd"));
  std::string config_path;
  std::vector<std::string> sets;
  bool help_config = false;
  app.add_option("--config", config_path, "loom.toml to load (default: ./loom.toml if present)");
  app.add_option("--set", sets, "Override a key: --set http.threads=4 (repeatable)");
  app.add_flag("--help-config", help_config, "List every configuration key and exit");
  std::string data_dir, listen, llm_url;
  app.add_option("--data-dir", data_dir, "Same as --set data_dir=DIR");
  app.add_option("--listen", listen, "Same as --set listen=HOST:PORT");
  app.add_option("--llm-url", llm_url,
                 "Same as --set llm.url=URL (OpenAI-compatible, .../v1; replicas: URL,URL,...)");
  CLI11_PARSE(app, argc, argv);

  loom::Config config(loom::DaemonConfigSchema());
  if (help_config) {
    std::cout << config.Describe();
    return 0;
  }
  auto fail = [](const loom::Status& s) {
    std::cerr << "loomd: " << s.message() << "\n";
    return 2;
  };
  if (!config_path.empty()) {
    if (auto s = config.LoadFile(config_path); !s.ok()) return fail(s);
  } else if (auto s = config.LoadFile("loom.toml");
             !s.ok() && s.code() != loom::StatusCode::kNotFound) {
    return fail(s);
  }
  if (auto s = config.LoadEnvironment(); !s.ok()) return fail(s);
  for (const auto& kv : sets) {
    auto eq = kv.find('=');
    if (eq == std::string::npos)
      return fail(loom::Status::InvalidArgument("--set expects KEY=VALUE, got " + kv));
    if (auto s = config.Set(kv.substr(0, eq), kv.substr(eq + 1), "flag --set"); !s.ok())
      return fail(s);
  }
  if (!data_dir.empty()) (void)config.Set("data_dir", data_dir, "flag --data-dir");
  if (!listen.empty()) (void)config.Set("listen", listen, "flag --listen");
  if (!llm_url.empty()) (void)config.Set("llm.url", llm_url, "flag --llm-url");

  loom::log::Level level;
  if (!loom::log::ParseLevel(config.GetString("log.level"), &level)) {
    return fail(loom::Status::InvalidArgument("log.level: expected debug, info, warning or error"));
  }
  loom::log::SetLevel(level);
  if (config.GetBool("log.json")) loom::log::SetFormat(loom::log::Format::kJson);

  // Block the signals before any thread starts so that only sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto daemon = loom::Daemon::Start(config);
  if (!daemon.ok()) {
    sd_notifyf(0, "STATUS=failed to start: %s", daemon.status().message().c_str());
    return fail(daemon.status());
  }
  // systemd (Type=notify): ready once the API listens; with WatchdogSec=, a
  // keep-alive at half the interval from this loop, so a wedged main thread is
  // restarted. Without NOTIFY_SOCKET these calls do nothing.
  sd_notifyf(0, "READY=1\nSTATUS=serving on %s", config.GetString("listen").c_str());
  uint64_t watchdog_usec = 0;
  const bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0;
  int sig = 0;
  for (;;) {
    if (watchdog) {
      const uint64_t half = watchdog_usec / 2;
      const timespec wait{static_cast<time_t>(half / 1000000),
                          static_cast<long>(half % 1000000) * 1000};
      sig = sigtimedwait(&signals, nullptr, &wait);
      if (sig < 0) {
        sd_notify(0, "WATCHDOG=1");
        continue;
      }
    } else {
      sigwait(&signals, &sig);
    }
    if (sig != SIGHUP) break;
    LOOM_LOG(kInfo) << "received SIGHUP, reloading the repository policies";
    sd_notify(0, "RELOADING=1");
    if (auto s = (*daemon)->ReloadPolicies(); !s.ok()) {
      LOOM_LOG(kError) << "the policies were not reloaded, the old ones stay: " << s.message();
    }
    sd_notify(0, "READY=1");
  }
  LOOM_LOG(kInfo) << "received " << (sig == SIGTERM ? "SIGTERM" : "SIGINT") << ", draining";
  sd_notify(0, "STOPPING=1\nSTATUS=draining");
  (*daemon)->Stop(std::chrono::milliseconds(config.GetInt("http.drain_ms")));
  LOOM_LOG(kInfo) << "loomd stopped";
  return 0;
}
