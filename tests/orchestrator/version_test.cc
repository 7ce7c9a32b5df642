// --version of the three programs: the version, the commit this tree is at
// (git's own answer, with -modified for a dirty tree), the build options.
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "tests/support/subprocess.h"
#include "tests/support/test_paths.h"

namespace loom {
namespace {

std::string HeadCommit() {
  auto r =
      testing::RunCommand("git -c safe.directory='*' -C " + testing::ShellQuote(LOOM_SOURCE_DIR) +
                          " rev-parse --short=12 HEAD 2>/dev/null");
  if (r.exit_code != 0) return "";
  while (!r.out.empty() && r.out.back() == '\n') r.out.pop_back();
  return r.out;
}

TEST(VersionTest, EveryProgramSaysItsVersionCommitAndBuild) {
  const std::string head = HeadCommit();
  for (const char* program : {"loomd", "loom", "loom-infer"}) {
    SCOPED_TRACE(program);
    auto r = testing::RunCommand(testing::ShellQuote(std::string(LOOM_BIN_DIR) + "/" + program) +
                                 " --version");
    EXPECT_EQ(r.exit_code, 0) << r.out;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(
        r.out, m,
        std::regex(
            std::string("^") + program +
            R"( (\d+\.\d+\.\d+) \(commit ([0-9a-f]{12}(-modified)?|unknown)\)\nbuild: \S.*)")))
        << r.out;
    // Built from this checkout: the commit is git's (this tree is what ctest runs).
    if (!head.empty()) {
      EXPECT_EQ(m[2].str().substr(0, 12), head) << r.out;
    }
    EXPECT_NE(r.out.find("CUDA"), std::string::npos) << r.out;  // on or off, it says which
  }
}

}  // namespace
}  // namespace loom
