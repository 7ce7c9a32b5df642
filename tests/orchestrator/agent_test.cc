// The agent's pure helpers: how run_tests' arguments reach the test command.
#include "orchestrator/agent.h"

#include <gtest/gtest.h>

#include "tests/support/subprocess.h"

namespace loom {
namespace {

// Runs argv (a test command with arguments) through a real shell; returns its stdout.
std::string RunArgv(const std::vector<std::string>& argv) {
  std::string command;
  for (const auto& a : argv) command += testing::ShellQuote(a) + " ";
  return testing::RunCommand(command).out;
}

TEST(TestArgvWithArgs, ArgumentsReachAShellTestCommand) {
  // `sh -c CMD a b` would make a=$0, b=$1 and drop both: `-k nonexistent` ran every test.
  auto argv = TestArgvWithArgs({"/bin/sh", "-c", "echo ran:"}, "-k nonexistent");
  EXPECT_EQ(RunArgv(argv), "ran: -k nonexistent\n");
}

TEST(TestArgvWithArgs, NoArgumentsLeaveTheCommandAsItIs) {
  std::vector<std::string> cmd = {"/bin/sh", "-c", "echo ran"};
  EXPECT_EQ(TestArgvWithArgs(cmd, "  "), cmd);
  EXPECT_EQ(RunArgv(TestArgvWithArgs(cmd, "")), "ran\n");
}

TEST(TestArgvWithArgs, ArgumentsFollowADirectCommand) {
  auto argv = TestArgvWithArgs({"/bin/echo", "x"}, "y z");
  EXPECT_EQ(argv, (std::vector<std::string>{"/bin/echo", "x", "y", "z"}));
}

}  // namespace
}  // namespace loom
