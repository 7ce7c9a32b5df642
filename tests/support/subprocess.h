// Starting and killing a program for tests (loomd under kill -9, etc.).
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "tests/support/test_paths.h"

extern char** environ;

namespace loom::testing {

// `s` as one sh word (single-quoted), whatever it holds: spaces, quotes, UTF-8.
inline std::string ShellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

struct CommandResult {
  int exit_code = -1;  // -1 when it did not exit normally
  std::string out;     // what it printed on stdout (and whatever `command` redirected there)
};

// Runs `command` with sh and collects its stdout.
inline CommandResult RunCommand(const std::string& command) {
  CommandResult r;
  FILE* f = popen(command.c_str(), "r");
  if (f == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) r.out.append(buf, n);
  int status = pclose(f);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// What `command` (run by sh) prints on stdout and stderr.
inline std::string CommandOutput(const std::string& command) {
  return RunCommand(command + " 2>&1").out;
}

// This build's `loom` binary as an sh word (the build tree may live under any path).
inline std::string LoomBinary() { return ShellQuote(std::string(LOOM_BIN_DIR) + "/loom"); }

// Starts argv[0] with stdout/stderr appended to `log_path`; returns the pid or -1.
inline pid_t Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  if (posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

// Sends `sig` and reaps; returns the wait status.
inline int KillAndWait(pid_t pid, int sig) {
  ::kill(pid, sig);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

// A port that was free a moment ago (bind to 0, read it, close).
inline uint16_t FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

}  // namespace loom::testing
