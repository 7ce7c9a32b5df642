#include "policies/policy.h"

#include <gtest/gtest.h>
#include <toml++/toml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <tuple>

#include "tests/support/test_paths.h"

namespace loom::policies {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The InvalidArgument message of parsing `text` as "repo.toml".
std::string ErrorOf(std::string_view text) {
  Result<Policy> p = ParsePolicy(text, "repo.toml");
  if (p.ok()) return "(parsed)";
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  return p.status().message();
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "loom-policies-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  void Write(const std::string& name, const std::string& text) const {
    std::ofstream(std::filesystem::path(path_) / name) << text;
  }

 private:
  std::string path_;
};

// ---- Defaults ---------------------------------------------------------------

TEST(DefaultPolicyTest, ShippedFileParsesAndEqualsTheStructDefaults) {
  Result<Policy> parsed = ParsePolicy(DefaultPolicyText(), "default.toml", Policy{});
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(*parsed, Policy{});
  EXPECT_EQ(DefaultPolicy(), Policy{});
}

TEST(DefaultPolicyTest, CompiledInTextIsTheFileInTheTree) {
  EXPECT_EQ(DefaultPolicyText(), ReadFile(std::string(LOOM_SOURCE_DIR) + "/policies/default.toml"));
}

TEST(DefaultPolicyTest, DefaultsAreTheDocumentedValues) {
  const Policy& p = DefaultPolicy();
  EXPECT_EQ(p.repo.target_branch, "main");
  EXPECT_EQ(p.repo.test_command, "");
  EXPECT_EQ(p.paths.allowed, std::vector<std::string>{"**"});
  EXPECT_EQ(p.sandbox.timeout_s, 600);
  EXPECT_EQ(p.sandbox.network, NetworkAccess::kNone);
  EXPECT_EQ(p.budgets.max_steps, 60);
  EXPECT_EQ(p.budgets.max_tokens, 4'000'000);
  EXPECT_TRUE(p.secrets.allowed.empty());
  EXPECT_FALSE(p.review.requester_may_approve);
  EXPECT_TRUE(p.agent.require_failing_test_for_bugs);
  EXPECT_EQ(p.escalations.allowed.size(), 5u);
}

TEST(DefaultPolicyTest, EmptyFileIsTheDefaults) {
  Result<Policy> p = ParsePolicy("", "empty.toml");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(*p, DefaultPolicy());
}

// ---- Every field is in the struct, default.toml and the docs ------------------

// Compile-time member counts of each section struct: adding a member to policy.h
// without adding it to the format (PolicyFields) fails CountsMatchTheFormat.
std::map<std::string, size_t> StructMemberCounts() {
  Policy p;
  auto& [r1, r2, r3] = p.repo;
  auto& [pa1, pa2] = p.paths;
  auto& [s1, s2, s3, s4, s5, s6, s7, s8, s9] = p.sandbox;
  auto& [b1, b2, b3, b4, b5, b6, b7, b8] = p.budgets;
  auto& [e1] = p.escalations;
  auto& [se1] = p.secrets;
  auto& [v1, v2, v3, v4, v5, v6] = p.review;
  auto& [rt1, rt2, rt3] = p.retention;
  auto& [a1, a2, a3] = p.agent;
  auto& [f1, f2, f3, f4, f5, f6] = p.forge;
  auto& [t1, t2, t3, t4, t5, t6, t7, t8, t9, t10] = p;
  (void)std::tie(r1, r2, r3, pa1, pa2, s1, s2, s3, s4, s5, s6, s7, s8, s9, b1, b2, b3, b4, b5, b6,
                 b7, b8, e1, se1, v1, v2, v3, v4, v5, v6, rt1, rt2, rt3, a1, a2, a3, f1, f2, f3, f4,
                 f5, f6, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10);
  return {{"repo", 3},    {"paths", 2},  {"sandbox", 9},   {"budgets", 8}, {"escalations", 1},
          {"secrets", 1}, {"review", 6}, {"retention", 3}, {"agent", 3},   {"forge", 6}};
}

TEST(PolicyFieldsTest, CountsMatchTheFormat) {
  std::map<std::string, size_t> fields;
  for (const FieldInfo& f : PolicyFields())
    ++fields[std::string(f.name.substr(0, f.name.find('.')))];
  EXPECT_EQ(fields, StructMemberCounts());
}

TEST(PolicyFieldsTest, EveryFieldChangesThePolicyWhenSet) {
  std::set<std::string> seen;
  for (const FieldInfo& f : PolicyFields()) {
    std::string section(f.name.substr(0, f.name.find('.')));
    std::string key(f.name.substr(f.name.find('.') + 1));
    EXPECT_TRUE(seen.insert(std::string(f.name)).second) << f.name;
    std::string value;
    if (f.type == "integer") {
      value = std::to_string(f.min);
    } else if (f.type == "boolean") {
      value = "false";
    } else if (f.type == "string") {
      value = key == "author_email" ? "\"a@b\""
              : key == "kind"         ? "\"github\""
              : key == "api_url"      ? "\"https://x\""
                                      : "\"x\"";
    } else if (f.type == "array of roles") {
      value = "[\"admin\"]";
    } else if (f.type == "array of escalation kinds") {
      value = "[\"gpu\"]";
    } else if (f.type == "array of names") {
      value = "[\"TOKEN\"]";
    } else if (f.type == "array of globs") {
      value = "[\"x/\"]";
    } else {
      value = "\"loopback\"";
    }
    std::string text = "[" + section + "]\n" + key + " = " + value + "\n";
    Result<Policy> p = ParsePolicy(text, "one.toml");
    ASSERT_TRUE(p.ok()) << f.name << ": " << p.status().ToString();
    if (f.type == "boolean" && !(*p != DefaultPolicy())) {
      p = ParsePolicy("[" + section + "]\n" + key + " = true\n", "one.toml");
      ASSERT_TRUE(p.ok());
    }
    EXPECT_NE(*p, DefaultPolicy()) << f.name << " is parsed but stored nowhere";
  }
}

TEST(PolicyFieldsTest, EveryFieldIsInDefaultTomlWithAComment) {
  toml::table root = toml::parse(DefaultPolicyText());
  std::vector<std::string> lines;
  std::istringstream in{std::string(DefaultPolicyText())};
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  size_t keys = 0;
  for (const auto& [section, node] : root) keys += node.as_table()->size();
  EXPECT_EQ(keys, PolicyFields().size()) << "default.toml has keys that are no field";
  for (const FieldInfo& f : PolicyFields()) {
    const toml::node* node = root.at_path(f.name).node();
    ASSERT_NE(node, nullptr) << f.name << " is missing from default.toml";
    size_t line = node->source().begin.line;  // 1-based; the line before is line - 2
    ASSERT_GE(line, 2u);
    EXPECT_TRUE(lines[line - 2].starts_with("#")) << f.name << " has no comment in default.toml";
  }
}

TEST(PolicyFieldsTest, EveryFieldIsDocumentedWithItsBounds) {
  std::string docs = ReadFile(std::string(LOOM_SOURCE_DIR) + "/docs/policies.md");
  ASSERT_FALSE(docs.empty());
  for (const FieldInfo& f : PolicyFields()) {
    std::string name = "`" + std::string(f.name) + "`";
    size_t at = docs.find(name);
    ASSERT_NE(at, std::string::npos) << f.name << " is not in docs/policies.md";
    if (f.type == "integer") {
      std::string row = docs.substr(at, docs.find('\n', at) - at);
      EXPECT_NE(row.find(std::to_string(f.min) + " – " + std::to_string(f.max)), std::string::npos)
          << f.name << ": docs row does not give the bounds: " << row;
    }
  }
}

TEST(PolicyFieldsTest, EveryIntegerHasBounds) {
  for (const FieldInfo& f : PolicyFields()) {
    if (f.type != "integer") continue;
    EXPECT_GT(f.min, 0) << f.name;
    EXPECT_GT(f.max, f.min) << f.name;
  }
}

// ---- Overrides ------------------------------------------------------------------

TEST(ParsePolicyTest, FileOverridesOnlyTheFieldsItSets) {
  Result<Policy> p = ParsePolicy(R"([repo]
target_branch = "develop"
test_command = "python3 -m unittest"

[paths]
allowed = ["src/", "tests/**/*.py"]

[sandbox]
network = "loopback"
memory_mb = 2048

[secrets]
allowed = ["OPENAI_API_KEY"]

[review]
approvers = ["admin"]
auto_merge = false
)",
                                 "repo.toml");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->repo.target_branch, "develop");
  EXPECT_EQ(p->repo.test_command, "python3 -m unittest");
  EXPECT_EQ(p->paths.allowed, (std::vector<std::string>{"src/", "tests/**/*.py"}));
  EXPECT_EQ(p->paths.protected_paths, DefaultPolicy().paths.protected_paths);
  EXPECT_EQ(p->sandbox.network, NetworkAccess::kLoopback);
  EXPECT_EQ(p->sandbox.memory_mb, 2048);
  EXPECT_EQ(p->sandbox.timeout_s, DefaultPolicy().sandbox.timeout_s);
  EXPECT_EQ(p->secrets.allowed, std::vector<std::string>{"OPENAI_API_KEY"});
  EXPECT_EQ(p->review.approvers, std::vector<Role>{Role::kAdmin});
  EXPECT_FALSE(p->review.auto_merge);
  EXPECT_EQ(p->budgets, DefaultPolicy().budgets);
  EXPECT_EQ(p->agent, DefaultPolicy().agent);
}

TEST(ParsePolicyTest, ArraysReplaceTheBaseWhole) {
  Result<Policy> p = ParsePolicy("[paths]\nprotected = []\n", "repo.toml");
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->paths.protected_paths.empty());
}

TEST(ParsePolicyTest, DottedKeysAndInlineTablesWork) {
  Result<Policy> p = ParsePolicy("budgets.max_steps = 5\nsandbox = { pids = 64 }\n", "repo.toml");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->budgets.max_steps, 5);
  EXPECT_EQ(p->sandbox.pids, 64);
}

TEST(ParsePolicyTest, LayersOverAGivenBase) {
  Result<Policy> site = ParsePolicy("[budgets]\nmax_steps = 10\n", "default.toml");
  ASSERT_TRUE(site.ok());
  Result<Policy> p = ParsePolicy("[budgets]\nmax_tokens = 5000\n", "repo.toml", *site);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->budgets.max_steps, 10);
  EXPECT_EQ(p->budgets.max_tokens, 5000);
}

TEST(ParsePolicyTest, DuplicateEnumValuesAreKeptOnce) {
  Result<Policy> p = ParsePolicy("[escalations]\nallowed = [\"gpu\", \"gpu\"]\n", "r.toml");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->escalations.allowed, std::vector<EscalationKind>{EscalationKind::kGpu});
}

// ---- Errors: each names file:line:column and the field ------------------------

TEST(PolicyErrorTest, UnknownKeySuggestsTheClosest) {
  EXPECT_EQ(ErrorOf("# budgets\n\n\n\n\n[budgets]\nmax_step = 5\n"),
            "repo.toml:7:1: budgets.max_step: unknown key; did you mean max_steps?");
  EXPECT_EQ(ErrorOf("[sandbox]\n  tiemout_s = 5\n"),
            "repo.toml:2:3: sandbox.tiemout_s: unknown key; did you mean timeout_s?");
}

TEST(PolicyErrorTest, UnknownKeyWithNothingCloseHasNoSuggestion) {
  EXPECT_EQ(ErrorOf("[repo]\ncolour = \"blue\"\n"), "repo.toml:2:1: repo.colour: unknown key");
}

TEST(PolicyErrorTest, KeyOfAnotherSectionNamesWhereItBelongs) {
  EXPECT_EQ(ErrorOf("[repo]\nmax_steps = 5\n"),
            "repo.toml:2:1: repo.max_steps: unknown key; did you mean budgets.max_steps?");
}

TEST(PolicyErrorTest, UnknownSectionSuggestsTheClosest) {
  EXPECT_EQ(ErrorOf("\n[budget]\nmax_steps = 5\n"),
            "repo.toml:2:1: budget: unknown section; did you mean budgets?");
}

TEST(PolicyErrorTest, TopLevelFieldNamesItsSection) {
  EXPECT_EQ(ErrorOf("timeout_s = 5\n"),
            "repo.toml:1:1: timeout_s: unknown key (every field belongs to a [section]); did "
            "you mean sandbox.timeout_s?");
}

TEST(PolicyErrorTest, SectionThatIsNoTable) {
  EXPECT_EQ(ErrorOf("repo = 5\n"),
            "repo.toml:1:8: repo: expected a table ([repo]), got an integer");
}

TEST(PolicyErrorTest, WrongTypesNameTheValuePosition) {
  EXPECT_EQ(ErrorOf("[budgets]\nmax_steps = \"60\"\n"),
            "repo.toml:2:13: budgets.max_steps: expected an integer, got a string");
  EXPECT_EQ(ErrorOf("[budgets]\nmax_steps = 6.5\n"),
            "repo.toml:2:13: budgets.max_steps: expected an integer, got a floating-point number");
  EXPECT_EQ(ErrorOf("[repo]\ntarget_branch = 1\n"),
            "repo.toml:2:17: repo.target_branch: expected a string, got an integer");
  EXPECT_EQ(ErrorOf("[review]\nauto_merge = \"yes\"\n"),
            "repo.toml:2:14: review.auto_merge: expected true or false, got a string");
  EXPECT_EQ(ErrorOf("[paths]\nallowed = \"src/\"\n"),
            "repo.toml:2:11: paths.allowed: expected an array, got a string");
  EXPECT_EQ(ErrorOf("[paths]\nallowed = [\"src/\", 3]\n"),
            "repo.toml:2:20: paths.allowed[1]: expected a string, got an integer");
}

TEST(PolicyErrorTest, OutOfRangeNamesTheBounds) {
  EXPECT_EQ(ErrorOf("[budgets]\nmax_steps = 0\n"),
            "repo.toml:2:13: budgets.max_steps: 0 is out of range [1, 10000]");
  EXPECT_EQ(ErrorOf("[sandbox]\ntimeout_s = 86401\n"),
            "repo.toml:2:13: sandbox.timeout_s: 86401 is out of range [1, 86400]");
  EXPECT_EQ(ErrorOf("[sandbox]\nmemory_mb = -1\n"),
            "repo.toml:2:13: sandbox.memory_mb: -1 is out of range [16, 1048576]");
}

TEST(PolicyErrorTest, BoundsAreInclusiveForEveryInteger) {
  for (const FieldInfo& f : PolicyFields()) {
    if (f.type != "integer") continue;
    std::string section(f.name.substr(0, f.name.find('.')));
    std::string key(f.name.substr(f.name.find('.') + 1));
    auto parse = [&](int64_t v) {
      return ParsePolicy("[" + section + "]\n" + key + " = " + std::to_string(v) + "\n", "r.toml");
    };
    EXPECT_TRUE(parse(f.min).ok()) << f.name;
    EXPECT_TRUE(parse(f.max).ok()) << f.name;
    EXPECT_FALSE(parse(f.min - 1).ok()) << f.name;
    EXPECT_FALSE(parse(f.max + 1).ok()) << f.name;
  }
}

TEST(PolicyErrorTest, UnknownEnumValues) {
  EXPECT_EQ(ErrorOf("[sandbox]\nnetwork = \"loopbak\"\n"),
            "repo.toml:2:11: sandbox.network: unknown value \"loopbak\"; expected one of none, "
            "loopback; did you mean loopback?");
  EXPECT_EQ(ErrorOf("[sandbox]\nnetwork = \"host\"\n"),
            "repo.toml:2:11: sandbox.network: unknown value \"host\"; expected one of none, "
            "loopback");
  EXPECT_EQ(ErrorOf("[escalations]\nallowed = [\"gpu\", \"apikey\"]\n"),
            "repo.toml:2:19: escalations.allowed[1]: unknown value \"apikey\"; expected one of "
            "api_key, gpu, network, approval, question; did you mean api_key?");
  EXPECT_EQ(ErrorOf("[review]\napprovers = [\"reporter\"]\n"),
            "repo.toml:2:14: review.approvers[0]: unknown value \"reporter\"; expected one of "
            "engineer, admin");
}

TEST(PolicyErrorTest, EnumsOfTheWrongType) {
  EXPECT_EQ(ErrorOf("[sandbox]\nnetwork = false\n"),
            "repo.toml:2:11: sandbox.network: expected a string (one of none, loopback), got a "
            "boolean");
  EXPECT_EQ(ErrorOf("[review]\nmergers = \"admin\"\n"),
            "repo.toml:2:11: review.mergers: expected an array, got a string");
  EXPECT_EQ(ErrorOf("[escalations]\nallowed = [1]\n"),
            "repo.toml:2:12: escalations.allowed[0]: expected a string (one of api_key, gpu, "
            "network, approval, question), got an integer");
}

TEST(PolicyErrorTest, ArrayOfTablesIsNoSection) {
  EXPECT_EQ(ErrorOf("[[repo]]\ntarget_branch = \"x\"\n"),
            "repo.toml:1:1: repo: expected a table ([repo]), got an array");
}

TEST(PolicyErrorTest, BadGlobs) {
  EXPECT_EQ(ErrorOf("[paths]\nprotected = [\"/etc/\"]\n"),
            "repo.toml:2:14: paths.protected[0]: bad glob \"/etc/\": absolute; patterns are "
            "relative to the worktree root");
  EXPECT_EQ(ErrorOf("[paths]\nallowed = [\"src/**.py\"]\n"),
            "repo.toml:2:12: paths.allowed[0]: bad glob \"src/**.py\": ** must be a whole "
            "segment (a/**/b); use * within a segment");
}

TEST(PolicyErrorTest, BadStrings) {
  EXPECT_EQ(ErrorOf("[repo]\ntarget_branch = \"a..b\"\n"),
            "repo.toml:2:17: repo.target_branch: not a valid branch name (see git "
            "check-ref-format)");
  EXPECT_EQ(ErrorOf("[repo]\ninstructions_file = \"../x.md\"\n"),
            "repo.toml:2:21: repo.instructions_file: must be a plain relative path (no empty, "
            "'.' or '..' segments)");
  EXPECT_EQ(ErrorOf("[secrets]\nallowed = [\"MY-KEY\"]\n"),
            "repo.toml:2:12: secrets.allowed[0]: \"MY-KEY\" is not an environment variable name "
            "(letters, digits and _, not starting with a digit, at most 128)");
  EXPECT_EQ(ErrorOf("[agent]\nauthor_email = \"loom\"\n"),
            "repo.toml:2:16: agent.author_email: \"loom\" is not an email address (name@host)");
}

TEST(PolicyErrorTest, TomlSyntaxErrorNamesThePosition) {
  std::string e = ErrorOf("[budgets]\nmax_steps = \n");
  EXPECT_TRUE(e.starts_with("repo.toml:2:13: ")) << e;
}

TEST(PolicyErrorTest, AllProblemsAreReportedInFileOrder) {
  EXPECT_EQ(ErrorOf("[sandbox]\npids = 1\n[budgets]\nmax_steps = 0\n[agent]\nbogus = 1\n"),
            "repo.toml:2:8: sandbox.pids: 1 is out of range [8, 65536]\n"
            "repo.toml:4:13: budgets.max_steps: 0 is out of range [1, 10000]\n"
            "repo.toml:6:1: agent.bogus: unknown key");
}

TEST(LoadPolicyTest, LoadsAFileAndNamesItInErrors) {
  TempDir dir;
  dir.Write("ok.toml", "[budgets]\nmax_steps = 7\n");
  dir.Write("bad.toml", "[budgets]\nmax_step = 7\n");
  Result<Policy> ok = LoadPolicy(dir.path() + "/ok.toml");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->budgets.max_steps, 7);
  Result<Policy> bad = LoadPolicy(dir.path() + "/bad.toml");
  EXPECT_EQ(bad.status().message(),
            dir.path() + "/bad.toml:2:1: budgets.max_step: unknown key; did you mean max_steps?");
}

TEST(LoadPolicyTest, MissingFileIsNotFound) {
  EXPECT_EQ(LoadPolicy("/nonexistent/loom/policy.toml").status().code(), StatusCode::kNotFound);
}

TEST(LoadPolicyDirTest, KeysByRepositoryAndLayersTheSiteDefaults) {
  TempDir dir;
  dir.Write("default.toml", "[budgets]\nmax_steps = 11\n");
  dir.Write("web.toml", "[sandbox]\nnetwork = \"loopback\"\n");
  dir.Write("api.toml", "[budgets]\nmax_steps = 3\n");
  dir.Write(".hidden.toml", "garbage = [");
  dir.Write("notes.txt", "garbage = [");
  Result<std::map<std::string, Policy>> all = LoadPolicyDir(dir.path());
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ(all->at("web").budgets.max_steps, 11);
  EXPECT_EQ(all->at("web").sandbox.network, NetworkAccess::kLoopback);
  EXPECT_EQ(all->at("api").budgets.max_steps, 3);
}

TEST(LoadPolicyDirTest, ReportsEveryBadFile) {
  TempDir dir;
  dir.Write("a.toml", "[repo]\nbranch = \"x\"\n");
  dir.Write("b.toml", "[sandbox]\nnetwork = \"all\"\n");
  dir.Write("c.toml", "");
  Result<std::map<std::string, Policy>> all = LoadPolicyDir(dir.path());
  ASSERT_FALSE(all.ok());
  EXPECT_EQ(all.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(all.status().message(),
            dir.path() + "/a.toml:2:1: repo.branch: unknown key\n" + dir.path() +
                "/b.toml:2:11: sandbox.network: unknown value \"all\"; expected one of none, "
                "loopback");
}

TEST(LoadPolicyDirTest, EmptyDirIsEmptyAndMissingDirIsNotFound) {
  TempDir dir;
  Result<std::map<std::string, Policy>> all = LoadPolicyDir(dir.path());
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->empty());
  EXPECT_EQ(LoadPolicyDir(dir.path() + "/nope").status().code(), StatusCode::kNotFound);
}

// ---- Decisions ------------------------------------------------------------------

Policy PathsPolicyOf(std::string_view toml) {
  Result<Policy> p = ParsePolicy(toml, "paths.toml");
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? *p : Policy{};
}

TEST(DecideTest, DecidesTable) {
  Policy p = PathsPolicyOf(
      "[paths]\nallowed = [\"src/\", \"tests/\", \"README.md\"]\n"
      "protected = [\"src/secrets/\", \"tests/conftest.py\"]\n");
  const std::pair<const char*, PathDecision> cases[] = {
      {"src/app.py", PathDecision::kAllowed},
      {"./src/app.py", PathDecision::kAllowed},
      {"src//app.py", PathDecision::kAllowed},
      {"README.md", PathDecision::kAllowed},
      {"tests/conftest.py", PathDecision::kProtected},
      {"src/secrets/keys.py", PathDecision::kProtected},
      {"setup.py", PathDecision::kOutside},
      {"docs/README.md", PathDecision::kOutside},
      {"src/../setup.py", PathDecision::kOutside},
      {"/etc/passwd", PathDecision::kOutside},
      {"", PathDecision::kOutside},
      {".", PathDecision::kOutside},
  };
  for (const auto& [path, want] : cases)
    EXPECT_EQ(Decide(p, path), want) << path << " -> " << PathDecisionName(Decide(p, path));
}

TEST(DecideTest, DefaultsAllowEverythingAndProtectCiAndInstructions) {
  const Policy& p = DefaultPolicy();
  EXPECT_EQ(Decide(p, "anything/at/all.c"), PathDecision::kAllowed);
  EXPECT_EQ(Decide(p, ".github/workflows/ci.yml"), PathDecision::kProtected);
  EXPECT_EQ(Decide(p, ".loom/instructions.md"), PathDecision::kProtected);
  EXPECT_EQ(Decide(p, "AGENTS.md"), PathDecision::kProtected);
}

TEST(DecideTest, ProtectedOutsideAllowedIsOutside) {
  Policy p = PathsPolicyOf("[paths]\nallowed = [\"src/\"]\nprotected = [\"ci/\"]\n");
  EXPECT_EQ(Decide(p, "ci/run.sh"), PathDecision::kOutside);
}

TEST(DecideTest, ProtectedNeedsNoApprovalWhenTheReviewSaysSo) {
  Policy p = PathsPolicyOf("[review]\nrequire_approval_for_protected = false\n");
  EXPECT_EQ(Decide(p, ".github/workflows/ci.yml"), PathDecision::kAllowed);
}

// ---- Escalations, secrets, approvals ------------------------------------------------

TEST(EscalationTest, OnlyListedKindsAreAllowed) {
  Policy p = PathsPolicyOf("[escalations]\nallowed = [\"question\", \"approval\"]\n");
  EXPECT_TRUE(EscalationAllowed(p, EscalationKind::kQuestion));
  EXPECT_TRUE(EscalationAllowed(p, "approval"));
  EXPECT_FALSE(EscalationAllowed(p, EscalationKind::kGpu));
  EXPECT_FALSE(EscalationAllowed(p, "api_key"));
  EXPECT_FALSE(EscalationAllowed(p, "root_shell"));
  EXPECT_TRUE(EscalationAllowed(DefaultPolicy(), "gpu"));
}

TEST(EscalationTest, KindNamesRoundTrip) {
  for (auto kind : {EscalationKind::kApiKey, EscalationKind::kGpu, EscalationKind::kNetwork,
                    EscalationKind::kApproval, EscalationKind::kQuestion})
    EXPECT_EQ(ParseEscalationKind(EscalationKindName(kind)), kind);
  EXPECT_EQ(ParseEscalationKind("API_KEY"), std::nullopt);
}

TEST(SecretTest, OnlyListedNamesExactly) {
  Policy p = PathsPolicyOf("[secrets]\nallowed = [\"OPENAI_API_KEY\"]\n");
  EXPECT_TRUE(SecretAllowed(p, "OPENAI_API_KEY"));
  EXPECT_FALSE(SecretAllowed(p, "openai_api_key"));
  EXPECT_FALSE(SecretAllowed(p, "GITHUB_TOKEN"));
  EXPECT_FALSE(SecretAllowed(p, ""));
  EXPECT_FALSE(SecretAllowed(DefaultPolicy(), "OPENAI_API_KEY"));
}

TEST(ApprovalTest, RequesterCannotApproveTheirOwnTask) {
  const Policy& p = DefaultPolicy();
  EXPECT_TRUE(MayApprove(p, Role::kEngineer, /*requester=*/7, /*approver=*/8));
  EXPECT_TRUE(MayApprove(p, Role::kAdmin, 7, 8));
  EXPECT_FALSE(MayApprove(p, Role::kEngineer, 7, 7));
  EXPECT_FALSE(MayApprove(p, Role::kAdmin, 7, 7));
  EXPECT_FALSE(MayApprove(p, Role::kReporter, 7, 8));
  EXPECT_FALSE(MayApprove(p, Role::kEngineer, 7, 0));  // an approver must be identified
  EXPECT_TRUE(MayApprove(p, Role::kEngineer, 0, 8));   // no requester token
}

TEST(ApprovalTest, RequesterMayApproveWhenThePolicySays) {
  Policy p = PathsPolicyOf("[review]\nrequester_may_approve = true\n");
  EXPECT_TRUE(MayApprove(p, Role::kEngineer, 7, 7));
}

TEST(ApprovalTest, RolesComeFromThePolicy) {
  Policy p = PathsPolicyOf("[review]\napprovers = [\"admin\"]\nmergers = [\"admin\"]\n");
  EXPECT_FALSE(MayApprove(p, Role::kEngineer, 7, 8));
  EXPECT_TRUE(MayApprove(p, Role::kAdmin, 7, 8));
  EXPECT_FALSE(MayMerge(p, Role::kEngineer));
  EXPECT_TRUE(MayMerge(p, Role::kAdmin));
  EXPECT_TRUE(MayMerge(DefaultPolicy(), Role::kEngineer));
  EXPECT_FALSE(MayMerge(DefaultPolicy(), Role::kReporter));
}

}  // namespace
}  // namespace loom::policies
