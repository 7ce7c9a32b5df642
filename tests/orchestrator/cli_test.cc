// The loom CLI against a real loomd: output, --json and exit codes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/json.h"
#include "orchestrator/cli/commands.h"
#include "orchestrator/stores.h"
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

// `loom repo add NAME URL`: the URL reaches loomd as given (not made a path
// under the working directory), and loomd registers its own clone in the data dir.
TEST_F(CliTest, RepoAddWithAUrlRegistersLoomdsOwnClone) {
  StartDaemon({{"agents", "0"}});
  std::string upstream = dir_.path() + "/upstream";
  std::filesystem::create_directories(upstream);
  std::ofstream(upstream + "/README") << "hi\n";
  ASSERT_TRUE(repos::InitRepository(upstream, "main", "initial").ok());
  CliRun r = Loom("repo add app file://" + upstream + " --test true", admin_);
  ASSERT_EQ(r.exit_code, cli::kExitOk) << r.out;
  EXPECT_NE(r.out.find(dir_.path() + "/clones/app.git"), std::string::npos) << r.out;
  CliRun list = Loom("repo list", engineer_);
  EXPECT_NE(list.out.find("clones/app.git"), std::string::npos) << list.out;
}

// `loom secret set` stores a git server's token from a file (never argv), and
// `loom repo add` names it; names that do not fit the URL are refused.
TEST_F(CliTest, SecretSetAndRepoAddWithSecretNames) {
  StartDaemon({{"agents", "0"}});
  std::ofstream(dir_.path() + "/token.txt") << "token-value-123456\n";
  CliRun r = Loom("secret set GIT_TOKEN --from-file " + dir_.path() + "/token.txt", engineer_);
  EXPECT_EQ(r.exit_code, cli::kExitAuth) << "storing a secret needs an admin";
  r = Loom("secret set GIT_TOKEN --from-file " + dir_.path() + "/token.txt", admin_);
  ASSERT_EQ(r.exit_code, cli::kExitOk) << r.out;
  EXPECT_EQ(r.out.find("token-value"), std::string::npos) << r.out;
  std::string upstream = dir_.path() + "/upstream";
  std::filesystem::create_directories(upstream);
  std::ofstream(upstream + "/README") << "hi\n";
  ASSERT_TRUE(repos::InitRepository(upstream, "main", "initial").ok());
  // A file:// remote takes no credentials.
  r = Loom("repo add app file://" + upstream +
               " --test true --username alice --password-secret GIT_TOKEN",
           admin_);
  EXPECT_EQ(r.exit_code, cli::kExitUsage) << r.out;
  r = Loom("repo add app file://" + upstream + " --test true", admin_);
  ASSERT_EQ(r.exit_code, cli::kExitOk) << r.out;
  CliRun list = Loom("repo list", engineer_);
  EXPECT_NE(list.out.find("remote file://" + upstream), std::string::npos) << list.out;
}

TEST_F(CliTest, ListsPageByLimitAndAfter) {
  StartDaemon({{"agents", "0"}});
  RegisterCalc();
  for (const char* title : {"Save fails", "Export hangs", "Total wrong"}) {
    Json fb = {{"kind", "bug"}, {"title", title}, {"body", "Steps"}};
    ASSERT_EQ(Call("POST", "/v1/feedback", reporter_, DumpJson(fb)).status, 201);
  }
  // One page, and how to ask for the next.
  CliRun page = Loom("feedback list --limit 2", engineer_);
  EXPECT_EQ(page.exit_code, 0);
  EXPECT_NE(page.out.find("Export hangs"), std::string::npos) << page.out;
  EXPECT_EQ(page.out.find("Total wrong"), std::string::npos) << page.out;
  EXPECT_NE(page.out.find("--after 2"), std::string::npos) << page.out;
  CliRun all = Loom("feedback list --limit 2 --all", engineer_);
  EXPECT_NE(all.out.find("Total wrong"), std::string::npos) << all.out;
  EXPECT_EQ(all.out.find("--after"), std::string::npos) << all.out;
  Json rest = ParseJson(Loom("--json feedback list --limit 2 --after 2", engineer_).out).value();
  ASSERT_EQ(rest["items"].size(), 1u);
  EXPECT_EQ(rest["items"][0]["title"], "Total wrong");
  EXPECT_TRUE(rest["next_after"].is_null());
  // Tasks, reviews and escalations page through to the end from --after.
  auto stores = OrchestratorStores::Open(DatabasePath(dir_.path()));
  ASSERT_TRUE(stores.ok());
  ASSERT_EQ(stores->tasks->Triage()->size(), 3u);
  CliRun tasks = Loom("task list --limit 1", engineer_);
  EXPECT_EQ(tasks.exit_code, 0);
  for (const char* title : {"Save fails", "Export hangs", "Total wrong"}) {
    EXPECT_NE(tasks.out.find(title), std::string::npos) << tasks.out;
  }
  Json later = ParseJson(Loom("--json task list --limit 1 --after 1", engineer_).out).value();
  EXPECT_EQ(later["items"].size(), 2u);
  EXPECT_EQ(Loom("review list --limit 2", engineer_).out, "Nothing to review.\n");
  EXPECT_EQ(Loom("escalations list --all --limit 2", engineer_).out, "No escalations.\n");
  EXPECT_EQ(Loom("review list --limit 0", engineer_).exit_code, cli::kExitUsage);
  EXPECT_EQ(Loom("task list --after -1", engineer_).exit_code, cli::kExitUsage);
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
             {"title",
              "Save \x1b]0;pwned\x07\x1b[2J fails\rok \xc2\x9b"
              "31m"},
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

TEST_F(CliTest, TaskCancelAndRetry) {
  // No model answers: the task parks on an escalation (blocked).
  StartDaemon(
      {{"llm.url", "http://127.0.0.1:1/v1"}, {"llm.timeout_ms", "2000"}, {"llm.retries", "1"}});
  RegisterCalc();
  Json fb = {{"kind", "bug"}, {"title", "Save fails"}, {"body", "Steps"}, {"repo", "calc"}};
  auto filed = Call("POST", "/v1/feedback", reporter_, DumpJson(fb));
  ASSERT_EQ(filed.status, 201) << filed.body;
  int64_t fb_id = ParseJson(filed.body).value()["id"];
  Json task = WaitSettled(fb_id);
  ASSERT_EQ(task["state"], "blocked") << task.dump();
  std::string id = std::to_string(task["id"].get<int64_t>());

  EXPECT_EQ(Loom("task retry " + id, engineer_).exit_code, cli::kExitError) << "blocked: 409";
  EXPECT_EQ(Loom("task cancel " + id, reporter_).exit_code, cli::kExitAuth);
  CliRun cancel = Loom("task cancel " + id + " --reason 'filed twice'", engineer_);
  EXPECT_EQ(cancel.exit_code, cli::kExitOk);
  EXPECT_NE(cancel.out.find("Cancelled task #" + id + ": cancelled by an engineer: filed twice"),
            std::string::npos)
      << cancel.out;
  CliRun show = Loom("feedback show " + std::to_string(fb_id), reporter_);
  EXPECT_NE(show.out.find("cancelled"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("why: cancelled by an engineer: filed twice"), std::string::npos)
      << show.out;
  EXPECT_EQ(Loom("task cancel " + id, engineer_).exit_code, cli::kExitError) << "already";

  CliRun retry = Loom("--json task retry " + id + " --more-budget", engineer_);
  ASSERT_EQ(retry.exit_code, cli::kExitOk) << retry.out;
  Json retried = ParseJson(retry.out).value();
  EXPECT_EQ(retried["state"], "queued");
  EXPECT_EQ(retried["extra_steps"], 60) << "as much again as the default policy's budget";
  CliRun show_task = Loom("task show " + id, engineer_);
  EXPECT_NE(show_task.out.find("extra budget: 60 steps"), std::string::npos) << show_task.out;
  EXPECT_EQ(Loom("task retry 999", engineer_).exit_code, cli::kExitNotFound);
}

TEST_F(CliTest, GcRunsTheMaintenancePassAndReportsWhatItFreed) {
  StartDaemon();
  std::string repo = RegisterCalc();
  // What an older loomd left: a per-task base copy.
  std::filesystem::create_directories(daemon_->data_dir() + "/base/3");
  std::ofstream(daemon_->data_dir() + "/base/3/calc.py") << std::string(2048, 'x');
  EXPECT_EQ(Loom("gc", engineer_).exit_code, cli::kExitAuth);
  CliRun gc = Loom("--json gc", admin_);
  ASSERT_EQ(gc.exit_code, cli::kExitOk) << gc.out;
  Json report = ParseJson(gc.out).value();
  EXPECT_EQ(report["base_copies_removed"], 1);
  EXPECT_GT(report["loose_objects_packed"].get<int64_t>(), 0);
  EXPECT_EQ(report["loose_objects_left"], 0);
  EXPECT_TRUE(report["errors"].empty());
  EXPECT_FALSE(std::filesystem::exists(daemon_->data_dir() + "/base/3"));
  EXPECT_EQ(testing::CommandOutput("git -C " + repo + " count-objects | cut -d' ' -f1"), "0\n");
  CliRun again = Loom("gc", admin_);
  EXPECT_EQ(again.exit_code, cli::kExitOk);
  EXPECT_NE(again.out.find("loose objects packed:  0"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("bytes freed:"), std::string::npos) << again.out;
}

TEST_F(CliTest, UnreachableServerIsExitCode5) {
  StartDaemon();
  CliRun r = testing::RunCommand("LOOM_SERVER=http://127.0.0.1:1 " + testing::LoomBinary() +
                                 " feedback list 2>/dev/null");
  EXPECT_EQ(r.exit_code, cli::kExitUnavailable);
}

}  // namespace
}  // namespace loom
