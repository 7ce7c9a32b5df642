// A git server over HTTP for `loom demo --remote`: git's own git-http-backend
// (smart HTTP: clone, fetch, push), run as a CGI program for each request behind
// loom's HTTP server on loopback. It serves every bare repository under `root`
// at http://127.0.0.1:PORT/<name>.git, accepts pushes and asks for no
// credentials: a stand-in for a team's git server in the demo, nothing more.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"

namespace loom::cli {

class DemoGitServer {
 public:
  // FailedPrecondition when git's http-backend cannot be found.
  static Result<std::unique_ptr<DemoGitServer>> Start(const std::string& root);
  virtual ~DemoGitServer() = default;
  virtual std::string url() const = 0;  // http://127.0.0.1:PORT
};

}  // namespace loom::cli
