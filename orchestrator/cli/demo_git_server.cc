#include "orchestrator/cli/demo_git_server.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>
#include <vector>

#include "common/http_server.h"

extern char** environ;

namespace loom::cli {
namespace {

// git-http-backend's CGI answer: "Status: 404 Not Found", headers, blank line, body.
HttpResponse ParseCgi(const std::string& out) {
  HttpResponse r;
  r.content_type.clear();
  size_t end = out.find("\r\n\r\n");
  size_t skip = 4;
  if (end == std::string::npos) {
    end = out.find("\n\n");
    skip = 2;
  }
  if (end == std::string::npos)
    return HttpResponse::Text(502, "git-http-backend: no CGI headers\n");
  size_t at = 0;
  while (at < end) {
    size_t eol = out.find('\n', at);
    if (eol == std::string::npos || eol > end) eol = end;
    std::string line = out.substr(at, eol - at);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    at = eol + 1;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon), value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    if (name == "Status") {
      r.status = std::atoi(value.c_str());
    } else if (name == "Content-Type") {
      r.content_type = value;
    } else {
      r.headers.emplace_back(name, value);
    }
  }
  r.body = out.substr(end + skip);
  return r;
}

HttpResponse RunBackend(const std::string& root, const HttpRequest& req) {
  const size_t q = req.target.find('?');
  std::vector<std::string> env = {
      "GIT_PROJECT_ROOT=" + root,
      "GIT_HTTP_EXPORT_ALL=1",
      // Pushes without authentication: this server is the demo's, on loopback.
      "GIT_CONFIG_COUNT=1",
      "GIT_CONFIG_KEY_0=http.receivepack",
      "GIT_CONFIG_VALUE_0=true",
      "GATEWAY_INTERFACE=CGI/1.1",
      "SERVER_PROTOCOL=HTTP/1.1",
      "REQUEST_METHOD=" + req.method,
      "PATH_INFO=" + req.path,
      "QUERY_STRING=" + (q == std::string::npos ? std::string() : req.target.substr(q + 1)),
      "CONTENT_TYPE=" + std::string(req.Header("Content-Type")),
      "CONTENT_LENGTH=" + std::to_string(req.body.size()),
      "REMOTE_ADDR=" + req.remote_address,
      "PATH=" + std::string(std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin"),
  };
  if (auto v = req.Header("Content-Encoding"); !v.empty()) {
    env.push_back("HTTP_CONTENT_ENCODING=" + std::string(v));
  }
  if (auto v = req.Header("Git-Protocol"); !v.empty()) {
    env.push_back("HTTP_GIT_PROTOCOL=" + std::string(v));
  }
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return HttpResponse::Text(500, "pipe\n");
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(in[0]);
    ::close(in[1]);
    return HttpResponse::Text(500, "pipe\n");
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  char git[] = "git", backend[] = "http-backend";
  char* argv[] = {git, backend, nullptr};
  pid_t pid = -1;
  const int spawned = posix_spawnp(&pid, "git", &fa, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  if (spawned != 0) {
    ::close(in[1]);
    ::close(out[0]);
    return HttpResponse::Text(500, "cannot run git http-backend\n");
  }
  // The body goes in from another thread, so that a large answer cannot block it.
  std::thread writer([fd = in[1], &body = req.body] {
    size_t done = 0;
    while (done < body.size()) {
      ssize_t n = ::write(fd, body.data() + done, body.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::close(fd);
  });
  std::string output;
  char buf[65536];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) output.append(buf, n);
  ::close(out[0]);
  writer.join();
  int status = 0;
  ::waitpid(pid, &status, 0);
  return ParseCgi(output);
}

class DemoGitServerImpl : public DemoGitServer {
 public:
  explicit DemoGitServerImpl(std::unique_ptr<HttpServer> server) : server_(std::move(server)) {}
  ~DemoGitServerImpl() override { server_->Shutdown(std::chrono::milliseconds(1000)); }
  std::string url() const override { return "http://127.0.0.1:" + std::to_string(server_->port()); }

 private:
  std::unique_ptr<HttpServer> server_;
};

}  // namespace

Result<std::unique_ptr<DemoGitServer>> DemoGitServer::Start(const std::string& root) {
  HttpServerOptions options;
  options.max_body_bytes = 256 << 20;  // a push's pack
  // Each request blocks an I/O thread while git-http-backend runs (milliseconds
  // for the demo's small repository); a git client sends one at a time.
  options.io_threads = 4;
  auto server =
      HttpServer::Start(options, [root](HttpRequest& req, std::shared_ptr<HttpExchange> ex) {
        ex->Respond(RunBackend(root, req));
      });
  if (!server.ok()) return server.status();
  return std::unique_ptr<DemoGitServer>(new DemoGitServerImpl(std::move(*server)));
}

}  // namespace loom::cli
