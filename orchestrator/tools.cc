// The tool table. See tools.h for the contract; the design in brief:
//
// - One row per tool: its schema is built next to its handler, and everything
//   else that names tools (the schemas sent to the model, dispatch, the argument
//   check, the "unknown tool" answer) reads the table.
// - RunTool is the boundary for model-controlled input: the arguments are parsed
//   (depth-limited, no exceptions), checked against the row's properties, and
//   read field by field; handlers see only typed values.
// - Handlers hold no state. What outlives a call (test-run counters, the edit
//   journal, escalations) lives behind ToolContext, in the agent loop.
#include "orchestrator/tools.h"

#include <sstream>

namespace loom {
namespace {

Json Fn(const char* name, const char* description, Json properties,
        std::vector<std::string> required) {
  return {
      {"type", "function"},
      {"function",
       {{"name", name},
        {"description", description},
        {"parameters", {{"type", "object"}, {"properties", properties}, {"required", required}}}}}};
}

// One row of the table: the name is written once, in the row, and the schema is
// built from it.
ToolSpec Row(const char* name, ToolEffect effect, const char* description, Json properties,
             std::vector<std::string> required, ToolHandler handler) {
  return {name, effect, Fn(name, description, std::move(properties), std::move(required)), handler};
}

Json Prop(const char* type, const char* description) {
  return {{"type", type}, {"description", description}};
}

// A required string, or an optional one left empty when absent; an error result
// for the model when it is missing or not a string.
std::optional<ToolOutput> Str(JsonReader& a, const ToolCall& call, const char* name,
                              Presence presence, std::string* out) {
  if (presence != Presence::kOptional && !a.Has(name))
    return ToolError(call.name + " needs the argument '" + name + "'");
  a.String(name, out);
  if (!a.ok()) return ToolError("the argument " + a.error().message + " (in " + call.name + ")");
  return std::nullopt;
}

constexpr Presence kRequired = Presence::kRequired;
constexpr Presence kOptional = Presence::kOptional;

ToolOutput ListFiles(ToolContext& ctx, const ToolCall& call, JsonReader& a) {
  std::string path;
  if (auto e = Str(a, call, "path", kOptional, &path)) return *e;
  auto files = ctx.workspace().ListFiles(path.empty() ? "." : path);
  if (!files.ok()) return ToolError(files.status().message());
  std::string out;
  for (const auto& f : *files) {
    out += f.path + (f.kind == repos::FileEntry::Kind::kDirectory ? "/" : "") + "\n";
  }
  return ToolReply(out.empty() ? "(empty)" : out);
}

ToolOutput ReadFile(ToolContext& ctx, const ToolCall& call, JsonReader& a) {
  std::string path;
  if (auto e = Str(a, call, "path", kRequired, &path)) return *e;
  int64_t start = 0, end = 0;
  a.Int("start_line", &start, Presence::kOptional, 0, INT32_MAX)
      .Int("end_line", &end, Presence::kOptional, 0, INT32_MAX);
  if (!a.ok()) return ToolError("the argument " + a.error().message + " (in read_file)");
  auto text = ctx.workspace().ReadFile(path, static_cast<int>(start), static_cast<int>(end));
  if (!text.ok()) return ToolError(text.status().message());
  return ToolReply(*text);
}

ToolOutput Search(ToolContext& ctx, const ToolCall& call, JsonReader& a) {
  std::string pattern, path;
  if (auto e = Str(a, call, "pattern", kRequired, &pattern)) return *e;
  if (auto e = Str(a, call, "path", kOptional, &path)) return *e;
  auto matches = ctx.workspace().Search(pattern, path);
  if (!matches.ok()) return ToolError(matches.status().message());
  std::string out;
  for (const auto& m : *matches)
    out += m.path + ":" + std::to_string(m.line) + ": " + m.text + "\n";
  return ToolReply(out.empty() ? "no matches" : out);
}

// A refused edit. A path the policy protects is a policy matter for a person:
// the orchestrator asks for an approval and the task waits (approved, the
// workspace reopens with protected paths editable; denied, the agent reads why).
ToolOutput EditRefused(ToolContext& ctx, const std::string& path, const Status& s) {
  const policies::Policy& policy = ctx.policy();
  if (s.code() != StatusCode::kPermissionDenied ||
      policies::Decide(policy, path) != policies::PathDecision::kProtected ||
      !policy.review.require_approval_for_protected) {
    return ToolError(s.message());
  }
  auto blocked =
      ctx.Escalate("approval",
                   "The agent of task " + std::to_string(ctx.task().id) + " wants to edit " + path +
                       ", which this repository's policy protects. Approve to let it "
                       "edit protected paths in this task, or deny with a reason.",
                   "orchestrator", std::nullopt);
  ToolOutput out = ToolRefusal(path +
                               " is protected by the repository's policy; a person has "
                               "been asked to approve editing it. Once answered, try again "
                               "(if approved) or do without it.");
  if (blocked.ok()) {
    out.next = ToolOutput::Next::kBlocked;
    out.reason = *blocked;
  }
  return out;
}

ToolOutput WriteFile(ToolContext& ctx, const ToolCall& call, JsonReader& a) {
  std::string path, content;
  if (auto e = Str(a, call, "path", kRequired, &path)) return *e;
  if (auto e = Str(a, call, "content", kRequired, &content)) return *e;
  if (Status s = ctx.EditStarting(call.id); !s.ok()) return ToolError(s.message());
  auto snap = ctx.workspace().WriteFile(path, content);
  if (!snap.ok()) return EditRefused(ctx, path, snap.status());
  ctx.EditApplied(path);
  return ToolReply("wrote " + path + " (" + std::to_string(content.size()) + " bytes)");
}

ToolOutput ReplaceInFile(ToolContext& ctx, const ToolCall& call, JsonReader& a) {
  std::string path, old_text, new_text;
  if (auto e = Str(a, call, "path", kRequired, &path)) return *e;
  if (auto e = Str(a, call, "old", kRequired, &old_text)) return *e;
  if (auto e = Str(a, call, "new", kRequired, &new_text)) return *e;
  if (Status s = ctx.EditStarting(call.id); !s.ok()) return ToolError(s.message());
  auto snap = ctx.workspace().ReplaceInFile(path, old_text, new_text);
  if (!snap.ok()) return EditRefused(ctx, path, snap.status());
  ctx.EditApplied(path);
  return ToolReply("replaced in " + path);
}

ToolOutput RunTests(ToolContext& ctx, const ToolCall& call, JsonReader& a) {
  std::string args;
  if (auto e = Str(a, call, "args", kOptional, &args)) return *e;
  auto o = ctx.RunSandboxed(TestArgvWithArgs(ctx.test_argv(), args), RunKind::kTest);
  if (!o.ok()) return ToolError(o.status().message());
  return ToolReply((o->Succeeded() ? "tests passed: " : "tests failed: ") +
                   DescribeOutcome(*o, ctx.max_tool_output()));
}

ToolOutput RunCommand(ToolContext& ctx, const ToolCall& call, JsonReader& a) {
  std::string command;
  if (auto e = Str(a, call, "command", kRequired, &command)) return *e;
  // The intent first: a restart that finds it without a result does not run the
  // command again.
  if (Status s = ctx.CommandStarting(call.id); !s.ok()) {
    return ToolError("the command was not run: loomd cannot record it (" + s.message() + ")");
  }
  auto o = ctx.RunSandboxed({"/bin/sh", "-c", command}, RunKind::kCommand);
  if (!o.ok()) return ToolError(o.status().message());
  return ToolReply(DescribeOutcome(*o, ctx.max_tool_output()));
}

std::string JoinedKinds() {
  std::string out;
  const auto& kinds = EscalationKinds();
  for (size_t i = 0; i < kinds.size(); ++i) {
    out += (i == 0 ? "" : i + 1 == kinds.size() ? " or " : ", ") + kinds[i];
  }
  return out;
}

ToolOutput RequestHuman(ToolContext& ctx, const ToolCall& call, JsonReader& a) {
  std::string kind, summary, secret;
  if (auto e = Str(a, call, "kind", kRequired, &kind)) return *e;
  if (auto e = Str(a, call, "summary", kRequired, &summary)) return *e;
  if (auto e = Str(a, call, "secret_name", kOptional, &secret)) return *e;
  const auto& kinds = EscalationKinds();
  if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) {
    return ToolError("kind must be one of " + JoinedKinds() + " (got '" + kind + "')");
  }
  if (kind != "infrastructure" && !policies::EscalationAllowed(ctx.policy(), kind)) {
    return ToolError("this repository's policy does not let agents ask for '" + kind +
                     "'; do without it, or finish with what you have");
  }
  if (kind == "api_key" && secret.empty()) return ToolError("an api_key request needs secret_name");
  // Nobody could answer it: the API refuses a secret the policy does not list,
  // so the task would wait for good. The agent hears it now instead.
  if (kind == "api_key" && !policies::SecretAllowed(ctx.policy(), secret)) {
    std::string allowed;
    for (const std::string& name : ctx.policy().secrets.allowed) {
      allowed += (allowed.empty() ? "" : ", ") + name;
    }
    return ToolError("this repository's policy does not allow the secret '" + secret +
                     "' ([secrets] allowed: " + (allowed.empty() ? "none" : allowed) +
                     "), so nobody can give it; do without it, or finish with what you have");
  }
  auto blocked = ctx.Escalate(kind, summary, "agent",
                              secret.empty() ? std::nullopt : std::optional<std::string>(secret));
  ToolOutput out = ToolReply("a person has been asked; the task waits for the answer");
  if (blocked.ok()) {
    out.next = ToolOutput::Next::kBlocked;
    out.reason = *blocked;
  } else {
    out.error = true;
    out.reason = "cannot record an escalation: " + blocked.status().message();
  }
  return out;
}

// finish(summary): a question ends with its answer (nothing is verified or
// committed); any other task is verified and committed by the context.
ToolOutput Finish(ToolContext& ctx, const ToolCall& call, JsonReader& a) {
  std::string summary;
  if (auto e = Str(a, call, "summary", kRequired, &summary)) return *e;
  if (ctx.task().kind == "question") {
    if (summary.find_first_not_of(" \t\r\n") == std::string::npos) {
      return ToolError("finish needs your answer to the question as its summary");
    }
    ToolOutput out = ToolReply("answered; the reporter will see your answer");
    out.next = ToolOutput::Next::kAnswered;
    out.reason = "answered";
    out.answer = summary;
    return out;
  }
  return ctx.FinishChange(summary);
}

}  // namespace

ToolOutput ToolReply(std::string content) {
  ToolOutput out;
  out.content = std::move(content);
  return out;
}

ToolOutput ToolRefusal(std::string content) {
  ToolOutput out = ToolReply(std::move(content));
  out.error = true;
  return out;
}

ToolOutput ToolError(std::string message) { return ToolRefusal("error: " + std::move(message)); }

const std::vector<std::string>& EscalationKinds() {
  static const std::vector<std::string> kKinds = {"api_key",  "gpu",      "network",
                                                  "approval", "question", "infrastructure"};
  return kKinds;
}

const std::vector<ToolSpec>& Tools() {
  static const std::vector<ToolSpec> kTools = {
      Row("list_files", ToolEffect::kReads,
          "List the files and directories under a path of the repository.",
          {{"path",
            Prop("string", "Directory relative to the repository root; '.' for the root.")}},
          {"path"}, ListFiles),
      Row("read_file", ToolEffect::kReads,
          "Read a file, optionally only lines start_line..end_line (1-based, inclusive).",
          {{"path", Prop("string", "File relative to the repository root.")},
           {"start_line", Prop("integer", "First line to read.")},
           {"end_line", Prop("integer", "Last line to read.")}},
          {"path"}, ReadFile),
      Row("search", ToolEffect::kReads, "Search the repository's files for a literal text.",
          {{"pattern", Prop("string", "Text to find.")},
           {"path", Prop("string", "Limit the search to this directory or file.")}},
          {"pattern"}, Search),
      Row("write_file", ToolEffect::kEdits, "Create or overwrite a file with the given content.",
          {{"path", Prop("string", "File relative to the repository root.")},
           {"content", Prop("string", "The whole new content.")}},
          {"path", "content"}, WriteFile),
      Row("replace_in_file", ToolEffect::kEdits,
          "Replace one exact occurrence of `old` with `new` in a file.",
          {{"path", Prop("string", "File relative to the repository root.")},
           {"old", Prop("string", "Exact text to replace; it must occur exactly once.")},
           {"new", Prop("string", "Replacement text.")}},
          {"path", "old", "new"}, ReplaceInFile),
      Row("run_tests", ToolEffect::kRuns, "Run the repository's test command in the sandbox.",
          {{"args", Prop("string", "Extra arguments for the test command (optional).")}}, {},
          RunTests),
      Row("run_command", ToolEffect::kRuns,
          "Run a shell command in the sandbox, in the repository root.",
          {{"command", Prop("string", "The command line.")}}, {"command"}, RunCommand),
      Row("request_human", ToolEffect::kAsks,
          "Ask a person for what only a person can give; the task waits for the answer.",
          {{"kind", Prop("string", "api_key, gpu, network, approval or question.")},
           {"summary", Prop("string", "What you need and why.")},
           {"secret_name", Prop("string", "For api_key: the environment variable to set.")}},
          {"kind", "summary"}, RequestHuman),
      Row("finish", ToolEffect::kEnds,
          "Declare the change complete; it is verified by running the tests.",
          {{"summary", Prop("string", "What was changed and why (becomes the commit message).")}},
          {"summary"}, Finish),
  };
  return kTools;
}

const ToolSpec* FindTool(const std::string& name) {
  for (const ToolSpec& tool : Tools()) {
    if (tool.name == name) return &tool;
  }
  return nullptr;
}

ToolOutput RunTool(ToolContext& ctx, const ToolCall& call) {
  auto parsed = ParseJson(call.arguments.empty() ? "{}" : call.arguments);
  if (!parsed.ok() || !parsed->is_object()) {
    return ToolError(
        "the arguments of " + call.name + " are not a JSON object (" +
        (parsed.ok() ? std::string("got ") + JsonTypeName(*parsed) : parsed.status().message()) +
        "): " + call.arguments.substr(0, 200));
  }
  const ToolSpec* tool = FindTool(call.name);
  if (tool == nullptr) {
    std::string names;
    for (const ToolSpec& t : Tools()) names += (names.empty() ? "" : ", ") + t.name;
    return ToolError("unknown tool '" + call.name + "'; the tools are " + names);
  }
  const Json& known = MemberOrNull(
      MemberOrNull(MemberOrNull(tool->schema, "function"), "parameters"), "properties");
  for (const auto& [key, value] : parsed->items()) {
    if (known.contains(key)) continue;
    std::string names;
    for (const auto& [name, schema] : known.items()) names += (names.empty() ? "" : ", ") + name;
    return ToolError(call.name + " has no argument '" + key.substr(0, 100) +
                     "'; its arguments are: " + names);
  }
  if (tool->effect == ToolEffect::kEdits && ctx.task().kind == "question") {
    return ToolError(
        "this task is a question: it is answered, not changed, so " + call.name +
        " is refused. Read what you need, then call finish(summary) with your answer.");
  }
  JsonReader a(*parsed);
  return tool->handler(ctx, call, a);
}

std::string DescribeOutcome(const sandbox::Outcome& o, size_t max) {
  std::string head;
  if (o.limit == sandbox::LimitHit::kCancelled) {
    head = "killed: the task was cancelled";
  } else if (o.limit != sandbox::LimitHit::kNone) {
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
