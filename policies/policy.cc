// Policy loading and evaluation.
//
// One table, Fields(), describes the whole format: each field's section, key,
// type, bounds or checker, and where it lives in Policy. Parsing walks the TOML
// document against that table, so unknown keys, wrong types, bounds and
// "did you mean" all come from one place, and PolicyFields() (for docs and
// tests) cannot drift from what the parser accepts. toml++ throws; it is called
// only in ParseToml(), which converts its error. Every problem of a document is
// collected (sorted by position), so a person fixes a file in one pass.
#include "policies/policy.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <variant>

#include "policies/internal/default_policy.h"

namespace loom::policies {
namespace {

// An error message for a bad string value, or empty when it is fine.
using StringCheck = std::string (*)(std::string_view);

using StringAccess = std::string& (*)(Policy&);
using IntAccess = int64_t& (*)(Policy&);
using BoolAccess = bool& (*)(Policy&);
using StringsAccess = std::vector<std::string>& (*)(Policy&);
using NetworkAccessor = NetworkAccess& (*)(Policy&);
using KindsAccess = std::vector<EscalationKind>& (*)(Policy&);
using RolesAccess = std::vector<Role>& (*)(Policy&);
using Access = std::variant<StringAccess, IntAccess, BoolAccess, StringsAccess, NetworkAccessor,
                            KindsAccess, RolesAccess>;

struct Field {
  std::string_view section;
  std::string_view key;
  std::string_view type;
  Access access;
  int64_t min = 0, max = 0;     // IntAccess only
  StringCheck check = nullptr;  // StringAccess and StringsAccess only
};

bool HasControl(std::string_view s, bool allow_newline) {
  return std::any_of(s.begin(), s.end(), [&](char c) {
    auto u = static_cast<unsigned char>(c);
    if (allow_newline && (c == '\n' || c == '\t')) return false;
    return u < 0x20 || u == 0x7f;
  });
}

std::string CheckBranch(std::string_view b) {
  if (b.empty()) return "must not be empty";
  if (b.size() > 255) return "longer than 255 characters";
  if (HasControl(b, false) || b.find_first_of(" ~^:?*[\\") != std::string_view::npos)
    return "not a valid branch name (no spaces, control characters or ~^:?*[\\)";
  if (b.front() == '-' || b.front() == '/' || b.back() == '/' || b.back() == '.' ||
      b.find("..") != std::string_view::npos || b.find("//") != std::string_view::npos ||
      b.find("@{") != std::string_view::npos || b.ends_with(".lock"))
    return "not a valid branch name (see git check-ref-format)";
  return {};
}

std::string CheckCommand(std::string_view c) {
  if (c.size() > 4096) return "longer than 4096 characters";
  if (HasControl(c, true)) return "contains a control character";
  return {};
}

std::string CheckRelativeFile(std::string_view f) {
  if (f.empty()) return {};
  if (f.size() > 4096) return "longer than 4096 characters";
  if (HasControl(f, false)) return "contains a control character";
  if (f.front() == '/') return "must be relative to the worktree root";
  size_t start = 0;
  while (start <= f.size()) {
    size_t slash = f.find('/', start);
    if (slash == std::string_view::npos) slash = f.size();
    std::string_view seg = f.substr(start, slash - start);
    if (seg.empty() || seg == "." || seg == "..")
      return "must be a plain relative path (no empty, '.' or '..' segments)";
    start = slash + 1;
  }
  return {};
}

std::string CheckGlob(std::string_view g) {
  Status s = ValidateGlob(g);
  return s.ok() ? std::string() : s.message();
}

std::string CheckSecretName(std::string_view n) {
  bool ok = !n.empty() && n.size() <= 128 && !(n.front() >= '0' && n.front() <= '9') &&
            std::all_of(n.begin(), n.end(), [](char c) {
              return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '_';
            });
  if (ok) return {};
  return "\"" + std::string(n) +
         "\" is not an environment variable name (letters, digits and _, not starting with a "
         "digit, at most 128)";
}

std::string CheckAuthorName(std::string_view n) {
  if (n.empty()) return "must not be empty";
  if (n.size() > 200) return "longer than 200 characters";
  if (HasControl(n, false) || n.find_first_of("<>") != std::string_view::npos)
    return "must not contain control characters, < or >";
  return {};
}

std::string CheckEmail(std::string_view e) {
  size_t at = e.find('@');
  if (e.size() > 254 || at == std::string_view::npos || at == 0 || at + 1 == e.size() ||
      e.find('@', at + 1) != std::string_view::npos || HasControl(e, false) ||
      e.find_first_of(" <>") != std::string_view::npos)
    return "\"" + std::string(e) + "\" is not an email address (name@host)";
  return {};
}

std::string CheckForgeKind(std::string_view k) {
  if (k.empty() || k == "github" || k == "gitlab") return {};
  return "\"" + std::string(k) + "\" is no forge: \"github\", \"gitlab\" or \"\" (none)";
}

std::string CheckApiUrl(std::string_view u) {
  if (u.empty()) return {};
  if (u.size() > 2048) return "longer than 2048 characters";
  if (HasControl(u, false) || u.find(' ') != std::string_view::npos)
    return "contains a space or a control character";
  if (!u.starts_with("https://") && !u.starts_with("http://"))
    return "must start with https:// (or http:// for a server on this machine)";
  return {};
}

std::string CheckProject(std::string_view p) {
  if (p.size() > 255) return "longer than 255 characters";
  if (HasControl(p, false) || p.find_first_of(" ?#") != std::string_view::npos)
    return "contains a space, ?, # or a control character";
  return {};
}

std::string CheckOptionalSecretName(std::string_view n) {
  return n.empty() ? std::string() : CheckSecretName(n);
}

std::string CheckLabel(std::string_view l) {
  if (l.size() > 255) return "longer than 255 characters";
  if (HasControl(l, false)) return "contains a control character";
  return {};
}

#define LOOM_FIELD(T, member) +[](Policy& p) -> T& { return p.member; }

const std::vector<Field>& Fields() {
  static const std::vector<Field> fields = {
      {"repo", "target_branch", "string", LOOM_FIELD(std::string, repo.target_branch), 0, 0,
       CheckBranch},
      {"repo", "test_command", "string", LOOM_FIELD(std::string, repo.test_command), 0, 0,
       CheckCommand},
      {"repo", "instructions_file", "string", LOOM_FIELD(std::string, repo.instructions_file), 0, 0,
       CheckRelativeFile},
      {"paths", "allowed", "array of globs", LOOM_FIELD(std::vector<std::string>, paths.allowed), 0,
       0, CheckGlob},
      {"paths", "protected", "array of globs",
       LOOM_FIELD(std::vector<std::string>, paths.protected_paths), 0, 0, CheckGlob},
      {"sandbox", "timeout_s", "integer", LOOM_FIELD(int64_t, sandbox.timeout_s), 1, 86'400},
      {"sandbox", "cpu_s", "integer", LOOM_FIELD(int64_t, sandbox.cpu_s), 1, 86'400},
      {"sandbox", "memory_mb", "integer", LOOM_FIELD(int64_t, sandbox.memory_mb), 16, 1'048'576},
      {"sandbox", "pids", "integer", LOOM_FIELD(int64_t, sandbox.pids), 8, 65'536},
      {"sandbox", "open_files", "integer", LOOM_FIELD(int64_t, sandbox.open_files), 16, 1'048'576},
      {"sandbox", "file_size_mb", "integer", LOOM_FIELD(int64_t, sandbox.file_size_mb), 1,
       1'048'576},
      {"sandbox", "output_kb", "integer", LOOM_FIELD(int64_t, sandbox.output_kb), 1, 1'048'576},
      {"sandbox", "tmp_mb", "integer", LOOM_FIELD(int64_t, sandbox.tmp_mb), 1, 1'048'576},
      {"sandbox", "network", "\"none\" | \"loopback\"", LOOM_FIELD(NetworkAccess, sandbox.network)},
      {"budgets", "max_steps", "integer", LOOM_FIELD(int64_t, budgets.max_steps), 1, 10'000},
      {"budgets", "max_tokens", "integer", LOOM_FIELD(int64_t, budgets.max_tokens), 1'000,
       1'000'000'000},
      {"budgets", "max_wall_minutes", "integer", LOOM_FIELD(int64_t, budgets.max_wall_minutes), 1,
       10'080},
      {"budgets", "max_test_runs", "integer", LOOM_FIELD(int64_t, budgets.max_test_runs), 1, 1'000},
      {"budgets", "max_consecutive_malformed", "integer",
       LOOM_FIELD(int64_t, budgets.max_consecutive_malformed), 1, 100},
      {"budgets", "stuck_repeats", "integer", LOOM_FIELD(int64_t, budgets.stuck_repeats), 2, 100},
      {"budgets", "max_tool_attempts", "integer", LOOM_FIELD(int64_t, budgets.max_tool_attempts), 1,
       100},
      {"budgets", "max_tool_output_kb", "integer", LOOM_FIELD(int64_t, budgets.max_tool_output_kb),
       1, 10'240},
      {"escalations", "allowed", "array of escalation kinds",
       LOOM_FIELD(std::vector<EscalationKind>, escalations.allowed)},
      {"secrets", "allowed", "array of names",
       LOOM_FIELD(std::vector<std::string>, secrets.allowed), 0, 0, CheckSecretName},
      {"review", "approvers", "array of roles", LOOM_FIELD(std::vector<Role>, review.approvers)},
      {"review", "mergers", "array of roles", LOOM_FIELD(std::vector<Role>, review.mergers)},
      {"review", "require_approval_for_protected", "boolean",
       LOOM_FIELD(bool, review.require_approval_for_protected)},
      {"review", "auto_merge", "boolean", LOOM_FIELD(bool, review.auto_merge)},
      {"review", "requester_may_approve", "boolean",
       LOOM_FIELD(bool, review.requester_may_approve)},
      {"review", "max_waiting", "integer", LOOM_FIELD(int64_t, review.max_waiting), 1, 1'000'000},
      {"retention", "failed_hours", "integer", LOOM_FIELD(int64_t, retention.failed_hours), 1,
       87'600},
      {"retention", "keep_merged_branch", "boolean",
       LOOM_FIELD(bool, retention.keep_merged_branch)},
      {"retention", "keep_rejected_branch", "boolean",
       LOOM_FIELD(bool, retention.keep_rejected_branch)},
      {"agent", "author_name", "string", LOOM_FIELD(std::string, agent.author_name), 0, 0,
       CheckAuthorName},
      {"agent", "author_email", "string", LOOM_FIELD(std::string, agent.author_email), 0, 0,
       CheckEmail},
      {"agent", "require_failing_test_for_bugs", "boolean",
       LOOM_FIELD(bool, agent.require_failing_test_for_bugs)},
      {"forge", "kind", "string", LOOM_FIELD(std::string, forge.kind), 0, 0, CheckForgeKind},
      {"forge", "api_url", "string", LOOM_FIELD(std::string, forge.api_url), 0, 0, CheckApiUrl},
      {"forge", "project", "string", LOOM_FIELD(std::string, forge.project), 0, 0, CheckProject},
      {"forge", "token_secret", "string", LOOM_FIELD(std::string, forge.token_secret), 0, 0,
       CheckOptionalSecretName},
      {"forge", "webhook_secret", "string", LOOM_FIELD(std::string, forge.webhook_secret), 0, 0,
       CheckOptionalSecretName},
      {"forge", "issue_label", "string", LOOM_FIELD(std::string, forge.issue_label), 0, 0,
       CheckLabel},
  };
  return fields;
}

#undef LOOM_FIELD

const std::vector<std::string_view>& Sections() {
  static const std::vector<std::string_view> sections = [] {
    std::vector<std::string_view> s;
    for (const Field& f : Fields())
      if (std::find(s.begin(), s.end(), f.section) == s.end()) s.push_back(f.section);
    return s;
  }();
  return sections;
}

constexpr std::string_view kNetworkNames[] = {"none", "loopback"};
constexpr std::string_view kKindNames[] = {"api_key", "gpu", "network", "approval", "question"};
constexpr std::string_view kRoleNames[] = {"reporter", "engineer", "admin"};

// Optimal string alignment distance: Levenshtein plus adjacent transpositions,
// so "tiemout_s" is one edit from "timeout_s".
size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// The closest candidate when it is close enough to be a likely typo.
std::optional<std::string> Closest(std::string_view name,
                                   const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  size_t best_distance = 0;
  for (const std::string& c : candidates) {
    size_t d = EditDistance(name, c);
    if (!best || d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  size_t limit = std::max<size_t>(2, name.size() / 3);
  if (!best || best_distance > limit || best_distance >= std::max(name.size(), best->size()))
    return std::nullopt;
  return best;
}

std::string DidYouMean(std::string_view name, const std::vector<std::string>& candidates) {
  std::optional<std::string> best = Closest(name, candidates);
  return best ? "; did you mean " + *best + "?" : "";
}

std::string TypeName(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a floating-point number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

template <size_t N>
std::string OneOf(const std::string_view (&names)[N], size_t first = 0) {
  std::string out;
  for (size_t i = first; i < N; ++i) {
    if (!out.empty()) out += ", ";
    out += names[i];
  }
  return out;
}

template <size_t N>
std::vector<std::string> Candidates(const std::string_view (&names)[N], size_t first = 0) {
  return {std::begin(names) + first, std::end(names)};
}

struct Problem {
  uint32_t line = 0, column = 0;
  std::string text;
};

// Applies one document to a Policy, collecting problems.
class Applier {
 public:
  Applier(std::string_view path, Policy* policy) : path_(path), policy_(policy) {}

  void ApplyRoot(const toml::table& root) {
    for (const auto& [key, node] : root) {
      std::string name(key.str());
      if (std::find(Sections().begin(), Sections().end(), name) == Sections().end()) {
        UnknownTopLevel(name, key.source(), node);
        continue;
      }
      const toml::table* section = node.as_table();
      if (!section) {
        Add(node.source(), name, "expected a table ([" + name + "]), got " + TypeName(node));
        continue;
      }
      for (const auto& [k, value] : *section) ApplyField(name, std::string(k.str()), k, value);
    }
  }

  std::vector<Problem> TakeProblems() { return std::move(problems_); }

 private:
  void Add(const toml::source_region& where, std::string_view field, std::string_view what) {
    Problem p;
    p.line = where.begin.line;
    p.column = where.begin.column;
    p.text = path_ + ":" + std::to_string(p.line) + ":" + std::to_string(p.column) + ": " +
             std::string(field) + ": " + std::string(what);
    problems_.push_back(std::move(p));
  }

  void UnknownTopLevel(const std::string& name, const toml::source_region& key_where,
                       const toml::node& node) {
    if (node.is_table()) {
      std::vector<std::string> sections(Sections().begin(), Sections().end());
      Add(node.source(), name, "unknown section" + DidYouMean(name, sections));
      return;
    }
    // A field written outside its section: suggest the qualified name.
    std::vector<std::string> qualified;
    std::vector<std::string> keys;
    for (const Field& f : Fields()) {
      qualified.push_back(std::string(f.section) + "." + std::string(f.key));
      keys.push_back(std::string(f.key));
    }
    std::string hint;
    if (std::optional<std::string> k = Closest(name, keys)) {
      for (size_t i = 0; i < keys.size(); ++i)
        if (keys[i] == *k) hint = "; did you mean " + qualified[i] + "?";
    }
    Add(key_where, name, "unknown key (every field belongs to a [section])" + hint);
  }

  void ApplyField(const std::string& section, const std::string& key, const toml::key& k,
                  const toml::node& value) {
    std::string name = section + "." + key;
    const Field* field = nullptr;
    std::vector<std::string> here;
    for (const Field& f : Fields()) {
      if (f.section != section) continue;
      here.push_back(std::string(f.key));
      if (f.key == key) field = &f;
    }
    if (!field) {
      std::string hint = DidYouMean(key, here);
      if (hint.empty()) {
        for (const Field& f : Fields())
          if (f.key == key) hint = "; did you mean " + std::string(f.section) + "." + key + "?";
      }
      Add(k.source(), name, "unknown key" + hint);
      return;
    }
    std::visit([&](auto access) { Set(*field, name, value, access); }, field->access);
  }

  void Set(const Field& f, const std::string& name, const toml::node& v, StringAccess access) {
    const auto* s = v.as_string();
    if (!s) return Add(v.source(), name, "expected a string, got " + TypeName(v));
    if (std::string why = f.check(s->get()); !why.empty()) return Add(v.source(), name, why);
    access(*policy_) = s->get();
  }

  void Set(const Field& f, const std::string& name, const toml::node& v, IntAccess access) {
    const auto* i = v.as_integer();
    if (!i) return Add(v.source(), name, "expected an integer, got " + TypeName(v));
    int64_t n = i->get();
    if (n < f.min || n > f.max) {
      return Add(v.source(), name,
                 std::to_string(n) + " is out of range [" + std::to_string(f.min) + ", " +
                     std::to_string(f.max) + "]");
    }
    access(*policy_) = n;
  }

  void Set(const Field&, const std::string& name, const toml::node& v, BoolAccess access) {
    const auto* b = v.as_boolean();
    if (!b) return Add(v.source(), name, "expected true or false, got " + TypeName(v));
    access(*policy_) = b->get();
  }

  void Set(const Field&, const std::string& name, const toml::node& v, NetworkAccessor access) {
    std::optional<size_t> i = Enum(name, v, kNetworkNames);
    if (i) access(*policy_) = static_cast<NetworkAccess>(*i);
  }

  void Set(const Field& f, const std::string& name, const toml::node& v, StringsAccess access) {
    std::vector<std::string> out;
    bool ok = ForEach(name, v, [&](const std::string& element, const toml::node& e) {
      const auto* s = e.as_string();
      if (!s) {
        Add(e.source(), element, "expected a string, got " + TypeName(e));
        return false;
      }
      if (std::string why = f.check(s->get()); !why.empty()) {
        Add(e.source(), element, why);
        return false;
      }
      out.push_back(s->get());
      return true;
    });
    if (ok) access(*policy_) = std::move(out);
  }

  void Set(const Field&, const std::string& name, const toml::node& v, KindsAccess access) {
    std::vector<EscalationKind> out;
    bool ok = ForEach(name, v, [&](const std::string& element, const toml::node& e) {
      std::optional<size_t> i = Enum(element, e, kKindNames);
      if (!i) return false;
      auto kind = static_cast<EscalationKind>(*i);
      if (std::find(out.begin(), out.end(), kind) == out.end()) out.push_back(kind);
      return true;
    });
    if (ok) access(*policy_) = std::move(out);
  }

  void Set(const Field&, const std::string& name, const toml::node& v, RolesAccess access) {
    std::vector<Role> out;
    bool ok = ForEach(name, v, [&](const std::string& element, const toml::node& e) {
      // Reporters never review: only engineer and admin are values here.
      std::optional<size_t> i = Enum(element, e, kRoleNames, 1);
      if (!i) return false;
      auto role = static_cast<Role>(*i);
      if (std::find(out.begin(), out.end(), role) == out.end()) out.push_back(role);
      return true;
    });
    if (ok) access(*policy_) = std::move(out);
  }

  // Calls `each("<name>[i]", element)` for every element; false when `v` is no
  // array or any element failed (each reports its own problem).
  template <typename Each>
  bool ForEach(const std::string& name, const toml::node& v, Each each) {
    const auto* array = v.as_array();
    if (!array) {
      Add(v.source(), name, "expected an array, got " + TypeName(v));
      return false;
    }
    bool ok = true;
    for (size_t i = 0; i < array->size(); ++i)
      ok = each(name + "[" + std::to_string(i) + "]", *array->get(i)) && ok;
    return ok;
  }

  // The index of `v`'s value in names[first..], or nullopt (reported).
  template <size_t N>
  std::optional<size_t> Enum(const std::string& name, const toml::node& v,
                             const std::string_view (&names)[N], size_t first = 0) {
    const auto* s = v.as_string();
    if (!s) {
      Add(v.source(), name,
          "expected a string (one of " + OneOf(names, first) + "), got " + TypeName(v));
      return std::nullopt;
    }
    for (size_t i = first; i < N; ++i)
      if (names[i] == s->get()) return i;
    Add(v.source(), name,
        "unknown value \"" + s->get() + "\"; expected one of " + OneOf(names, first) +
            DidYouMean(s->get(), Candidates(names, first)));
    return std::nullopt;
  }

  std::string path_;
  Policy* policy_;
  std::vector<Problem> problems_;
};

// The only call into toml++'s throwing parser.
Result<toml::table> ParseToml(std::string_view text, std::string_view path) {
  try {
    return toml::parse(text, path);
  } catch (const toml::parse_error& err) {
    return Status::InvalidArgument(
        std::string(path) + ":" + std::to_string(err.source().begin.line) + ":" +
        std::to_string(err.source().begin.column) + ": " + std::string(err.description()));
  }
}

std::string Join(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) {
    if (!out.empty()) out += '\n';
    out += l;
  }
  return out;
}

std::string_view StripSuffix(std::string_view s, std::string_view suffix) {
  return s.substr(0, s.size() - suffix.size());
}

}  // namespace

std::string_view DefaultPolicyText() { return internal::kDefaultPolicyToml; }

const Policy& DefaultPolicy() {
  static const Policy policy = [] {
    Result<Policy> parsed = ParsePolicy(DefaultPolicyText(), "policies/default.toml", Policy{});
    if (!parsed.ok()) {
      // Cannot happen: a test parses the shipped defaults.
      std::fprintf(stderr, "loom: the compiled-in default policy is invalid: %s\n",
                   parsed.status().message().c_str());
      std::abort();
    }
    return std::move(parsed).value();
  }();
  return policy;
}

Result<Policy> ParsePolicy(std::string_view text, std::string_view path, const Policy& base) {
  LOOM_ASSIGN_OR_RETURN(toml::table root, ParseToml(text, path));
  Policy policy = base;
  Applier applier(path, &policy);
  applier.ApplyRoot(root);
  std::vector<Problem> problems = applier.TakeProblems();
  if (problems.empty()) return policy;
  std::stable_sort(problems.begin(), problems.end(), [](const Problem& a, const Problem& b) {
    return a.line != b.line ? a.line < b.line : a.column < b.column;
  });
  std::vector<std::string> lines;
  for (Problem& p : problems) lines.push_back(std::move(p.text));
  return Status::InvalidArgument(Join(lines));
}

Result<Policy> LoadPolicy(const std::string& path, const Policy& base) {
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    return Status::NotFound("cannot read policy file " + path + ": no such file");
  }
  if (!std::filesystem::is_regular_file(status)) {
    return Status::IoError("cannot read policy file " + path + ": not a regular file");
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) return Status::IoError("cannot read policy file " + path);
  return ParsePolicy(text.str(), path, base);
}

Result<std::map<std::string, Policy>> LoadPolicyDir(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return Status::NotFound("policy directory " + dir + " does not exist or is no directory");
  }
  std::vector<std::string> names;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.starts_with(".") || !name.ends_with(".toml")) continue;
    std::error_code type_ec;
    if (!it->is_regular_file(type_ec)) continue;  // follows symlinks
    names.push_back(name);
  }
  if (ec) return Status::FromErrno(ec.value(), "cannot list policy directory " + dir);
  std::sort(names.begin(), names.end());

  std::vector<std::string> errors;
  const Policy* base = &DefaultPolicy();
  Policy site;
  const std::string kSiteDefaults = "default.toml";
  if (std::binary_search(names.begin(), names.end(), kSiteDefaults)) {
    Result<Policy> parsed = LoadPolicy((std::filesystem::path(dir) / kSiteDefaults).string());
    if (parsed.ok()) {
      site = std::move(parsed).value();
      base = &site;
    } else {
      errors.push_back(parsed.status().message());
    }
  }
  std::map<std::string, Policy> policies;
  for (const std::string& name : names) {
    if (name == kSiteDefaults) continue;
    Result<Policy> parsed = LoadPolicy((std::filesystem::path(dir) / name).string(), *base);
    if (parsed.ok()) {
      policies.emplace(std::string(StripSuffix(name, ".toml")), std::move(parsed).value());
    } else {
      errors.push_back(parsed.status().message());
    }
  }
  if (!errors.empty()) return Status::InvalidArgument(Join(errors));
  return policies;
}

std::string_view PathDecisionName(PathDecision decision) {
  switch (decision) {
    case PathDecision::kAllowed:
      return "allowed";
    case PathDecision::kProtected:
      return "protected";
    case PathDecision::kOutside:
      return "outside";
  }
  return "?";
}

PathDecision Decide(const Policy& policy, std::string_view path) {
  // Lexical clean-up: drop "." and empty segments; refuse absolute and "..".
  if (path.empty() || path.front() == '/') return PathDecision::kOutside;
  std::string clean;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view seg = path.substr(start, slash - start);
    start = slash + 1;
    if (seg.empty() || seg == ".") continue;
    if (seg == "..") return PathDecision::kOutside;
    if (!clean.empty()) clean += '/';
    clean += seg;
  }
  if (clean.empty()) return PathDecision::kOutside;
  auto any = [&](const std::vector<std::string>& globs) {
    return std::any_of(globs.begin(), globs.end(),
                       [&](const std::string& g) { return GlobMatch(g, clean); });
  };
  if (!any(policy.paths.allowed)) return PathDecision::kOutside;
  if (policy.review.require_approval_for_protected && any(policy.paths.protected_paths))
    return PathDecision::kProtected;
  return PathDecision::kAllowed;
}

std::optional<EscalationKind> ParseEscalationKind(std::string_view name) {
  for (size_t i = 0; i < std::size(kKindNames); ++i)
    if (kKindNames[i] == name) return static_cast<EscalationKind>(i);
  return std::nullopt;
}

std::string_view EscalationKindName(EscalationKind kind) {
  auto i = static_cast<size_t>(kind);
  return i < std::size(kKindNames) ? kKindNames[i] : "?";
}

bool EscalationAllowed(const Policy& policy, EscalationKind kind) {
  const auto& allowed = policy.escalations.allowed;
  return std::find(allowed.begin(), allowed.end(), kind) != allowed.end();
}

bool EscalationAllowed(const Policy& policy, std::string_view kind) {
  std::optional<EscalationKind> k = ParseEscalationKind(kind);
  return k && EscalationAllowed(policy, *k);
}

bool SecretAllowed(const Policy& policy, std::string_view name) {
  const auto& allowed = policy.secrets.allowed;
  return !name.empty() && std::find(allowed.begin(), allowed.end(), name) != allowed.end();
}

bool MayApprove(const Policy& policy, Role role, int64_t requester_token_id,
                int64_t approver_token_id) {
  const auto& approvers = policy.review.approvers;
  if (std::find(approvers.begin(), approvers.end(), role) == approvers.end()) return false;
  if (approver_token_id <= 0) return false;
  if (policy.review.requester_may_approve) return true;
  return requester_token_id <= 0 || requester_token_id != approver_token_id;
}

bool MayMerge(const Policy& policy, Role role) {
  const auto& mergers = policy.review.mergers;
  return std::find(mergers.begin(), mergers.end(), role) != mergers.end();
}

std::span<const FieldInfo> PolicyFields() {
  static const std::vector<FieldInfo> infos = [] {
    std::vector<FieldInfo> out;
    // Names must outlive the views: they are kept in a static list of strings.
    static std::vector<std::string> names;
    names.reserve(Fields().size());
    for (const Field& f : Fields())
      names.push_back(std::string(f.section) + "." + std::string(f.key));
    for (size_t i = 0; i < Fields().size(); ++i)
      out.push_back({names[i], Fields()[i].type, Fields()[i].min, Fields()[i].max});
    return out;
  }();
  return infos;
}

}  // namespace loom::policies
