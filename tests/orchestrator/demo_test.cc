// `loom demo`, the README's main job, run as a user runs it: the real binary on
// examples/calc with the replayed conversation; it must end with a reviewed
// branch, its diff and a passing verification, and exit 0.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <string>
#include <thread>

#include "tests/support/http_client.h"
#include "tests/support/slurm_cluster.h"
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
  EXPECT_NE(r.out.find("Dashboard   http://127.0.0.1:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("/#/review/1\n  sign in with the reviewer's token loom_"),
            std::string::npos);

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
  // Pushed over HTTP, to the git-http-backend the demo serves on loopback.
  EXPECT_NE(r.out.find(" to http://127.0.0.1:", at), std::string::npos) << r.out;
  std::string server = demo_dir + "/server/calc.git";
  std::string head = testing::CommandOutput("git -C " + ShellQuote(server) +
                                            " log -1 --format=%s " + ShellQuote(branch));
  EXPECT_NE(head.find("average"), std::string::npos) << head << r.out;
}

// `loom demo --serve`: the printed dashboard address and reviewer token sign in,
// the task's review opens there, and Ctrl-C (SIGINT) stops it cleanly.
TEST(DemoTest, ServeKeepsTheDashboardUpForTheReviewUntilInterrupted) {
  testing::TempDir dir;
  ::chmod(dir.path().c_str(), 0711);
  std::string log = dir.path() + "/demo.log";
  pid_t pid =
      testing::Spawn({std::string(LOOM_BIN_DIR) + "/loom", "demo", "--serve", "--examples",
                      std::string(LOOM_SOURCE_DIR) + "/examples", "--dir", dir.path() + "/demo"},
                     log);
  ASSERT_GT(pid, 0);
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (out.find("keeps serving") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::ifstream in(log);
    out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::smatch m;
  bool printed = std::regex_search(
      out, m,
      std::regex(
          R"(Dashboard   http://127\.0\.0\.1:(\d+)/#/review/(\d+)\n  sign in with the reviewer's token (loom_[0-9a-f]+))"));
  if (!printed) {
    testing::KillAndWait(pid, SIGKILL);
    FAIL() << out;
  }
  uint16_t port = static_cast<uint16_t>(std::stoi(m[1]));
  auto signed_in =
      testing::HttpCall(port, "POST", "/v1/session", "{\"token\": \"" + m[3].str() + "\"}",
                        {{"Content-Type", "application/json"}});
  EXPECT_EQ(signed_in.status, 201) << signed_in.body;
  std::string cookie =
      signed_in.headers["Set-Cookie"].substr(0, signed_in.headers["Set-Cookie"].find(';'));
  auto review =
      testing::HttpCall(port, "GET", "/v1/reviews/" + m[2].str(), "", {{"Cookie", cookie}});
  EXPECT_EQ(review.status, 200) << review.body.substr(0, 300);
  EXPECT_EQ(testing::HttpCall(port, "GET", "/", "").status, 200) << "the dashboard is served";
  int status = testing::KillAndWait(pid, SIGINT);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
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

namespace loom {
namespace {

// An agent's task end to end through Slurm: `loom demo --executor slurm` on a real
// local cluster (tests/support/slurm_cluster.h). The suite and its verification
// run as job steps of loomd's allocation (slurmd launched them), sandboxed by the
// runner on the node, and the task reaches review as it does locally.
TEST(DemoTest, TheWholeLoopRunsThroughSlurm) {
  std::string missing = testing::SlurmCluster::Missing();
  if (!missing.empty()) {
    const char* ci = getenv("CI");
    if (ci != nullptr && std::string(ci) == "true") FAIL() << missing;
    GTEST_SKIP() << "no local Slurm: " << missing;
  }
  testing::TempDir cluster_dir;
  ::chmod(cluster_dir.path().c_str(), 0755);
  testing::SlurmCluster cluster;
  ASSERT_TRUE(cluster.Start(cluster_dir.path())) << cluster.error();
  testing::TempDir dir;
  ::chmod(dir.path().c_str(), 0711);
  LoomRun r = Demo(dir.path() + "/demo",
                   " --executor slurm --slurm-conf " + ShellQuote(cluster.slurm_conf()));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("job steps on Slurm"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("is ready for review"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Ran 9 tests"), std::string::npos) << r.out;
  // The allocation loomd made, and steps slurmd launched in it.
  std::string jobs = testing::CommandOutput("SLURM_CONF=" + ShellQuote(cluster.slurm_conf()) +
                                            " scontrol show jobs --oneliner");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(jobs, m, std::regex("JobId=([0-9]+) JobName=loom-sandbox")))
      << jobs;
  std::ifstream slurmd_log(cluster_dir.path() + "/log/slurmd.log");
  std::string log((std::istreambuf_iterator<char>(slurmd_log)), std::istreambuf_iterator<char>());
  EXPECT_NE(log.find("StepId=" + m[1].str() + ".0"), std::string::npos) << log;
  EXPECT_NE(log.find("StepId=" + m[1].str() + ".1"), std::string::npos) << "one step only: " << log;
}

}  // namespace
}  // namespace loom
