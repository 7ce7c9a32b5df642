// `loom sandbox run` end to end: the real binary, real bubblewrap. Exit codes mirror
// the command (128+N for a signal, 124 for a limit), --json prints the outcome.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "common/json.h"
#include "tests/support/subprocess.h"

namespace loom {
namespace {

using CliResult = testing::CommandResult;

// `loom ARGS`, stdout and stderr together.
CliResult Loom(const std::string& args) {
  return testing::RunCommand(testing::LoomBinary() + " " + args + " 2>&1");
}

class SandboxCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/loom-sbx-cli-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    chmod(dir_.c_str(), 0755);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(SandboxCommandTest, ExitCodeMirrorsTheCommand) {
  CliResult r = Loom("sandbox run --dir " + dir_ + " -- sh -c 'echo hi; exit 3'");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "hi\n");
}

TEST_F(SandboxCommandTest, ASignalExitsWith128PlusN) {
  EXPECT_EQ(Loom("sandbox run --dir " + dir_ + " -- sh -c 'kill -TERM $$'").exit_code, 128 + 15);
}

TEST_F(SandboxCommandTest, ALimitExitsWith124AndSaysWhich) {
  CliResult r = Loom("sandbox run --dir " + dir_ + " --timeout 0.3 -- sleep 30");
  EXPECT_EQ(r.exit_code, 124);
  EXPECT_NE(r.out.find("timeout limit"), std::string::npos) << r.out;
}

TEST_F(SandboxCommandTest, JsonPrintsTheOutcome) {
  CliResult r = Loom("sandbox run --json --dir " + dir_ +
                     " --env GREETING=hello --output-limit 4 -- sh -c 'echo $GREETING'");
  EXPECT_EQ(r.exit_code, 124);
  auto j = ParseJson(r.out);
  ASSERT_TRUE(j.ok()) << r.out;
  EXPECT_EQ((*j)["stdout"], "hell");
  EXPECT_EQ((*j)["limit"], "output");
  EXPECT_EQ((*j)["stdout_truncated"], true);
}

TEST_F(SandboxCommandTest, NetworkFlagSelectsAPrivateLoopback) {
  std::string probe = " -- python3 -c 'import socket; socket.socket()'";
  EXPECT_EQ(Loom("sandbox run --dir " + dir_ + " --network loopback" + probe).exit_code, 0);
  EXPECT_NE(Loom("sandbox run --dir " + dir_ + probe).exit_code, 0);
  EXPECT_EQ(Loom("sandbox run --dir " + dir_ + " --network host -- true").exit_code, 2);
}

TEST_F(SandboxCommandTest, RefusalsAreErrorsWithAMessage) {
  CliResult r = Loom("sandbox run --dir " + dir_ + " --ro /run -- true");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("refusing to bind /run"), std::string::npos) << r.out;
  EXPECT_EQ(Loom("sandbox run --dir " + dir_ + "/missing -- true").exit_code, 2);
}

}  // namespace
}  // namespace loom
