// loom-sandbox-runner: one sandboxed run, as a Slurm job step runs it. Reads the
// request (internal/wire.h) on stdin, runs it with the bubblewrap executor exactly
// as a local run would, and answers on stdout with JSON lines: {"step": ...} at
// once, then the outcome or the error. When the request ends with a newline,
// stdin stays the cancel channel: EOF (the executor's cancel, or srun gone) cancels
// the run, as SIGTERM, SIGINT or SIGHUP do (a request ended by EOF, as from a
// file, has no cancel channel). A cancelled run's payload is killed, its outcome
// says "cancelled" (whatever else ended it), and a root caller's worktree is given
// back before exit. Exit status: 0 when an outcome or error line was written, 2
// otherwise.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "common/json.h"
#include "sandbox/executor.h"
#include "sandbox/internal/bwrap.h"
#include "sandbox/internal/wire.h"

namespace {

std::atomic<bool> g_cancel{false};
static_assert(std::atomic<bool>::is_always_lock_free);

void OnSignal(int) { g_cancel.store(true); }

bool WriteLine(const loom::Json& j) {
  std::string line = loom::DumpJson(j) + "\n";
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = write(STDOUT_FILENO, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Reads stdin until the request's newline (`*newline` set) or EOF.
loom::Result<std::string> ReadRequest(bool* newline) {
  constexpr size_t kMaxRequest = size_t{64} << 20;
  std::string input;
  char buf[65536];
  for (;;) {
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      if (g_cancel.load()) return loom::Status::Cancelled("cancelled before the run started");
      continue;
    }
    if (n < 0) return loom::Status::FromErrno(errno, "reading the request");
    if (n == 0) return input;
    input.append(buf, static_cast<size_t>(n));
    if (input.find('\n') != std::string::npos) {
      *newline = true;
      return input.substr(0, input.find('\n'));
    }
    if (input.size() > kMaxRequest) return loom::Status::InvalidArgument("request over 64 MiB");
  }
}

// After the request, stdin stays open for the run: EOF (the executor closed it,
// or srun went away) cancels the run.
void WatchStdin(const std::atomic<bool>* done) {
  while (!done->load()) {
    struct pollfd pfd = {STDIN_FILENO, POLLIN, 0};
    if (poll(&pfd, 1, 20) <= 0) continue;
    char buf[256];
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
      g_cancel.store(true);
      return;
    }
  }
}

loom::Result<loom::sandbox::Outcome> Serve() {
  bool newline = false;
  LOOM_ASSIGN_OR_RETURN(std::string input, ReadRequest(&newline));
  LOOM_ASSIGN_OR_RETURN(loom::Json json, loom::ParseJson(input));
  LOOM_ASSIGN_OR_RETURN(auto request, loom::sandbox::internal::DecodeRequest(json));
  LOOM_ASSIGN_OR_RETURN(auto executor, loom::sandbox::internal::CreateBwrapExecutor(request.bwrap));
  request.spec.cancel = &g_cancel;
  std::atomic<bool> done{false};
  std::thread watcher;
  if (newline) watcher = std::thread(WatchStdin, &done);
  auto outcome = executor->Run(request.spec);
  done.store(true);
  if (watcher.joinable()) watcher.join();
  return outcome;
}

}  // namespace

int main() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaction(sig, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const char* job = getenv("SLURM_JOB_ID");
  const char* step = getenv("SLURM_STEP_ID");
  std::string step_id = job && step ? std::string(job) + "." + step : "";
  if (!WriteLine(loom::Json{{"step", step_id}})) return 2;

  loom::Result<loom::sandbox::Outcome> outcome = Serve();
  // scancel signals every process of the step, the payload's too, which may die of
  // that signal before the executor sees the flag: a cancelled run says so.
  if (outcome.ok() && g_cancel.load()) outcome->limit = loom::sandbox::LimitHit::kCancelled;
  bool written =
      outcome.ok() ? WriteLine({{"outcome", loom::sandbox::internal::EncodeOutcome(*outcome)}})
                   : WriteLine({{"error", loom::sandbox::internal::EncodeError(outcome.status())}});
  return written ? 0 : 2;
}
