// BwrapExecutor: one run = one bubblewrap process tree.
//
// Run() validates the spec (internal/worktree.h says where a worktree may be), lends
// a root caller's worktree to the sandbox uid and gives it back after the run
// (loom::OwnershipLoan, common/posix.h). The run itself, Execute(), is four steps:
// BuildArgs, Spawn, Supervise, Classify. BuildArgs prepares everything the child
// needs (bwrap's arguments
// in a memfd read with `--args`, so nothing, secrets included, shows in `ps`; the
// seccomp program; synthesized /etc files; O_PATH fds of the worktree and its .git
// so that no path is resolved twice); Spawn clones a child straight into the run's
// cgroup (clone3 CLONE_INTO_CGROUP; fork and a write to cgroup.procs before 5.7).
// The child, using only async-signal-safe calls: resets signals, lays out its fds
// (stdin /dev/null, stdout/stderr pipes, then the numbered fds bwrap is told about)
// and closes everything else (close_range), sets rlimits, drops to the slot's
// unprivileged uid when the caller is root (a root caller would otherwise stay root
// outside the user namespace), asks for SIGKILL if the daemon dies, and forks bwrap,
// exec'd with an EMPTY environment (bwrap's own pid 1 keeps its environment,
// readable at /proc/1/environ). The child itself stays as the run's reaper (a
// child subreaper: it reaps bwrap and the sandbox's pid 1, which bwrap leaves
// unreaped) and exits as bwrap did. A CLOEXEC pipe reports a failure before exec.
//
// Supervise, in the parent, polls the output pipes, bwrap's --json-status-fd and a pidfd of the
// reaper, against the wall-clock deadline and the output cap. It stops when the
// reaper exits, never waiting for EOF (an orphan may hold the pipes), then drains
// what is buffered. Killing: cgroup.kill when there is a cgroup, SIGKILL to the
// sandbox's pid 1 (its pid namespace dies with it, taking double-forked and
// setsid'd processes along) and to the reaper (bwrap dies with its parent). Before
// returning, Supervise waits until pid 1 is gone and the cgroup is empty: nothing a
// run started survives Run(). Classify then turns what was seen into the Outcome
// (exit, signal, the limit hit) or into an error when the command never ran
// sandboxed.
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/posix.h"
#include "sandbox/executor.h"
#include "sandbox/internal/bwrap.h"
#include "sandbox/internal/cgroup.h"
#include "sandbox/internal/seccomp_filter.h"
#include "sandbox/internal/worktree.h"

namespace loom::sandbox {
namespace {

using internal::RunCgroup;
using Clock = std::chrono::steady_clock;

// Host paths never bound into a sandbox: sockets (munge, docker, ssh agents),
// people's files, the daemon's state, the host's /proc, /sys and devices.
constexpr const char* kForbiddenReadOnlyPrefixes[] = {"/run", "/var",  "/home", "/root",
                                                      "/sys", "/proc", "/dev",  "/tmp"};
// The parts of the host's /etc a toolchain needs; nothing else of /etc is visible.
constexpr const char* kEtcFiles[] = {
    "/etc/alternatives", "/etc/ld.so.cache",   "/etc/ld.so.conf", "/etc/ld.so.conf.d",
    "/etc/localtime",    "/etc/nsswitch.conf", "/etc/ssl",        "/etc/ca-certificates",
    "/etc/mime.types",   "/etc/protocols",     "/etc/services",   "/etc/python3",
    "/etc/python3.11",   "/etc/perl",          "/etc/gitconfig",  "/etc/bash.bashrc",
    "/etc/profile"};
constexpr const char* kTopLevelToolchain[] = {"/bin",   "/sbin",  "/lib",
                                              "/lib32", "/lib64", "/libx32"};

// Steps the child reports on its error pipe.
enum ChildStep : int {
  kStepCgroup = 1,
  kStepFds,
  kStepRlimit,
  kStepSetgroups,
  kStepSetgid,
  kStepSetuid,
  kStepParentGone,
  kStepReaper,
  kStepExec
};

const char* ChildStepName(int step) {
  switch (step) {
    case kStepCgroup:
      return "joining the run's cgroup";
    case kStepFds:
      return "arranging file descriptors";
    case kStepRlimit:
      return "setting rlimits";
    case kStepSetgroups:
      return "dropping supplementary groups";
    case kStepSetgid:
      return "switching to the sandbox gid";
    case kStepSetuid:
      return "switching to the sandbox uid";
    case kStepParentGone:
      return "starting (the daemon went away)";
    case kStepReaper:
      return "becoming the run's reaper";
    case kStepExec:
      return "executing bwrap";
  }
  return "starting";
}

bool IsUnder(const std::string& path, const std::string& prefix) {
  return path == prefix ||
         (path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0 &&
          path[prefix.size()] == '/');
}

Result<std::string> CanonicalPath(const std::string& path, const char* what) {
  if (path.empty() || path[0] != '/') {
    return Status::InvalidArgument(std::string(what) + " must be an absolute path: '" + path + "'");
  }
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) {
    return Status::InvalidArgument(std::string(what) + " '" + path + "': " + std::strerror(errno));
  }
  return std::string(buf);
}

bool HasNul(const std::string& s) { return s.find('\0') != std::string::npos; }

Status ValidateStrings(const RunSpec& spec) {
  if (spec.argv.empty() || spec.argv[0].empty()) {
    return Status::InvalidArgument("no command to run");
  }
  for (const auto& arg : spec.argv) {
    if (HasNul(arg)) return Status::InvalidArgument("a command argument contains a NUL byte");
  }
  for (const auto& [key, value] : spec.env) {
    if (key.empty() || key.find('=') != std::string::npos || HasNul(key) || HasNul(value)) {
      return Status::InvalidArgument("invalid environment variable name '" + key + "'");
    }
  }
  const Limits& l = spec.limits;
  if (l.wall_time.count() <= 0 || l.cpu_time.count() <= 0 || l.memory_bytes == 0 ||
      l.max_processes == 0 || l.max_open_files == 0 || l.max_file_size_bytes == 0 ||
      l.max_output_bytes == 0 || l.tmp_size_bytes == 0 || l.cpu_percent == 0) {
    return Status::InvalidArgument("every sandbox limit must be positive");
  }
  return Status::Ok();
}

// A memfd holding `data`, positioned at 0, for bwrap to read (--args, --seccomp,
// --ro-bind-data).
Result<UniqueFd> DataFd(const char* name, const std::string& data) {
  UniqueFd fd(memfd_create(name, MFD_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(errno, "memfd_create");
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, "writing a memfd");
    done += static_cast<size_t>(n);
  }
  if (lseek(fd.get(), 0, SEEK_SET) != 0) return Status::FromErrno(errno, "lseek");
  return fd;
}

Result<std::array<UniqueFd, 2>> MakePipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe2");
  return std::array<UniqueFd, 2>{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }
int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

// The parent pid of `pid` from /proc/<pid>/stat, or -1.
pid_t ParentOf(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return -1;
  char buf[1024];
  ssize_t n = read(fd.get(), buf, sizeof buf - 1);
  if (n <= 0) return -1;
  buf[n] = '\0';
  const char* close_paren = strrchr(buf, ')');
  if (close_paren == nullptr) return -1;
  char state;
  int ppid;
  if (sscanf(close_paren + 1, " %c %d", &state, &ppid) != 2) return -1;
  return ppid;
}

// Peak RSS and CPU time of a run's processes, sampled from /proc while it runs:
// bwrap's pid 1 is not reaped by the outer bwrap, so wait4's rusage stops at bwrap
// and only a cgroup's own counters are exact.
class UsageSampler {
 public:
  // Samples `pids` except `reaper` (a copy of the daemon: its RSS is the daemon's).
  void Sample(const std::vector<pid_t>& pids, pid_t reaper) {
    for (pid_t pid : pids) {
      if (pid == reaper) continue;
      std::string dir = "/proc/" + std::to_string(pid);
      std::string status = ReadProcFile(dir + "/status");
      auto pos = status.find("VmHWM:");
      if (pos != std::string::npos) {
        peak_rss_ = std::max<uint64_t>(peak_rss_,
                                       std::strtoull(status.c_str() + pos + 6, nullptr, 10) * 1024);
      }
      std::string stat = ReadProcFile(dir + "/stat");
      auto paren = stat.rfind(')');
      if (paren == std::string::npos) continue;
      // Fields after the command: state(3) ... utime(14) stime(15) cutime(16) cstime(17).
      std::istringstream in(stat.substr(paren + 2));
      std::string field;
      int64_t ticks = 0;
      for (int i = 3; i <= 17 && in >> field; ++i) {
        if (i >= 14) ticks += std::strtoll(field.c_str(), nullptr, 10);
      }
      cpu_ticks_[pid] = ticks;
    }
  }
  uint64_t peak_rss() const { return peak_rss_; }
  int64_t cpu_ms() const {
    int64_t ticks = 0;
    for (const auto& [pid, t] : cpu_ticks_) ticks += t;
    return ticks * 1000 / sysconf(_SC_CLK_TCK);
  }

 private:
  static std::string ReadProcFile(const std::string& path) {
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return {};
    char buf[4096];
    ssize_t n = read(fd.get(), buf, sizeof buf);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  }

  uint64_t peak_rss_ = 0;
  std::map<pid_t, int64_t> cpu_ticks_;
};

// The processes of a run without a cgroup: pid 1 and its descendants, through
// /proc/<pid>/task/<tid>/children.
std::vector<pid_t> Descendants(pid_t root) {
  std::vector<pid_t> out = {root};
  for (size_t i = 0; i < out.size() && out.size() < 4096; ++i) {
    std::string task_dir = "/proc/" + std::to_string(out[i]) + "/task";
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator(task_dir, ec)) {
      UniqueFd fd(open((task.path().string() + "/children").c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd.valid()) continue;
      char buf[4096];
      ssize_t n = read(fd.get(), buf, sizeof buf - 1);
      if (n <= 0) continue;
      buf[n] = '\0';
      std::istringstream in(buf);
      pid_t child;
      while (in >> child) out.push_back(child);
    }
  }
  return out;
}

// Everything the forked child needs, prepared before fork: the child only reads it.
struct ChildPlan {
  static constexpr int kMaxFds = 16;
  std::array<int, kMaxFds> fds{};  // fds[i] becomes fd 3+i
  int n_fds = 0;
  int max_source_fd = 0;
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;
  int err_fd = -1;
  int cgroup_procs_fd = -1;  // -1 when the child was cloned into its cgroup or has none
  bool drop_privileges = false;
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t parent_pid = 0;
  std::array<int, 8> resources{};
  std::array<struct rlimit, 8> rlimits{};
  int n_rlimits = 0;
  const char* bwrap_path = nullptr;
  char* const* argv = nullptr;

  // Returns the number the fd will have in bwrap.
  int Pass(int fd) {
    fds[n_fds] = fd;
    if (fd > max_source_fd) max_source_fd = fd;
    return 3 + n_fds++;
  }
  void Limit(int resource, rlim_t value, rlim_t hard_extra = 0) {
    resources[n_rlimits] = resource;
    rlimits[n_rlimits] = {value, value == RLIM_INFINITY ? value : value + hard_extra};
    ++n_rlimits;
  }
};

[[noreturn]] void ChildFail(int err_fd, int step) {
  int msg[2] = {step, errno};
  ssize_t ignored = write(err_fd, msg, sizeof msg);
  (void)ignored;
  _exit(127);
}

// Runs in the forked child: async-signal-safe calls only.
[[noreturn]] void RunChild(const ChildPlan& p) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, nullptr);
  }

  if (p.cgroup_procs_fd >= 0 && write(p.cgroup_procs_fd, "0", 1) != 1) {
    ChildFail(p.err_fd, kStepCgroup);
  }

  // Move every source above every target, then place them; dup2 clears CLOEXEC.
  int base = std::max(p.max_source_fd, 3 + p.n_fds + 1) + 1;
  auto high = [&](int fd) {
    int h = fcntl(fd, F_DUPFD_CLOEXEC, base);
    if (h < 0) ChildFail(p.err_fd, kStepFds);
    return h;
  };
  int err_high = high(p.err_fd);
  int in_high = high(p.stdin_fd), out_high = high(p.stdout_fd), errout_high = high(p.stderr_fd);
  std::array<int, ChildPlan::kMaxFds> src_high{};
  for (int i = 0; i < p.n_fds; ++i) src_high[i] = high(p.fds[i]);
  const int err_fd = 3 + p.n_fds;
  if (dup3(err_high, err_fd, O_CLOEXEC) < 0) ChildFail(err_high, kStepFds);
  if (dup2(in_high, 0) < 0 || dup2(out_high, 1) < 0 || dup2(errout_high, 2) < 0) {
    ChildFail(err_fd, kStepFds);
  }
  for (int i = 0; i < p.n_fds; ++i) {
    if (dup2(src_high[i], 3 + i) < 0) ChildFail(err_fd, kStepFds);
  }
  if (close_range(static_cast<unsigned>(err_fd + 1), ~0U, 0) != 0) ChildFail(err_fd, kStepFds);

  for (int i = 0; i < p.n_rlimits; ++i) {
    if (setrlimit(static_cast<__rlimit_resource>(p.resources[i]), &p.rlimits[i]) != 0) {
      ChildFail(err_fd, kStepRlimit);
    }
  }
  if (p.drop_privileges) {
    // Raw system calls: after a raw clone3, glibc's set*id wrappers would try to
    // change the uid of the parent's other threads too (its thread list is stale).
    if (syscall(SYS_setgroups, 0, nullptr) != 0) ChildFail(err_fd, kStepSetgroups);
    if (syscall(SYS_setresgid, p.gid, p.gid, p.gid) != 0) ChildFail(err_fd, kStepSetgid);
    if (syscall(SYS_setresuid, p.uid, p.uid, p.uid) != 0) ChildFail(err_fd, kStepSetuid);
  }
  // After the uid change, which clears it.
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (getppid() != p.parent_pid) ChildFail(err_fd, kStepParentGone);

  // This process stays, as the reaper of the run: bwrap exits as soon as the
  // sandbox's pid 1 has reported the exit status, without reaping it, so pid 1 is
  // orphaned. A subreaper inherits it; otherwise the host's init does, and until
  // init gets round to reaping it the zombie counts against the slot uid's
  // RLIMIT_NPROC (on this host the next runs' execve failed with EAGAIN).
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) ChildFail(err_fd, kStepReaper);
  const pid_t reaper = static_cast<pid_t>(syscall(SYS_getpid));
  // A raw clone, like fork without glibc's atfork handlers (which take locks that
  // another thread of the daemon may have held when this process was cloned).
  const pid_t bwrap = static_cast<pid_t>(syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
  if (bwrap < 0) ChildFail(err_fd, kStepReaper);
  if (bwrap == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != reaper) ChildFail(err_fd, kStepParentGone);
    char* const empty_env[] = {nullptr};
    execve(p.bwrap_path, p.argv, empty_env);
    ChildFail(err_fd, kStepExec);
  }
  // Nothing of the run's may be held open here: the pipes, the status fd, err_fd.
  close_range(0, ~0U, 0);
  int bwrap_status = 0;
  for (;;) {
    int status = 0;
    pid_t reaped = static_cast<pid_t>(syscall(SYS_wait4, -1, &status, 0, nullptr));
    if (reaped < 0 && errno == EINTR) continue;
    if (reaped < 0) break;  // ECHILD: bwrap and the orphaned pid 1 are both reaped
    if (reaped == bwrap) bwrap_status = status;
  }
  if (WIFEXITED(bwrap_status)) _exit(WEXITSTATUS(bwrap_status));
  syscall(SYS_kill, reaper, WTERMSIG(bwrap_status));  // end the way bwrap ended
  _exit(128 + WTERMSIG(bwrap_status));
}

class BwrapExecutor final : public Executor {
 public:
  BwrapExecutor(BwrapOptions options, std::string cgroup_parent, std::string seccomp_none,
                std::string seccomp_loopback)
      : options_(std::move(options)),
        cgroup_parent_(std::move(cgroup_parent)),
        seccomp_none_(std::move(seccomp_none)),
        seccomp_loopback_(std::move(seccomp_loopback)) {}

  Result<Outcome> Run(const RunSpec& spec) override;

 private:
  // A validated spec's paths and the caller's identity.
  struct PreparedRun {
    std::string worktree;  // canonical
    std::vector<std::string> ro_paths;
    UniqueFd worktree_fd;  // O_PATH
    UniqueFd git_fd;       // O_PATH of worktree/.git, if any
    bool as_root = false;
    uid_t uid = 0;  // the sandbox's
    gid_t gid = 0;
  };
  // What BuildArgs prepares for Spawn: the child's plan and every fd it gets. Lives
  // on Execute's stack until the run is over (plan.argv points into argv).
  struct Invocation {
    ChildPlan plan;
    std::vector<UniqueFd> keep_alive;  // memfds passed to the child, closed after fork
    std::array<UniqueFd, 2> status_pipe, stdout_pipe, stderr_pipe, err_pipe;
    UniqueFd dev_null;
    std::vector<std::string> argv_storage;
    std::vector<char*> argv;  // into argv_storage, null-terminated
  };
  // What Supervise saw of a run that is over (nothing of it is alive).
  struct Supervised {
    Outcome outcome;  // output, wall time, CPU and memory filled in
    LimitHit killed_for = LimitHit::kNone;
    std::optional<int> json_exit;  // the command's exit as bwrap reported it
    bool saw_child_pid = false;    // bwrap got as far as starting the sandbox
    int wait_status = 0;           // bwrap's own
  };

  // Runs the prepared command: everything after validation (and the loan).
  Result<Outcome> Execute(const RunSpec& spec, PreparedRun& run);
  // bwrap's argument list (in a memfd, fd 3 of the child), the /etc files, the
  // seccomp program, the pipes and rlimits of the child.
  Status BuildArgs(const RunSpec& spec, PreparedRun& run, const RunCgroup* cgroup,
                   Invocation& inv) const;
  // Starts bwrap through the reaper child (in `cgroup` where there is one), closes
  // the parent's copies of the child's fds, and turns a failure of the child before
  // exec into an error.
  Result<pid_t> Spawn(PreparedRun& run, RunCgroup* cgroup, Invocation& inv) const;
  // Captures output and bwrap's status until bwrap exits, enforcing the wall clock
  // and the output cap (killing everything on either, or when `cancel` is set),
  // then makes sure nothing of the run is left and reads its resource use.
  static Result<Supervised> Supervise(const Limits& lim, const std::atomic<bool>* cancel, pid_t pid,
                                      RunCgroup* cgroup, Invocation& inv, Clock::time_point start);
  // The Outcome (exit, signal, the limit hit), or an error when bwrap never ran the
  // command sandboxed.
  static Result<Outcome> Classify(const Limits& lim, const PreparedRun& run,
                                  const RunCgroup* cgroup, Supervised supervised);

  const BwrapOptions options_;
  const std::string cgroup_parent_;  // "" when runs get no cgroup
  const std::string seccomp_none_;
  const std::string seccomp_loopback_;
  std::atomic<uint64_t> run_counter_{0};
};

// Appends one NUL-terminated argument to bwrap's --args buffer.
void Arg(std::string& args, const std::string& a) {
  args += a;
  args.push_back('\0');
}

struct OutputCapture {
  std::string* data;
  bool* truncated;
  UniqueFd fd;
  bool open = true;
};

Result<Outcome> BwrapExecutor::Run(const RunSpec& spec) {
  LOOM_RETURN_IF_ERROR(ValidateStrings(spec));
  PreparedRun run;
  LOOM_ASSIGN_OR_RETURN(run.worktree, CanonicalPath(spec.worktree, "worktree"));
  const std::string& worktree = run.worktree;
  LOOM_RETURN_IF_ERROR(internal::CheckWorktreeLocation(worktree));
  for (const auto& p : spec.read_only_paths) {
    LOOM_ASSIGN_OR_RETURN(std::string path, CanonicalPath(p, "read-only path"));
    if (path == "/") return Status::InvalidArgument("cannot bind the host's / into the sandbox");
    for (const char* prefix : kForbiddenReadOnlyPrefixes) {
      if (IsUnder(path, prefix)) {
        return Status::InvalidArgument("refusing to bind " + path +
                                       " into the sandbox: nothing under " + prefix +
                                       " may be (host sockets, secrets, state)");
      }
    }
    if (IsUnder(path, worktree)) {
      return Status::InvalidArgument("a read-only path cannot be inside the worktree: " + path);
    }
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
      return Status::InvalidArgument("refusing to bind the socket " + path + " into the sandbox");
    }
    run.ro_paths.push_back(path);
  }

  UniqueFd dir_fd(open(worktree.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir_fd.valid()) {
    if (errno == ENOTDIR)
      return Status::InvalidArgument("the worktree is not a directory: " + worktree);
    return Status::FromErrno(errno, "opening the worktree " + worktree);
  }
  // bwrap gets O_PATH fds of this very directory and its .git: nothing is resolved twice.
  run.worktree_fd = UniqueFd(openat(dir_fd.get(), ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!run.worktree_fd.valid()) return Status::FromErrno(errno, "opening the worktree " + worktree);
  run.git_fd = UniqueFd(openat(dir_fd.get(), ".git", O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (run.git_fd.valid()) {
    struct stat st;
    if (fstat(run.git_fd.get(), &st) != 0) return Status::FromErrno(errno, "stat .git");
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
      return Status::FailedPrecondition(worktree +
                                        "/.git is neither a directory nor a file (a planted "
                                        "symlink?); refusing to run");
    }
  }

  run.as_root = geteuid() == 0;
  run.uid = run.as_root ? options_.run_as_uid : geteuid();
  run.gid = run.as_root ? options_.run_as_gid : getegid();
  if (!run.as_root) return Execute(spec, run);
  // A root caller's sandbox runs as the slot's uid, which must own the worktree to
  // write it: lend it for the run, and give it back once nothing of the run is alive.
  LOOM_ASSIGN_OR_RETURN(OwnershipLoan loan,
                        OwnershipLoan::Lend(dir_fd.get(), worktree, {run.uid, run.gid}));
  Result<Outcome> outcome = Execute(spec, run);
  Status given_back = loan.GiveBack();
  if (!given_back.ok()) {
    // The run itself happened; what stays with the sandbox uid is less privileged
    // than before, never more.
    LOOM_LOG(kError) << "sandbox: giving the worktree back to its owner: " << given_back.message();
  }
  return outcome;
}

// A run in four steps, each a function: BuildArgs (bwrap's argument list and the
// fds it gets), Spawn (the child, born in its cgroup where there is one), Supervise
// (output, status, limits and the wall clock until bwrap is gone, then nothing of
// the run is left alive) and Classify (what happened: an Outcome, or an error when
// the command was never run sandboxed).
Result<Outcome> BwrapExecutor::Execute(const RunSpec& spec, PreparedRun& run) {
  // The run's cgroup, if the host gives us one.
  std::unique_ptr<RunCgroup> cgroup;
  if (!cgroup_parent_.empty()) {
    std::string name = "run-" + std::to_string(getpid()) + "-" + std::to_string(run_counter_++);
    LOOM_ASSIGN_OR_RETURN(cgroup, RunCgroup::Create(cgroup_parent_, name, spec.limits));
  }
  Invocation inv;
  LOOM_RETURN_IF_ERROR(BuildArgs(spec, run, cgroup.get(), inv));
  const auto start = Clock::now();
  LOOM_ASSIGN_OR_RETURN(pid_t pid, Spawn(run, cgroup.get(), inv));
  LOOM_ASSIGN_OR_RETURN(Supervised supervised,
                        Supervise(spec.limits, spec.cancel, pid, cgroup.get(), inv, start));
  return Classify(spec.limits, run, cgroup.get(), std::move(supervised));
}

Status BwrapExecutor::BuildArgs(const RunSpec& spec, PreparedRun& run, const RunCgroup* cgroup,
                                Invocation& inv) const {
  const std::string& worktree = run.worktree;
  ChildPlan& plan = inv.plan;
  std::string args;
  // fd 3: this argument list itself (filled in below; the memfd is made last).
  const int args_fd = 3;
  plan.n_fds = 1;
  for (const char* a : {"--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
                        "--new-session", "--clearenv"}) {
    Arg(args, a);
  }
  Arg(args, "--hostname");
  Arg(args, "loom-sandbox");
  for (const auto& [key, value] : spec.env) {
    Arg(args, "--setenv");
    Arg(args, key);
    Arg(args, value);
  }
  Arg(args, "--ro-bind");
  Arg(args, "/usr");
  Arg(args, "/usr");
  for (const char* top : kTopLevelToolchain) {
    struct stat st;
    if (lstat(top, &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      char target[PATH_MAX];
      ssize_t n = readlink(top, target, sizeof target - 1);
      if (n <= 0) continue;
      target[n] = '\0';
      Arg(args, "--symlink");
      Arg(args, target);
      Arg(args, top);
    } else if (S_ISDIR(st.st_mode)) {
      Arg(args, "--ro-bind");
      Arg(args, top);
      Arg(args, top);
    }
  }
  for (const char* a : {"--proc", "/proc", "--dev", "/dev"}) Arg(args, a);
  for (const char* dir : {"/tmp", "/dev/shm"}) {
    Arg(args, "--size");
    Arg(args, std::to_string(spec.limits.tmp_size_bytes));
    Arg(args, "--perms");
    Arg(args, "1777");
    Arg(args, "--tmpfs");
    Arg(args, dir);
  }
  Arg(args, "--dir");
  Arg(args, "/etc");
  for (const char* etc : kEtcFiles) {
    Arg(args, "--ro-bind-try");
    Arg(args, etc);
    Arg(args, etc);
  }
  const std::string ids = std::to_string(run.uid) + ":" + std::to_string(run.gid);
  const std::pair<const char*, std::string> synthesized[] = {
      {"/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nsandbox:x:" + ids +
                          ":Loom sandbox:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:"
                          "/usr/sbin/nologin\n"},
      {"/etc/group", "root:x:0:\nsandbox:x:" + std::to_string(run.gid) + ":\nnogroup:x:65534:\n"},
      {"/etc/hosts", "127.0.0.1 localhost loom-sandbox\n::1 localhost ip6-localhost\n"},
      {"/etc/hostname", "loom-sandbox\n"},
  };
  for (const auto& [dest, content] : synthesized) {
    LOOM_ASSIGN_OR_RETURN(UniqueFd fd, DataFd("loom-etc", content));
    Arg(args, "--ro-bind-data");
    Arg(args, std::to_string(plan.Pass(fd.get())));
    Arg(args, dest);
    inv.keep_alive.push_back(std::move(fd));
  }
  for (const auto& path : run.ro_paths) {
    Arg(args, "--ro-bind");
    Arg(args, path);
    Arg(args, path);
  }
  Arg(args, "--bind-fd");
  Arg(args, std::to_string(plan.Pass(run.worktree_fd.get())));
  Arg(args, worktree);
  if (run.git_fd.valid()) {
    Arg(args, "--ro-bind-fd");
    Arg(args, std::to_string(plan.Pass(run.git_fd.get())));
    Arg(args, worktree + "/.git");
  }
  Arg(args, "--remount-ro");
  Arg(args, "/");
  Arg(args, "--chdir");
  Arg(args, worktree);
  LOOM_ASSIGN_OR_RETURN(
      UniqueFd seccomp_fd,
      DataFd("loom-seccomp",
             spec.network == Network::kLoopback ? seccomp_loopback_ : seccomp_none_));
  Arg(args, "--seccomp");
  Arg(args, std::to_string(plan.Pass(seccomp_fd.get())));
  inv.keep_alive.push_back(std::move(seccomp_fd));
  LOOM_ASSIGN_OR_RETURN(inv.status_pipe, MakePipe());
  Arg(args, "--json-status-fd");
  Arg(args, std::to_string(plan.Pass(inv.status_pipe[1].get())));
  // bwrap 0.8 does not accept the command inside --args: it follows on the command line.
  LOOM_ASSIGN_OR_RETURN(UniqueFd args_memfd, DataFd("loom-bwrap-args", args));
  plan.fds[0] = args_memfd.get();
  plan.max_source_fd = std::max(plan.max_source_fd, args_memfd.get());
  inv.keep_alive.push_back(std::move(args_memfd));

  inv.dev_null = UniqueFd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!inv.dev_null.valid()) return Status::FromErrno(errno, "opening /dev/null");
  LOOM_ASSIGN_OR_RETURN(inv.stdout_pipe, MakePipe());
  LOOM_ASSIGN_OR_RETURN(inv.stderr_pipe, MakePipe());
  LOOM_ASSIGN_OR_RETURN(inv.err_pipe, MakePipe());
  plan.stdin_fd = inv.dev_null.get();
  plan.stdout_fd = inv.stdout_pipe[1].get();
  plan.stderr_fd = inv.stderr_pipe[1].get();
  plan.err_fd = inv.err_pipe[1].get();
  plan.cgroup_procs_fd = -1;
  plan.drop_privileges = run.as_root;
  plan.uid = run.uid;
  plan.gid = run.gid;
  plan.parent_pid = getpid();
  const Limits& lim = spec.limits;
  // SIGXCPU at the limit; SIGKILL a second later for a payload that ignores it.
  plan.Limit(RLIMIT_CPU, static_cast<rlim_t>(lim.cpu_time.count()), 1);
  plan.Limit(RLIMIT_AS, cgroup && cgroup->has_memory_controller()
                            ? RLIM_INFINITY
                            : static_cast<rlim_t>(lim.memory_bytes));
  plan.Limit(RLIMIT_NPROC, lim.max_processes);
  plan.Limit(RLIMIT_NOFILE, lim.max_open_files);
  plan.Limit(RLIMIT_FSIZE, lim.max_file_size_bytes);
  plan.Limit(RLIMIT_CORE, 0);
  plan.Limit(RLIMIT_MEMLOCK, 64 * 1024);
  plan.bwrap_path = options_.bwrap_path.c_str();
  inv.argv_storage = {"bwrap", "--args", std::to_string(args_fd), "--"};
  inv.argv_storage.insert(inv.argv_storage.end(), spec.argv.begin(), spec.argv.end());
  for (auto& a : inv.argv_storage) inv.argv.push_back(a.data());
  inv.argv.push_back(nullptr);
  plan.argv = inv.argv.data();
  return Status::Ok();
}

Result<pid_t> BwrapExecutor::Spawn(PreparedRun& run, RunCgroup* cgroup, Invocation& inv) const {
  ChildPlan& plan = inv.plan;
  pid_t pid = -1;
  if (cgroup) {
    // Born in its cgroup: joining one afterwards (a write to cgroup.procs) waits for
    // an RCU grace period, 7-15 ms measured here, the largest single cost of a run.
    struct clone_args clone_req {};
    clone_req.flags = CLONE_INTO_CGROUP;
    clone_req.exit_signal = SIGCHLD;
    clone_req.cgroup = static_cast<uint64_t>(cgroup->dir_fd());
    pid = static_cast<pid_t>(syscall(SYS_clone3, &clone_req, sizeof clone_req));
    if (pid == 0) RunChild(plan);
    if (pid < 0 && errno != ENOSYS && errno != EINVAL && errno != E2BIG && errno != EPERM) {
      return Status::FromErrno(errno, "clone3");
    }
    if (pid < 0) plan.cgroup_procs_fd = cgroup->procs_fd();  // kernel < 5.7: join after fork
  }
  if (pid < 0) {
    pid = fork();
    if (pid < 0) return Status::FromErrno(errno, "fork");
    if (pid == 0) RunChild(plan);
  }

  // Parent: drop the child's ends so EOF and errors are seen.
  inv.stdout_pipe[1].Reset();
  inv.stderr_pipe[1].Reset();
  inv.status_pipe[1].Reset();
  inv.err_pipe[1].Reset();
  inv.keep_alive.clear();
  run.worktree_fd.Reset();
  run.git_fd.Reset();

  int msg[2];
  ssize_t got;
  do {
    got = read(inv.err_pipe[0].get(), msg, sizeof msg);
  } while (got < 0 && errno == EINTR);
  if (got == static_cast<ssize_t>(sizeof msg)) {
    waitpid(pid, nullptr, 0);
    std::string what =
        std::string("sandbox child failed ") + ChildStepName(msg[0]) + ": " + std::strerror(msg[1]);
    if (msg[0] == kStepExec && msg[1] == E2BIG) {
      return Status::InvalidArgument(what + " (the command line and environment are too large)");
    }
    if (msg[0] == kStepExec && msg[1] == ENOENT) {
      return Status::FailedPrecondition("bubblewrap not found at " + options_.bwrap_path +
                                        ": install it (Debian/Ubuntu: apt-get install bubblewrap)");
    }
    return Status::FailedPrecondition(what);
  }
  return pid;
}

Result<BwrapExecutor::Supervised> BwrapExecutor::Supervise(const Limits& lim,
                                                           const std::atomic<bool>* cancel,
                                                           pid_t pid, RunCgroup* cgroup,
                                                           Invocation& inv,
                                                           Clock::time_point start) {
  UniqueFd bwrap_pidfd(PidfdOpen(pid));
  if (!bwrap_pidfd.valid()) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return Status::FromErrno(errno, "pidfd_open (Linux >= 5.3 is required)");
  }
  for (auto* p : {&inv.stdout_pipe[0], &inv.stderr_pipe[0], &inv.status_pipe[0]}) {
    fcntl(p->get(), F_SETFL, O_NONBLOCK);
  }

  Supervised result;
  Outcome& outcome = result.outcome;
  OutputCapture captures[2] = {
      {&outcome.stdout_data, &outcome.stdout_truncated, std::move(inv.stdout_pipe[0])},
      {&outcome.stderr_data, &outcome.stderr_truncated, std::move(inv.stderr_pipe[0])}};
  UniqueFd status_fd = std::move(inv.status_pipe[0]);
  std::string status_text;
  UniqueFd inner_pidfd;  // the sandbox's pid 1
  LimitHit& killed_for = result.killed_for;
  const auto deadline = start + lim.wall_time;
  UsageSampler sampler;
  pid_t inner_pid = -1;
  constexpr auto kSampleEvery = std::chrono::milliseconds(20);
  auto next_sample = start + kSampleEvery;

  auto kill_everything = [&] {
    if (inner_pidfd.valid()) {
      // The pid namespace dies with its pid 1, and bwrap exits after it: given a
      // moment, the reaper reaps both, and no zombie is left to the host's init.
      PidfdSendSignal(inner_pidfd.get(), SIGKILL);
      struct pollfd pfd = {bwrap_pidfd.get(), POLLIN, 0};
      poll(&pfd, 1, 100);
    }
    if (cgroup) cgroup->KillAll();
    kill(pid, SIGKILL);  // our unreaped child: the pid cannot have been reused
  };
  auto read_status = [&] {
    char buf[4096];
    for (;;) {
      ssize_t n = read(status_fd.get(), buf, sizeof buf);
      if (n <= 0) break;
      status_text.append(buf, static_cast<size_t>(n));
    }
    size_t nl;
    while ((nl = status_text.find('\n')) != std::string::npos) {
      auto line = ParseJson(std::string_view(status_text).substr(0, nl));
      status_text.erase(0, nl + 1);
      if (!line.ok() || !line->is_object()) continue;
      if (line->contains("child-pid") && (*line)["child-pid"].is_number_integer()) {
        result.saw_child_pid = true;
        pid_t inner = (*line)["child-pid"].get<pid_t>();
        UniqueFd fd(PidfdOpen(inner));
        // Only trust the pidfd if it is still bwrap's child (not a reused pid); bwrap
        // is the child of `pid`, the run's reaper.
        if (fd.valid() && ParentOf(ParentOf(inner)) == pid) {
          inner_pidfd = std::move(fd);
          inner_pid = inner;
        }
      }
      if (line->contains("exit-code") && (*line)["exit-code"].is_number_integer()) {
        result.json_exit = (*line)["exit-code"].get<int>();
      }
    }
  };
  // Reads what is available; returns false when the output cap was exceeded.
  auto read_output = [&](OutputCapture& c) {
    char buf[65536];
    for (;;) {
      ssize_t n = read(c.fd.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) c.open = false;
      if (n <= 0) return true;
      size_t used = outcome.stdout_data.size() + outcome.stderr_data.size();
      size_t room = lim.max_output_bytes > used ? lim.max_output_bytes - used : 0;
      size_t take = std::min(room, static_cast<size_t>(n));
      c.data->append(buf, take);
      if (take < static_cast<size_t>(n)) {
        *c.truncated = true;
        return false;
      }
    }
  };

  for (;;) {
    struct pollfd pfds[4];
    int n = 0;
    int idx[2] = {-1, -1};
    for (int i = 0; i < 2; ++i) {
      if (captures[i].open) {
        idx[i] = n;
        pfds[n++] = {captures[i].fd.get(), POLLIN, 0};
      }
    }
    int status_idx = n;
    pfds[n++] = {status_fd.get(), POLLIN, 0};
    int bwrap_idx = n;
    pfds[n++] = {bwrap_pidfd.get(), POLLIN, 0};
    auto now = Clock::now();
    if (now >= deadline) {
      killed_for = LimitHit::kTimeout;
      kill_everything();
      break;
    }
    if (cancel && cancel->load()) {
      killed_for = LimitHit::kCancelled;
      kill_everything();
      break;
    }
    if (now >= next_sample) {
      if (cgroup) {
        sampler.Sample(cgroup->Pids(), pid);
      } else if (inner_pid > 0) {
        sampler.Sample(Descendants(inner_pid), pid);
      }
      next_sample = now + kSampleEvery;
    }
    auto wake = std::min(deadline, next_sample);
    auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count() + 1;
    int rc =
        poll(pfds, static_cast<nfds_t>(n), static_cast<int>(std::min<int64_t>(wait_ms, 60000)));
    if (rc < 0 && errno != EINTR) {
      kill_everything();
      waitpid(pid, nullptr, 0);
      return Status::FromErrno(errno, "poll");
    }
    if (rc <= 0) continue;
    bool over = false;
    for (int i = 0; i < 2; ++i) {
      if (idx[i] >= 0 && pfds[idx[i]].revents != 0 && !read_output(captures[i])) over = true;
    }
    if (over) {
      killed_for = LimitHit::kOutput;
      kill_everything();
      break;
    }
    if (pfds[status_idx].revents != 0) read_status();
    if (pfds[bwrap_idx].revents != 0) break;
  }

  struct rusage usage;
  memset(&usage, 0, sizeof usage);
  while (wait4(pid, &result.wait_status, 0, &usage) < 0 && errno == EINTR) {
  }
  // bwrap is gone; make sure the sandbox's pid 1 (and so its namespace) is too.
  read_status();
  if (inner_pidfd.valid()) {
    struct pollfd pfd = {inner_pidfd.get(), POLLIN, 0};
    if (poll(&pfd, 1, 0) == 0) {
      PidfdSendSignal(inner_pidfd.get(), SIGKILL);
      poll(&pfd, 1, 5000);
    }
  }
  if (cgroup && !cgroup->WaitEmpty(std::chrono::milliseconds(0))) {
    cgroup->KillAll();
    if (!cgroup->WaitEmpty(std::chrono::seconds(5))) {
      LOOM_LOG(kError) << "sandbox: processes survived cgroup.kill for 5s";
    }
  }
  outcome.wall_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  // Drain what is buffered, without waiting for EOF.
  for (auto& c : captures) {
    if (c.open && !read_output(c) && killed_for == LimitHit::kNone) killed_for = LimitHit::kOutput;
  }

  auto tv_ms = [](const timeval& tv) {
    return static_cast<int64_t>(tv.tv_sec) * 1000 + tv.tv_usec / 1000;
  };
  outcome.cpu_ms = std::max(tv_ms(usage.ru_utime) + tv_ms(usage.ru_stime), sampler.cpu_ms());
  // Not ru_maxrss: the reaper's, a copy of the daemon's, would dominate it.
  outcome.peak_memory_bytes = sampler.peak_rss();
  if (cgroup) {
    if (auto cpu = cgroup->CpuUsageMs()) outcome.cpu_ms = *cpu;
    if (auto peak = cgroup->PeakMemoryBytes()) outcome.peak_memory_bytes = *peak;
  }
  return result;
}

Result<Outcome> BwrapExecutor::Classify(const Limits& lim, const PreparedRun& run,
                                        const RunCgroup* cgroup, Supervised supervised) {
  Outcome outcome = std::move(supervised.outcome);
  if (supervised.killed_for != LimitHit::kNone) {
    outcome.limit = supervised.killed_for;
    outcome.signal = SIGKILL;
  } else if (supervised.json_exit) {
    int e = *supervised.json_exit;
    if (e > 128 && e < 128 + NSIG) {
      outcome.signal = e - 128;
    } else {
      outcome.exit_code = e;
    }
  } else if (!supervised.saw_child_pid) {
    std::string message = outcome.stderr_data.substr(0, 2000);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    return Status::FailedPrecondition("bubblewrap could not create the sandbox: " +
                                      (message.empty() ? std::string("no message") : message));
  } else if (WIFSIGNALED(supervised.wait_status)) {
    outcome.signal = WTERMSIG(supervised.wait_status);
  } else {
    outcome.exit_code = WEXITSTATUS(supervised.wait_status);
  }

  // bwrap sets the sandbox up in its child, after reporting child-pid: a failure
  // there (a bind it cannot make) is bwrap's "bwrap: ..." and exit 1, before the
  // payload ran. That run was not sandboxed: an error, not the command's outcome.
  constexpr std::string_view kBwrapPrefix = "bwrap: ";
  constexpr std::string_view kExecvpPrefix = "bwrap: execvp ";
  if (outcome.exit_code == 1 && outcome.stderr_data.starts_with(kBwrapPrefix) &&
      !outcome.stderr_data.starts_with(kExecvpPrefix)) {
    std::string message = outcome.stderr_data.substr(0, outcome.stderr_data.find('\n'));
    std::string hint;
    if (message.find("Permission denied") != std::string::npos && run.as_root) {
      hint = "; the sandbox uid " + std::to_string(run.uid) +
             " must be able to traverse every directory above " + run.worktree + " (chmod o+x)";
    }
    return Status::FailedPrecondition("bubblewrap could not set up the sandbox: " + message + hint);
  }
  // bwrap's own report that it could not execute the command (shell conventions).
  if (outcome.exit_code == 1 && outcome.stderr_data.starts_with(kExecvpPrefix)) {
    outcome.exit_code =
        outcome.stderr_data.find("No such file or directory") != std::string::npos ? 127 : 126;
  }

  if (outcome.limit == LimitHit::kNone && !outcome.Succeeded()) {
    if (outcome.signal == SIGXCPU ||
        (outcome.signal == SIGKILL && outcome.cpu_ms >= lim.cpu_time.count() * 900)) {
      outcome.limit = LimitHit::kCpu;
    } else if (outcome.signal == SIGXFSZ) {
      outcome.limit = LimitHit::kFileSize;
    } else if (cgroup && cgroup->OomKilled()) {
      outcome.limit = LimitHit::kMemory;
    } else if (cgroup && cgroup->PidsMaxHit()) {
      outcome.limit = LimitHit::kPids;
    } else if (!(cgroup && cgroup->has_memory_controller()) &&
               outcome.peak_memory_bytes >= lim.memory_bytes / 4 * 3) {
      // rlimit fallback: allocations failed near RLIMIT_AS (a heuristic; see docs).
      outcome.limit = LimitHit::kMemory;
    }
  }
  return outcome;
}

}  // namespace

namespace internal {
// Creates the executor without probing (ProbeBwrap and MakeBwrapExecutor probe).
Result<std::unique_ptr<Executor>> CreateBwrapExecutor(const BwrapOptions& options) {
  if (geteuid() == 0 && options.run_as_uid == 0) {
    return Status::InvalidArgument(
        "run_as_uid must not be 0: a root sandbox stays root outside its user namespace");
  }
  LOOM_RETURN_IF_ERROR(CheckSeccompAvailable());
  LOOM_ASSIGN_OR_RETURN(std::string none, BuildSeccompProgram(Network::kNone));
  LOOM_ASSIGN_OR_RETURN(std::string loopback, BuildSeccompProgram(Network::kLoopback));
  LOOM_ASSIGN_OR_RETURN(std::string cgroup_parent, ResolveCgroupParent(options.cgroup_parent));
  return std::unique_ptr<Executor>(std::make_unique<BwrapExecutor>(
      options, cgroup_parent, std::move(none), std::move(loopback)));
}
}  // namespace internal

}  // namespace loom::sandbox
