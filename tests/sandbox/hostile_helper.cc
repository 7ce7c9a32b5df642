// hostile_helper: the attacks a shell script cannot make, one per subcommand, run
// INSIDE the sandbox by the hostile battery. Each prints "DENIED <errno name>" when
// the attack failed and "ALLOWED" when it succeeded, and exits 0 either way, so the
// test asserts on what happened rather than on an exit status.
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <string>

namespace {

int Report(long rc) {
  if (rc < 0) {
    printf("DENIED %s\n", strerrorname_np(errno));
  } else {
    printf("ALLOWED\n");
  }
  return 0;
}

int ConnectTcp(int port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return Report(-1);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return Report(connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr));
}

int ConnectUnix(const std::string& name, bool abstract) {
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return Report(-1);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  size_t off = abstract ? 1 : 0;
  memcpy(addr.sun_path + off, name.data(), name.size());
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + off + name.size());
  return Report(connect(s, reinterpret_cast<sockaddr*>(&addr), len));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: hostile_helper ATTACK [ARG]\n");
    return 2;
  }
  std::string attack = argv[1];
  const char* arg = argc > 2 ? argv[2] : "";
  if (attack == "ptrace") return Report(ptrace(PTRACE_ATTACH, atoi(arg), nullptr, nullptr));
  if (attack == "ptrace-traceme") return Report(ptrace(PTRACE_TRACEME, 0, nullptr, nullptr));
  if (attack == "kill") return Report(kill(atoi(arg), SIGKILL));
  if (attack == "mount") return Report(mount("none", "/tmp", "tmpfs", 0, nullptr));
  if (attack == "unshare-user") return Report(unshare(CLONE_NEWUSER));
  if (attack == "unshare-net") return Report(unshare(CLONE_NEWNET));
  if (attack == "clone-newuser") {
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(static_cast<pid_t>(pid), nullptr, 0);
    return Report(pid);
  }
  if (attack == "clone3") {
    struct clone_args args {};
    args.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(static_cast<pid_t>(pid), nullptr, 0);
    return Report(pid);
  }
  if (attack == "tiocsti") {
    // On each standard fd and on a pty of our own: push a character into the input.
    char c = 'x';
    bool any = false;
    for (int fd = 0; fd <= 2; ++fd) {
      if (ioctl(fd, TIOCSTI, &c) == 0) any = true;
    }
    int tty = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (tty >= 0 && ioctl(tty, TIOCSTI, &c) == 0) any = true;
    int master = posix_openpt(O_RDWR | O_CLOEXEC);
    if (master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0) {
      int slave = open(ptsname(master), O_RDWR | O_CLOEXEC);
      if (slave >= 0 && ioctl(slave, TIOCSTI, &c) == 0) any = true;
    }
    return Report(any ? 0 : -1);
  }
  if (attack == "raw-socket") return Report(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
  if (attack == "packet-socket") return Report(socket(AF_PACKET, SOCK_RAW, 0));
  if (attack == "inet-socket") return Report(socket(AF_INET, SOCK_STREAM, 0));
  if (attack == "tcp") return ConnectTcp(atoi(arg));
  if (attack == "abstract") return ConnectUnix(arg, /*abstract=*/true);
  if (attack == "unix") return ConnectUnix(arg, /*abstract=*/false);
  if (attack == "io_uring") return Report(syscall(SYS_io_uring_setup, 4, nullptr));
  if (attack == "bpf") return Report(syscall(SYS_bpf, 0, nullptr, 0));
  if (attack == "keyctl") return Report(syscall(SYS_keyctl, 0, 0, 0, 0, 0));
  if (attack == "open_tree") return Report(syscall(SYS_open_tree, AT_FDCWD, "/", 0));
  if (attack == "setns") return Report(syscall(SYS_setns, 0, 0));
  if (attack == "fds") {
    // Lists every open fd above stderr (none is expected).
    int count = 0;
    for (int fd = 3; fd < 4096; ++fd) {
      if (fcntl(fd, F_GETFD) >= 0) {
        printf("OPEN %d\n", fd);
        ++count;
      }
    }
    printf("FDS %d\n", count);
    return 0;
  }
  fprintf(stderr, "unknown attack %s\n", attack.c_str());
  return 2;
}
