// The local Slurm of slurm_cluster.h. munged runs in the foreground (-F) with its
// key, socket and seed in dir/munge (mode 0700, so only root reaches the socket);
// slurm.conf names that socket (AuthInfo=socket=...). slurmctld -D -i and slurmd -D
// -N <node> run in the foreground with their logs in dir/log; the ports are free
// ones, so several clusters (ctest -j) can run side by side.
#include "tests/support/slurm_cluster.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "tests/support/subprocess.h"

namespace loom::testing {
namespace {

constexpr char kMunged[] = "/usr/sbin/munged";
constexpr char kSlurmctld[] = "/usr/sbin/slurmctld";
constexpr char kSlurmd[] = "/usr/sbin/slurmd";
constexpr char kSinfo[] = "/usr/bin/sinfo";
constexpr char kCgroupPlugin[] = "/usr/lib/x86_64-linux-gnu/slurm-wlm/cgroup_v1.so";

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

bool Executable(const char* path) { return ::access(path, X_OK) == 0; }

bool Unified() { return ::access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0; }

// The cgroup v1 hierarchies Slurm uses, or the unified one.
std::vector<std::string> CgroupRoots() {
  if (Unified()) return {"/sys/fs/cgroup"};
  return {"/sys/fs/cgroup/freezer", "/sys/fs/cgroup/cpuset", "/sys/fs/cgroup/memory",
          "/sys/fs/cgroup/devices", "/sys/fs/cgroup/cpuacct"};
}

bool Exited(pid_t pid) {
  int status;
  return ::waitpid(pid, &status, WNOHANG) == pid;
}

void StopDaemon(pid_t& pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!Exited(pid)) {
    if (std::chrono::steady_clock::now() > deadline) {
      KillAndWait(pid, SIGKILL);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  pid = -1;
}

}  // namespace

std::string SlurmCluster::Missing() {
  for (const char* bin : {kSlurmctld, kSlurmd, kSinfo, "/usr/bin/srun", "/usr/bin/salloc"}) {
    if (!Executable(bin)) {
      return std::string(bin) +
             " is not installed (apt-get install slurm-wlm; "
             "./scripts/setup.sh --tests installs it)";
    }
  }
  if (!Executable(kMunged)) return "munged is not installed (apt-get install munge)";
  if (::geteuid() != 0) return "a local Slurm needs root (slurmd runs steps as their user)";
  return "";
}

bool SlurmCluster::Start(const std::string& dir) {
  dir_ = dir;
  std::random_device rd;
  node_ = "loomtest" + std::to_string(::getpid()) + "x" + std::to_string(rd() % 100000);
  namespace fs = std::filesystem;
  for (const char* sub : {"munge", "state", "spool", "log"})
    fs::create_directories(dir_ + "/" + sub);
  ::chmod((dir_ + "/munge").c_str(), 0700);
  ::chmod(dir_.c_str(), 0755);

  // munged: a random key of its own.
  std::string key(1024, '\0');
  for (char& c : key) c = static_cast<char>(rd());
  WriteText(dir_ + "/munge/munge.key", key, 0400);
  munge_socket_ = dir_ + "/munge/munge.socket";
  munged_ = Spawn({kMunged, "-F", "-f", "--key-file=" + dir_ + "/munge/munge.key",
                   "--socket=" + munge_socket_, "--pid-file=" + dir_ + "/munge/munged.pid",
                   "--seed-file=" + dir_ + "/munge/seed", "--log-file=" + dir_ + "/log/munged.log"},
                  dir_ + "/log/munged.out");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (::access(munge_socket_.c_str(), F_OK) != 0) {
    if (munged_ < 0 || Exited(munged_) || std::chrono::steady_clock::now() > deadline) {
      munged_ = -1;
      error_ = "munged did not start: " + ReadText(dir_ + "/log/munged.out") +
               ReadText(dir_ + "/log/munged.log");
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  cpus_ = std::max(1, static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN)));
  bool cgroup = Executable(kCgroupPlugin) && ::access("/sys/fs/cgroup", W_OK) == 0 &&
                (Unified() || ::access("/sys/fs/cgroup/freezer", W_OK) == 0);
  mode_ = cgroup ? "cgroup" : "linuxproc";
  slurm_conf_ = dir_ + "/slurm.conf";
  std::string host = CommandOutput("hostname");
  while (!host.empty() && host.back() == '\n') host.pop_back();
  std::ostringstream conf;
  conf << "ClusterName=loomtest\n"
       << "SlurmctldHost=localhost(127.0.0.1)\n"
       << "SlurmctldPort=" << FreePort() << "\n"
       << "SlurmdPort=" << FreePort() << "\n"
       << "SlurmUser=root\nSlurmdUser=root\n"
       << "AuthType=auth/munge\nCredType=cred/munge\n"
       << "AuthInfo=socket=" << munge_socket_ << "\n"
       << "StateSaveLocation=" << dir_ << "/state\n"
       << "SlurmdSpoolDir=" << dir_ << "/spool\n"
       << "SlurmctldPidFile=" << dir_ << "/slurmctld.pid\n"
       << "SlurmdPidFile=" << dir_ << "/slurmd.pid\n"
       << "SlurmctldLogFile=" << dir_ << "/log/slurmctld.log\n"
       << "SlurmdLogFile=" << dir_ << "/log/slurmd.log\n"
       << "SlurmctldDebug=info\nSlurmdDebug=info\n"
       << "ProctrackType=" << (cgroup ? "proctrack/cgroup" : "proctrack/linuxproc") << "\n"
       << "TaskPlugin=" << (cgroup ? "task/cgroup" : "task/none") << "\n"
       << "JobAcctGatherType=jobacct_gather/none\n"
       << "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
       << "ReturnToService=2\nMpiDefault=none\n"
       << "MessageTimeout=5\n"
       << "GresTypes=gpu\n"
       << "NodeName=" << node_ << " NodeHostname=" << host << " NodeAddr=127.0.0.1 CPUs=" << cpus_
       << " RealMemory=4096 Gres=gpu:fake:2 State=UNKNOWN\n"
       << "PartitionName=loom Nodes=" << node_ << " Default=YES MaxTime=INFINITE State=UP\n"
       << "PartitionName=loomgpu Nodes=" << node_ << " MaxTime=INFINITE State=UP\n";
  WriteText(slurm_conf_, conf.str());
  // Two "GPUs" that are /dev/null and /dev/zero (slurmd 22.05 counts a gpu gres
  // without File= as 0 and marks the node invalid); ConstrainDevices is off, so
  // nothing is fenced: the scheduling path (gres requests, partition) is real.
  WriteText(dir_ + "/gres.conf",
            "NodeName=" + node_ + " Name=gpu Type=fake File=/dev/null,/dev/zero\n");
  WriteText(dir_ + "/cgroup.conf", std::string("CgroupPlugin=") +
                                       (Unified() ? "cgroup/v2" : "cgroup/v1") +
                                       "\nCgroupMountpoint=/sys/fs/cgroup\n"
                                       "ConstrainCores=yes\nConstrainRAMSpace=yes\n");

  ::setenv("SLURM_CONF", slurm_conf_.c_str(), 1);  // for the daemons spawned below
  slurmctld_ = Spawn({kSlurmctld, "-D", "-i", "-f", slurm_conf_}, dir_ + "/log/slurmctld.out");
  slurmd_ = Spawn({kSlurmd, "-D", "-N", node_, "-f", slurm_conf_}, dir_ + "/log/slurmd.out");
  ::unsetenv("SLURM_CONF");
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::string state;
  while (std::chrono::steady_clock::now() < deadline) {
    if (slurmctld_ < 0 || slurmd_ < 0 || Exited(slurmctld_) || Exited(slurmd_)) break;
    state = CommandOutput("SLURM_CONF=" + ShellQuote(slurm_conf_) + " " + kSinfo +
                          " --noheader --format=%T");
    if (state == "idle\n") return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  error_ = "slurm did not come up (sinfo: " + state +
           ")\nslurmctld: " + ReadText(dir_ + "/log/slurmctld.out") +
           ReadText(dir_ + "/log/slurmctld.log") +
           "\nslurmd: " + ReadText(dir_ + "/log/slurmd.out") + ReadText(dir_ + "/log/slurmd.log");
  Stop();
  return false;
}

void SlurmCluster::StopController() { StopDaemon(slurmctld_); }

bool SlurmCluster::StartController() {
  if (slurmctld_ > 0) return true;
  ::setenv("SLURM_CONF", slurm_conf_.c_str(), 1);
  slurmctld_ = Spawn({kSlurmctld, "-D", "-f", slurm_conf_}, dir_ + "/log/slurmctld.out");
  ::unsetenv("SLURM_CONF");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::string state;
  while (std::chrono::steady_clock::now() < deadline) {
    if (slurmctld_ < 0 || Exited(slurmctld_)) break;
    state = CommandOutput("SLURM_CONF=" + ShellQuote(slurm_conf_) + " " + kSinfo +
                          " --noheader --format=%T");
    if (!state.empty() && state.find("down") == std::string::npos &&
        state.find("error") == std::string::npos)
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  error_ = "slurmctld did not come back (sinfo: " + state +
           ")\nslurmctld: " + ReadText(dir_ + "/log/slurmctld.log");
  return false;
}

void SlurmCluster::Stop() {
  StopDaemon(slurmctld_);
  StopDaemon(slurmd_);
  KillLeftovers();
  StopDaemon(munged_);
}

// Kills what is left in the node's cgroups (slurmstepd and whatever a step
// started) and removes those cgroups, deepest first.
void SlurmCluster::KillLeftovers() {
  if (node_.empty()) return;
  namespace fs = std::filesystem;
  for (int round = 0; round < 50; ++round) {
    bool any = false;
    for (const auto& root : CgroupRoots()) {
      std::string top = root + "/slurm_" + node_;
      std::error_code ec;
      if (!fs::exists(top, ec)) continue;
      std::vector<std::string> dirs = {top};
      for (auto it = fs::recursive_directory_iterator(top, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_directory(ec)) dirs.push_back(it->path().string());
      }
      std::sort(dirs.begin(), dirs.end(),
                [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
      for (const auto& d : dirs) {
        std::istringstream procs(ReadText(d + "/cgroup.procs"));
        pid_t pid;
        while (procs >> pid) {
          ::kill(pid, SIGKILL);
          any = true;
        }
        if (::rmdir(d.c_str()) != 0 && errno != ENOENT) any = true;
      }
    }
    if (!any) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace loom::testing
