// Per-run cgroup v2 directories. The files are small and read whole; every open is
// O_CLOEXEC. Limits are written only when the controller's file exists in the run's
// directory (i.e. the parent enabled it in cgroup.subtree_control), so the same
// code serves a fully delegated v2 host and the controller-less v2 tree of a hybrid
// v1 host, where only cgroup.kill / cgroup.events / cpu.stat are available.
#include "sandbox/internal/cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <sstream>
#include <thread>

namespace loom::sandbox::internal {
namespace {

constexpr char kHybridUnifiedRoot[] = "/sys/fs/cgroup/unified";

std::optional<std::string> ReadSmallFile(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

bool WriteSmallFile(const std::string& path, const std::string& value) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return false;
  return write(fd.get(), value.data(), value.size()) == static_cast<ssize_t>(value.size());
}

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// The value of `key` in a flat-keyed file ("key value" lines).
std::optional<uint64_t> KeyedValue(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string k;
  uint64_t v;
  while (in >> k >> v) {
    if (k == key) return v;
  }
  return std::nullopt;
}

}  // namespace

namespace {

// Empties and removes `path`, a run cgroup nothing else owns any more.
bool RemoveRunCgroup(const std::string& path) {
  if (rmdir(path.c_str()) == 0) return true;
  if (errno != EBUSY) return false;
  WriteSmallFile(path + "/cgroup.kill", "1");  // orphans of a daemon that died
  for (int i = 0; i < 50; ++i) {
    if (rmdir(path.c_str()) == 0) return true;
    usleep(10'000);
  }
  return false;
}

// Run cgroups are named run-<daemon pid>-<n>. A loomd killed with -9 leaves its
// (empty) ones behind; a later daemon with the same pid would collide with them.
void RemoveStaleRunCgroups(const std::string& parent) {
  DIR* dir = opendir(parent.c_str());
  if (!dir) return;
  while (dirent* e = readdir(dir)) {
    std::string name = e->d_name;
    if (name.rfind("run-", 0) != 0) continue;
    pid_t owner = static_cast<pid_t>(std::atoi(name.c_str() + 4));
    if (owner <= 0 || owner == getpid() || (kill(owner, 0) != 0 && errno == ESRCH)) {
      if (owner != getpid()) RemoveRunCgroup(parent + "/" + name);
    }
  }
  closedir(dir);
}

}  // namespace

Result<std::string> ResolveCgroupParent(const std::string& option) {
  if (option == "none") return std::string();
  std::string parent = option;
  if (option == "auto") {
    if (geteuid() != 0 || !Exists(std::string(kHybridUnifiedRoot) + "/cgroup.procs")) {
      return std::string();
    }
    parent = std::string(kHybridUnifiedRoot) + "/loom";
  }
  if (parent.empty() || parent[0] != '/') {
    return Status::InvalidArgument(
        "cgroup parent must be an absolute path, \"auto\" or \"none\": " + option);
  }
  if (mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::FailedPrecondition("cannot create the sandbox cgroup " + parent + ": " +
                                      std::strerror(errno) +
                                      "; delegate a cgroup v2 subtree to Loom (systemd "
                                      "Delegate=yes) or set the cgroup parent to \"none\"");
  }
  if (!Exists(parent + "/cgroup.procs") || access(parent.c_str(), W_OK) != 0) {
    return Status::FailedPrecondition(parent +
                                      " is not a writable cgroup v2 directory; delegate one to "
                                      "Loom or set the cgroup parent to \"none\"");
  }
  RemoveStaleRunCgroups(parent);
  // Best effort: enable the controllers the parent offers for its children.
  if (auto offered = ReadSmallFile(parent + "/cgroup.controllers")) {
    for (const char* c : {"memory", "pids", "cpu"}) {
      if (offered->find(c) != std::string::npos) {
        WriteSmallFile(parent + "/cgroup.subtree_control", std::string("+") + c);
      }
    }
  }
  return parent;
}

Result<std::unique_ptr<RunCgroup>> RunCgroup::Create(const std::string& parent,
                                                     const std::string& name,
                                                     const Limits& limits) {
  std::string path = parent + "/" + name;
  if (mkdir(path.c_str(), 0755) != 0) {
    // Left by an earlier daemon that had this pid: take it over.
    if (errno != EEXIST || !RemoveRunCgroup(path) || mkdir(path.c_str(), 0755) != 0) {
      return Status::FromErrno(errno, "creating cgroup " + path);
    }
  }
  auto cg = std::make_unique<RunCgroup>(path);
  cg->procs_fd_ = UniqueFd(open((path + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
  if (!cg->procs_fd_.valid()) return Status::FromErrno(errno, "opening " + path + "/cgroup.procs");
  cg->dir_fd_ = UniqueFd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cg->dir_fd_.valid()) return Status::FromErrno(errno, "opening " + path);
  if (Exists(path + "/memory.max")) {
    cg->memory_ = true;
    if (!WriteSmallFile(path + "/memory.max", std::to_string(limits.memory_bytes))) {
      return Status::FromErrno(errno, "setting memory.max in " + path);
    }
    WriteSmallFile(path + "/memory.swap.max", "0");
    WriteSmallFile(path + "/memory.oom.group", "1");
  }
  if (Exists(path + "/pids.max") &&
      !WriteSmallFile(path + "/pids.max", std::to_string(limits.max_processes))) {
    return Status::FromErrno(errno, "setting pids.max in " + path);
  }
  if (Exists(path + "/cpu.max")) {
    uint64_t period = 100000;
    uint64_t quota = period * limits.cpu_percent / 100;
    if (!WriteSmallFile(path + "/cpu.max", std::to_string(quota) + " " + std::to_string(period))) {
      return Status::FromErrno(errno, "setting cpu.max in " + path);
    }
  }
  return cg;
}

RunCgroup::~RunCgroup() {
  procs_fd_.Reset();
  dir_fd_.Reset();
  if (!WaitEmpty(std::chrono::milliseconds(0))) {
    KillAll();
    WaitEmpty(std::chrono::seconds(5));
  }
  // rmdir fails (EBUSY) only if something is still alive: leave the directory then,
  // so the leak is visible.
  rmdir(path_.c_str());
}

void RunCgroup::KillAll() {
  if (WriteSmallFile(path_ + "/cgroup.kill", "1")) return;
  // Kernels before 5.14: freeze so nothing can fork, kill every member, thaw.
  WriteSmallFile(path_ + "/cgroup.freeze", "1");
  for (int round = 0; round < 10; ++round) {
    auto procs = ReadSmallFile(path_ + "/cgroup.procs");
    if (!procs || procs->empty()) break;
    std::istringstream in(*procs);
    pid_t pid;
    while (in >> pid) kill(pid, SIGKILL);
  }
  WriteSmallFile(path_ + "/cgroup.freeze", "0");
}

bool RunCgroup::WaitEmpty(std::chrono::milliseconds wait) {
  auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    auto events = ReadSmallFile(path_ + "/cgroup.events");
    if (!events) return true;  // the directory is gone
    if (KeyedValue(*events, "populated").value_or(0) == 0) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

std::vector<pid_t> RunCgroup::Pids() const {
  std::vector<pid_t> pids;
  auto procs = ReadSmallFile(path_ + "/cgroup.procs");
  if (!procs) return pids;
  std::istringstream in(*procs);
  pid_t pid;
  while (in >> pid) pids.push_back(pid);
  return pids;
}

bool RunCgroup::OomKilled() const {
  auto events = ReadSmallFile(path_ + "/memory.events");
  return events && KeyedValue(*events, "oom_kill").value_or(0) > 0;
}

bool RunCgroup::PidsMaxHit() const {
  auto events = ReadSmallFile(path_ + "/pids.events");
  return events && KeyedValue(*events, "max").value_or(0) > 0;
}

std::optional<int64_t> RunCgroup::CpuUsageMs() const {
  auto stat = ReadSmallFile(path_ + "/cpu.stat");
  if (!stat) return std::nullopt;
  auto usec = KeyedValue(*stat, "usage_usec");
  if (!usec) return std::nullopt;
  return static_cast<int64_t>(*usec / 1000);
}

std::optional<uint64_t> RunCgroup::PeakMemoryBytes() const {
  auto peak = ReadSmallFile(path_ + "/memory.peak");
  if (!peak) return std::nullopt;
  return std::strtoull(peak->c_str(), nullptr, 10);
}

}  // namespace loom::sandbox::internal
