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
                               " LOOM_TOKEN='" + token + "' " + testing::LoomBinary() + " " +
                               args + " 2>/dev/null");
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

TEST_F(CliTest, UnreachableServerIsExitCode5) {
  StartDaemon();
  CliRun r = testing::RunCommand("LOOM_SERVER=http://127.0.0.1:1 " + testing::LoomBinary() +
                                 " feedback list 2>/dev/null");
  EXPECT_EQ(r.exit_code, cli::kExitUnavailable);
}

}  // namespace
}  // namespace loom
