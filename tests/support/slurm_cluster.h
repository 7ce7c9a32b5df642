// A real single-node Slurm cluster on localhost for tests of the Slurm executor:
// munged with its own key and socket, slurmctld and slurmd from Debian's
// slurm-wlm (22.05), started directly (no systemd) with configurations generated
// into the test's directory. The node is this machine under a name of its own
// ("loomtest<pid>"), its CPUs, 4 GiB and two "GPUs" that are /dev/null and
// /dev/zero (gres gpu:fake:2: the scheduling path is real, no GPU is there); two partitions on it, "loom" (the default) and "loomgpu". Processes are
// tracked and limited with Slurm's cgroup plugin (cgroup/v1 on a hybrid host,
// cgroup/v2 on a unified one) when /sys/fs/cgroup is writable, else
// proctrack/linuxproc (Mode() says which). Stop() ends the daemons, every process
// left in the node's cgroups (slurmstepd, a step's payload) and removes the
// cgroups Slurm made.
//
// Needs root (slurmd starts steps as the submitting user) and the packages that
// ./scripts/setup.sh --tests installs (slurm-wlm, munge). Missing() names what is
// absent, for a GTEST_SKIP; a cluster that is installed but does not come up is a
// test failure with the daemons' logs in error(). Under CI=true nothing may be
// missing: SkipOrFail() fails there instead of skipping.
#pragma once

#include <sys/types.h>

#include <string>

namespace loom::testing {

class SlurmCluster {
 public:
  // Empty when the daemons can be started here; else what is missing.
  static std::string Missing();

  SlurmCluster() = default;
  ~SlurmCluster() { Stop(); }
  SlurmCluster(const SlurmCluster&) = delete;
  SlurmCluster& operator=(const SlurmCluster&) = delete;

  // Starts munged, slurmctld and slurmd under `dir` (which must exist and be
  // searchable by all) and waits until the node is idle. False, with error(), when
  // the cluster did not come up.
  bool Start(const std::string& dir);
  // Stops slurmctld only (for tests of an unreachable controller).
  void StopController();
  // Starts slurmctld again after StopController(); it recovers its saved state
  // (running allocations included). False, with error(), when it does not answer.
  bool StartController();
  void Stop();

  // SLURM_CONF for the commands (srun, salloc, ...).
  const std::string& slurm_conf() const { return slurm_conf_; }
  const std::string& munge_socket() const { return munge_socket_; }
  const std::string& node() const { return node_; }
  // "cgroup" or "linuxproc": how Slurm tracks a step's processes here.
  const std::string& mode() const { return mode_; }
  const std::string& error() const { return error_; }
  int cpus() const { return cpus_; }

 private:
  void KillLeftovers();

  std::string dir_, slurm_conf_, munge_socket_, node_, mode_, error_;
  int cpus_ = 1;
  pid_t munged_ = -1, slurmctld_ = -1, slurmd_ = -1;
};

}  // namespace loom::testing
