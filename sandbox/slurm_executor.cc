// SlurmExecutor: each run is a job step in a long-lived allocation.
//
// The allocations (`salloc --no-shell`, one node, a CPU and memory_per_step_mb per
// concurrent step; warm_allocations of them) are made at start and made again
// when a step fails because one is gone, or when one is too near its time limit
// for the next step (then the old one is released after its last step). Each run
// goes to the least busy allocation. Each Run() spawns `srun --jobid=J --overlap -n1 -c1 --mem=M
// --export=NONE -- loom-sandbox-runner`, writes the request on srun's stdin and
// reads the runner's JSON lines from its stdout (sandbox/internal/wire.h) while
// polling the cancel flag and two deadlines: the step must start (its first line)
// within start_timeout, and end within the run's wall time plus a margin; the
// runner enforces the wall time itself, since Slurm's step limits are whole
// minutes. The Slurm commands are spawned with an environment of PATH and
// SLURM_CONF only, so nothing of the daemon's environment reaches them.
//
// What comes back is the runner's outcome or error, unchanged. When no outcome
// came (srun failed, the step was killed, the node died), the run is an
// Unavailable error with Slurm's message: never an invented outcome, so a run that
// did not happen is never reported as passed. A step that never started is tried
// again with backoff (in a new allocation when the old one is gone), up to
// start_attempts; then the run goes to the fallback executor if there is one, else
// it is an Unavailable error that says the pool is down. A step that started and
// was lost is never run again.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "common/json.h"
#include "common/log.h"
#include "common/mutex.h"
#include "common/posix.h"
#include "sandbox/executor.h"
#include "sandbox/internal/wire.h"

namespace loom::sandbox {
namespace {

using Clock = std::chrono::steady_clock;

// A spawned Slurm command with pipes on its stdin, stdout and stderr.
struct Child {
  pid_t pid = -1;
  UniqueFd in, out, err;
};

Result<Child> SpawnChild(const std::vector<std::string>& argv,
                         const std::vector<std::string>& env) {
  std::array<int, 2> in{}, out{}, err{};
  if (pipe2(in.data(), O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe2");
  UniqueFd in_r(in[0]), in_w(in[1]);
  if (pipe2(out.data(), O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe2");
  UniqueFd out_r(out[0]), out_w(out[1]);
  if (pipe2(err.data(), O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe2");
  UniqueFd err_r(err[0]), err_w(err[1]);
  std::vector<char*> args, envp;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_r.get(), 0);
  posix_spawn_file_actions_adddup2(&fa, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, err_w.get(), 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  Child child;
  int rc = posix_spawn(&child.pid, args[0], &fa, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return Status::FromErrno(rc, "starting " + argv[0]);
  child.in = std::move(in_w);
  child.out = std::move(out_r);
  child.err = std::move(err_r);
  for (int fd : {child.in.get(), child.out.get(), child.err.get()}) {
    fcntl(fd, F_SETFL, O_NONBLOCK);
  }
  return child;
}

// What a finished command left.
struct Finished {
  int wait_status = 0;
  std::string out, err;
  bool timed_out = false;
};

// Feeds `input` to the child and collects its output until it exits, calling
// `tick` every 20 ms with what was read so far (a true return kills the child).
// With kKeepOpen the child's stdin stays open after the input (tick may close it,
// Child::in.Reset()); with kClose it is closed once the input is written. Kills the
// child (SIGKILL) at `deadline`.
enum class Stdin { kClose, kKeepOpen };
Finished Supervise(Child& child, const std::string& input, Stdin after_input,
                   Clock::time_point deadline,
                   const std::function<bool(const std::string& out)>& tick) {
  Finished f;
  size_t written = 0;
  if (input.empty() && after_input == Stdin::kClose) child.in.Reset();
  constexpr size_t kMaxCapture = size_t{256} << 20;
  bool out_open = true, err_open = true;
  while (out_open || err_open) {
    if (Clock::now() >= deadline) {
      f.timed_out = true;
      kill(child.pid, SIGKILL);
      break;
    }
    if (tick && tick(f.out)) {
      kill(child.pid, SIGKILL);
      break;
    }
    struct pollfd pfds[3];
    int n = 0, in_idx = -1, out_idx = -1, err_idx = -1;
    if (child.in.valid() && written < input.size()) {
      in_idx = n;
      pfds[n++] = {child.in.get(), POLLOUT, 0};
    }
    if (out_open) {
      out_idx = n;
      pfds[n++] = {child.out.get(), POLLIN, 0};
    }
    if (err_open) {
      err_idx = n;
      pfds[n++] = {child.err.get(), POLLIN, 0};
    }
    int rc = poll(pfds, static_cast<nfds_t>(n), 20);
    if (rc <= 0) continue;
    if (in_idx >= 0 && pfds[in_idx].revents != 0) {
      ssize_t w = write(child.in.get(), input.data() + written, input.size() - written);
      if (w > 0) written += static_cast<size_t>(w);
      if (w < 0 && errno != EAGAIN && errno != EINTR) {
        child.in.Reset();
      } else if (written == input.size() && after_input == Stdin::kClose) {
        child.in.Reset();
      }
    }
    for (auto [idx, fd, text, open] : {std::tuple{out_idx, child.out.get(), &f.out, &out_open},
                                       std::tuple{err_idx, child.err.get(), &f.err, &err_open}}) {
      if (idx < 0 || pfds[idx].revents == 0) continue;
      char buf[65536];
      ssize_t r = read(fd, buf, sizeof buf);
      if (r > 0 && text->size() < kMaxCapture) text->append(buf, static_cast<size_t>(r));
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) *open = false;
    }
  }
  while (waitpid(child.pid, &f.wait_status, 0) < 0 && errno == EINTR) {
  }
  return f;
}

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s.size() > 2000 ? s.substr(0, 2000) : s;
}

class SlurmExecutor final : public Executor {
 public:
  explicit SlurmExecutor(SlurmOptions options) : options_(std::move(options)) {
    std::string bin = options_.slurm_bin_dir.empty() ? "/usr/bin" : options_.slurm_bin_dir;
    salloc_ = bin + "/salloc";
    srun_ = bin + "/srun";
    scancel_ = bin + "/scancel";
    squeue_ = bin + "/squeue";
    env_ = {"PATH=/usr/bin:/bin"};
    if (!options_.slurm_conf.empty()) env_.push_back("SLURM_CONF=" + options_.slurm_conf);
  }

  ~SlurmExecutor() override {
    MutexLock lock(&mu_);
    for (const auto* list : {&allocations_, &retiring_}) {
      for (const Allocation& a : *list) {
        if (!a.job.empty()) Command({scancel_, a.job}, std::chrono::seconds(10));
      }
    }
  }

  // Makes the warm allocations: the executor is only handed out once Slurm works
  // (one allocation at least; the others are made when a run needs them).
  Status Start() {
    MutexLock lock(&mu_);
    allocations_.resize(std::max<uint32_t>(1, options_.warm_allocations));
    Status first = Status::Ok();
    for (size_t i = 0; i < allocations_.size(); ++i) {
      Status s = Allocate(i);
      if (i == 0) first = s;
      if (!s.ok()) break;
    }
    return first;
  }

  Result<Outcome> Run(const RunSpec& spec) override {
    if (spec.argv.empty() || spec.argv[0].empty()) {
      return Status::InvalidArgument("no command to run");
    }
    if (spec.gpus) LOOM_RETURN_IF_ERROR(CheckGpus(*spec.gpus));
    StepSlot slot(this);
    // Slurm's fence for the step, in whole minutes; an allocation with less time
    // left than that takes no new step.
    const auto step_minutes = std::chrono::minutes(
        std::chrono::duration_cast<std::chrono::minutes>(spec.limits.wall_time).count() + 2);
    internal::RunnerRequest request{spec, options_.bwrap};
    request.spec.cancel = nullptr;
    std::string input = DumpJson(internal::EncodeRequest(request));
    const auto first_try = Clock::now();
    const uint32_t attempts = std::max<uint32_t>(1, options_.start_attempts);
    auto backoff = options_.start_backoff;
    Status last = Status::Unavailable("no attempt made");
    for (uint32_t attempt = 1;; ++attempt) {
      if (spec.gpus) {
        // A job of its own in the GPU partition, for the grant's time at most.
        StepResult step = RunStep("", spec, input, std::min(step_minutes, spec.gpus->time_left));
        if (step.done) return std::move(step.result);
        last = step.result.status();
        if (attempt >= attempts) break;
        if (WaitOrCancelled(spec, backoff)) return CancelledBeforeStart(first_try);
        backoff *= 2;
        continue;
      }
      Result<std::string> job = LeaseAllocation(step_minutes);
      if (job.ok()) {
        StepResult step = RunStep(*job, spec, input, step_minutes);
        ReleaseAllocation(*job);
        if (step.done) return std::move(step.result);
        last = step.result.status();
        // The step never started. When the allocation is gone (time limit, node
        // failure, scancel), the next try makes a new one at once.
        if (!AllocationAlive(*job)) {
          LOOM_LOG(kWarning) << "slurm: allocation " << *job << " is gone; allocating again";
          Forget(*job);
          if (attempt < attempts) continue;
        }
      } else {
        last = job.status();
      }
      if (attempt >= attempts) break;
      LOOM_LOG(kWarning) << "slurm: a step could not start (try " << attempt << " of " << attempts
                         << "): " << last.message() << "; trying again in " << backoff.count()
                         << " ms";
      if (WaitOrCancelled(spec, backoff)) return CancelledBeforeStart(first_try);
      backoff *= 2;
    }
    const auto waited_s =
        std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - first_try).count();
    std::string down = "slurm: the pool is down: no step could start in " +
                       std::to_string(attempts) + " tries over " + std::to_string(waited_s) +
                       " s; last: " + last.message();
    // A GPU run never falls back: this machine schedules no GPUs.
    if (options_.fallback && !spec.gpus) {
      LOOM_LOG(kWarning) << down << "; running it on this machine (the local fallback)";
      return options_.fallback->Run(spec);
    }
    return Status::Unavailable(down);
  }

 private:
  // Holds one of the concurrent_steps places for the lifetime of a run.
  class StepSlot {
   public:
    explicit StepSlot(SlurmExecutor* e) : e_(e) {
      MutexLock lock(&e_->slots_mu_);
      while (e_->running_ >= e_->TotalSteps()) {
        lock.Wait(&e_->slot_freed_);
      }
      ++e_->running_;
    }
    ~StepSlot() {
      MutexLock lock(&e_->slots_mu_);
      --e_->running_;
      e_->slot_freed_.notify_one();
    }
    StepSlot(const StepSlot&) = delete;
    StepSlot& operator=(const StepSlot&) = delete;

   private:
    SlurmExecutor* e_;
  };

  struct StepResult {
    bool done = false;  // false: the step never started, and `result` says why
    Result<Outcome> result = Status::Internal("unset");
  };

  Finished Command(const std::vector<std::string>& argv, std::chrono::seconds timeout) const {
    auto child = SpawnChild(argv, env_);
    if (!child.ok()) {
      Finished f;
      f.wait_status = 127 << 8;
      f.err = child.status().message();
      return f;
    }
    return Supervise(*child, "", Stdin::kClose, Clock::now() + timeout, nullptr);
  }

  uint32_t TotalSteps() const {
    return std::max<uint32_t>(1, options_.concurrent_steps) *
           std::max<uint32_t>(1, options_.warm_allocations);
  }

  // salloc --no-shell into allocations_[index]; the job id from its "Granted" line.
  Status Allocate(size_t index) REQUIRES(mu_) {
    const SlurmOptions& o = options_;
    uint32_t steps = std::max<uint32_t>(1, o.concurrent_steps);
    std::vector<std::string> argv = {salloc_,
                                     "--no-shell",
                                     "--job-name=loom-sandbox",
                                     "--nodes=1",
                                     "--ntasks=1",
                                     "--cpus-per-task=" + std::to_string(steps),
                                     "--mem=" + std::to_string(o.memory_per_step_mb * steps),
                                     "--time=" + std::to_string(o.allocation_minutes),
                                     "--immediate=" + std::to_string(o.start_timeout.count())};
    if (!o.partition.empty()) argv.push_back("--partition=" + o.partition);
    if (!o.account.empty()) argv.push_back("--account=" + o.account);
    Finished f = Command(argv, o.start_timeout + std::chrono::seconds(10));
    static const std::regex kGranted("Granted job allocation ([0-9]+)");
    std::smatch m;
    if (!f.timed_out && std::regex_search(f.err, m, kGranted)) {
      allocations_[index] = Allocation{m[1], Clock::now(), 0};
      LOOM_LOG(kInfo) << "slurm: allocation " << allocations_[index].job << " granted ("
                      << index + 1 << " of " << allocations_.size() << ")";
      return Status::Ok();
    }
    return Status::Unavailable(
        "slurm: no allocation (" + salloc_ +
        "): " + (f.timed_out ? "salloc did not answer in time" : Trimmed(f.err + f.out)) +
        "; check that slurmctld runs and the partition has a free node (sinfo)");
  }

  // An allocation with room for one more step and at least `step_time` left,
  // the least busy one (steps spread over the warm allocations); one is made
  // when none has room. An allocation too close to its end takes no new step: a
  // new one takes its place, and it is released once its last step is done, so
  // that Slurm's time limit never cuts a step short. The caller gives the lease
  // back with ReleaseAllocation.
  Result<std::string> LeaseAllocation(std::chrono::minutes step_time) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    const uint32_t per = std::max<uint32_t>(1, options_.concurrent_steps);
    const auto now = Clock::now();
    const auto lifetime = std::chrono::minutes(options_.allocation_minutes);
    std::optional<size_t> best, empty;
    for (size_t i = 0; i < allocations_.size(); ++i) {
      Allocation& a = allocations_[i];
      const bool near_end = lifetime >= step_time && a.granted + lifetime - now < step_time;
      if (!a.job.empty() && near_end) {
        LOOM_LOG(kInfo) << "slurm: allocation " << a.job << " is near its time limit; replacing it";
        if (a.running == 0) {
          Command({scancel_, a.job}, std::chrono::seconds(10));
        } else {
          retiring_.push_back(a);
        }
        a = Allocation{};
      }
      if (a.job.empty()) {
        if (!empty) empty = i;
        continue;
      }
      if (a.running >= per) continue;
      if (!best || a.running < allocations_[*best].running) best = i;
    }
    if (!best) {
      if (!empty) return Status::Unavailable("slurm: every allocation is busy or near its end");
      LOOM_RETURN_IF_ERROR(Allocate(*empty));
      best = empty;
    }
    ++allocations_[*best].running;
    return allocations_[*best].job;
  }

  void ReleaseAllocation(const std::string& job) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    for (Allocation& a : allocations_) {
      if (a.job == job && a.running > 0) --a.running;
    }
    for (auto it = retiring_.begin(); it != retiring_.end(); ++it) {
      if (it->job != job) continue;
      if (it->running > 0) --it->running;
      if (it->running == 0) {
        Command({scancel_, job}, std::chrono::seconds(10));
        retiring_.erase(it);
      }
      break;
    }
  }

  void Forget(const std::string& job) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    for (Allocation& a : allocations_) {
      if (a.job == job) {
        Command({scancel_, job}, std::chrono::seconds(10));
        a = Allocation{};
      }
    }
  }

  // True unless squeue says the job is not running (an unreachable controller
  // counts as alive: a new allocation would not help).
  bool AllocationAlive(const std::string& job) const {
    Finished f =
        Command({squeue_, "--noheader", "--jobs=" + job, "--format=%T"}, std::chrono::seconds(20));
    if (f.timed_out) return true;
    if (f.err.find("Invalid job id") != std::string::npos) return false;
    if (!WIFEXITED(f.wait_status) || WEXITSTATUS(f.wait_status) != 0) return true;
    return Trimmed(f.out) == "RUNNING";
  }

  static Status CheckGpus(const RunSpec::Gpus& gpus) {
    static const std::regex kType("[A-Za-z0-9_-]{1,64}");
    if (!std::regex_match(gpus.type, kType) || gpus.count < 1 || gpus.count > 64 ||
        gpus.time_left.count() < 1) {
      return Status::InvalidArgument(
          "slurm: a GPU run needs a type of letters, digits, '_' or '-', a count of 1 to 64 and "
          "a minute or more left (got '" +
          gpus.type + "', " + std::to_string(gpus.count) + ", " +
          std::to_string(gpus.time_left.count()) + " min)");
    }
    return Status::Ok();
  }

  // One step in `job`, limited by Slurm to `step_minutes` (the runner's exact
  // limit is inside it). An empty `job`: a job of its own for a GPU run
  // (spec.gpus), in the GPU partition with its gres.
  StepResult RunStep(const std::string& job, const RunSpec& spec, const std::string& input,
                     std::chrono::minutes step_minutes) {
    const SlurmOptions& o = options_;
    std::vector<std::string> argv = {srun_};
    if (job.empty()) {
      const std::string& partition = o.gpu_partition.empty() ? o.partition : o.gpu_partition;
      if (!partition.empty()) argv.push_back("--partition=" + partition);
      if (!o.account.empty()) argv.push_back("--account=" + o.account);
      argv.push_back("--gres=gpu:" + spec.gpus->type + ":" + std::to_string(spec.gpus->count));
      argv.push_back("--immediate=" + std::to_string(o.start_timeout.count()));
    } else {
      argv.insert(argv.end(), {"--jobid=" + job, "--overlap"});
    }
    argv.insert(argv.end(),
                {"--nodes=1", "--ntasks=1", "--cpus-per-task=1",
                 "--mem=" + std::to_string(o.memory_per_step_mb),
                 "--time=" + std::to_string(step_minutes.count()), "--export=NONE", "--chdir=/",
                 job.empty() ? "--job-name=loom-gpu-run" : "--job-name=loom-run", "--quiet", "--",
                 o.runner_path});
    StepResult result;
    auto child = SpawnChild(argv, env_);
    if (!child.ok()) {
      result.done = true;
      result.result = Status::Unavailable("slurm: " + child.status().message());
      return result;
    }
    const auto start = Clock::now();
    const auto deadline =
        start + spec.limits.wall_time + o.start_timeout + std::chrono::seconds(30);
    std::string step_id;
    bool cancelled = false, killed = false, start_timed_out = false;
    Clock::time_point cancelled_at;
    constexpr auto kCancelGrace = std::chrono::seconds(10);
    auto tick = [&](const std::string& out) {
      if (step_id.empty()) {
        auto nl = out.find('\n');
        if (nl != std::string::npos) {
          auto line = ParseJson(std::string_view(out).substr(0, nl));
          if (line.ok() && line->is_object() && line->contains("step") &&
              (*line)["step"].is_string()) {
            step_id = (*line)["step"].get<std::string>();
            if (step_id.empty()) step_id = "?";
          }
        } else if (Clock::now() - start > o.start_timeout) {
          start_timed_out = true;
          return true;
        }
      }
      if (!cancelled && spec.cancel != nullptr && spec.cancel->load()) {
        cancelled = true;
        cancelled_at = Clock::now();
        CancelStep(*child, step_id);
      } else if (cancelled && !killed && Clock::now() - cancelled_at > kCancelGrace &&
                 !step_id.empty() && step_id != "?") {
        killed = true;  // the runner did not stop: Slurm kills the whole step
        Command({scancel_, step_id}, std::chrono::seconds(10));
      }
      return false;
    };
    Finished f = Supervise(*child, input + "\n", Stdin::kKeepOpen, deadline, tick);
    if (f.timed_out && !step_id.empty() && step_id != "?") {
      Command({scancel_, step_id}, std::chrono::seconds(10));
    }
    // The runner's last line: its outcome or its error.
    std::string_view out = f.out;
    while (!out.empty() && out.back() == '\n') out.remove_suffix(1);
    auto last =
        ParseJson(out.substr(out.rfind('\n') == std::string_view::npos ? 0 : out.rfind('\n') + 1));
    if (last.ok() && last->is_object()) {
      if (last->contains("outcome")) {
        result.done = true;
        auto outcome = internal::DecodeOutcome((*last)["outcome"]);
        if (outcome.ok()) {
          if (cancelled) outcome->limit = LimitHit::kCancelled;
          // As the caller saw it: Slurm's step start-up included.
          outcome->wall_ms = std::max<int64_t>(
              outcome->wall_ms,
              std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
        }
        result.result =
            outcome.ok()
                ? std::move(outcome)
                : Result<Outcome>(Status::Internal("slurm: the runner's outcome is malformed: " +
                                                   outcome.status().message()));
        return result;
      }
      if (last->contains("error")) {
        result.done = true;
        result.result = internal::DecodeError((*last)["error"]);
        return result;
      }
    }
    std::string why = f.timed_out       ? "the step did not end in its wall time plus margin"
                      : start_timed_out ? "the step did not start within " +
                                              std::to_string(o.start_timeout.count()) + " s"
                      : WIFSIGNALED(f.wait_status)
                          ? "srun was killed by signal " + std::to_string(WTERMSIG(f.wait_status))
                          : "srun exited " + std::to_string(WEXITSTATUS(f.wait_status));
    std::string message = "slurm: step in " +
                          (job.empty() ? std::string("a GPU job") : "job " + job) +
                          " gave no outcome (" + why + "): " + Trimmed(f.err);
    if (cancelled) {
      // Cancelled before the runner could answer: the command did not finish.
      result.done = true;
      Outcome o_cancelled;
      o_cancelled.signal = SIGKILL;
      o_cancelled.limit = LimitHit::kCancelled;
      o_cancelled.wall_ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
      result.result = std::move(o_cancelled);
      return result;
    }
    result.done = !step_id.empty();
    result.result = Status::Unavailable(message);
    return result;
  }

  // Sleeps `wait`, polling the run's cancel flag; true when it was set.
  static bool WaitOrCancelled(const RunSpec& spec, std::chrono::milliseconds wait) {
    const auto until = Clock::now() + wait;
    while (Clock::now() < until) {
      if (spec.cancel != nullptr && spec.cancel->load()) return true;
      std::this_thread::sleep_for(
          std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(20)));
    }
    return spec.cancel != nullptr && spec.cancel->load();
  }

  // The outcome of a run cancelled before any step started: nothing ran.
  static Outcome CancelledBeforeStart(Clock::time_point since) {
    Outcome o;
    o.signal = SIGKILL;
    o.limit = LimitHit::kCancelled;
    o.wall_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since).count();
    return o;
  }

  // Closes the step's stdin: the runner takes the EOF as a cancel, kills the
  // payload and reports "cancelled" (a signal to the step would reach the payload
  // too, and race with the runner). Before the step started, interrupts srun,
  // which cancels a step it made.
  void CancelStep(Child& child, const std::string& step_id) const {
    child.in.Reset();
    if (step_id.empty()) {
      kill(child.pid, SIGINT);
      usleep(100 * 1000);
      kill(child.pid, SIGINT);
    }
  }

  const SlurmOptions options_;
  std::string salloc_, srun_, scancel_, squeue_;
  std::vector<std::string> env_;
  // One of the warm allocations: its job id ("" until made, or after it was
  // lost), when it was granted, and the steps running in it now.
  struct Allocation {
    std::string job;
    Clock::time_point granted;
    uint32_t running = 0;
  };
  Mutex mu_;  // held while an allocation is made: runs wait for it
  std::vector<Allocation> allocations_ GUARDED_BY(mu_);
  // Replaced near their end, with steps still running: released after the last.
  std::vector<Allocation> retiring_ GUARDED_BY(mu_);
  Mutex slots_mu_;
  uint32_t running_ GUARDED_BY(slots_mu_) = 0;
  std::condition_variable slot_freed_;
};

}  // namespace

Result<std::unique_ptr<Executor>> MakeSlurmExecutor(const SlurmOptions& options) {
  if (options.runner_path.empty() || options.runner_path[0] != '/') {
    return Status::InvalidArgument("slurm: runner_path must be an absolute path");
  }
  if (options.memory_per_step_mb == 0 || options.allocation_minutes == 0 ||
      options.start_timeout.count() <= 0) {
    return Status::InvalidArgument("slurm: memory, allocation time and start timeout must be > 0");
  }
  // Slurm's commands retry a missing configuration file for a minute.
  if (!options.slurm_conf.empty() && access(options.slurm_conf.c_str(), R_OK) != 0) {
    return Status::FailedPrecondition("slurm: cannot read the configuration " + options.slurm_conf +
                                      ": " + std::strerror(errno));
  }
  auto executor = std::make_unique<SlurmExecutor>(options);
  if (Status started = executor->Start(); !started.ok()) {
    if (!options.fallback) return started;
    LOOM_LOG(kWarning) << started.message()
                       << "; runs go to the local fallback until Slurm grants an allocation";
  }
  return std::unique_ptr<Executor>(std::move(executor));
}

}  // namespace loom::sandbox
