// Real git servers on loopback for tests of repos/remote.h: Debian's
// git-http-backend behind lighttpd with basic authentication, and OpenSSH's sshd
// with its own configuration, host key and an authorised key made by the test.
// Each listens on 127.0.0.1 on a free port, serves the bare repositories under its
// directory, runs as the current user (root in CI; sshd as another user can only
// log in as that user) and is stopped when the object goes away.
//
// The binaries come from Debian packages that ./scripts/setup.sh --tests installs
// (lighttpd, openssh-server; git ships git-http-backend). Missing() names what is
// not installed, for a GTEST_SKIP; a server that is installed but does not come up
// is a test failure, with its log in the error.
#pragma once

#include <sys/types.h>

#include <string>

namespace loom::testing {

class GitHttpServer {
 public:
  // Empty when lighttpd and git-http-backend are installed; else what is missing.
  static std::string Missing();

  GitHttpServer() = default;
  ~GitHttpServer() { Stop(); }
  GitHttpServer(const GitHttpServer&) = delete;
  GitHttpServer& operator=(const GitHttpServer&) = delete;

  // Serves the bare repositories under `dir`/repos at Url(name), pull and push,
  // to `user` with `password` only (every request needs them). False, with
  // error() saying why, when the server did not come up.
  bool Start(const std::string& dir, const std::string& user, const std::string& password);
  void Stop();

  // Where repositories go: `<repos_dir>/<name>` is served at Url(name).
  std::string repos_dir() const { return dir_ + "/repos"; }
  std::string Url(const std::string& name) const;
  int port() const { return port_; }
  const std::string& error() const { return error_; }

 private:
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::string error_;
};

class GitSshServer {
 public:
  // Empty when sshd, ssh-keygen and git-upload-pack are installed; else what is missing.
  static std::string Missing();

  GitSshServer() = default;
  ~GitSshServer() { Stop(); }
  GitSshServer(const GitSshServer&) = delete;
  GitSshServer& operator=(const GitSshServer&) = delete;

  // Makes a host key and a client key (ed25519) under `dir`, authorises the
  // client key for the current user and starts sshd. False, with error(), when
  // it did not come up.
  bool Start(const std::string& dir);
  void Stop();

  // ssh://<user>@127.0.0.1:<port><absolute path of a bare repository>
  std::string Url(const std::string& repo_path) const;
  const std::string& user() const { return user_; }
  int port() const { return port_; }
  // The client's private key (OpenSSH format) as text.
  const std::string& client_key() const { return client_key_; }
  // A known_hosts line for this server: "[127.0.0.1]:<port> ssh-ed25519 AAAA...".
  const std::string& known_hosts() const { return known_hosts_; }
  // A known_hosts line naming this server with another (fresh) key.
  const std::string& wrong_known_hosts() const { return wrong_known_hosts_; }
  const std::string& error() const { return error_; }

 private:
  std::string dir_;
  std::string user_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::string client_key_, known_hosts_, wrong_known_hosts_;
  std::string error_;
};

}  // namespace loom::testing
