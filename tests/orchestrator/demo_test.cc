// `loom demo`, the README's main job, run as a user runs it: the real binary on
// examples/calc with the replayed conversation; it must end with a reviewed
// branch, its diff and a passing verification, and exit 0.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "tests/support/temp_dir.h"

namespace loom {
namespace {

struct LoomRun {
  int exit_code = -1;
  std::string output;
};

LoomRun Loom(const std::string& args) {
  std::string cmd = std::string(LOOM_BIN_DIR) + "/loom " + args + " 2>&1";
  LoomRun r;
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(DemoTest, FixesTheExampleBugAndShowsTheBranch) {
  testing::TempDir dir;
  ::chmod(dir.path().c_str(), 0711);  // mkdtemp's 0700 would keep the sandbox uid out
  std::string demo_dir = dir.path() + "/demo";
  LoomRun r =
      Loom("demo --examples " + std::string(LOOM_SOURCE_DIR) + "/examples --dir " + demo_dir);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("a REPLAY of a recorded conversation"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("+    return total(values) / len(values)"), std::string::npos);
  EXPECT_NE(r.output.find("is ready for review"), std::string::npos);
  EXPECT_NE(r.output.find("Ran 9 tests"), std::string::npos);
  EXPECT_NE(r.output.find("\nOK"), std::string::npos);

  // A second run replaces the first demo's directory...
  r = Loom("demo --examples " + std::string(LOOM_SOURCE_DIR) + "/examples --dir " + demo_dir);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // ...but never a directory it did not make.
  std::filesystem::create_directories(dir.path() + "/mine");
  r = Loom("demo --examples " + std::string(LOOM_SOURCE_DIR) + "/examples --dir " + dir.path() +
           "/mine");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("is not a previous demo's directory"), std::string::npos) << r.output;
}

TEST(DemoTest, AnUnreachableDirectoryIsRefusedWithTheReason) {
  if (::geteuid() != 0) GTEST_SKIP() << "only a root loomd runs the sandbox as another uid";
  testing::TempDir dir;  // mode 0700
  LoomRun r = Loom("demo --examples " + std::string(LOOM_SOURCE_DIR) + "/examples --dir " +
                   dir.path() + "/demo");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(dir.path() + " is mode 0700"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace loom
