// Secrets, file modes and tokens against a real loomd: in-process on loopback,
// real SQLite, real git repositories, real bubblewrap, the replay model as the LLM.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/json.h"
#include "orchestrator/cli/commands.h"
#include "orchestrator/replay_model.h"
#include "orchestrator/secrets.h"
#include "repos/workspace.h"
#include "tests/support/daemon_fixture.h"
#include "tests/support/replay_script.h"
#include "tests/support/subprocess.h"

namespace loom {
namespace {

using testing::Step;

namespace fs = std::filesystem;
using std::chrono::steady_clock;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

mode_t Mode(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

// A bug task whose reproducing test prints the secret it was given: as is, cut,
// and encoded. It fails on the base tree (no FIXED file) and passes on the branch.
constexpr const char* kPrintingTest = R"(import base64, os, unittest, urllib.parse


class TokenTest(unittest.TestCase):
    def test_token(self):
        v = os.environ["DEPLOY_TOKEN"]
        print("plain", v, "head", v[:10], "tail", v[-9:], flush=True)
        print("b64", base64.b64encode(("x" + v).encode()).decode(), "hex", v.encode().hex(),
              "url", urllib.parse.quote(v, safe=""), flush=True)
        self.assertTrue(os.path.exists("FIXED"), "not fixed")
)";

class SecurityTest : public testing::DaemonFixture {
 protected:
  void SetUp() override { old_umask_ = ::umask(077); }  // as loomd's main sets it
  void TearDown() override {
    DaemonFixture::TearDown();
    if (replay_) replay_->Stop();
    ::umask(old_umask_);
  }

  void Start(Json replies) {
    auto replay = ReplayModel::Start({{"conversations", {{{"replies", std::move(replies)}}}}});
    ASSERT_TRUE(replay.ok()) << replay.status().ToString();
    replay_ = std::move(*replay);
    StartDaemon({{"llm.url", replay_->url()}, {"llm.retries", "1"}});
    repo_ = RegisterCalc();
  }

  int64_t FileBug() {
    Json fb = {{"kind", "bug"}, {"title", "deploys fail"}, {"body", "x"}, {"repo", "calc"}};
    auto r = Call("POST", "/v1/feedback", reporter_, DumpJson(fb));
    EXPECT_EQ(r.status, 201) << r.body;
    return ParseJson(r.body).value_or(Json::object()).value("id", int64_t{0});
  }

  // Runs `loom ARGS` against the daemon with `token`, `input` on its stdin.
  std::pair<int, std::string> Loom(const std::string& args, const std::string& token,
                                   const std::string& input = "") {
    std::string in_file = dir_.path() + "/cli-stdin";
    std::ofstream(in_file, std::ios::binary) << input;
    testing::CommandResult r =
        testing::RunCommand("LOOM_SERVER=http://127.0.0.1:" + std::to_string(daemon_->port()) +
                            " LOOM_TOKEN='" + token + "' " + testing::LoomBinary() + " " + args +
                            " <" + testing::ShellQuote(in_file) + " 2>&1");
    return {r.exit_code, r.out};
  }

  mode_t old_umask_ = 022;
  std::unique_ptr<ReplayModel> replay_;
  std::string repo_;
};

// The forms of the value the test above prints, each of which must never be
// recorded or shown.
std::vector<std::string> Leaks(const std::string& v) {
  std::vector<std::string> out = {v, v.substr(0, 10), v.substr(v.size() - 9)};
  for (const auto& form : SecretEncodings(v)) out.push_back(form);
  return out;
}

TEST_F(SecurityTest, ASecretPrintedByATestIsMaskedInEveryRecordedOutcome) {
  const std::string value = "sup-OVERWRITTEN/9f3k+2?";
  fs::create_directories(dir_.path() + "/policies");
  std::ofstream(dir_.path() + "/policies/calc.toml") << "[secrets]\nallowed = [\"DEPLOY_TOKEN\"]\n";
  Start(Json::array(
      {Step("request_human", {{"kind", "api_key"},
                              {"summary", "the deploy test needs a token"},
                              {"secret_name", "DEPLOY_TOKEN"}}),
       Step("write_file", {{"path", "tests/test_token.py"}, {"content", kPrintingTest}}),
       Step("write_file", {{"path", "FIXED"}, {"content", "yes\n"}}),
       Step("finish", {{"summary", "fix deploys"}})}));
  ::testing::internal::CaptureStderr();
  int64_t fb = FileBug();
  Json task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "blocked") << task.dump();
  Json open = Get("/v1/escalations");
  ASSERT_EQ(open["items"].size(), 1u);
  // The secret comes from a file (stdin here), never from the command line.
  std::string id = std::to_string(open["items"][0]["id"].get<int64_t>());
  auto [code, out] =
      Loom("escalations answer " + id + " --secret-file DEPLOY_TOKEN=-", engineer_, value + "\n");
  ASSERT_EQ(code, 0) << out;
  task = WaitSettled(fb);
  ASSERT_EQ(task["state"], "review") << task.dump();

  // The base-tree run printed the value: its outcome is stored masked.
  std::string tid = std::to_string(task["id"].get<int64_t>());
  Json events = Get("/v1/tasks/" + tid + "/events");
  std::string f2p;
  for (const auto& e : events["items"]) {
    if (e["type"] == "fail_to_pass") f2p = DumpJson(e["data"]);
  }
  ASSERT_FALSE(f2p.empty()) << DumpJson(events);
  EXPECT_NE(f2p.find("plain [secret DEPLOY_TOKEN] head [secret DEPLOY_TOKEN] tail "
                     "[secret DEPLOY_TOKEN]"),
            std::string::npos)
      << f2p;
  std::vector<std::string> shown = {DumpJson(events), DumpJson(Get("/v1/escalations?state=all")),
                                    DumpJson(Get("/v1/tasks/" + tid))};
  for (const auto& req : replay_->requests()) shown.push_back(DumpJson(req));
  daemon_->Stop(std::chrono::milliseconds(100));
  shown.push_back(::testing::internal::GetCapturedStderr());
  for (const char* f : {"/loom.db", "/loom.db-wal"}) shown.push_back(ReadAll(dir_.path() + f));
  for (size_t i = 0; i < shown.size(); ++i) {
    for (const auto& leak : Leaks(value)) {
      EXPECT_EQ(shown[i].find(leak), std::string::npos) << "place " << i << " holds " << leak;
    }
  }
}

TEST_F(SecurityTest, AnsweringAnAnsweredEscalationChangesNothing) {
  fs::create_directories(dir_.path() + "/policies");
  std::ofstream(dir_.path() + "/policies/calc.toml") << "[secrets]\nallowed = [\"DEPLOY_TOKEN\"]\n";
  Start(Json::array(
      {Step("request_human",
            {{"kind", "api_key"}, {"summary", "need a token"}, {"secret_name", "DEPLOY_TOKEN"}}),
       Step("request_human", {{"kind", "question"}, {"summary", "and now?"}})}));
  int64_t fb = FileBug();
  ASSERT_EQ(WaitSettled(fb)["state"], "blocked");
  std::string target = "/v1/escalations/" +
                       std::to_string(Get("/v1/escalations")["items"][0]["id"].get<int64_t>()) +
                       "/answer";
  auto first = Call("POST", target, engineer_,
                    R"({"secret": {"name": "DEPLOY_TOKEN", "value": "the-first-value"}})");
  ASSERT_EQ(first.status, 200) << first.body;
  auto again = Call("POST", target, engineer_,
                    R"({"secret": {"name": "DEPLOY_TOKEN", "value": "a-replacing-value"}})");
  EXPECT_EQ(again.status, 409) << again.body;
  daemon_->Stop(std::chrono::milliseconds(100));
  auto store = SecretStore::Open(DatabasePath(dir_.path()), dir_.path());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto got = (*store)->Get({"DEPLOY_TOKEN"});
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].second, "the-first-value") << "a refused answer replaced the secret";
}

TEST_F(SecurityTest, TheDataDirIsPrivateFromTheStart) {
  // A data dir that an older loomd left readable is tightened too.
  fs::create_directories(dir_.path());
  ::chmod(dir_.path().c_str(), 0755);
  Start(Json::array({Step("write_file", {{"path", "NOTES.md"}, {"content", "x\n"}}),
                     Step("finish", {{"summary", "notes"}})}));
  Json fb = {{"kind", "feature"}, {"title", "notes"}, {"body", "x"}, {"repo", "calc"}};
  auto r = Call("POST", "/v1/feedback", reporter_, DumpJson(fb));
  ASSERT_EQ(r.status, 201);
  ASSERT_EQ(WaitSettled(ParseJson(r.body)->value("id", int64_t{0}))["state"], "review");
  const std::string d = dir_.path();
  // Nobody else reads or writes anything; a root loomd's sandbox uid may only
  // pass through the directories above the trees lent to it.
  for (const std::string& dir : {d, d + "/worktrees", d + "/worktrees/calc", d + "/scratch"}) {
    EXPECT_EQ(Mode(dir) & 066, 0u) << dir << " is " << std::oct << Mode(dir);
  }
  // No per-task base copy is kept: FAIL_TO_PASS exports its base tree into scratch/.
  EXPECT_FALSE(fs::exists(d + "/base"));
  for (const auto& e : fs::directory_iterator(d + "/worktrees/calc")) {
    EXPECT_EQ(Mode(e.path()) & 077, 0u) << e.path() << " is " << std::oct << Mode(e.path());
  }
  for (const char* f : {"/loom.db", "/loom.db-wal", "/loom.db-shm", "/secret.key"}) {
    EXPECT_EQ(Mode(d + f) & 077, 0u) << f << " is " << std::oct << Mode(d + f);
  }
}

TEST_F(SecurityTest, TheDatabaseAndItsWalArePrivateWhateverTheUmask) {
  ::umask(022);  // a library user that did not set one
  StartDaemon();
  ASSERT_EQ(Call("GET", "/v1/tasks", engineer_).status, 200);
  for (const char* f : {"/loom.db", "/loom.db-wal", "/loom.db-shm"}) {
    EXPECT_EQ(Mode(dir_.path() + f) & 077, 0u) << f << " is " << std::oct << Mode(dir_.path() + f);
  }
}

TEST_F(SecurityTest, TokensAreListedRevokedAtOnceAndExpire) {
  StartDaemon();
  // Created by the CLI with a lifetime; listed without the token itself.
  auto [code, made] =
      Loom("--json token create --role reporter --name widget --expires 2s", admin_);
  ASSERT_EQ(code, 0) << made;
  Json created = ParseJson(made).value_or(Json::object());
  std::string widget = created.value("token", "");
  ASSERT_EQ(Call("GET", "/v1/feedback/1", widget).status, 404) << "usable before it expires";
  auto [lcode, listed] = Loom("token list", admin_);
  EXPECT_EQ(lcode, 0) << listed;
  EXPECT_NE(listed.find("widget"), std::string::npos) << listed;
  EXPECT_EQ(listed.find(widget), std::string::npos);
  EXPECT_EQ(Call("GET", "/v1/tokens", engineer_).status, 403);

  // Revoked: refused on the next request, though it was just used (cached).
  ASSERT_EQ(Call("GET", "/v1/tasks", engineer_).status, 200);
  auto engineer_id = ParseJson(Call("GET", "/v1/tokens", admin_).body)
                         .value_or(Json::object())["items"][1]["id"]
                         .get<int64_t>();
  auto [rcode, revoked] = Loom("token revoke " + std::to_string(engineer_id), admin_);
  EXPECT_EQ(rcode, 0) << revoked;
  EXPECT_EQ(Call("GET", "/v1/tasks", engineer_).status, 401);
  EXPECT_EQ(Call("POST", "/v1/tokens/999/revoke", admin_).status, 404);
  EXPECT_EQ(Call("POST", "/v1/tokens/1/revoke", reporter_).status, 403);

  // Expired: refused once its lifetime has passed.
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  EXPECT_EQ(Call("GET", "/v1/feedback/1", widget).status, 401);
}

}  // namespace
}  // namespace loom
