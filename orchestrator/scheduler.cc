// Agent slots. See scheduler.h.
#include "orchestrator/scheduler.h"

#include <filesystem>

#include "common/json_reader.h"
#include "common/log.h"
#include "common/private_dir.h"
#include "orchestrator/crash_source.h"
#include "orchestrator/observability.h"
#include "orchestrator/repo_policy.h"
#include "orchestrator/verifier.h"
#include "repos/workspace.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

// "Crash on save (order 42)" -> "crash-on-save-order-42", at most 40 characters.
std::string Slug(const std::string& title) {
  std::string out;
  for (unsigned char c : title) {
    if (std::isalnum(c)) {
      out += static_cast<char>(std::tolower(c));
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
    if (out.size() >= 40) break;
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? "task" : out;
}

std::vector<std::string> ShellCommand(const std::string& command) {
  return {"/bin/sh", "-c", command};
}

}  // namespace

Scheduler::Scheduler(TaskStore* store, EscalationStore* escalations, RepoStore* repos,
                     TaskLifecycle* lifecycle, sandbox::Executor* executor,
                     SchedulerOptions options)
    : store_(store),
      escalations_(escalations),
      repos_(repos),
      lifecycle_(lifecycle),
      executor_(executor),
      options_(std::move(options)) {
  llm_ = MakeOpenAiClient(options_.llm);
  if (options_.metrics) llm_ = MeterLlmClient(std::move(llm_), options_.metrics);
  disk_ = std::make_unique<DiskReserve>(options_.data_dir, options_.disk_reserve_bytes);
}

Result<std::unique_ptr<Scheduler>> Scheduler::Start(TaskStore* store, EscalationStore* escalations,
                                                    RepoStore* repos, TaskLifecycle* lifecycle,
                                                    sandbox::Executor* executor,
                                                    SchedulerOptions options) {
  if (options.agents < 1) return Status::InvalidArgument("agents must be at least 1");
  // The sandbox uid passes through worktrees/ and scratch/ to the trees lent to
  // it.
  for (auto [sub, access] : {std::pair{"/worktrees", DirAccess::kSandboxTraverses},
                             std::pair{"/scratch", DirAccess::kSandboxTraverses}}) {
    LOOM_RETURN_IF_ERROR(MakePrivateDir(options.data_dir + sub, access));
  }
  LOOM_ASSIGN_OR_RETURN(int recovered, lifecycle->RecoverInterrupted());
  if (recovered > 0) {
    LOOM_LOG(kInfo) << "requeued " << recovered << " interrupted task(s)";
  }
  std::unique_ptr<Scheduler> s(
      new Scheduler(store, escalations, repos, lifecycle, executor, std::move(options)));
  // Makes the reserve; a disk already full is reported, and each task that
  // starts parks until it has room.
  if (Status full = s->disk_->Check(); !full.ok()) {
    LOOM_LOG(kWarning) << full.message();
  }
  for (int i = 0; i < s->options_.agents; ++i) {
    s->slots_.emplace_back([raw = s.get(), i] { raw->SlotLoop(i); });
  }
  s->triage_ = std::thread([raw = s.get()] { raw->TriageLoop(); });
  return s;
}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::Wake() {
  {
    MutexLock lock(&mu_);
    ++wakes_;
  }
  wake_.notify_all();
}

uint64_t Scheduler::Wakes() {
  MutexLock lock(&mu_);
  return wakes_;
}

void Scheduler::WaitForWake(uint64_t seen) {
  auto deadline = std::chrono::steady_clock::now() + options_.idle_recheck;
  MutexLock lock(&mu_);
  while (wakes_ == seen && !stop_ && lock.WaitUntil(&wake_, deadline)) {
  }
}

void Scheduler::Stop() {
  {
    MutexLock lock(&mu_);  // a waiter between its check of stop_ and its wait sees it
    stop_ = true;
  }
  wake_.notify_all();
  if (triage_.joinable()) triage_.join();
  for (auto& t : slots_) {
    if (t.joinable()) t.join();
  }
}

// One bounded round at a time, each its own transaction, so that the slots'
// writes interleave with a long backlog and each round's tasks are leased at
// once; another round follows at once while the last one moved items.
void Scheduler::TriageLoop() {
  while (!stop_) {
    uint64_t seen = Wakes();  // before triage: a submission during it is not missed
    auto round = store_->TriageBatch();
    if (!round.ok()) {
      LOOM_LOG(kError) << "triage failed: " << round.status().ToString();
    } else {
      if (!round->created.empty()) Wake();
      if (round->unroutable > 0) {
        LOOM_LOG(kInfo) << "triage set " << round->unroutable
                        << " feedback item(s) aside as unroutable (loom feedback list "
                           "--status unroutable)";
      }
      if (round->moved() > 0) continue;
    }
    WaitForWake(seen);
  }
}

void Scheduler::SlotLoop(int slot) {
  while (!stop_) {
    uint64_t seen = Wakes();
    auto leased = lifecycle_->Lease();
    if (!leased.ok()) {
      LOOM_LOG(kError) << "leasing a task failed: " << leased.status().ToString();
    } else if (leased->has_value()) {
      ++busy_;
      RunTask(slot, **leased);
      lifecycle_->Release((*leased)->id);
      --busy_;
      continue;
    }
    WaitForWake(seen);
  }
}

// True once a person approved an approval escalation of this task (the agent's
// edits of protected paths).
Result<bool> Scheduler::ProtectedEditsApproved(int64_t task_id) {
  LOOM_ASSIGN_OR_RETURN(std::vector<Escalation> mine, escalations_->ForTask(task_id));
  for (const auto& e : mine) {
    if (e.kind == "approval" && BoolOr(e.answer, "approved", false)) {
      return true;
    }
  }
  return false;
}

void Scheduler::RunTask(int slot, const Task& task) {
  // Every line logged while the task runs on this slot names it.
  log::Scope task_field("task_id", std::to_string(task.id));
  log::Scope repo_field("repo", task.repo);
  // Preparing the workspace can meet a full disk too: the task parks then.
  auto fail = [&](const std::string& reason) {
    if (Status full = disk_->Check(); !full.ok()) {
      disk_->Release();
      LOOM_LOG(kWarning) << "task " << task.id << ": " << reason << "; " << full.message();
      std::string summary =
          DiskFullSummary(task.id, "preparing its workspace (" + reason + ")", full);
      auto id = escalations_->Escalate(task.id, "infrastructure", summary, "orchestrator");
      if (id.ok()) {
        Status s = lifecycle_->Park(
            task.id, "escalation " + std::to_string(*id) + " (infrastructure): " + summary);
        if (!s.ok()) {
          LOOM_LOG(kError) << "task " << task.id << " stays running until a restart: cannot park "
                           << "it: " << s.ToString();
        }
        return;
      }
    }
    LOOM_LOG(kWarning) << "task " << task.id << " failed: " << reason;
    if (Status s = lifecycle_->Fail(task.id, reason); !s.ok()) {
      LOOM_LOG(kError) << "task " << task.id
                       << " stays running until a restart: cannot fail it: " << s.ToString();
    }
  };
  std::shared_ptr<const PolicyMap> snapshot =
      options_.policies ? options_.policies->Snapshot() : std::make_shared<const PolicyMap>();
  const policies::Policy& policy = PolicyFor(*snapshot, task.repo);
  ProtectedPaths protected_paths = ProtectedPaths::kRefused;
  if (auto approved = ProtectedEditsApproved(task.id); approved.ok() && *approved) {
    protected_paths = ProtectedPaths::kApproved;
  }
  auto repository = lifecycle_->repositories()->Get(task.repo, protected_paths, snapshot);
  if (!repository.ok()) return fail(repository.status().message());
  const repos::RepoRecord& record = (*repository)->record();

  // The workspace's name in the repository: this instance's (TaskWorkspaceKey).
  std::string id = lifecycle_->WorkspaceKey(task);
  // A root loomd that died during a sandboxed run left the worktree lent to the
  // sandbox uid; take it back before libgit2 opens it.
  size_t reclaimed = 0;
  if (auto r = sandbox::ReclaimWorktree((*repository)->WorkspacePath(id)); r.ok()) {
    reclaimed = *r;
  } else if (r.status().code() != StatusCode::kNotFound) {
    return fail("cannot take the worktree back from the sandbox: " + r.status().message());
  }
  auto workspace = (*repository)->OpenWorkspace(id);
  bool created = false;
  // NotFound: none yet, or one whose creation was cut short (CreateWorkspace makes
  // that one again). Any other error fails the task rather than lose its snapshots.
  if (!workspace.ok() && workspace.status().code() == StatusCode::kNotFound) {
    // A repository on a git server: the workspace starts from the server's
    // current target head (the `fetched` event and base_commit say which). A
    // server that stays unreachable parks the task with an infrastructure
    // escalation; answering it queues the task again.
    auto fetched = lifecycle_->remote()->FetchForTask(task, "start");
    if (!fetched.ok()) {
      std::string summary = "task " + std::to_string(task.id) +
                            " cannot start: " + fetched.status().message() +
                            ". Check the server and the repository's credential secrets (loom "
                            "repo list), then answer this escalation to start the task again.";
      LOOM_LOG(kWarning) << summary;
      auto esc = escalations_->Escalate(task.id, "infrastructure", summary, "orchestrator");
      if (!esc.ok()) return fail(summary);
      Status s = lifecycle_->Park(
          task.id, "escalation " + std::to_string(*esc) + " (infrastructure): " + summary);
      if (!s.ok()) {
        LOOM_LOG(kError) << "task " << task.id << ": " << s.ToString();
      }
      return;
    }
    workspace = (*repository)->CreateWorkspace(id, Slug(task.title));
    created = true;
  }
  if (!workspace.ok()) return fail("cannot prepare the workspace: " + workspace.status().message());
  repos::Workspace& ws = **workspace;
  if (const repos::ResumeReport& r = ws.resume_report();
      !r.restored_paths.empty() || reclaimed > 0) {
    LOOM_LOG(kInfo) << "task " << task.id << " resumes at step " << r.step << ": restored "
                    << r.restored_paths.size() << " path(s), took back " << reclaimed
                    << " entries from the sandbox";
  }
  // New, made again from the moved target after a merge conflict, or created just
  // before a restart that came before its branch was recorded.
  if (created || task.branch != ws.info().branch) {
    if (Status s = store_->SetBranch(task.id, ws.info().branch, ws.info().base_commit); !s.ok()) {
      return fail(s.message());
    }
  }

  AgentEnv env;
  env.store = store_;
  env.escalations = escalations_;
  env.llm = llm_.get();
  env.workspace = &ws;
  env.executor = executor_;
  env.test_argv = ShellCommand(record.test_command);
  env.limits = SandboxLimitsFor(policy);
  env.network = policy.sandbox.network == policies::NetworkAccess::kLoopback
                    ? sandbox::Network::kLoopback
                    : sandbox::Network::kNone;
  env.budgets = BudgetsFor(policy);
  env.policy = &policy;
  if (options_.secrets && !policy.secrets.allowed.empty()) {
    auto secrets = options_.secrets->Get(policy.secrets.allowed);
    if (!secrets.ok()) return fail("cannot read the task's secrets: " + secrets.status().message());
    env.secrets = std::move(*secrets);
  }
  env.require_failing_test = policy.agent.require_failing_test_for_bugs;
  // FAIL_TO_PASS's pristine tree is exported from the repository when the check
  // runs, into scratch/, and removed after it: no copy per task stays on disk.
  env.write_base_tree = ExportFromRepository(record.path);
  env.scratch_dir = options_.data_dir + "/scratch";
  env.stop = &stop_;
  env.cancel = lifecycle_->CancelFlag(task.id);
  env.disk = disk_.get();
  LifecyclePhases phases(lifecycle_, task.id);
  env.phases = &phases;
  LOOM_LOG(kInfo) << "slot " << slot << " runs task " << task.id << " on " << ws.info().branch;
  // A crash report's frames without source lines get them from the release's commit.
  Task worked = task;
  worked.instructions = WithSourceAtCommit(task.instructions, record.path);
  AgentOutcome outcome = RunAgent(worked, env);
  Status s = lifecycle_->RecordOutcome(task.id, outcome);
  if (!s.ok() && s.code() != StatusCode::kFailedPrecondition) {
    // Not recorded (a full disk, most likely): once more on the reserve, so that
    // the task does not stay `running` with no agent until a restart.
    disk_->Release();
    s = lifecycle_->RecordOutcome(task.id, outcome);
  }
  if (!s.ok()) {
    LOOM_LOG(kError) << "task " << task.id << ": " << s.ToString();
  }
  LOOM_LOG(kInfo) << "task " << task.id << " -> " << outcome.reason;
}

}  // namespace loom
