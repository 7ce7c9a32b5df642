// The sandbox's public interface: run one untrusted command (a test suite an agent
// just changed) in isolation, under limits, and report precisely what happened.
//
//   LOOM_ASSIGN_OR_RETURN(auto executor, sandbox::MakeBwrapExecutor({}));
//   sandbox::RunSpec spec;
//   spec.argv = {"make", "test"};
//   spec.worktree = "/var/lib/loom/worktrees/42";
//   LOOM_ASSIGN_OR_RETURN(sandbox::Outcome outcome, executor->Run(spec));
//
// A run that cannot be sandboxed is an error, never a silent unsandboxed run.
// How the isolation is built (bubblewrap, seccomp, rlimits, cgroups) is private to
// sandbox/; see docs/sandbox.md.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/json.h"
#include "common/status.h"

namespace loom::sandbox {

enum class Network {
  kNone,      // no sockets but AF_UNIX; nothing of the host's network is reachable
  kLoopback,  // a private loopback interface (not the host's), TCP/UDP on it allowed
};

// Every limit is always applied; 0 is not "unlimited". Defaults suit a test suite.
struct Limits {
  std::chrono::milliseconds wall_time{std::chrono::minutes(10)};
  std::chrono::seconds cpu_time{std::chrono::minutes(10)};  // per process (RLIMIT_CPU)
  uint64_t memory_bytes = uint64_t{4} << 30;  // cgroup memory.max, else RLIMIT_AS per process
  uint32_t max_processes = 512;               // processes + threads (pids.max / RLIMIT_NPROC)
  uint32_t max_open_files = 1024;             // per process (RLIMIT_NOFILE)
  uint64_t max_file_size_bytes = uint64_t{1} << 30;  // per file (RLIMIT_FSIZE)
  uint64_t max_output_bytes = uint64_t{4} << 20;     // stdout + stderr together
  uint64_t tmp_size_bytes = uint64_t{512} << 20;     // /tmp and /dev/shm, each
  uint32_t cpu_percent = 100;  // cgroup cpu.max, 100 = one CPU; only with the cpu controller
};

struct RunSpec {
  // The command; argv[0] is looked up in PATH inside the sandbox. REQUIRES: non-empty.
  std::vector<std::string> argv;
  // Absolute path of an existing directory: the only writable path, mounted at the
  // same path, and the working directory. Its `.git` (directory or file) is read-only.
  // Refused: `/`, top-level directories (/tmp, /home, ...), system trees (/usr, /etc,
  // /var, /proc, /sys, /dev, /run, /boot, ...; strictly below /var/tmp and
  // /var/lib/loom is allowed) and, for a root caller, another user's directory.
  std::string worktree;
  // Extra host paths bound read-only at the same path. Refused: anything under
  // /run, /var, /home, /root, /sys, /proc, /dev, /tmp, or inside the worktree.
  std::vector<std::string> read_only_paths;
  // The payload's whole environment: nothing of the caller's is inherited.
  std::vector<std::pair<std::string, std::string>> env;
  Limits limits;
  Network network = Network::kNone;
  // When set, polled while the command runs (at least every 20 ms): once true,
  // the run is killed as a timeout would be and its outcome says `cancelled`.
  // REQUIRES: outlives the run. Null: the run cannot be cancelled.
  const std::atomic<bool>* cancel = nullptr;
  // GPUs a person granted the task: the Slurm executor runs this run as a job of
  // its own in SlurmOptions::gpu_partition with `--gres=gpu:<type>:<count>`, for at
  // most `time_left` (the grant's remaining time). The local executor schedules no
  // GPUs and ignores it. type: letters, digits, '_' and '-'; count 1..64.
  struct Gpus {
    std::string type;
    uint32_t count = 0;
    std::chrono::minutes time_left{0};
  };
  std::optional<Gpus> gpus;
};

// Which limit ended the run, if any.
// kCancelled: not a limit, but the run's RunSpec::cancel was set.
enum class LimitHit { kNone, kTimeout, kMemory, kPids, kOutput, kFileSize, kCpu, kCancelled };
std::string_view LimitHitName(LimitHit limit);  // "none", "timeout", "memory", ..., "cancelled"

struct Outcome {
  // Exactly one of these is set: the exit status, or the signal that ended the
  // command. (bwrap reports a signal as 128+N, as shells do, so `exit 137` reads
  // as SIGKILL.) A command that could not be executed exits 127.
  std::optional<int> exit_code;
  std::optional<int> signal;
  LimitHit limit = LimitHit::kNone;
  int64_t wall_ms = 0;
  int64_t cpu_ms = 0;              // user + system, all processes of the run
  uint64_t peak_memory_bytes = 0;  // cgroup memory.peak, else the largest process's RSS
  std::string stdout_data;         // raw bytes, at most Limits::max_output_bytes in all
  std::string stderr_data;
  bool stdout_truncated = false;
  bool stderr_truncated = false;

  // True when the command exited 0 and no limit ended it.
  bool Succeeded() const { return exit_code == 0 && limit == LimitHit::kNone; }
  // {"exit_code":0|null,"signal":9|null,"limit":"timeout"|null,"wall_ms":..,"cpu_ms":..,
  //  "peak_memory_bytes":..,"stdout":"..","stderr":"..","stdout_truncated":false,
  //  "stderr_truncated":false}. Output that is not UTF-8 has its bad bytes replaced by
  //  U+FFFD and "stdout_lossy"/"stderr_lossy" set.
  Json ToJson() const;
};

// Runs commands in a sandbox. Implementations say whether they are thread-safe.
class Executor {
 public:
  virtual ~Executor() = default;
  // Blocks until the command and everything it started are gone. An error means the
  // command was not run sandboxed (bad spec, host cannot sandbox); a command that
  // fails or hits a limit is an Outcome, not an error.
  virtual Result<Outcome> Run(const RunSpec& spec) = 0;
};

struct BwrapOptions {
  std::string bwrap_path = "/usr/bin/bwrap";
  // When the caller is root, the sandbox runs as this unprivileged uid/gid (give each
  // executor slot its own: RLIMIT_NPROC and file ownership are per uid). The worktree
  // is lent to it for the run: what its owner (root, or this uid) owns becomes this
  // uid's, and after the run everything this uid owns in it, the payload's new files
  // included, goes back to the owner the worktree root had. `.git` is not touched.
  // Ignored for a non-root caller, whose own uid is used and whose files keep theirs.
  uint32_t run_as_uid = 64000;
  uint32_t run_as_gid = 64000;
  // A cgroup v2 directory delegated to Loom; each run gets a child cgroup there (kill
  // with cgroup.kill; memory.max, pids.max, cpu.max when those controllers are
  // enabled). "auto": /sys/fs/cgroup/unified/loom on a root hybrid host, else none.
  // "none": rlimits and pid-namespace killing only.
  std::string cgroup_parent = "auto";
};

// Checks that this host can sandbox: bwrap present and runnable, user namespaces
// allowed, seccomp available, and a trial run succeeds. The error says what is
// missing and how to fix it.
Status ProbeBwrap(const BwrapOptions& options);

// A bubblewrap executor, after ProbeBwrap succeeded. Thread-safe.
Result<std::unique_ptr<Executor>> MakeBwrapExecutor(const BwrapOptions& options);

// A Slurm executor: each run is a job step (`srun --jobid=J --overlap`) inside one
// of the long-lived allocations that the executor makes (`salloc --no-shell`) and
// makes again when one ended (time limit, node failure, scancel). The step runs
// `runner_path` (loom-sandbox-runner), which runs the command with the bubblewrap
// executor on the node exactly as a local run would; the request goes on the
// step's stdin and the outcome comes back on its stdout (sandbox/internal/wire.h),
// so secrets never travel in an environment (srun runs with --export=NONE and an
// environment of PATH and SLURM_CONF only). The worktree must be at the same path
// on the node (a shared filesystem, or the same machine). RunSpec::cancel cancels
// the step (scancel --signal=TERM J.S, then scancel J.S).
struct SlurmOptions {
  std::string partition;  // empty: the cluster's default partition
  // Where runs with RunSpec::gpus go; empty: `partition`.
  std::string gpu_partition;
  std::string account;  // empty: the user's default account
  // Steps that may run at once through this executor (the allocation's CPUs, one
  // per step); further Run() calls wait for a free one.
  uint32_t concurrent_steps = 4;
  uint64_t memory_per_step_mb = 4096;  // srun --mem; the allocation has this per step
  uint32_t allocation_minutes = 60;    // salloc --time: reallocated when it ends
  // Allocations kept (each of concurrent_steps CPUs, on one node): up to
  // warm_allocations × concurrent_steps runs at once, each step in the least busy
  // allocation. One that ends (time limit, node failure, scancel) is made again
  // when a run needs it; one with less time left than a run's wall time plus two
  // minutes takes no new step, and is replaced, then released after its last.
  uint32_t warm_allocations = 1;
  // How long salloc may wait for the allocation, and a step for its start, before
  // the run is an Unavailable error (the pool is busy or down).
  std::chrono::seconds start_timeout{60};
  // Where salloc, srun, scancel and squeue are; "" means /usr/bin.
  std::string slurm_bin_dir;
  // SLURM_CONF for the Slurm commands; "" means Slurm's default (/etc/slurm/slurm.conf).
  std::string slurm_conf;
  // loom-sandbox-runner on the nodes (absolute path).
  std::string runner_path = "/usr/lib/loom/loom-sandbox-runner";
  // How the runner sandboxes each run on the node (the same as a local executor's).
  BwrapOptions bwrap;
  // A run whose step could not start (slurmctld unreachable, no node to allocate
  // because it is drained or down, srun refused) is tried start_attempts times in
  // all, waiting start_backoff before the second try and twice as long before each
  // next one. A step that started and was lost is never run again: that run is an
  // Unavailable error, whatever the attempts left.
  uint32_t start_attempts = 3;
  std::chrono::milliseconds start_backoff{2000};
  // Where a run goes when its step could not start in start_attempts (the pool is
  // down): null, nowhere (an Unavailable error; the orchestrator parks the task
  // with an `infrastructure` escalation); else this executor runs it (the local
  // bubblewrap one, when the operator allows it: sandbox.slurm_fallback = "local").
  // With a fallback the executor is handed out even when no first allocation is
  // made; each run tries Slurm again first. A GPU run (RunSpec::gpus) never falls
  // back: the local executor has no GPUs to give.
  std::shared_ptr<Executor> fallback;
};

// A Slurm executor, after a first allocation was made (an Unavailable error, with
// Slurm's message, when the cluster cannot be reached or grants nothing in
// start_timeout; without that check when a fallback is set). Thread-safe. The
// allocation is released when it is destroyed. Errors from Run(): Unavailable
// when Slurm failed to run the step — it could not start in start_attempts (the
// pool is down; the message says so, and no fallback is set), or it started and
// was lost (step killed by Slurm, node lost) — the command may or may not have
// started, but its outcome is never invented; the runner's own errors as it
// reported them.
Result<std::unique_ptr<Executor>> MakeSlurmExecutor(const SlurmOptions& options);

// Reads `relative_path` under `worktree` (a report or artifact a run left behind)
// without following any symlink or leaving the worktree (openat2 RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS), at most `max_bytes`. Use this, never a plain open, on
// anything a payload could have planted.
Result<std::string> ReadWorktreeFile(const std::string& worktree, const std::string& relative_path,
                                     size_t max_bytes);

// Takes back a worktree that a root caller's run had lent to the sandbox uid when
// the process died before the run gave it back (BwrapOptions::run_as_uid): every
// entry that uid owns, and the root last, becomes this process's again, set-uid
// bits cleared, no symlink followed, `.git` untouched (common/posix.h ReclaimTree).
// Call it before opening such a worktree again: libgit2 will not open a repository
// another uid owns. Returns how many entries changed owner (0: nothing was lent).
// NotFound when there is no such directory; InvalidArgument for a place no worktree
// may be (CheckWorktreeLocation's rules: `/`, top-level and system directories);
// PermissionDenied when the tree is another uid's and this process is not root.
Result<size_t> ReclaimWorktree(const std::string& worktree);

}  // namespace loom::sandbox
