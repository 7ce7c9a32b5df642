// Per-repository policies: what an agent may touch, how its sandbox runs are
// limited, what it may spend, what it may ask people for, and who decides what
// ships. A policy is a TOML file layered over the compiled-in defaults of
// policies/default.toml; docs/policies.md describes the format field by field.
//
// Pure logic: loading reads files, nothing else does I/O. Policy is a plain value
// type (thread-compatible); the free functions are thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/glob.h"
#include "common/role.h"
#include "common/status.h"

namespace loom::policies {

// Network access of sandbox runs; mirrors sandbox::Network.
enum class NetworkAccess { kNone, kLoopback };

// What an agent may ask a person for with request_human. The orchestrator's own
// escalations (no inference backend, a policy violation) are never restricted.
enum class EscalationKind { kApiKey, kGpu, kNetwork, kApproval, kQuestion };

// Policies name roles (loom::Role of common/role.h) for approvers and mergers;
// they only ever grant kEngineer and kAdmin.
using loom::Role;
// A policy's path globs follow common/glob.h; these names are that one matcher.
using loom::GlobMatch;
using loom::ValidateGlob;

// Every member below is one field of the file, `[section] key`, with the same
// default as policies/default.toml (a test keeps the two equal).
struct RepoPolicy {
  std::string target_branch = "main";  // branch that reviewed work merges into
  std::string test_command;            // run with /bin/sh -c; empty: the registered one
  std::string instructions_file;       // empty: AGENTS.md, else .loom/instructions.md
  bool operator==(const RepoPolicy&) const = default;
};

struct PathsPolicy {
  // Globs follow the rules of common/glob.h (ValidateGlob checks them at load).
  std::vector<std::string> allowed = {"**"};  // globs the agent may edit
  // TOML key `protected`: globs edited only after an approval escalation.
  std::vector<std::string> protected_paths = {".github/", ".gitlab-ci.yml", ".loom/", "AGENTS.md"};
  bool operator==(const PathsPolicy&) const = default;
};

struct SandboxPolicy {
  int64_t timeout_s = 600;      // wall clock of one run, whole process tree
  int64_t cpu_s = 600;          // CPU seconds per process
  int64_t memory_mb = 4096;     // memory of one run
  int64_t pids = 512;           // processes + threads
  int64_t open_files = 1024;    // per process
  int64_t file_size_mb = 1024;  // largest file a run may write
  int64_t output_kb = 4096;     // stdout + stderr captured
  int64_t tmp_mb = 512;         // private /tmp
  NetworkAccess network = NetworkAccess::kNone;
  bool operator==(const SandboxPolicy&) const = default;
};

struct BudgetsPolicy {
  int64_t max_steps = 60;                 // model calls per task
  int64_t max_tokens = 4'000'000;         // prompt + completion tokens per task
  int64_t max_wall_minutes = 90;          // from the task's first event
  int64_t max_test_runs = 30;             // run_tests calls + verifications
  int64_t max_consecutive_malformed = 4;  // replies with no usable tool call in a row
  int64_t stuck_repeats = 3;              // same call with the same result, in a row
  int64_t max_tool_attempts = 3;          // starts of one tool call that loomd did not outlive
  int64_t max_tool_output_kb = 16;        // of a tool result, as the model sees it
  bool operator==(const BudgetsPolicy&) const = default;
};

struct EscalationsPolicy {
  std::vector<EscalationKind> allowed = {EscalationKind::kApiKey, EscalationKind::kGpu,
                                         EscalationKind::kNetwork, EscalationKind::kApproval,
                                         EscalationKind::kQuestion};
  bool operator==(const EscalationsPolicy&) const = default;
};

struct SecretsPolicy {
  std::vector<std::string> allowed;  // names that may be injected into sandbox runs
  bool operator==(const SecretsPolicy&) const = default;
};

struct ReviewPolicy {
  std::vector<Role> approvers = {Role::kEngineer, Role::kAdmin};
  std::vector<Role> mergers = {Role::kEngineer, Role::kAdmin};
  bool require_approval_for_protected = true;
  bool auto_merge = true;  // an approved (hence green) branch merges at once
  bool requester_may_approve = false;
  // Tasks of the repository waiting in review at once; while this many are, no
  // queued task of the repository is leased (it stays queued with the reason).
  int64_t max_waiting = 200;
  bool operator==(const ReviewPolicy&) const = default;
};

// What a task leaves on disk once it is over (see docs/operator-guide.md,
// "Retention"): worktrees of merged, rejected, cancelled and answered tasks go
// at once; a failed task keeps its worktree and branch this long, for a look
// before a retry.
struct RetentionPolicy {
  int64_t failed_hours = 168;
  bool keep_merged_branch = true;     // the branch stays as a record of the merge
  bool keep_rejected_branch = false;  // the transcript keeps every edit
  bool operator==(const RetentionPolicy&) const = default;
};

struct AgentPolicy {
  std::string author_name = "Loom";
  std::string author_email = "loom@localhost";
  bool require_failing_test_for_bugs = true;
  bool operator==(const AgentPolicy&) const = default;
};

// The forge the repository's pull/merge requests live on, and the secrets
// loomd uses with it (docs/forges.md). Empty `kind`: none.
struct ForgePolicy {
  std::string kind;            // "" | "github" | "gitlab"
  std::string api_url;         // empty: https://api.github.com or https://gitlab.com/api/v4
  std::string project;         // GitHub "owner/name"; GitLab "group/name" or its numeric id
  std::string token_secret;    // secret holding the API token
  std::string webhook_secret;  // secret holding the webhook secret (HMAC key / X-Gitlab-Token)
  // An issue opened with this label, or given it later, becomes feedback; empty:
  // every opened issue.
  std::string issue_label = "loom";
  bool operator==(const ForgePolicy&) const = default;
};

struct Policy {
  RepoPolicy repo;
  PathsPolicy paths;
  SandboxPolicy sandbox;
  BudgetsPolicy budgets;
  EscalationsPolicy escalations;
  SecretsPolicy secrets;
  ReviewPolicy review;
  RetentionPolicy retention;
  AgentPolicy agent;
  ForgePolicy forge;
  bool operator==(const Policy&) const = default;
};

// ---- Loading ---------------------------------------------------------------
// Errors are InvalidArgument, one line per problem (all problems of the text are
// reported, in file order): "<path>:<line>:<column>: <field>: <what>", e.g.
// "repo.toml:7:1: budgets.max_step: unknown key; did you mean max_steps?".

// The compiled-in policies/default.toml. Never fails (a test proves it parses).
const Policy& DefaultPolicy();
// The text of policies/default.toml as compiled in.
std::string_view DefaultPolicyText();

// Parses `text` over `base`: fields the text sets replace those of `base` (arrays
// are replaced whole, never merged). `path` only names the text in errors.
Result<Policy> ParsePolicy(std::string_view text, std::string_view path,
                           const Policy& base = DefaultPolicy());
// Reads and parses a file: NotFound when it does not exist, IoError when it
// cannot be read, InvalidArgument as above.
Result<Policy> LoadPolicy(const std::string& path, const Policy& base = DefaultPolicy());

// Loads `<dir>/*.toml`, one policy per repository, keyed by file name without
// `.toml`. `<dir>/default.toml`, when present, is no repository: it is layered
// between the compiled-in defaults and every repository's file. Hidden files and
// other names are ignored. Every error of every file is reported (sorted by file);
// an empty directory gives an empty map; NotFound when `dir` is no directory.
Result<std::map<std::string, Policy>> LoadPolicyDir(const std::string& dir);

// ---- Evaluation ------------------------------------------------------------

enum class PathDecision {
  kAllowed,    // the agent may edit it
  kProtected,  // allowed, but only after an `approval` escalation is granted
  kOutside,    // not matched by paths.allowed (or not a clean relative path): refused
};
std::string_view PathDecisionName(PathDecision decision);  // "allowed", ...

// `path` is relative to the worktree root, '/'-separated ("src/a.py", "./src/a.py").
// Absolute paths and paths with ".." segments are kOutside (fail closed; repos/
// resolves symlinks before asking). kProtected only when
// review.require_approval_for_protected; an unallowed protected path is kOutside.
PathDecision Decide(const Policy& policy, std::string_view path);

bool EscalationAllowed(const Policy& policy, EscalationKind kind);
// Unknown kind names are never allowed.
bool EscalationAllowed(const Policy& policy, std::string_view kind);
std::optional<EscalationKind> ParseEscalationKind(std::string_view name);  // "api_key"
std::string_view EscalationKindName(EscalationKind kind);

// True when `name` is listed in secrets.allowed (exact, case-sensitive).
bool SecretAllowed(const Policy& policy, std::string_view name);

// May a token of `role` approve a task requested by `requester_token_id`?
// The role must be in review.approvers, the approver must be identified
// (approver_token_id > 0), and unless review.requester_may_approve it must not
// be the requester. requester_token_id 0 means "no token" and matches nobody.
bool MayApprove(const Policy& policy, Role role, int64_t requester_token_id,
                int64_t approver_token_id);
// May a token of `role` merge an approved branch (review.mergers)?
bool MayMerge(const Policy& policy, Role role);

// ---- The format, for tools and docs ----------------------------------------
struct FieldInfo {
  std::string_view name;  // "budgets.max_steps"
  std::string_view type;  // "integer", "string", "boolean", "array of globs", ...
  int64_t min = 0;        // integers only: the inclusive bounds
  int64_t max = 0;
};
// Every field, in the order of the format's sections.
std::span<const FieldInfo> PolicyFields();

}  // namespace loom::policies
