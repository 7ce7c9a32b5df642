// The agent loop. See agent.h for the contract; the design in brief:
//
// - The conversation is a pure function of the task's event log: "prompt" (system
//   and user messages, fixed at the first step so the prefix stays the same for
//   the model server's prefix cache), "llm_reply", "tool_result", "note" (what
//   the orchestrator tells the model) and "escalation_answered".
// - An event is appended before its effect is relied on: a reply is recorded
//   before its tools run, a tool's result before the next model call.
// - Budgets and stuck-loop detection end a task with a reason instead of letting
//   it spin; a model server that cannot be reached parks it with an escalation.
// - A full disk parks the task ("infrastructure") rather than failing it or
//   leaving it running: the disk is checked before each model call and after
//   each tool call, and a write that fails is checked against it.
#include "orchestrator/agent.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/json_reader.h"
#include "common/log.h"

namespace loom {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const std::set<std::string>& EscalationKinds() {
  static const std::set<std::string> kKinds = {"api_key", "gpu", "network", "approval", "question"};
  return kKinds;
}

// A tool's answer to the model, and what the loop must do next.
struct ToolOutput {
  enum class Next { kContinue, kReview, kBlocked };
  std::string content;
  bool error = false;
  Next next = Next::kContinue;
  std::string reason;  // for kReview / kBlocked
};

ToolOutput Reply(std::string content) {
  ToolOutput out;
  out.content = std::move(content);
  return out;
}

// A refusal the model should act on (a failed check, not a broken call).
ToolOutput Refuse(std::string content) {
  ToolOutput out = Reply(std::move(content));
  out.error = true;
  return out;
}

ToolOutput Error(std::string message) { return Refuse("error: " + std::move(message)); }

bool IsTestPath(const std::string& path) {
  std::string name = fs::path(path).filename().string();
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.rfind("test", 0) == 0) return true;
  for (const char* suffix : {"_test.", "_tests.", ".test.", ".spec.", "_spec."}) {
    if (lower.find(suffix) != std::string::npos) return true;
  }
  for (const auto& part : fs::path(path).parent_path()) {
    std::string p = part.string();
    if (p == "test" || p == "tests" || p == "spec" || p == "__tests__") return true;
  }
  return false;
}

std::string DescribeOutcome(const sandbox::Outcome& o, size_t max) {
  std::string head;
  if (o.limit != sandbox::LimitHit::kNone) {
    head = "stopped by the sandbox limit: " + std::string(sandbox::LimitHitName(o.limit));
  } else if (o.signal) {
    head = "killed by signal " + std::to_string(*o.signal);
  } else {
    head = "exit code " + std::to_string(o.exit_code.value_or(-1));
  }
  head += " (" + std::to_string(o.wall_ms) + " ms)\n";
  std::string out = o.stdout_data;
  if (!o.stderr_data.empty())
    out += (out.empty() ? "" : "\n") + std::string("[stderr]\n") + o.stderr_data;
  if (o.stdout_truncated || o.stderr_truncated) out += "\n[output truncated by the sandbox]";
  return head + TruncateMiddle(out, max);
}

// Copies a directory tree (regular files, directories and symlinks as links).
Status CopyTree(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::create_directories(to, ec);
  if (ec) return Status::IoError("creating " + to + ": " + ec.message());
  fs::copy(from, to,
           fs::copy_options::recursive | fs::copy_options::copy_symlinks |
               fs::copy_options::overwrite_existing,
           ec);
  if (ec) return Status::IoError("copying " + from + " to " + to + ": " + ec.message());
  return Status::Ok();
}

// The properties of tool `name` in AgentToolSchemas(), nullptr for no such tool.
const Json* ToolArguments(const std::string& name) {
  static const Json kSchemas = AgentToolSchemas();  // a copy: the pointer must outlive the call
  for (const Json& tool : kSchemas) {
    const Json& fn = MemberOrNull(tool, "function");
    if (StringOr(fn, "name") == name) {
      const Json& props = MemberOrNull(MemberOrNull(fn, "parameters"), "properties");
      return props.is_object() ? &props : nullptr;
    }
  }
  return nullptr;
}

// Whether RunToolCalls runs calls recorded before a restart.
enum class Replay { kNo, kYes };

class AgentLoop {
 public:
  AgentLoop(const Task& task, AgentEnv& env) : task_(task), env_(env) {}

  AgentOutcome Run() {
    Status s = Rebuild();
    if (!s.ok()) return CannotRecord("starting the task", "cannot read the task's history", s);
    if (verified_ && pending_.empty()) {
      // finish verified and committed, and loomd stopped before the task moved on.
      s = env_.store->Transition(task_.id, TaskState::kRunning, TaskState::kVerifying,
                                 "verified before a restart");
      if (!s.ok()) return Fail("cannot move a verified task to review: " + s.message());
      return {AgentResult::kReview,
              "verified before a restart: the suite passes on " + env_.workspace->info().branch};
    }
    // Tool calls of the last reply that have no recorded result run first.
    if (!pending_.empty()) {
      std::vector<ToolCall> calls = std::move(pending_);
      pending_.clear();
      if (auto done = RunToolCalls(calls, Replay::kYes)) return *done;
    }
    while (true) {
      if (env_.stop && env_.stop->load()) return {AgentResult::kInterrupted, "loomd is stopping"};
      if (auto over = CheckBudgets()) return *over;
      if (Status full = DiskStatus(); !full.ok()) return ParkDiskFull("before a model call", full);
      auto started = Clock::now();
      Result<ChatReply> reply = env_.llm->Chat(messages_, AgentToolSchemas());
      int64_t ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
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
                                             {"attempts", reply->attempts},
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

 private:
  Status Rebuild() {
    LOOM_ASSIGN_OR_RETURN(std::vector<Event> events, env_.store->Events(task_.id));
    bool have_prompt = false;
    std::set<std::string> answered;
    std::vector<ToolCall> last_calls;
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
        messages_.push_back(
            {{"role", "user"},
             {"content", "An engineer reviewed your branch and requested changes:\n" +
                             StringOr(d, "comment") +
                             "\nMake them, run the tests and call finish again."}});
      } else if (e.type == EventType::kEscalationAnswered) {
        verified_ = false;
        messages_.push_back(
            {{"role", "user"},
             {"content", "A person answered your request: " + DumpJson(MemberOrNull(d, "answer")) +
                             "\nContinue the task."}});
      }
    }
    for (const auto& call : last_calls) {
      if (!answered.count(call.id)) pending_.push_back(call);
    }
    steps_ = task_.steps;
    tokens_ = task_.prompt_tokens + task_.completion_tokens;
    test_runs_ = task_.test_runs;
    if (!have_prompt) {
      std::string system =
          AgentSystemPrompt(task_, *env_.workspace, env_.policy->repo.instructions_file);
      std::string user = task_.instructions;
      if (task_.kind == "bug" && env_.require_failing_test) {
        user +=
            "\nFirst add a test that reproduces the bug (it must fail on the current code), "
            "then fix the bug so that the whole suite passes.";
      }
      user += "\nWhen the change is complete and the tests pass, call finish(summary).";
      LOOM_RETURN_IF_ERROR(
          env_.store
              ->AppendEvent(task_.id, EventType::kPrompt, {{"system", system}, {"user", user}})
              .status());
      messages_ = Json::array(
          {{{"role", "system"}, {"content", system}}, {{"role", "user"}, {"content", user}}});
      started_ms_ = NowMs();
    }
    return Status::Ok();
  }

  std::optional<AgentOutcome> CheckBudgets() {
    const AgentBudgets& b = env_.budgets;
    if (steps_ >= b.max_steps)
      return Fail("the step budget (" + std::to_string(b.max_steps) + " model calls) is spent");
    if (tokens_ >= b.max_tokens)
      return Fail("the token budget (" + std::to_string(b.max_tokens) + ") is spent");
    if (NowMs() - started_ms_ >
        std::chrono::duration_cast<std::chrono::milliseconds>(b.max_wall).count()) {
      return Fail("the wall-time budget (" + std::to_string(b.max_wall.count()) +
                  " minutes) is spent");
    }
    return std::nullopt;
  }

  AgentOutcome Fail(const std::string& reason) { return {AgentResult::kFailed, reason}; }

  // A reply that is garbage or uses no tool: tell the model, or give up.
  std::optional<AgentOutcome> Malformed(const std::string& what) {
    ++malformed_;
    (void)env_.store->AppendEvent(task_.id, EventType::kMalformed, {{"what", what}});
    if (malformed_ >= env_.budgets.max_consecutive_malformed) {
      return Fail(std::to_string(malformed_) + " malformed replies in a row; last: " + what);
    }
    Note(what);
    return std::nullopt;
  }

  void Note(const std::string& text) {
    (void)env_.store->AppendEvent(task_.id, EventType::kNote, {{"text", text}});
    messages_.push_back({{"role", "user"}, {"content", text}});
  }

  std::optional<AgentOutcome> HandleModelFailure(const Status& s) {
    switch (s.code()) {
      case StatusCode::kCorruption:
        return Malformed("Your last reply could not be read (" + s.message() + "). Reply again.");
      case StatusCode::kUnavailable:
      case StatusCode::kDeadlineExceeded:
        return Escalate("gpu",
                        "No inference backend answered: " + s.message() +
                            ". Start loom-infer or configure another OpenAI-compatible endpoint "
                            "(llm.url), then answer this escalation to resume the task.",
                        "orchestrator", std::nullopt);
      case StatusCode::kPermissionDenied:
        return Escalate("api_key", "The model endpoint refused the API key: " + s.message(),
                        "orchestrator", std::nullopt);
      default:
        return Fail("the model endpoint rejected the request: " + s.message());
    }
  }

  AgentOutcome Escalate(const std::string& kind, const std::string& summary,
                        const std::string& raised_by, std::optional<std::string> secret) {
    auto id = env_.escalations->Escalate(task_.id, kind, summary, raised_by, std::move(secret));
    if (!id.ok()) return Fail("cannot record an escalation: " + id.status().message());
    return {AgentResult::kBlocked,
            "escalation " + std::to_string(*id) + " (" + kind + "): " + summary};
  }

  Status DiskStatus() { return env_.disk ? env_.disk->Check() : Status::Ok(); }

  // Parks the task: the reserve is given up so that the escalation and the
  // scheduler's state change find room.
  AgentOutcome ParkDiskFull(const std::string& during, const Status& full) {
    if (env_.disk) env_.disk->Release();
    LOOM_LOG(kWarning) << "task " << task_.id << ": " << full.message();
    return Escalate("infrastructure", DiskFullSummary(task_.id, during, full), "orchestrator",
                    std::nullopt);
  }

  // A write to the event log failed: a full disk parks the task, anything else
  // fails it with `what`.
  AgentOutcome CannotRecord(const std::string& during, const std::string& what, const Status& s) {
    if (Status full = DiskStatus(); !full.ok()) return ParkDiskFull(during, full);
    return Fail(what + ": " + s.message());
  }

  // Runs each call in order, recording each result; returns an outcome when the
  // task leaves the loop (finish verified, escalation, budget, stuck).
  //
  // Replayed calls (recorded before a restart, without a result) are counted: a
  // "tool_retry" event before each new start, so a call that crashes loomd runs
  // at most max_tool_attempts times in all, then fails the task.
  std::optional<AgentOutcome> RunToolCalls(const std::vector<ToolCall>& calls,
                                           Replay replay = Replay::kNo) {
    for (const auto& call : calls) {
      bool interrupted = replay == Replay::kYes && call.name == "run_command" &&
                         commands_started_.count(call.id) > 0;
      if (replay == Replay::kYes && !interrupted) {
        if (auto done = CountAttempt(call)) return *done;
      }
      auto started = Clock::now();
      ToolOutput out = interrupted ? InterruptedCommand() : Execute(call);
      int64_t ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
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
      // What a restart needs to send the task on to review without a model call.
      if (out.next == ToolOutput::Next::kReview) result["verified"] = true;
      auto logged = env_.store->AppendEvent(task_.id, EventType::kToolResult, result,
                                            Usage{0, 0, 0, tests_this_call_});
      tests_this_call_ = 0;
      if (!full.ok()) return ParkDiskFull("during " + call.name, full);
      if (!logged.ok()) {
        return CannotRecord("recording the result of " + call.name, "cannot record a tool result",
                            logged.status());
      }
      messages_.push_back({{"role", "tool"}, {"tool_call_id", call.id}, {"content", content}});
      if (sandbox_failures_ >= kMaxSandboxFailures) {
        return Escalate("infrastructure",
                        "The sandbox failed " + std::to_string(sandbox_failures_) +
                            " runs in a row; last: " + content +
                            ". Fix the host (see docs/sandbox.md), then answer to resume.",
                        "orchestrator", std::nullopt);
      }
      if (out.next == ToolOutput::Next::kReview)
        return AgentOutcome{AgentResult::kReview, out.reason};
      if (out.next == ToolOutput::Next::kBlocked)
        return AgentOutcome{AgentResult::kBlocked, out.reason};
      int repeats = Remember(call.name, call.arguments, content);
      if (repeats >= 2 * env_.budgets.stuck_repeats) {
        return Fail("stuck: the same " + call.name + " call returned the same result " +
                    std::to_string(repeats) + " times");
      }
      if (repeats == env_.budgets.stuck_repeats) {
        Note("You have made the same " + call.name + " call with the same result " +
             std::to_string(repeats) +
             " times. It will not change: try something different, or call finish or "
             "request_human.");
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
    return Error(
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

  // Returns how many times in a row this exact call has given this exact result.
  int Remember(const std::string& name, const std::string& args, const std::string& content) {
    std::string key = name + '\0' + args + '\0' + content;
    if (key == last_key_) {
      ++repeats_;
    } else {
      last_key_ = key;
      repeats_ = 1;
    }
    return repeats_;
  }

  // Model-controlled input crosses the JSON boundary here: the arguments are
  // parsed (depth-limited, no exceptions) and read field by field; anything
  // wrong is an error result for the model, never a crash, live or replayed.
  ToolOutput Execute(const ToolCall& call) {
    auto parsed = ParseJson(call.arguments.empty() ? "{}" : call.arguments);
    if (!parsed.ok() || !parsed->is_object()) {
      return Error(
          "the arguments of " + call.name + " are not a JSON object (" +
          (parsed.ok() ? std::string("got ") + JsonTypeName(*parsed) : parsed.status().message()) +
          "): " + call.arguments.substr(0, 200));
    }
    JsonReader a(*parsed);
    if (const Json* known = ToolArguments(call.name)) {
      for (const auto& [key, value] : parsed->items()) {
        if (known->contains(key)) continue;
        std::string names;
        for (const auto& [name, schema] : known->items())
          names += (names.empty() ? "" : ", ") + name;
        return Error(call.name + " has no argument '" + key.substr(0, 100) +
                     "'; its arguments are: " + names);
      }
    }
    // A required string, or an optional one left empty when absent.
    auto str = [&](const char* name, bool required, std::string* out) -> std::optional<ToolOutput> {
      if (required && !a.Has(name)) return Error(call.name + " needs the argument '" + name + "'");
      a.String(name, out);
      if (!a.ok()) return Error("the argument " + a.error().message + " (in " + call.name + ")");
      return std::nullopt;
    };
    repos::Workspace& ws = *env_.workspace;
    std::string path, content, pattern, old_text, new_text, summary, kind, secret, command, args;
    if (call.name == "list_files") {
      if (auto e = str("path", false, &path)) return *e;
      auto files = ws.ListFiles(path.empty() ? "." : path);
      if (!files.ok()) return Error(files.status().message());
      std::string out;
      for (const auto& f : *files) {
        out += f.path + (f.kind == repos::FileEntry::Kind::kDirectory ? "/" : "") + "\n";
      }
      return Reply(out.empty() ? "(empty)" : out);
    }
    if (call.name == "read_file") {
      if (auto e = str("path", true, &path)) return *e;
      int64_t start = 0, end = 0;
      a.Int("start_line", &start, Presence::kOptional, 0, INT32_MAX)
          .Int("end_line", &end, Presence::kOptional, 0, INT32_MAX);
      if (!a.ok()) return Error("the argument " + a.error().message + " (in read_file)");
      auto text = ws.ReadFile(path, static_cast<int>(start), static_cast<int>(end));
      if (!text.ok()) return Error(text.status().message());
      return Reply(*text);
    }
    if (call.name == "search") {
      if (auto e = str("pattern", true, &pattern)) return *e;
      if (auto e = str("path", false, &path)) return *e;
      auto matches = ws.Search(pattern, path);
      if (!matches.ok()) return Error(matches.status().message());
      std::string out;
      for (const auto& m : *matches)
        out += m.path + ":" + std::to_string(m.line) + ": " + m.text + "\n";
      return Reply(out.empty() ? "no matches" : out);
    }
    if (call.name == "write_file") {
      if (auto e = str("path", true, &path)) return *e;
      if (auto e = str("content", true, &content)) return *e;
      if (Status s = StartEdit(call.id); !s.ok()) return Error(s.message());
      auto snap = ws.WriteFile(path, content);
      if (!snap.ok()) return EditRefused(path, snap.status());
      MoveMtimePastLastRun(path);
      return Reply("wrote " + path + " (" + std::to_string(content.size()) + " bytes)");
    }
    if (call.name == "replace_in_file") {
      if (auto e = str("path", true, &path)) return *e;
      if (auto e = str("old", true, &old_text)) return *e;
      if (auto e = str("new", true, &new_text)) return *e;
      if (Status s = StartEdit(call.id); !s.ok()) return Error(s.message());
      auto snap = ws.ReplaceInFile(path, old_text, new_text);
      if (!snap.ok()) return EditRefused(path, snap.status());
      MoveMtimePastLastRun(path);
      return Reply("replaced in " + path);
    }
    if (call.name == "run_tests") {
      if (auto e = str("args", false, &args)) return *e;
      auto o = RunSandboxed(TestArgvWithArgs(env_.test_argv, args), ws.info().path);
      if (!o.ok()) return Error(o.status().message());
      return Reply((o->Succeeded() ? "tests passed: " : "tests failed: ") +
                   DescribeOutcome(*o, env_.budgets.max_tool_output));
    }
    if (call.name == "run_command") {
      if (auto e = str("command", true, &command)) return *e;
      // The intent first: a restart that finds it without a result does not run
      // the command again (InterruptedCommand).
      if (auto logged = env_.store->AppendEvent(task_.id, EventType::kCommandStarted,
                                                {{"tool_call_id", call.id}});
          !logged.ok()) {
        return Error("the command was not run: loomd cannot record it (" +
                     logged.status().message() + ")");
      }
      commands_started_.insert(call.id);
      auto o = RunSandboxed({"/bin/sh", "-c", command}, ws.info().path, /*counts_as_test=*/false);
      if (!o.ok()) return Error(o.status().message());
      return Reply(DescribeOutcome(*o, env_.budgets.max_tool_output));
    }
    if (call.name == "request_human") {
      if (auto e = str("kind", true, &kind)) return *e;
      if (auto e = str("summary", true, &summary)) return *e;
      if (auto e = str("secret_name", false, &secret)) return *e;
      if (!EscalationKinds().count(kind)) {
        return Error("kind must be one of api_key, gpu, network, approval, question (got '" + kind +
                     "')");
      }
      if (!policies::EscalationAllowed(*env_.policy, kind)) {
        return Error("this repository's policy does not let agents ask for '" + kind +
                     "'; do without it, or finish with what you have");
      }
      if (kind == "api_key" && secret.empty()) return Error("an api_key request needs secret_name");
      AgentOutcome o = Escalate(kind, summary, "agent",
                                secret.empty() ? std::nullopt : std::optional<std::string>(secret));
      ToolOutput out = Reply("a person has been asked; the task waits for the answer");
      out.next = o.result == AgentResult::kBlocked ? ToolOutput::Next::kBlocked
                                                   : ToolOutput::Next::kContinue;
      out.error = o.result != AgentResult::kBlocked;
      out.reason = o.reason;
      return out;
    }
    if (call.name == "finish") {
      if (auto e = str("summary", true, &summary)) return *e;
      return Finish(summary);
    }
    return Error("unknown tool '" + call.name +
                 "'; the tools are list_files, read_file, search, write_file, replace_in_file, "
                 "run_tests, run_command, request_human, finish");
  }

  // Runs `argv` in the sandbox on `dir` and appends a "test_run" event (outcome
  // with its output cut to what the model would see). The outcome returned has
  // the task's secrets masked.
  Result<sandbox::Outcome> RunSandboxed(std::vector<std::string> argv, const std::string& dir,
                                        bool counts_as_test = true) {
    auto started = Clock::now();
    Result<sandbox::Outcome> o = RunSandboxedQuietly(argv, dir, counts_as_test);
    if (!o.ok()) {
      ++sandbox_failures_;
      (void)env_.store->AppendEvent(task_.id, EventType::kSandboxError,
                                    {{"error", o.status().message()}});
      return o;
    }
    sandbox_failures_ = 0;
    // Every caller (tool results, the fail_to_pass event) gets the outcome masked
    // whole; what is recorded here is cut to size and masked once more.
    o->stdout_data = MaskSecrets(std::move(o->stdout_data), env_.secrets);
    o->stderr_data = MaskSecrets(std::move(o->stderr_data), env_.secrets);
    sandbox::Outcome run = *o;
    run.stdout_data =
        MaskSecrets(TruncateMiddle(run.stdout_data, env_.budgets.max_tool_output), env_.secrets);
    run.stderr_data =
        MaskSecrets(TruncateMiddle(run.stderr_data, env_.budgets.max_tool_output), env_.secrets);
    int64_t ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
    (void)env_.store->AppendEvent(task_.id,
                                  counts_as_test ? EventType::kTestRun : EventType::kCommandRun,
                                  {{"argv", argv},
                                   {"tree", dir == env_.workspace->info().path ? "branch" : "base"},
                                   {"outcome", run.ToJson()},
                                   {"ms", ms}});
    return o;
  }

  Result<sandbox::Outcome> RunSandboxedQuietly(std::vector<std::string> argv,
                                               const std::string& dir, bool counts_as_test) {
    if (argv.empty())
      return Status::FailedPrecondition("the repository's policy has no test command");
    if (counts_as_test) {
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
    last_run_start_s_ = std::time(nullptr);
    return env_.executor->Run(spec);
  }

  // Caches keyed on a file's mtime in whole seconds and its size (Python's bytecode,
  // make, many build tools) would miss an edit made in the same second as the last
  // run that keeps the size (`-` -> `+`): an edited file's mtime is moved past the
  // second the last run started in (at most a second ahead of the clock).
  void MoveMtimePastLastRun(const std::string& path) {
    std::string full = env_.workspace->info().path + "/" + path;
    struct stat st;
    if (lstat(full.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;
    time_t past = last_run_start_s_ + 1;
    if (st.st_mtim.tv_sec >= past) return;
    const timespec times[2] = {{past, 0}, {past, 0}};
    (void)utimensat(AT_FDCWD, full.c_str(), times, AT_SYMLINK_NOFOLLOW);
  }

  // finish(summary): the task is `verifying` while the suite runs (written before
  // it runs); it goes back to `running` when verification fails.
  ToolOutput Finish(const std::string& summary) {
    Status s = env_.store->Transition(task_.id, TaskState::kRunning, TaskState::kVerifying,
                                      "finish called: verifying");
    if (!s.ok()) return Error("cannot start verification: " + s.message());
    ToolOutput out = Verify(summary);
    if (out.next != ToolOutput::Next::kReview) {
      s = env_.store->Transition(task_.id, TaskState::kVerifying, TaskState::kRunning,
                                 "verification failed");
      if (!s.ok()) return Error("cannot resume after verification: " + s.message());
    }
    return out;
  }

  // Runs the suite on the final tree (and FAIL_TO_PASS for bugs), then commits.
  ToolOutput Verify(const std::string& summary) {
    repos::Workspace& ws = *env_.workspace;
    auto suite = RunSandboxed(env_.test_argv, ws.info().path);
    if (!suite.ok()) return Error("cannot run the tests: " + suite.status().message());
    if (!suite->Succeeded()) {
      return Refuse(
          "not finished: the test suite fails on your final tree. Fix it and call finish "
          "again.\n" +
          DescribeOutcome(*suite, env_.budgets.max_tool_output));
    }
    if (task_.kind == "bug" && env_.require_failing_test && !env_.base_tree.empty()) {
      ToolOutput f2p = CheckFailToPass();
      if (f2p.error) return f2p;
    }
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
      return Error("cannot commit the branch: " + commit.status().message());
    }
    ToolOutput out = Reply(what);
    out.next = ToolOutput::Next::kReview;
    out.reason = "verified: the suite passes on " + ws.info().branch;
    return out;
  }

  // A refused edit. A path the policy protects is a policy matter for a person:
  // the orchestrator asks for an approval and the task waits (approved, the
  // workspace reopens with protected paths editable; denied, the agent reads why).
  ToolOutput EditRefused(const std::string& path, const Status& s) {
    if (s.code() != StatusCode::kPermissionDenied ||
        policies::Decide(*env_.policy, path) != policies::PathDecision::kProtected ||
        !env_.policy->review.require_approval_for_protected) {
      return Error(s.message());
    }
    AgentOutcome o =
        Escalate("approval",
                 "The agent of task " + std::to_string(task_.id) + " wants to edit " + path +
                     ", which this repository's policy protects. Approve to let it "
                     "edit protected paths in this task, or deny with a reason.",
                 "orchestrator", std::nullopt);
    ToolOutput out = Refuse(path +
                            " is protected by the repository's policy; a person has "
                            "been asked to approve editing it. Once answered, try again "
                            "(if approved) or do without it.");
    if (o.result == AgentResult::kBlocked) {
      out.next = ToolOutput::Next::kBlocked;
      out.reason = o.reason;
    }
    return out;
  }

  bool HasChanges() {
    auto diff = env_.workspace->Diff();
    return diff.ok() && !diff->files.empty();
  }

  // Before an edit: records the snapshot step it starts from. When loomd dies
  // between the edit and its recorded result, the resumed call first rolls the
  // worktree back to that step, so every edit takes effect exactly once.
  Status StartEdit(const std::string& call_id) {
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

  // SWE-bench's FAIL_TO_PASS: the tests the agent added or changed, applied to the
  // base tree, must fail there (they reproduce the bug); the suite passes on the
  // branch (checked by the caller).
  ToolOutput CheckFailToPass() {
    repos::Workspace& ws = *env_.workspace;
    auto diff = ws.Diff();
    if (!diff.ok()) return Error("cannot diff the branch: " + diff.status().message());
    std::vector<std::string> tests;
    for (const auto& f : diff->files) {
      if (f.change != repos::FileStat::Change::kDeleted && IsTestPath(f.path))
        tests.push_back(f.path);
    }
    if (tests.empty()) {
      return Refuse(
          "not finished: this is a bug report, so add a test that reproduces the bug (it must "
          "fail without your fix and pass with it), then call finish again.");
    }
    std::string tmp =
        env_.scratch_dir + "/verify-" + std::to_string(task_.id) + "-" + std::to_string(NowMs());
    Status copied = CopyTree(env_.base_tree, tmp);
    for (const auto& path : tests) {
      if (!copied.ok()) break;
      auto text = ws.ReadFile(path);
      if (!text.ok()) {
        copied = text.status();
        break;
      }
      std::error_code ec;
      fs::create_directories(fs::path(tmp + "/" + path).parent_path(), ec);
      std::ofstream(tmp + "/" + path, std::ios::binary | std::ios::trunc) << *text;
    }
    ToolOutput out;
    if (!copied.ok()) {
      out = Error("cannot prepare the base tree for verification: " + copied.message());
    } else {
      auto base = RunSandboxed(env_.test_argv, tmp);
      if (!base.ok()) {
        out = Error("cannot run the tests on the base tree: " + base.status().message());
      } else if (base->Succeeded()) {
        std::string names;
        for (const auto& t : tests) names += " " + t;
        out = Refuse("not finished: your test changes (" + names.substr(1) +
                     ") pass on the original code too, so they do not reproduce the bug. Make a "
                     "test fail without the fix, then call finish again.");
      } else {
        (void)env_.store->AppendEvent(task_.id, EventType::kFailToPass,
                                      {{"tests", tests}, {"base", base->ToJson()}});
      }
    }
    std::error_code ec;
    fs::remove_all(tmp, ec);
    return out;
  }

  const Task& task_;
  AgentEnv& env_;
  Json messages_ = Json::array();
  std::vector<ToolCall> pending_;
  std::map<std::string, int> edit_started_;  // tool_call_id -> snapshot step before the edit
  std::set<std::string> commands_started_;   // run_command calls of the last reply that started
  bool verified_ = false;  // the log ends with a finish that verified and committed
  int64_t steps_ = 0, tokens_ = 0, test_runs_ = 0, tests_this_call_ = 0;
  int64_t started_ms_ = 0;
  int malformed_ = 0;
  // Sandbox runs that failed to start, in a row: the host, not the agent.
  static constexpr int kMaxSandboxFailures = 3;
  int sandbox_failures_ = 0;
  time_t last_run_start_s_ = std::time(nullptr);  // of the last sandboxed run (or of the loop)
  std::string last_key_;
  int repeats_ = 0;
  std::map<std::string, int> retries_;  // tool_call_id -> "tool_retry" events
};

Json Fn(const char* name, const char* description, Json properties,
        std::vector<std::string> required) {
  return {
      {"type", "function"},
      {"function",
       {{"name", name},
        {"description", description},
        {"parameters", {{"type", "object"}, {"properties", properties}, {"required", required}}}}}};
}

Json Prop(const char* type, const char* description) {
  return {{"type", type}, {"description", description}};
}

}  // namespace

Json AgentToolSchemas() {
  static const Json kTools = Json::array({
      Fn("list_files", "List the files and directories under a path of the repository.",
         {{"path", Prop("string", "Directory relative to the repository root; '.' for the root.")}},
         {"path"}),
      Fn("read_file",
         "Read a file, optionally only lines start_line..end_line (1-based, inclusive).",
         {{"path", Prop("string", "File relative to the repository root.")},
          {"start_line", Prop("integer", "First line to read.")},
          {"end_line", Prop("integer", "Last line to read.")}},
         {"path"}),
      Fn("search", "Search the repository's files for a literal text.",
         {{"pattern", Prop("string", "Text to find.")},
          {"path", Prop("string", "Limit the search to this directory or file.")}},
         {"pattern"}),
      Fn("write_file", "Create or overwrite a file with the given content.",
         {{"path", Prop("string", "File relative to the repository root.")},
          {"content", Prop("string", "The whole new content.")}},
         {"path", "content"}),
      Fn("replace_in_file", "Replace one exact occurrence of `old` with `new` in a file.",
         {{"path", Prop("string", "File relative to the repository root.")},
          {"old", Prop("string", "Exact text to replace; it must occur exactly once.")},
          {"new", Prop("string", "Replacement text.")}},
         {"path", "old", "new"}),
      Fn("run_tests", "Run the repository's test command in the sandbox.",
         {{"args", Prop("string", "Extra arguments for the test command (optional).")}}, {}),
      Fn("run_command", "Run a shell command in the sandbox, in the repository root.",
         {{"command", Prop("string", "The command line.")}}, {"command"}),
      Fn("request_human",
         "Ask a person for what only a person can give; the task waits for the answer.",
         {{"kind", Prop("string", "api_key, gpu, network, approval or question.")},
          {"summary", Prop("string", "What you need and why.")},
          {"secret_name", Prop("string", "For api_key: the environment variable to set.")}},
         {"kind", "summary"}),
      Fn("finish", "Declare the change complete; it is verified by running the tests.",
         {{"summary", Prop("string", "What was changed and why (becomes the commit message).")}},
         {"summary"}),
  });
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

std::vector<std::string> TestArgvWithArgs(std::vector<std::string> argv, const std::string& args) {
  std::istringstream in(args);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  if (words.empty()) return argv;
  if (argv.size() == 3 && argv[1] == "-c") {
    argv[2] += " \"$@\"";
    argv.push_back("sh");  // $0
  }
  argv.insert(argv.end(), words.begin(), words.end());
  return argv;
}

std::string TruncateMiddle(const std::string& text, size_t max) {
  if (text.size() <= max) return text;
  size_t head = max * 2 / 3, tail = max - head;
  return text.substr(0, head) + "\n[... " + std::to_string(text.size() - head - tail) +
         " bytes cut ...]\n" + text.substr(text.size() - tail);
}

}  // namespace loom
