// The Slurm runner's protocol (sandbox/internal/wire.h): what the executor sends
// and what the runner answers survive the trip byte for byte, and malformed input
// is an error naming the field. The last test runs the real runner binary locally.
#include "sandbox/internal/wire.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"

namespace loom::sandbox::internal {
namespace {

TEST(WireTest, ARequestRoundTripsWithNonUtf8Bytes) {
  RunnerRequest r;
  r.spec.argv = {"/bin/sh", "-c", std::string("echo \xff\xfe\0x", 10)};
  r.spec.worktree = "/srv/wt \xc3\xa9";
  r.spec.read_only_paths = {"/opt/x"};
  r.spec.env = {{"SECRET", "s\x80"}, {"PATH", "/bin"}};
  r.spec.limits.wall_time = std::chrono::milliseconds(1234);
  r.spec.limits.cpu_percent = 250;
  r.spec.network = Network::kLoopback;
  r.bwrap.run_as_uid = 64123;
  r.bwrap.cgroup_parent = "none";
  auto text = DumpJson(EncodeRequest(r));
  auto back = DecodeRequest(*ParseJson(text));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->spec.argv, r.spec.argv);
  EXPECT_EQ(back->spec.worktree, r.spec.worktree);
  EXPECT_EQ(back->spec.read_only_paths, r.spec.read_only_paths);
  EXPECT_EQ(back->spec.env, r.spec.env);
  EXPECT_EQ(back->spec.limits.wall_time, r.spec.limits.wall_time);
  EXPECT_EQ(back->spec.limits.cpu_percent, 250u);
  EXPECT_EQ(back->spec.network, Network::kLoopback);
  EXPECT_EQ(back->bwrap.run_as_uid, 64123u);
  EXPECT_EQ(back->bwrap.cgroup_parent, "none");
}

TEST(WireTest, AnOutcomeRoundTripsExactly) {
  Outcome o;
  o.signal = 9;
  o.limit = LimitHit::kMemory;
  o.wall_ms = 17;
  o.cpu_ms = 5;
  o.peak_memory_bytes = uint64_t{5} << 32;
  o.stdout_data = std::string("a\xff\0b", 4);
  o.stderr_data = "err";
  o.stdout_truncated = true;
  auto back = DecodeOutcome(*ParseJson(DumpJson(EncodeOutcome(o))));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->signal, 9);
  EXPECT_FALSE(back->exit_code.has_value());
  EXPECT_EQ(back->limit, LimitHit::kMemory);
  EXPECT_EQ(back->peak_memory_bytes, o.peak_memory_bytes);
  EXPECT_EQ(back->stdout_data, o.stdout_data);
  EXPECT_EQ(back->stderr_data, "err");
  EXPECT_TRUE(back->stdout_truncated);
  EXPECT_FALSE(back->Succeeded());
}

TEST(WireTest, MalformedInputIsAnErrorNamingTheField) {
  auto bad_outcome = DecodeOutcome(*ParseJson(R"({"exit_code":0,"signal":9})"));
  EXPECT_FALSE(bad_outcome.ok());
  auto no_limits = DecodeRequest(*ParseJson(R"({"argv":["x"],"worktree":"/srv/w"})"));
  ASSERT_FALSE(no_limits.ok());
  EXPECT_NE(no_limits.status().message().find("limits"), std::string::npos);
  EXPECT_FALSE(DecodeOutcome(*ParseJson(R"({"exit_code":0,"signal":null,"limit":"bogus",
      "wall_ms":1,"cpu_ms":1,"peak_memory_bytes":1,"stdout":"","stderr":""})"))
                   .ok());
  EXPECT_FALSE(DecodeRequest(*ParseJson(R"({"argv":[{"hex":"zz"}],"worktree":"/srv/w"})")).ok());
  EXPECT_EQ(DecodeError(*ParseJson(R"({"code":999,"message":"x"})")).code(), StatusCode::kInternal);
}

TEST(WireTest, TheRunnerAnswersWithTheStepThenTheOutcome) {
  loom::testing::TempDir dir;
  std::string wt = dir.path() + "/wt";
  ASSERT_EQ(mkdir(wt.c_str(), 0755), 0);
  chmod(dir.path().c_str(), 0755);
  RunnerRequest r;
  r.spec.argv = {"/bin/sh", "-c", "printf out; exit 4"};
  r.spec.worktree = wt;
  r.spec.env = {{"PATH", "/usr/bin:/bin"}};
  r.spec.limits.wall_time = std::chrono::seconds(20);
  std::string request = dir.File("request.json");
  FILE* f = fopen(request.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs(DumpJson(EncodeRequest(r)).c_str(), f);
  fclose(f);
  auto result = loom::testing::RunCommand(
      loom::testing::ShellQuote(std::string(LOOM_BIN_DIR) + "/loom-sandbox-runner") + " < " +
      loom::testing::ShellQuote(request));
  ASSERT_EQ(result.exit_code, 0) << result.out;
  auto nl = result.out.find('\n');
  ASSERT_NE(nl, std::string::npos);
  EXPECT_EQ(*ParseJson(result.out.substr(0, nl)), Json({{"step", ""}}));
  auto last = ParseJson(result.out.substr(nl + 1));
  ASSERT_TRUE(last.ok()) << result.out;
  auto outcome = DecodeOutcome((*last)["outcome"]);
  ASSERT_TRUE(outcome.ok()) << result.out;
  EXPECT_EQ(outcome->exit_code, 4);
  EXPECT_EQ(outcome->stdout_data, "out");
}

TEST(WireTest, TheRunnerReportsABadRequestAsAnError) {
  auto result = loom::testing::RunCommand(
      "echo '{\"argv\":1}' | " +
      loom::testing::ShellQuote(std::string(LOOM_BIN_DIR) + "/loom-sandbox-runner"));
  ASSERT_EQ(result.exit_code, 0);
  auto last = ParseJson(result.out.substr(result.out.find('\n') + 1));
  ASSERT_TRUE(last.ok()) << result.out;
  EXPECT_EQ(DecodeError((*last)["error"]).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loom::sandbox::internal
