// The loom CLI against a real loomd: output, --json and exit codes.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>

#include "common/json.h"
#include "orchestrator/cli/commands.h"
#include "tests/support/daemon_fixture.h"

namespace loom {
namespace {

struct CliRun {
  int exit_code;
  std::string out;
};

class CliTest : public testing::DaemonFixture {
 protected:
  CliRun Loom(const std::string& args, const std::string& token) {
    std::string cmd = "LOOM_SERVER=http://127.0.0.1:" + std::to_string(daemon_->port()) +
                      " LOOM_TOKEN='" + token + "' " + LOOM_BIN_DIR + "/loom " + args +
                      " 2>/dev/null";
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    std::array<char, 4096> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
    int status = ::pclose(p);
    return {WEXITSTATUS(status), out};
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
  std::string cmd = std::string("LOOM_SERVER=http://127.0.0.1:1 ") + LOOM_BIN_DIR +
                    "/loom feedback list 2>/dev/null";
  int status = std::system(cmd.c_str());
  EXPECT_EQ(WEXITSTATUS(status), cli::kExitUnavailable);
}

}  // namespace
}  // namespace loom
