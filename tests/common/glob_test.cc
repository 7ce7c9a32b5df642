// The one glob rule set (common/glob.h): what a policy validates is what repos/
// enforces. tests/repos/workspace_test.cc checks the two sides agree on real edits.
#include "common/glob.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>

namespace loom {
namespace {

struct GlobCase {
  const char* pattern;
  const char* path;
  bool match;
};

TEST(GlobTest, MatchesTable) {
  const GlobCase cases[] = {
      {"**", "a", true},
      {"**", "a/b/c.py", true},
      {"*.md", "README.md", true},
      {"*.md", "docs/README.md", false},  // anchored at the root
      {"**/*.md", "README.md", true},
      {"**/*.md", "docs/a/README.md", true},
      {"src/*.py", "src/a.py", true},
      {"src/*.py", "src/sub/a.py", false},
      {"src/**/*.py", "src/a.py", true},
      {"src/**/*.py", "src/x/y/a.py", true},
      {"src/**/*.py", "srcx/a.py", false},
      {"src/", "src/a.py", true},
      {"src/", "src/x/y", true},
      {"src/", "src", true},
      {"src/", "srcx/a", false},
      {"src/**", "src/a", true},
      {"a?c", "abc", true},
      {"a?c", "ac", false},
      {"a?c", "a/c", false},
      {"a*", "a/b", false},
      {"*", "a", true},
      {"*", "a/b", false},
      {"a/**/b", "a/b", true},
      {"a/**/b", "a/x/y/b", true},
      {"a/**/b", "a/x/y/c", false},
      {"**/test_*.py", "tests/unit/test_a.py", true},
      {"**/test_*.py", "tests/unit/a_test.py", false},
      {"*.*", "a.b", true},
      {"*a*b*", "xxaxxbxx", true},
      {"*a*b*", "xxbxxaxx", false},
      {".github/", ".github/workflows/ci.yml", true},
      {"AGENTS.md", "AGENTS.md", true},
      {"AGENTS.md", "sub/AGENTS.md", false},
      {"**/**/x", "x", true},
      {"src/[a].py", "src/[a].py", false},  // invalid pattern never matches
      {"/src/**", "src/a.cc", false},       // absolute: invalid, never matches
      // A leading dot is an ordinary character: dotfiles and dot-directories match.
      {"*", ".env", true},
      {"**", ".github/workflows/ci.yml", true},
      {"**/*.md", ".docs/a.md", true},
      {"src/*", "src/.hidden", true},
      {".*", ".gitignore", true},
      {".*", "a.txt", false},
      {"src/**", "src/a/b.cc", true},
      {"src/*.cc", "src/x/a.cc", false},
      {"src/**", "tests/a.cc", false},
  };
  for (const GlobCase& c : cases)
    EXPECT_EQ(GlobMatch(c.pattern, c.path), c.match) << c.pattern << " vs " << c.path;
}

TEST(GlobTest, ValidatesTable) {
  const std::pair<const char*, bool> cases[] = {
      {"**", true},     {"src/", true},    {"a/**/b/*.py", true}, {"**/", true},
      {"a b/c", true},  {"", false},       {"/abs", false},       {"a//b", false},
      {"./a", false},   {"a/../b", false}, {"a/**b", false},      {"***", false},
      {"[abc]", false}, {"{a,b}", false},  {"a\\b", false},       {"a\tb", false},
  };
  for (const auto& [pattern, ok] : cases)
    EXPECT_EQ(ValidateGlob(pattern).ok(), ok) << "\"" << pattern << "\"";
}

TEST(GlobTest, HostilePatternFinishesQuickly) {
  std::string pattern, path;
  for (int i = 0; i < 50; ++i) pattern += "*a";
  pattern += "b";
  path.assign(4000, 'a');
  EXPECT_FALSE(GlobMatch(pattern, path));
  std::string deep;
  for (int i = 0; i < 200; ++i) deep += "**/x/";
  deep += "y";
  std::string segs;
  for (int i = 0; i < 400; ++i) segs += "x/";
  segs += "z";
  EXPECT_FALSE(GlobMatch(deep, segs));
}

}  // namespace
}  // namespace loom
