// loomd under systemd's notify protocol (loomd.service is Type=notify with
// WatchdogSec=): a datagram socket stands in for systemd's, as NOTIFY_SOCKET.
// loomd must say READY=1 once it serves, WATCHDOG=1 at half of WATCHDOG_USEC,
// RELOADING=1 and READY=1 around a SIGHUP, and STOPPING=1 on SIGTERM.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_paths.h"

namespace loom {
namespace {

class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    path.copy(a.sun_path, sizeof(a.sun_path) - 1);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << path;
  }
  ~NotifySocket() { ::close(fd_); }

  // The next message, or "" after `ms` without one.
  std::string Next(int ms) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, ms) != 1) return "";
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }

  // Waits up to `ms` for a message containing `what`; the messages seen on the way.
  ::testing::AssertionResult WaitFor(const std::string& what, int ms) {
    std::string seen;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < deadline) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      std::string m = Next(static_cast<int>(std::max<int64_t>(1, left.count())));
      if (m.find(what) != std::string::npos) return ::testing::AssertionSuccess();
      if (!m.empty()) seen += "[" + m + "] ";
    }
    return ::testing::AssertionFailure() << "no " << what << " in " << ms << " ms; saw " << seen;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

TEST(SdNotifyTest, LoomdSaysReadyWatchdogReloadingAndStopping) {
  testing::TempDir dir;
  NotifySocket sock(dir.File("notify"));
  ::setenv("NOTIFY_SOCKET", dir.File("notify").c_str(), 1);
  ::setenv("WATCHDOG_USEC", "400000", 1);  // keep-alives every 200 ms
  const pid_t pid = testing::Spawn(
      {std::string(LOOM_BIN_DIR) + "/loomd", "--data-dir", dir.File("data"), "--listen",
       "127.0.0.1:" + std::to_string(testing::FreePort()), "--set", "agents=0"},
      dir.File("loomd.log"));
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(sock.WaitFor("READY=1", 20000))
      << testing::CommandOutput("cat " + dir.File("loomd.log"));
  EXPECT_TRUE(sock.WaitFor("WATCHDOG=1", 2000));
  EXPECT_TRUE(sock.WaitFor("WATCHDOG=1", 2000));  // and again
  ::kill(pid, SIGHUP);
  EXPECT_TRUE(sock.WaitFor("RELOADING=1", 5000));
  EXPECT_TRUE(sock.WaitFor("READY=1", 5000));
  ::kill(pid, SIGTERM);
  EXPECT_TRUE(sock.WaitFor("STOPPING=1", 5000));
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// Without NOTIFY_SOCKET (not under systemd) nothing changes: loomd starts and stops.
TEST(SdNotifyTest, WithoutSystemdLoomdRunsAsBefore) {
  testing::TempDir dir;
  const uint16_t port = testing::FreePort();
  const pid_t pid =
      testing::Spawn({std::string(LOOM_BIN_DIR) + "/loomd", "--data-dir", dir.File("data"),
                      "--listen", "127.0.0.1:" + std::to_string(port), "--set", "agents=0"},
                     dir.File("loomd.log"));
  ASSERT_GT(pid, 0);
  bool up = false;
  for (int i = 0; i < 200 && !up; ++i) {
    up = testing::RunCommand("curl -sf http://127.0.0.1:" + std::to_string(port) +
                             "/healthz >/dev/null")
             .exit_code == 0;
    if (!up) ::usleep(50000);
  }
  EXPECT_TRUE(up) << testing::CommandOutput("cat " + dir.File("loomd.log"));
  const int status = testing::KillAndWait(pid, SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace loom
