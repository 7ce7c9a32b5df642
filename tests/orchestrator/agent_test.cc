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

// The schemas the model is sent, byte for byte: the recorded conversations of
// examples/ and the tests were made against them, and a model server's prefix
// cache keys on them.
TEST(AgentToolSchemas, AreTheRecordedContract) {
  const char* kRecorded =
      R"json([{"function":{"description":"List the files and directories under a path of the repository.","name":"list_files","parameters":{"properties":{"path":{"description":"Directory relative to the repository root; '.' for the root.","type":"string"}},"required":["path"],"type":"object"}},"type":"function"},{"function":{"description":"Read a file, optionally only lines start_line..end_line (1-based, inclusive).","name":"read_file","parameters":{"properties":{"end_line":{"description":"Last line to read.","type":"integer"},"path":{"description":"File relative to the repository root.","type":"string"},"start_line":{"description":"First line to read.","type":"integer"}},"required":["path"],"type":"object"}},"type":"function"},{"function":{"description":"Search the repository's files for a literal text.","name":"search","parameters":{"properties":{"path":{"description":"Limit the search to this directory or file.","type":"string"},"pattern":{"description":"Text to find.","type":"string"}},"required":["pattern"],"type":"object"}},"type":"function"},{"function":{"description":"Create or overwrite a file with the given content.","name":"write_file","parameters":{"properties":{"content":{"description":"The whole new content.","type":"string"},"path":{"description":"File relative to the repository root.","type":"string"}},"required":["path","content"],"type":"object"}},"type":"function"},{"function":{"description":"Replace one exact occurrence of `old` with `new` in a file.","name":"replace_in_file","parameters":{"properties":{"new":{"description":"Replacement text.","type":"string"},"old":{"description":"Exact text to replace; it must occur exactly once.","type":"string"},"path":{"description":"File relative to the repository root.","type":"string"}},"required":["path","old","new"],"type":"object"}},"type":"function"},{"function":{"description":"Run the repository's test command in the sandbox.","name":"run_tests","parameters":{"properties":{"args":{"description":"Extra arguments for the test command (optional).","type":"string"}},"required":[],"type":"object"}},"type":"function"},{"function":{"description":"Run a shell command in the sandbox, in the repository root.","name":"run_command","parameters":{"properties":{"command":{"description":"The command line.","type":"string"}},"required":["command"],"type":"object"}},"type":"function"},{"function":{"description":"Ask a person for what only a person can give; the task waits for the answer.","name":"request_human","parameters":{"properties":{"kind":{"description":"api_key, gpu, network, approval or question.","type":"string"},"secret_name":{"description":"For api_key: the environment variable to set.","type":"string"},"summary":{"description":"What you need and why.","type":"string"}},"required":["kind","summary"],"type":"object"}},"type":"function"},{"function":{"description":"Declare the change complete; it is verified by running the tests.","name":"finish","parameters":{"properties":{"summary":{"description":"What was changed and why (becomes the commit message).","type":"string"}},"required":["summary"],"type":"object"}},"type":"function"}])json";
  EXPECT_EQ(DumpJson(AgentToolSchemas()), kRecorded);
}

}  // namespace
}  // namespace loom
