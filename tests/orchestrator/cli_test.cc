// The loom CLI against a real loomd: output, --json and exit codes.
#include <gtest/gtest.h>

#include "common/json.h"
#include "orchestrator/cli/commands.h"
#include "tests/support/daemon_fixture.h"
#include "tests/support/subprocess.h"

namespace loom {
namespace {

using CliRun = testing::CommandResult;

class CliTest : public testing::DaemonFixture {
 protected:
  CliRun Loom(const std::string& args, const std::string& token) {
    return testing::RunCommand("LOOM_SERVER=http://127.0.0.1:" + std::to_string(daemon_->port()) +
                               " LOOM_TOKEN='" + token + "' " + testing::LoomBinary() + " " + args +
                               " 2>/dev/null");
  }
};

TEST_F(CliTest, SubmitListShowRoundTrip) {
  StartDaemon();
  CliRun r =
      Loom("--json feedback submit --kind bug --title 'Save fails' --body 'Steps' --repo app",
           reporter_);
  ASSERT_EQ(r.exit_code, cli::kExitOk) << r.out;
  int64_t id = ParseJson(r.out).value()["id"];
  CliRun list = Loom("feedback list", engineer_);
  EXPECT_EQ(list.exit_code, 0);
  EXPECT_NE(list.out.find("Save fails"), std::string::npos) << list.out;
  CliRun show = Loom("--json feedback show " + std::to_string(id), engineer_);
  EXPECT_EQ(ParseJson(show.out).value()["repo"], "app");
}

TEST_F(CliTest, ExitCodesScriptsCanRelyOn) {
  StartDaemon();
  EXPECT_EQ(Loom("feedback show 12345", engineer_).exit_code, cli::kExitNotFound);
  EXPECT_EQ(Loom("feedback list", "loom_bad").exit_code, cli::kExitAuth);
  EXPECT_EQ(
      Loom("feedback submit --kind bug --title t --body b --context '[1]'", reporter_).exit_code,
      cli::kExitUsage);
  EXPECT_EQ(Loom("feedback submit --kind bug", reporter_).exit_code, cli::kExitUsage);
  EXPECT_EQ(Loom("token create --role reporter", reporter_).exit_code, cli::kExitAuth);
  CliRun made = Loom("token create --role reporter --name widget", admin_);
  EXPECT_EQ(made.exit_code, 0);
  EXPECT_EQ(made.out.rfind("loom_", 0), 0u) << made.out;
}

TEST_F(CliTest, ControlCharactersFromAReporterArePrintedEscaped) {
  StartDaemon();
  // Retitles the terminal, clears the screen, returns the carriage over the line and
  // uses the 8-bit CSI (U+009B): raw, any of them rewrites what an engineer sees.
  Json fb = {{"kind", "bug"},
             {"title", "Save \x1b]0;pwned\x07\x1b[2J fails\rok \xc2\x9b" "31m"},
             {"body", "Steps"}};
  ASSERT_EQ(Call("POST", "/v1/feedback", reporter_, DumpJson(fb)).status, 201);
  for (const char* command : {"feedback list", "feedback show 1"}) {
    CliRun r = Loom(command, engineer_);
    EXPECT_EQ(r.exit_code, 0) << command;
    EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << command << ": " << r.out;
    EXPECT_EQ(r.out.find('\r'), std::string::npos) << command;
    EXPECT_EQ(r.out.find("\xc2\x9b"), std::string::npos) << command;
    EXPECT_NE(r.out.find("Save \\x1b]0;pwned\\x07\\x1b[2J fails\\x0dok \\u009b31m"),
              std::string::npos)
        << command << ": " << r.out;
  }
}

TEST_F(CliTest, UnreachableServerIsExitCode5) {
  StartDaemon();
  CliRun r = testing::RunCommand("LOOM_SERVER=http://127.0.0.1:1 " + testing::LoomBinary() +
                                 " feedback list 2>/dev/null");
  EXPECT_EQ(r.exit_code, cli::kExitUnavailable);
}

}  // namespace
}  // namespace loom
