// loomd: builds the daemon's parts from its configuration and runs them.
//
// Start() opens the data directory and its database, then serves HTTP; Stop()
// drains in-flight requests and flushes pending writes. Owned by loomd's main
// (and by tests, which start it on port 0 in a temp dir).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "common/config.h"
#include "common/status.h"

namespace loom {

// The configuration keys loomd understands (see docs/operator-guide.md).
std::vector<Config::Key> DaemonConfigSchema();

// When loomd runs as root its sandboxed runs use another uid, and bubblewrap
// (running as that uid) must be able to walk to every worktree under `dir`:
// FailedPrecondition names the first directory above `dir` that the uid cannot
// traverse (e.g. /root, mode 0700). Ok for a non-root caller.
Status CheckSandboxCanReach(const std::string& dir, uint32_t sandbox_uid);

class Daemon {
 public:
  static Result<std::unique_ptr<Daemon>> Start(const Config& config);
  virtual ~Daemon() = default;
  virtual uint16_t port() const = 0;
  virtual const std::string& data_dir() const = 0;
  // Reads the policies directory again (loomd does on SIGHUP). The new set is
  // validated whole before it replaces the old one: on an error (which names the
  // file, line and field) the old policies stay. Tasks already running keep
  // the policies they started with.
  virtual Status ReloadPolicies() = 0;
  // Stops accepting, lets in-flight requests finish for up to `drain`, and
  // flushes pending writes. Idempotent.
  virtual void Stop(std::chrono::milliseconds drain) = 0;
};

}  // namespace loom
