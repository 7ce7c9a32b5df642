// `loom demo`, the README's main job, run as a user runs it: the real binary on
// examples/calc with the replayed conversation; it must end with a reviewed
// branch, its diff and a passing verification, and exit 0.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_paths.h"

namespace loom {
namespace {

using LoomRun = testing::CommandResult;
using testing::ShellQuote;

// `loom demo --examples <this source tree's examples> --dir DIR`, stdout and stderr.
LoomRun Demo(const std::string& dir, const std::string& flags = "") {
  return testing::RunCommand(testing::LoomBinary() + " demo --examples " +
                             ShellQuote(std::string(LOOM_SOURCE_DIR) + "/examples") + " --dir " +
                             ShellQuote(dir) + flags + " 2>&1");
}

TEST(DemoTest, FixesTheExampleBugAndShowsTheBranch) {
  testing::TempDir dir;
  ::chmod(dir.path().c_str(), 0711);  // mkdtemp's 0700 would keep the sandbox uid out
  std::string demo_dir = dir.path() + "/demo";
  LoomRun r = Demo(demo_dir);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("a REPLAY of a recorded conversation"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("+    return total(values) / len(values)"), std::string::npos);
  EXPECT_NE(r.out.find("is ready for review"), std::string::npos);
  EXPECT_NE(r.out.find("Ran 9 tests"), std::string::npos);
  EXPECT_NE(r.out.find("\nOK"), std::string::npos);

  // A second run replaces the first demo's directory...
  r = Demo(demo_dir);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  // ...but never a directory it did not make.
  std::filesystem::create_directories(dir.path() + "/mine");
  r = Demo(dir.path() + "/mine");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("is not a previous demo's directory"), std::string::npos) << r.out;
}

TEST(DemoTest, RemoteShowsTheBranchPushedToTheServer) {
  testing::TempDir dir;
  ::chmod(dir.path().c_str(), 0711);
  std::string demo_dir = dir.path() + "/demo";
  LoomRun r = Demo(demo_dir, " --remote");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  size_t at = r.out.find("Pushed loom/");
  ASSERT_NE(at, std::string::npos) << r.out;
  std::string branch = r.out.substr(at + 7, r.out.find(' ', at + 7) - at - 7);
  std::string server = demo_dir + "/server/calc.git";
  std::string head = testing::CommandOutput("git -C " + ShellQuote(server) +
                                            " log -1 --format=%s " + ShellQuote(branch));
  EXPECT_NE(head.find("average"), std::string::npos) << head << r.out;
}

TEST(DemoTest, AnUnreachableDirectoryIsRefusedWithTheReason) {
  if (::geteuid() != 0) GTEST_SKIP() << "only a root loomd runs the sandbox as another uid";
  testing::TempDir dir;  // mode 0700
  LoomRun r = Demo(dir.path() + "/demo");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find(dir.path() + " is mode 0700"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace loom
