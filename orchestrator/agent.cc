// The agent loop. See agent.h for the contract; the design in brief:
//
// - The conversation is a pure function of the task's event log: "prompt" (system
//   and user messages, fixed at the first step so the prefix stays the same for
//   the model server's prefix cache), "llm_reply", "tool_result", "note" (what
//   the orchestrator tells the model) and "escalation_answered".
// - An event is appended before its effect is relied on: a reply is recorded
//   before its tools run, a tool's result before the next model call. An event
//   the conversation is rebuilt from that cannot be written stops the task.
// - Tools are dispatched through the table of tools.h; the loop is their
//   ToolContext (the sandbox, the edit journal, escalations, verification).
// - Budgets and stuck-loop detection end a task with a reason instead of letting
//   it spin; a model server that cannot be reached parks it with an escalation.
// - A sandbox pool that is down (the executor's Unavailable, after its own
//   retries) parks the task ("infrastructure") after the call that met it.
// - A full disk parks the task ("infrastructure") rather than failing it or
//   leaving it running: the disk is checked before each model call and after
//   each tool call, and a write that fails is checked against it.
// - The loop returns an outcome; the caller moves the task's state.
#include "orchestrator/agent.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cctype>
#include <ctime>
#include <map>
#include <set>

#include "common/json_reader.h"
#include "common/log.h"
#include "orchestrator/review_comments.h"
#include "orchestrator/verifier.h"

namespace loom {
namespace {

// Whether RunToolCalls runs calls recorded before a restart.
enum class Replay { kNo, kYes };

class AgentLoop : public ToolContext {
 public:
  AgentLoop(const Task& task, AgentEnv& env)
      : task_(task),
        env_(env),
        clock_(env.clock ? env.clock : SystemClock::Default()),
        verifier_(
            VerifierOptions{env.test_argv, env.require_failing_test, env.write_base_tree,
                            env.scratch_dir, env.budgets.max_tool_output, clock_},
            [this](const std::vector<std::string>& argv, const std::string& dir) {
              return RunSandboxedIn(argv, dir, RunKind::kTest);
            },
            [this](const Json& evidence) {
              return env_.store->AppendEvent(task_.id, EventType::kFailToPass, evidence).status();
            }) {}

  AgentOutcome Run() {
    Status s = Rebuild();
    if (!s.ok()) return CannotRecord("starting the task", "cannot read the task's history", s);
    if (verified_ && pending_.empty()) {
      // finish verified and committed, and loomd stopped before the task moved on.
      s = env_.phases->BeginVerification("verified before a restart");
      if (!s.ok()) return Fail("cannot move a verified task to review: " + s.message());
      return {AgentResult::kFinished,
              "verified before a restart: the suite passes on " + env_.workspace->info().branch,
              ""};
    }
    if (answer_ && pending_.empty()) {
      // A question answered, and loomd stopped before the answer was stored.
      return {AgentResult::kAnswered, "answered before a restart", *answer_};
    }
    // Tool calls of the last reply that have no recorded result run first.
    if (!pending_.empty()) {
      std::vector<ToolCall> calls = std::move(pending_);
      pending_.clear();
      if (auto done = RunToolCalls(calls, Replay::kYes)) return *done;
    }
    while (true) {
      if (Cancelled()) return CancelledOutcome();
      if (env_.stop && env_.stop->load())
        return {AgentResult::kInterrupted, "loomd is stopping", ""};
      if (auto over = CheckBudgets()) return *over;
      if (Status full = DiskStatus(); !full.ok()) return ParkDiskFull("before a model call", full);
      int64_t started = clock_->MonotonicNs();
      Result<ChatReply> reply = env_.llm->Chat(messages_, AgentToolSchemas());
      int64_t ms = (clock_->MonotonicNs() - started) / 1'000'000;
      if (!reply.ok()) {
        if (auto done = HandleModelFailure(reply.status())) return *done;
        continue;
      }
      Json message = reply->ToMessage();
      Usage usage{1, reply->prompt_tokens, reply->completion_tokens, 0};
      auto logged = env_.store->AppendEvent(task_.id, EventType::kLlmReply,
                                            {{"message", message},
                                             {"prompt_tokens", reply->prompt_tokens},
                                             {"completion_tokens", reply->completion_tokens},
                                             {"cached_tokens", reply->cached_tokens},
                                             {"attempts", reply->attempts},
                                             {"endpoint", reply->endpoint},
                                             {"ms", ms}},
                                            usage);
      if (!logged.ok())
        return CannotRecord("recording a model reply", "cannot record a step", logged.status());
      steps_ += 1;
      tokens_ += reply->prompt_tokens + reply->completion_tokens;
      messages_.push_back(message);
      if (reply->tool_calls.empty()) {
        if (auto done = Malformed("Your reply called no tool. Work only through the tools, and "
                                  "call finish(summary) when the change is complete.")) {
          return *done;
        }
        continue;
      }
      malformed_ = 0;
      if (auto done = RunToolCalls(reply->tool_calls)) return *done;
    }
  }

  // ToolContext.
  const Task& task() const override { return task_; }
  repos::Workspace& workspace() override { return *env_.workspace; }
  const policies::Policy& policy() const override { return *env_.policy; }
  const std::vector<std::string>& test_argv() const override { return env_.test_argv; }
  size_t max_tool_output() const override { return env_.budgets.max_tool_output; }

  Result<sandbox::Outcome> RunSandboxed(std::vector<std::string> argv, RunKind kind) override {
    return RunSandboxedIn(std::move(argv), env_.workspace->info().path, kind);
  }

  Status CommandStarting(const std::string& call_id) override {
    LOOM_RETURN_IF_ERROR(
        env_.store->AppendEvent(task_.id, EventType::kCommandStarted, {{"tool_call_id", call_id}})
            .status());
    commands_started_.insert(call_id);
    return Status::Ok();
  }

  // Before an edit: records the snapshot step it starts from. When loomd dies
  // between the edit and its recorded result, the resumed call first rolls the
  // worktree back to that step, so every edit takes effect exactly once.
  Status EditStarting(const std::string& call_id) override {
    LOOM_ASSIGN_OR_RETURN(std::vector<repos::SnapshotInfo> snaps, env_.workspace->ListSnapshots());
    int step = snaps.empty() ? 0 : snaps.back().step;
    if (auto it = edit_started_.find(call_id); it != edit_started_.end()) {
      if (it->second != step) {
        LOOM_RETURN_IF_ERROR(env_.workspace->RollbackTo(it->second).status());
      }
      return Status::Ok();
    }
    edit_started_[call_id] = step;
    return env_.store
        ->AppendEvent(task_.id, EventType::kEditStarted,
                      {{"tool_call_id", call_id}, {"step", step}})
        .status();
  }

  // Caches keyed on a file's mtime in whole seconds and its size (Python's bytecode,
  // make, many build tools) would miss an edit made in the same second as the last
  // run that keeps the size (`-` -> `+`): an edited file's mtime is moved past the
  // second the last run started in (at most a second ahead of the clock).
  void EditApplied(const std::string& path) override {
    std::string full = env_.workspace->info().path + "/" + path;
    struct stat st;
    if (lstat(full.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;
    time_t past = last_run_start_s_ + 1;
    if (st.st_mtim.tv_sec >= past) return;
    const timespec times[2] = {{past, 0}, {past, 0}};
    (void)utimensat(AT_FDCWD, full.c_str(), times, AT_SYMLINK_NOFOLLOW);
  }

  Result<std::string> Escalate(const std::string& kind, const std::string& summary,
                               const std::string& raised_by,
                               std::optional<std::string> secret) override {
    LOOM_ASSIGN_OR_RETURN(int64_t id, env_.escalations->Escalate(task_.id, kind, summary, raised_by,
                                                                 std::move(secret)));
    return "escalation " + std::to_string(id) + " (" + kind + "): " + summary;
  }

  // finish(summary) on a change: the task is `verifying` while the suite runs
  // (the caller's transition, before it runs); it goes back to `running` when
  // verification or the commit fails.
  ToolOutput FinishChange(const std::string& summary) override {
    Status s = env_.phases->BeginVerification("finish called: verifying");
    if (!s.ok()) return ToolError("cannot start verification: " + s.message());
    ToolOutput out = VerifyAndCommit(summary);
    if (out.next != ToolOutput::Next::kFinished) {
      s = env_.phases->VerificationFailed("verification failed");
      if (!s.ok()) return ToolError("cannot resume after verification: " + s.message());
    }
    return out;
  }

 private:
  Status Rebuild() {
    LOOM_ASSIGN_OR_RETURN(std::vector<Event> events, env_.store->Events(task_.id));
    bool have_prompt = false;
    std::set<std::string> answered;
    std::vector<ToolCall> last_calls;
    int64_t base_steps = 0, base_tokens = 0, base_test_runs = 0;
    // Events are read tolerantly: whatever a model or an older loomd stored
    // (a message that is not an object, arguments of any type) must not stop the
    // task from resuming.
    for (const auto& e : events) {
      const Json& d = e.data;
      if (e.type == EventType::kPrompt) {
        messages_ = Json::array({{{"role", "system"}, {"content", StringOr(d, "system")}},
                                 {{"role", "user"}, {"content", StringOr(d, "user")}}});
        have_prompt = true;
        started_ms_ = e.created_at_ms;
      } else if (e.type == EventType::kLlmReply) {
        verified_ = false;
        answer_.reset();
        const Json& stored = MemberOrNull(d, "message");
        Json message = stored.is_object() ? stored : Json{{"role", "assistant"}, {"content", ""}};
        messages_.push_back(message);
        last_calls.clear();
        answered.clear();
        commands_started_.clear();
        const Json& calls = MemberOrNull(message, "tool_calls");
        if (!calls.is_array()) continue;
        for (const auto& tc : calls) {
          const Json& fn = MemberOrNull(tc, "function");
          const Json& args = MemberOrNull(fn, "arguments");
          last_calls.push_back({StringOr(tc, "id"), StringOr(fn, "name"),
                                args.is_string() ? args.get<std::string>()
                                : args.is_null() ? std::string()
                                                 : DumpJson(args)});
        }
      } else if (e.type == EventType::kToolResult) {
        std::string id = StringOr(d, "tool_call_id");
        messages_.push_back(
            {{"role", "tool"}, {"tool_call_id", id}, {"content", StringOr(d, "content")}});
        answered.insert(id);
        verified_ = BoolOr(d, "verified", false);
        if (const Json& answer = MemberOrNull(d, "answer"); answer.is_string()) {
          answer_ = answer.get<std::string>();
        } else {
          answer_.reset();
        }
        Remember(StringOr(d, "name"), StringOr(d, "arguments"), StringOr(d, "content"));
      } else if (e.type == EventType::kToolRetry) {
        ++retries_[StringOr(d, "tool_call_id")];
      } else if (e.type == EventType::kNote) {
        messages_.push_back({{"role", "user"}, {"content", StringOr(d, "text")}});
      } else if (e.type == EventType::kMalformed) {
        ++malformed_;
      } else if (e.type == EventType::kCommandStarted) {
        commands_started_.insert(StringOr(d, "tool_call_id"));
      } else if (e.type == EventType::kEditStarted) {
        edit_started_[StringOr(d, "tool_call_id")] = static_cast<int>(IntOr(d, "step", 0));
      } else if (e.type == EventType::kReviewComment) {
        verified_ = false;
        messages_.push_back({{"role", "user"}, {"content", ReviewTurnText(d)}});
      } else if (e.type == EventType::kRetried) {
        // A fresh start: nothing before counts.
        messages_ = Json::array();
        have_prompt = false;
        last_calls.clear();
        answered.clear();
        commands_started_.clear();
        edit_started_.clear();
        retries_.clear();
        verified_ = false;
        answer_.reset();
        malformed_ = 0;
        last_key_.clear();
        repeats_ = 0;
        base_steps = IntOr(d, "steps", 0);
        base_tokens = IntOr(d, "tokens", 0);
        base_test_runs = IntOr(d, "test_runs", 0);
      } else if (e.type == EventType::kEscalationAnswered) {
        verified_ = false;
        answer_.reset();
        messages_.push_back(
            {{"role", "user"},
             {"content", "A person answered your request: " + DumpJson(MemberOrNull(d, "answer")) +
                             "\nContinue the task."}});
      }
    }
    for (const auto& call : last_calls) {
      if (!answered.count(call.id)) pending_.push_back(call);
    }
    // Counted since the last retry (its event holds the counters then).
    steps_ = task_.steps - base_steps;
    tokens_ = task_.prompt_tokens + task_.completion_tokens - base_tokens;
    test_runs_ = task_.test_runs - base_test_runs;
    if (!have_prompt) {
      std::string system =
          AgentSystemPrompt(task_, *env_.workspace, env_.policy->repo.instructions_file);
      std::string user = task_.instructions;
      if (task_.kind == "bug" && env_.require_failing_test) {
        user +=
            "\nFirst add a test that reproduces the bug (it must fail on the current code), "
            "then fix the bug so that the whole suite passes.";
      }
      if (task_.kind == "question") {
        user +=
            "\nThis is a question: answer it, do not change the code (edits are refused). "
            "Read what you need, then call finish(summary) with your answer as the summary.";
      } else {
        user += "\nWhen the change is complete and the tests pass, call finish(summary).";
      }
      LOOM_RETURN_IF_ERROR(
          env_.store
              ->AppendEvent(task_.id, EventType::kPrompt, {{"system", system}, {"user", user}})
              .status());
      messages_ = Json::array(
          {{{"role", "system"}, {"content", system}}, {{"role", "user"}, {"content", user}}});
      started_ms_ = clock_->NowMs();
    }
    return Status::Ok();
  }

  std::optional<AgentOutcome> CheckBudgets() {
    const AgentBudgets& b = env_.budgets;
    int64_t max_steps = b.max_steps + task_.extra_steps;
    int64_t max_tokens = b.max_tokens + task_.extra_tokens;
    if (steps_ >= max_steps)
      return Fail("the step budget (" + std::to_string(max_steps) + " model calls) is spent");
    if (tokens_ >= max_tokens)
      return Fail("the token budget (" + std::to_string(max_tokens) + ") is spent");
    if (clock_->NowMs() - started_ms_ >
        std::chrono::duration_cast<std::chrono::milliseconds>(b.max_wall).count()) {
      return Fail("the wall-time budget (" + std::to_string(b.max_wall.count()) +
                  " minutes) is spent");
    }
    return std::nullopt;
  }

  AgentOutcome Fail(const std::string& reason) { return {AgentResult::kFailed, reason, ""}; }

  bool Cancelled() const { return env_.cancel && env_.cancel->load(); }
  AgentOutcome CancelledOutcome() const {
    return {AgentResult::kCancelled, "cancelled by an engineer", ""};
  }

  // A reply that is garbage or uses no tool: tell the model, or give up.
  std::optional<AgentOutcome> Malformed(const std::string& what) {
    ++malformed_;
    auto logged = env_.store->AppendEvent(task_.id, EventType::kMalformed, {{"what", what}});
    if (!logged.ok()) {
      return CannotRecord("recording a malformed reply", "cannot record a malformed reply",
                          logged.status());
    }
    if (malformed_ >= env_.budgets.max_consecutive_malformed) {
      return Fail(std::to_string(malformed_) + " malformed replies in a row; last: " + what);
    }
    return Note(what);
  }

  // Tells the model `text`; an outcome when it cannot be recorded (the model
  // would see a message the log does not have).
  std::optional<AgentOutcome> Note(const std::string& text) {
    auto logged = env_.store->AppendEvent(task_.id, EventType::kNote, {{"text", text}});
    if (!logged.ok())
      return CannotRecord("recording a note", "cannot record a note", logged.status());
    messages_.push_back({{"role", "user"}, {"content", text}});
    return std::nullopt;
  }

  std::optional<AgentOutcome> HandleModelFailure(const Status& s) {
    switch (s.code()) {
      case StatusCode::kCorruption:
        return Malformed("Your last reply could not be read (" + s.message() + "). Reply again.");
      case StatusCode::kUnavailable:
      case StatusCode::kDeadlineExceeded:
        return EscalateOutcome(
            "gpu", "No inference backend answered: " + s.message() +
                       ". Start loom-infer or configure another OpenAI-compatible endpoint "
                       "(llm.url), then answer this escalation to resume the task.");
      case StatusCode::kPermissionDenied:
        return EscalateOutcome("api_key", "The model endpoint refused the API key: " + s.message());
      default:
        return Fail("the model endpoint rejected the request: " + s.message());
    }
  }

  // An escalation of the orchestrator's own: the task blocks on it.
  AgentOutcome EscalateOutcome(const std::string& kind, const std::string& summary) {
    auto blocked = Escalate(kind, summary, "orchestrator", std::nullopt);
    if (!blocked.ok()) return Fail("cannot record an escalation: " + blocked.status().message());
    return {AgentResult::kBlocked, *blocked, ""};
  }

  Status DiskStatus() { return env_.disk ? env_.disk->Check() : Status::Ok(); }

  // Parks the task: the reserve is given up so that the escalation and the
  // scheduler's state change find room.
  AgentOutcome ParkDiskFull(const std::string& during, const Status& full) {
    if (env_.disk) env_.disk->Release();
    LOOM_LOG(kWarning) << "task " << task_.id << ": " << full.message();
    return EscalateOutcome("infrastructure", DiskFullSummary(task_.id, during, full));
  }

  // A write to the event log failed: a full disk parks the task, anything else
  // fails it with `what`.
  AgentOutcome CannotRecord(const std::string& during, const std::string& what, const Status& s) {
    if (Status full = DiskStatus(); !full.ok()) return ParkDiskFull(during, full);
    LOOM_LOG(kError) << "task " << task_.id << ": " << what << ": " << s.ToString();
    return Fail(what + ": " + s.message());
  }

  // Runs each call in order, recording each result; returns an outcome when the
  // task leaves the loop (finish verified, answered, escalation, budget, stuck).
  //
  // Replayed calls (recorded before a restart, without a result) are counted: a
  // "tool_retry" event before each new start, so a call that crashes loomd runs
  // at most max_tool_attempts times in all, then fails the task.
  std::optional<AgentOutcome> RunToolCalls(const std::vector<ToolCall>& calls,
                                           Replay replay = Replay::kNo) {
    for (const auto& call : calls) {
      if (Cancelled()) return CancelledOutcome();
      bool interrupted = replay == Replay::kYes && call.name == "run_command" &&
                         commands_started_.count(call.id) > 0;
      if (replay == Replay::kYes && !interrupted) {
        if (auto done = CountAttempt(call)) return *done;
      }
      int64_t started = clock_->MonotonicNs();
      ToolOutput out = interrupted ? InterruptedCommand() : RunTool(*this, call);
      int64_t ms = (clock_->MonotonicNs() - started) / 1'000'000;
      // The call may have filled the disk (a command's output, an edit, a
      // snapshot): its result is still recorded, on the reserve, and the task parks.
      Status full = DiskStatus();
      if (!full.ok()) {
        if (env_.disk) env_.disk->Release();
        out.content +=
            "\n\n[loomd: the disk filled up during this call; the task waits until a "
            "person frees space]";
        out.error = true;
      }
      std::string content =
          MaskSecrets(TruncateMiddle(out.content, env_.budgets.max_tool_output), env_.secrets);
      Json result = {{"tool_call_id", call.id}, {"name", call.name},  {"arguments", call.arguments},
                     {"content", content},      {"error", out.error}, {"ms", ms}};
      // What a restart needs to end the task without a model call.
      if (out.next == ToolOutput::Next::kFinished) result["verified"] = true;
      std::string answer = MaskSecrets(out.answer, env_.secrets);
      if (out.next == ToolOutput::Next::kAnswered) result["answer"] = answer;
      auto logged = env_.store->AppendEvent(task_.id, EventType::kToolResult, result,
                                            Usage{0, 0, 0, tests_this_call_});
      tests_this_call_ = 0;
      if (!full.ok()) return ParkDiskFull("during " + call.name, full);
      if (!logged.ok()) {
        return CannotRecord("recording the result of " + call.name, "cannot record a tool result",
                            logged.status());
      }
      messages_.push_back({{"role", "tool"}, {"tool_call_id", call.id}, {"content", content}});
      if (!pool_down_.empty()) {
        // Unavailable: the executor already retried (the Slurm pool is down).
        std::string why = std::move(pool_down_);
        pool_down_.clear();
        return EscalateOutcome(
            "infrastructure",
            "The sandbox pool could not run " + call.name + ": " + why +
                ". Nothing the task did is lost. Bring the pool back (sinfo shows its nodes; "
                "slurmctld must answer) or set sandbox.slurm_fallback = local, then answer this "
                "escalation to resume the task (docs/scale-out.md).");
      }
      if (sandbox_failures_ >= kMaxSandboxFailures) {
        return EscalateOutcome("infrastructure",
                               "The sandbox failed " + std::to_string(sandbox_failures_) +
                                   " runs in a row; last: " + content +
                                   ". Fix the host (see docs/sandbox.md), then answer to resume.");
      }
      switch (out.next) {
        case ToolOutput::Next::kFinished:
          return AgentOutcome{AgentResult::kFinished, out.reason, ""};
        case ToolOutput::Next::kAnswered:
          return AgentOutcome{AgentResult::kAnswered, out.reason, answer};
        case ToolOutput::Next::kBlocked:
          return AgentOutcome{AgentResult::kBlocked, out.reason, ""};
        case ToolOutput::Next::kContinue:
          break;
      }
      int repeats = Remember(call.name, call.arguments, content);
      if (repeats >= 2 * env_.budgets.stuck_repeats) {
        return Fail("stuck: the same " + call.name + " call returned the same result " +
                    std::to_string(repeats) + " times");
      }
      if (repeats == env_.budgets.stuck_repeats) {
        if (auto done =
                Note("You have made the same " + call.name + " call with the same result " +
                     std::to_string(repeats) +
                     " times. It will not change: try something different, or call finish or "
                     "request_human.")) {
          return *done;
        }
      }
      if (test_runs_ > env_.budgets.max_test_runs) {
        return Fail("the test-run budget (" + std::to_string(env_.budgets.max_test_runs) +
                    ") is spent");
      }
    }
    return std::nullopt;
  }

  // A run_command that started before a restart and has no recorded result: its
  // effects are unknown (it may have filled the disk, or half-done something),
  // so it is not run again; the model is told and decides.
  ToolOutput InterruptedCommand() {
    return ToolError(
        "interrupted: this command started, but loomd stopped (a crash, a kill or a full "
        "disk) before its result was recorded. It was not run again: its effects on the "
        "worktree are unknown. Check the worktree before running it, or a safer variant, "
        "again.");
  }

  // Before a replayed call starts again: records the attempt, or when the call
  // has been started max_tool_attempts times without loomd outliving it, answers
  // it with an error (so it never runs again, even when the task is retried)
  // and fails the task.
  std::optional<AgentOutcome> CountAttempt(const ToolCall& call) {
    int attempts = 1 + retries_[call.id];  // the first start left no marker
    if (attempts >= env_.budgets.max_tool_attempts) {
      std::string reason = "the tool call " + call.name + " (" + call.id + ") was started " +
                           std::to_string(attempts) +
                           " times and loomd stopped before it finished each time (it may crash "
                           "loomd); it is not run again";
      Json result = {
          {"tool_call_id", call.id},       {"name", call.name}, {"arguments", call.arguments},
          {"content", "error: " + reason}, {"error", true},     {"ms", 0}};
      auto logged = env_.store->AppendEvent(task_.id, EventType::kToolResult, result);
      if (!logged.ok()) {
        return CannotRecord("recording the result of " + call.name, "cannot record a tool result",
                            logged.status());
      }
      return Fail(reason);
    }
    ++retries_[call.id];
    auto logged = env_.store->AppendEvent(
        task_.id, EventType::kToolRetry,
        {{"tool_call_id", call.id}, {"name", call.name}, {"attempt", attempts + 1}});
    if (!logged.ok()) {
      return CannotRecord("recording a restart of " + call.name, "cannot record a tool call",
                          logged.status());
    }
    return std::nullopt;
  }

  // Returns how many times in a row this exact call has given this exact result
  // (run times aside: the same test run repeated is the same result).
  int Remember(const std::string& name, const std::string& args, const std::string& content) {
    std::string key = name + '\0' + args + '\0' + WithoutRunTimes(content);
    if (key == last_key_) {
      ++repeats_;
    } else {
      last_key_ = key;
      repeats_ = 1;
    }
    return repeats_;
  }

  // An event that is evidence, not conversation (a run's outcome): a failure to
  // write it does not stop the task, but it is logged loudly.
  void RecordEvidence(EventType type, const Json& data) {
    auto logged = env_.store->AppendEvent(task_.id, type, data);
    if (!logged.ok()) {
      LOOM_LOG(kError) << "task " << task_.id << ": cannot record a " << EventTypeName(type)
                       << " event: " << logged.status().ToString();
    }
  }

  // Runs `argv` in the sandbox on `dir` and appends a "test_run" or "command_run"
  // event (outcome with its output cut to what the model would see). The outcome
  // returned has the task's secrets masked.
  Result<sandbox::Outcome> RunSandboxedIn(std::vector<std::string> argv, const std::string& dir,
                                          RunKind kind) {
    int64_t started = clock_->MonotonicNs();
    Result<sandbox::Outcome> o = RunSandboxedQuietly(argv, dir, kind);
    if (!o.ok()) {
      ++sandbox_failures_;
      if (o.status().code() == StatusCode::kUnavailable) pool_down_ = o.status().message();
      RecordEvidence(EventType::kSandboxError, {{"error", o.status().message()}});
      return o;
    }
    sandbox_failures_ = 0;
    pool_down_.clear();
    // Every caller (tool results, the fail_to_pass event) gets the outcome masked
    // whole; what is recorded here is cut to size and masked once more.
    o->stdout_data = MaskSecrets(std::move(o->stdout_data), env_.secrets);
    o->stderr_data = MaskSecrets(std::move(o->stderr_data), env_.secrets);
    sandbox::Outcome run = *o;
    run.stdout_data =
        MaskSecrets(TruncateMiddle(run.stdout_data, env_.budgets.max_tool_output), env_.secrets);
    run.stderr_data =
        MaskSecrets(TruncateMiddle(run.stderr_data, env_.budgets.max_tool_output), env_.secrets);
    int64_t ms = (clock_->MonotonicNs() - started) / 1'000'000;
    Json evidence = {{"argv", argv},
                     {"tree", dir == env_.workspace->info().path ? "branch" : "base"},
                     {"outcome", run.ToJson()},
                     {"ms", ms}};
    if (last_gpus_) {
      evidence["gpus"] = {{"type", last_gpus_->type}, {"count", last_gpus_->count}};
    }
    RecordEvidence(kind == RunKind::kTest ? EventType::kTestRun : EventType::kCommandRun, evidence);
    return o;
  }

  Result<sandbox::Outcome> RunSandboxedQuietly(std::vector<std::string> argv,
                                               const std::string& dir, RunKind kind) {
    if (argv.empty())
      return Status::FailedPrecondition("the repository's policy has no test command");
    if (kind == RunKind::kTest) {
      ++test_runs_;
      ++tests_this_call_;
    }
    sandbox::RunSpec spec;
    spec.argv = std::move(argv);
    spec.worktree = dir;
    // Python's bytecode cache goes to the run's private /tmp, never into the tree.
    spec.env = {{"PATH", "/usr/local/bin:/usr/bin:/bin"},
                {"HOME", dir},
                {"LANG", "C.UTF-8"},
                {"PYTHONDONTWRITEBYTECODE", "1"},
                {"PYTHONPYCACHEPREFIX", "/tmp/pycache"}};
    for (const auto& secret : env_.secrets) spec.env.push_back(secret);
    spec.limits = env_.limits;
    spec.network = env_.network;
    spec.cancel = env_.cancel;
    spec.gpus = GrantedGpus();
    last_gpus_ = spec.gpus;
    last_run_start_s_ = std::time(nullptr);
    return env_.executor->Run(spec);
  }

  // The GPUs of the task's grant still running (a person answered its gpu
  // escalation with one), for its time left in whole minutes; none under a minute.
  std::optional<sandbox::RunSpec::Gpus> GrantedGpus() {
    if (env_.escalations == nullptr) return std::nullopt;
    const int64_t now = clock_->NowMs();
    auto grant = env_.escalations->ActiveGpuGrant(task_.id, now);
    if (!grant.ok()) {
      LOOM_LOG(kWarning) << "task " << task_.id
                         << ": cannot read its GPU grants: " << grant.status().ToString();
      return std::nullopt;
    }
    if (!*grant) return std::nullopt;
    int64_t minutes = ((*grant)->until_ms - now) / 60'000;
    if (minutes < 1) return std::nullopt;
    return sandbox::RunSpec::Gpus{(*grant)->type, (*grant)->count, std::chrono::minutes(minutes)};
  }

  // The suite on the final tree (and FAIL_TO_PASS for bugs), then the commit.
  ToolOutput VerifyAndCommit(const std::string& summary) {
    repos::Workspace& ws = *env_.workspace;
    Verdict verdict = verifier_.Verify(task_, ws);
    if (verdict.kind != Verdict::Kind::kPassed) return ToolRefusal(verdict.message);
    repos::CommitRequest request;
    request.summary = summary;
    for (int64_t id : task_.feedback_ids) request.feedback_ids.push_back(std::to_string(id));
    auto commit = ws.CommitToBranch(request);
    std::string what;
    if (commit.ok()) {
      what = "verified and committed " + *commit + " on " + ws.info().branch;
    } else if (commit.status().code() == StatusCode::kFailedPrecondition && HasChanges()) {
      // The branch already holds this tree: committed before a crash cut this
      // call short, or finish was called twice without an edit in between.
      what = "verified; " + ws.info().branch + " already holds this change";
    } else {
      return ToolError("cannot commit the branch: " + commit.status().message());
    }
    ToolOutput out = ToolReply(what);
    out.next = ToolOutput::Next::kFinished;
    out.reason = "verified: the suite passes on " + ws.info().branch;
    return out;
  }

  bool HasChanges() {
    auto diff = env_.workspace->Diff();
    return diff.ok() && !diff->files.empty();
  }

  const Task& task_;
  AgentEnv& env_;
  const Clock* clock_;
  Verifier verifier_;
  Json messages_ = Json::array();
  std::vector<ToolCall> pending_;
  std::map<std::string, int> edit_started_;  // tool_call_id -> snapshot step before the edit
  std::set<std::string> commands_started_;   // run_command calls of the last reply that started
  bool verified_ = false;              // the log ends with a finish that verified and committed
  std::optional<std::string> answer_;  // the log ends with a question's answer
  int64_t steps_ = 0, tokens_ = 0, test_runs_ = 0, tests_this_call_ = 0;
  int64_t started_ms_ = 0;
  int malformed_ = 0;
  // Sandbox runs that failed to start, in a row: the host, not the agent.
  static constexpr int kMaxSandboxFailures = 3;
  int sandbox_failures_ = 0;
  // Set when a run was Unavailable (the executor's pool is down after its own
  // retries): the task parks on an infrastructure escalation after that call.
  std::string pool_down_;
  std::optional<sandbox::RunSpec::Gpus> last_gpus_;  // of the last sandboxed run
  time_t last_run_start_s_ = std::time(nullptr);     // of the last sandboxed run (or of the loop)
  std::string last_key_;
  int repeats_ = 0;
  std::map<std::string, int> retries_;  // tool_call_id -> "tool_retry" events
};

bool IsWordChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

}  // namespace

Json AgentToolSchemas() {
  static const Json kTools = [] {
    Json tools = Json::array();
    for (const ToolSpec& tool : Tools()) tools.push_back(tool.schema);
    return tools;
  }();
  return kTools;
}

std::string AgentSystemPrompt(const Task& task, repos::Workspace& workspace,
                              const std::string& instructions_file) {
  std::string prompt =
      "You are Loom's coding agent. You change the code of a git repository to resolve one "
      "task, working only through the tools you are given. Paths are relative to the "
      "repository root. Tests run in a sandbox without network. Keep changes small and "
      "focused, follow the project's style, and call finish(summary) once the tests pass.\n\n";
  prompt += "Task " + std::to_string(task.id) + " (" + task.kind + "): " + task.title + "\n";
  prompt += "Repository: " + task.repo + "\n\nTop-level layout:\n";
  auto files = workspace.ListFiles(".");
  if (files.ok()) {
    size_t n = 0;
    for (const auto& f : *files) {
      if (++n > 200) {
        prompt += "...\n";
        break;
      }
      prompt += "  " + f.path + (f.kind == repos::FileEntry::Kind::kDirectory ? "/" : "") + "\n";
    }
  }
  std::vector<std::string> candidates = {"AGENTS.md", ".loom/instructions.md"};
  if (!instructions_file.empty()) candidates = {instructions_file};
  for (const std::string& name : candidates) {
    auto text = workspace.ReadFile(name);
    if (text.ok()) {
      prompt += std::string("\nThe repository's instructions (") + name + "):\n" +
                TruncateMiddle(*text, 8 << 10) + "\n";
      break;
    }
  }
  return prompt;
}

AgentOutcome RunAgent(const Task& task, AgentEnv& env) { return AgentLoop(task, env).Run(); }

std::string WithoutRunTimes(const std::string& text) {
  static const char* const kUnits[] = {"seconds", "second", "secs", "sec", "ms", "s"};
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    bool starts_number = std::isdigit(static_cast<unsigned char>(text[i])) &&
                         (i == 0 || (!IsWordChar(text[i - 1]) && text[i - 1] != '.'));
    if (starts_number) {
      size_t j = i;
      while (j < text.size() &&
             (std::isdigit(static_cast<unsigned char>(text[j])) || text[j] == '.')) {
        ++j;
      }
      size_t k = j < text.size() && text[j] == ' ' ? j + 1 : j;
      for (const char* unit : kUnits) {
        size_t n = std::char_traits<char>::length(unit);
        if (text.compare(k, n, unit) == 0 && (k + n == text.size() || !IsWordChar(text[k + n]))) {
          out += '#';
          i = j;
          break;
        }
      }
      if (i == j) continue;
      out.append(text, i, j - i);
      i = j;
      continue;
    }
    out += text[i++];
  }
  return out;
}

}  // namespace loom
