// The loopback git servers of git_server.h. Each writes its own configuration into
// the test's directory, starts the server in the foreground (lighttpd -D, sshd -D
// -e) with its output in a log there, and waits until the port accepts a
// connection; Stop() sends SIGTERM and reaps it.
#include "tests/support/git_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/support/subprocess.h"

namespace loom::testing {
namespace {

constexpr char kLighttpd[] = "/usr/sbin/lighttpd";
constexpr char kHttpBackend[] = "/usr/lib/git-core/git-http-backend";
constexpr char kSshd[] = "/usr/sbin/sshd";

bool Executable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteText(const std::string& path, const std::string& text, mode_t mode = 0644) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  ::chmod(path.c_str(), mode);
}

bool Accepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// Waits up to 10 s for `pid` to listen on `port`; on failure says why, with the log.
std::string WaitForServer(pid_t pid, int port, const std::string& log, const std::string& name) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      return name + " exited at start-up (status " + std::to_string(status) + "): " + ReadText(log);
    }
    if (Accepts(port)) return "";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return name + " did not listen on port " + std::to_string(port) +
         " within 10 s: " + ReadText(log);
}

void StopServer(pid_t& pid) {
  if (pid > 0) KillAndWait(pid, SIGTERM);
  pid = -1;
}

std::string CurrentUser() {
  const passwd* pw = ::getpwuid(::geteuid());
  return pw ? pw->pw_name : "root";
}

// ssh-keygen's ed25519 key pair at `path`(.pub); empty on success.
std::string MakeKey(const std::string& path) {
  CommandResult r =
      RunCommand("ssh-keygen -q -t ed25519 -N '' -C loom-test -f " + ShellQuote(path) + " 2>&1");
  return r.exit_code == 0 ? "" : "ssh-keygen failed: " + r.out;
}

// "ssh-ed25519 AAAA..." of a .pub file, without its comment.
std::string PublicKey(const std::string& pub_path) {
  std::istringstream in(ReadText(pub_path));
  std::string type, key;
  in >> type >> key;
  return type + " " + key;
}

}  // namespace

std::string GitHttpServer::Missing() {
  if (!Executable(kLighttpd)) return "lighttpd is not installed (apt-get install lighttpd)";
  if (!Executable(kHttpBackend)) return "git-http-backend is not installed (apt-get install git)";
  return "";
}

bool GitHttpServer::Start(const std::string& dir, const std::string& user,
                          const std::string& password) {
  dir_ = dir;
  std::filesystem::create_directories(repos_dir());
  port_ = FreePort();
  WriteText(dir_ + "/users", user + ":" + password + "\n", 0600);
  // git-http-backend as the web server's CGI; every URL under /git/ needs the user.
  std::string conf =
      "server.document-root = \"" + repos_dir() + "\"\n" +
      "server.bind = \"127.0.0.1\"\n"
      "server.port = " +
      std::to_string(port_) + "\n" + "server.errorlog = \"" + dir_ + "/lighttpd-error.log\"\n" +
      "server.upload-dirs = (\"" + dir_ + "\")\n" +
      "server.modules = (\"mod_alias\", \"mod_auth\", \"mod_authn_file\", \"mod_setenv\", "
      "\"mod_cgi\")\n"
      "alias.url = (\"/git/\" => \"" +
      kHttpBackend + "/\")\n" +
      "cgi.assign = (\"\" => \"\")\n"
      "setenv.add-environment = (\"GIT_PROJECT_ROOT\" => \"" +
      repos_dir() + "\", \"GIT_HTTP_EXPORT_ALL\" => \"1\")\n" +
      "auth.backend = \"plain\"\n"
      "auth.backend.plain.userfile = \"" +
      dir_ + "/users\"\n" +
      "auth.require = (\"/git/\" => (\"method\" => \"basic\", \"realm\" => \"git\", "
      "\"require\" => \"valid-user\"))\n";
  WriteText(dir_ + "/lighttpd.conf", conf);
  std::string log = dir_ + "/lighttpd.log";
  pid_ = Spawn({kLighttpd, "-D", "-f", dir_ + "/lighttpd.conf"}, log);
  if (pid_ < 0) {
    error_ = "cannot start lighttpd";
    return false;
  }
  error_ = WaitForServer(pid_, port_, log, "lighttpd");
  if (!error_.empty()) {
    error_ += ReadText(dir_ + "/lighttpd-error.log");
    pid_ = -1;
    return false;
  }
  return true;
}

void GitHttpServer::Stop() { StopServer(pid_); }

std::string GitHttpServer::Url(const std::string& name) const {
  return "http://127.0.0.1:" + std::to_string(port_) + "/git/" + name;
}

std::string GitSshServer::Missing() {
  if (!Executable(kSshd)) return "sshd is not installed (apt-get install openssh-server)";
  if (RunCommand("command -v ssh-keygen >/dev/null").exit_code != 0) {
    return "ssh-keygen is not installed (apt-get install openssh-client)";
  }
  if (RunCommand("command -v git-upload-pack >/dev/null").exit_code != 0) {
    return "git-upload-pack is not on PATH (apt-get install git)";
  }
  // sshd started by root needs its privilege separation directory (which the
  // package's service would make); another user cannot make it.
  if (::access("/run/sshd", F_OK) != 0 && (::geteuid() != 0 || ::mkdir("/run/sshd", 0755) != 0)) {
    return "sshd needs /run/sshd, which is missing and cannot be made by this user";
  }
  return "";
}

bool GitSshServer::Start(const std::string& dir) {
  dir_ = dir;
  user_ = CurrentUser();
  std::filesystem::create_directories(dir_);
  for (const char* key : {"host_key", "client_key", "other_host_key"}) {
    error_ = MakeKey(dir_ + "/" + key);
    if (!error_.empty()) return false;
  }
  port_ = FreePort();
  WriteText(dir_ + "/authorized_keys", ReadText(dir_ + "/client_key.pub"), 0600);
  std::string conf = "Port " + std::to_string(port_) +
                     "\n"
                     "ListenAddress 127.0.0.1\n"
                     "HostKey " +
                     dir_ +
                     "/host_key\n"
                     "PidFile " +
                     dir_ +
                     "/sshd.pid\n"
                     "AuthorizedKeysFile " +
                     dir_ +
                     "/authorized_keys\n"
                     "PubkeyAuthentication yes\n"
                     "PasswordAuthentication no\n"
                     "KbdInteractiveAuthentication no\n"
                     "UsePAM no\n"
                     "StrictModes no\n"
                     "PermitRootLogin prohibit-password\n"
                     "AllowUsers " +
                     user_ + "\n";
  WriteText(dir_ + "/sshd_config", conf);
  std::string where = "[127.0.0.1]:" + std::to_string(port_) + " ";
  known_hosts_ = where + PublicKey(dir_ + "/host_key.pub") + "\n";
  wrong_known_hosts_ = where + PublicKey(dir_ + "/other_host_key.pub") + "\n";
  client_key_ = ReadText(dir_ + "/client_key");
  std::string log = dir_ + "/sshd.log";
  pid_ = Spawn({kSshd, "-D", "-e", "-f", dir_ + "/sshd_config"}, log);
  if (pid_ < 0) {
    error_ = "cannot start sshd";
    return false;
  }
  error_ = WaitForServer(pid_, port_, log, "sshd");
  if (!error_.empty()) {
    pid_ = -1;
    return false;
  }
  return true;
}

void GitSshServer::Stop() { StopServer(pid_); }

std::string GitSshServer::Url(const std::string& repo_path) const {
  return "ssh://" + user_ + "@127.0.0.1:" + std::to_string(port_) + repo_path;
}

}  // namespace loom::testing
