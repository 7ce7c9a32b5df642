// loomd's checks of its model endpoint at start (a URL it can use, a context
// that holds an agent's prompt), its choice of sandbox backend (bwrap, or slurm on a
// real local cluster: tests/support/slurm_cluster.h) and its reload of the policies
// on SIGHUP.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/config.h"
#include "orchestrator/daemon.h"
#include "orchestrator/llm_client.h"
#include "orchestrator/replay_model.h"
#include "tests/support/daemon_fixture.h"
#include "tests/support/http_client.h"
#include "tests/support/replay_script.h"
#include "tests/support/slurm_cluster.h"
#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_paths.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<ReplayModel> StartReplay(Json extra = Json::object()) {
  Json script = testing::Script(Json::array({testing::Step("finish", {{"summary", "done"}})}));
  for (auto& [k, v] : extra.items()) script[k] = v;
  auto replay = ReplayModel::Start(script);
  EXPECT_TRUE(replay.ok()) << replay.status().ToString();
  return replay.ok() ? std::move(*replay) : nullptr;
}

Result<std::unique_ptr<Daemon>> StartLoomd(
    const std::string& dir, const std::string& llm_url,
    const std::vector<std::pair<std::string, std::string>>& settings = {}) {
  Config config(DaemonConfigSchema());
  EXPECT_TRUE(config.Set("data_dir", dir, "test").ok());
  EXPECT_TRUE(config.Set("listen", "127.0.0.1:0", "test").ok());
  EXPECT_TRUE(config.Set("agents", "1", "test").ok());
  EXPECT_TRUE(config.Set("llm.url", llm_url, "test").ok());
  for (const auto& [k, v] : settings) EXPECT_TRUE(config.Set(k, v, "test").ok()) << k;
  return Daemon::Start(config);
}

TEST(ModelUrlTest, OnlyHttpAndHttpsUrlsWithAHostAreTaken) {
  EXPECT_TRUE(CheckModelUrl("http://127.0.0.1:8000/v1").ok());
  EXPECT_TRUE(CheckModelUrl("https://api.example.com/v1").ok());
  for (const char* bad :
       {"127.0.0.1:8000/v1", "localhost:8000", "ftp://host/v1", "http://", "http:///v1", ""}) {
    Status s = CheckModelUrl(bad);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("http://127.0.0.1:8000/v1"), std::string::npos) << s.message();
  }
}

TEST(ModelUrlTest, LoomdRefusesAnLlmUrlWithoutAScheme) {
  testing::TempDir dir;
  auto d = StartLoomd(dir.path(), "127.0.0.1:8000/v1");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("'127.0.0.1:8000/v1'"), std::string::npos)
      << d.status().ToString();
}

TEST(ModelEndpointTest, TheProbeReadsTheModelsAndTheirContext) {
  auto replay = StartReplay({{"max_model_len", 32768}});
  ASSERT_TRUE(replay);
  LlmOptions options;
  options.url = replay->url();
  auto info = ProbeModelEndpoint(options, std::chrono::seconds(5));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->models, std::vector<std::string>{"replay"});
  EXPECT_EQ(info->max_model_len, 32768);

  options.url = "http://127.0.0.1:" + std::to_string(testing::FreePort()) + "/v1";
  EXPECT_EQ(ProbeModelEndpoint(options, std::chrono::seconds(5)).status().code(),
            StatusCode::kUnavailable);
  replay->Stop();
}

TEST(ModelEndpointTest, AContextTooSmallForThePromptAndAReplyIsSaidAtStart) {
  ModelEndpointInfo info;
  LlmOptions options;  // replies of up to 4096 tokens
  EXPECT_TRUE(CheckContextFits(info, options, 1 << 20).ok()) << "unknown size: not refused";
  info.max_model_len = 8192;
  EXPECT_TRUE(CheckContextFits(info, options, 8000).ok());
  EXPECT_EQ(CheckContextFits(info, options, 4 * 4200).code(), StatusCode::kFailedPrecondition);

  auto replay = StartReplay({{"max_model_len", 4096}});
  ASSERT_TRUE(replay);
  testing::TempDir dir;
  auto d = StartLoomd(dir.path(), replay->url());
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(d.status().message().find("context of 4096 tokens"), std::string::npos)
      << d.status().ToString();
  replay->Stop();
}

TEST(ModelEndpointTest, AnEndpointThatFitsOrIsDownLetsLoomdStart) {
  auto replay = StartReplay({{"max_model_len", 32768}});
  ASSERT_TRUE(replay);
  testing::TempDir dir;
  auto d = StartLoomd(dir.path(), replay->url());
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  (*d)->Stop(std::chrono::milliseconds(0));
  replay->Stop();

  testing::TempDir other;  // down: tasks will wait on an escalation, loomd serves
  auto down =
      StartLoomd(other.path(), "http://127.0.0.1:" + std::to_string(testing::FreePort()) + "/v1");
  ASSERT_TRUE(down.ok()) << down.status().ToString();
  (*down)->Stop(std::chrono::milliseconds(0));
}

std::string DownUrl() { return "http://127.0.0.1:" + std::to_string(testing::FreePort()) + "/v1"; }

TEST(ModelUrlTest, LoomdRefusesAListWithABadOrRepeatedUrl) {
  testing::TempDir dir;
  auto d = StartLoomd(dir.path(), DownUrl() + ",127.0.0.1:8001/v1");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("'127.0.0.1:8001/v1'"), std::string::npos)
      << d.status().ToString();
  std::string url = DownUrl();
  auto twice = StartLoomd(dir.path(), url + "," + url);
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.status().message().find("twice"), std::string::npos) << twice.status().ToString();
}

// Any replica whose context cannot hold an agent's prompt stops loomd, as one
// endpoint does: a task routed there would fail at its first step.
TEST(ModelEndpointTest, AReplicaWithTooSmallAContextIsSaidAtStart) {
  auto fits = StartReplay({{"max_model_len", 32768}});
  auto small = StartReplay({{"max_model_len", 4096}});
  ASSERT_TRUE(fits && small);
  testing::TempDir dir;
  auto d = StartLoomd(dir.path(), fits->url() + "," + small->url());
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find(small->url()), std::string::npos) << d.status().ToString();
  fits->Stop();
  small->Stop();
}

// GET /v1/fleet shows each replica up or down as loomd's probes find it: one
// that never answered, one that stops, and one that comes back on its port.
class ReplicaFleetTest : public testing::DaemonFixture {};

TEST_F(ReplicaFleetTest, TheFleetShowsEachReplicaUpOrDownAsTheProbesFindIt) {
  auto a = StartReplay({{"max_model_len", 32768}});
  auto b = StartReplay({{"max_model_len", 32768}});
  ASSERT_TRUE(a && b);
  uint16_t c_port = testing::FreePort();
  std::string c_url = "http://127.0.0.1:" + std::to_string(c_port) + "/v1";
  StartDaemon({{"llm.url", a->url() + ", " + b->url() + ", " + c_url},
               {"agents", "1"},
               {"llm.probe_interval_ms", "100"},
               {"llm.down_backoff_ms", "50"}});
  auto fleet_until = [&](const std::function<bool(const Json&)>& done) {
    Json f;
    for (int i = 0; i < 200; ++i) {
      f = Get("/v1/fleet")["model"];
      if (done(f)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return f;
  };
  auto up = [](const Json& m, int i) { return m["endpoints"][i]["up"] == true; };

  Json m = Get("/v1/fleet")["model"];
  ASSERT_EQ(m["endpoints"].size(), 3u) << m.dump();
  EXPECT_EQ(m["healthy"], true);
  EXPECT_TRUE(up(m, 0) && up(m, 1)) << m.dump();
  EXPECT_FALSE(up(m, 2)) << "nothing listens there: down from loomd's first probe";
  EXPECT_EQ(m["endpoints"][2]["url"], c_url);
  EXPECT_NE(m["endpoints"][2]["last_error"].get<std::string>().find("cannot reach"),
            std::string::npos)
      << m.dump();
  EXPECT_NE(m["detail"].get<std::string>().find("2 of 3"), std::string::npos) << m.dump();

  b->Stop();
  m = fleet_until([&](const Json& f) { return !up(f, 1); });
  EXPECT_FALSE(up(m, 1)) << m.dump();
  EXPECT_TRUE(up(m, 0)) << m.dump();

  auto c = ReplayModel::Start(testing::Script(Json::array()), "127.0.0.1", c_port);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  m = fleet_until([&](const Json& f) { return up(f, 2); });
  EXPECT_TRUE(up(m, 2)) << "a replica that comes back is found by its probes: " << m.dump();
  EXPECT_GT(m["endpoints"][2]["since"].get<int64_t>(), 0);

  a->Stop();
  m = fleet_until([&](const Json& f) { return !up(f, 0); });
  EXPECT_EQ(m["healthy"], true) << "one replica up is enough: " << m.dump();
  (*c)->Stop();
  m = fleet_until([&](const Json& f) { return f["healthy"] == false; });
  EXPECT_EQ(m["healthy"], false) << m.dump();
}

TEST(SandboxBackendTest, AnUnknownBackendIsRefusedAtStart) {
  testing::TempDir dir;
  auto d = StartLoomd(dir.path(), DownUrl(), {{"sandbox.backend", "docker"}});
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find("sandbox.backend"), std::string::npos)
      << d.status().message();
}

TEST(SandboxBackendTest, ASlurmBackendWithoutAClusterIsRefusedWithWhatToDo) {
  testing::TempDir dir;
  auto d =
      StartLoomd(dir.path(), DownUrl(),
                 {{"sandbox.backend", "slurm"}, {"sandbox.slurm_conf", dir.File("none.conf")}});
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("sandbox.backend = bwrap"), std::string::npos)
      << d.status().message();
  auto bad = StartLoomd(dir.path(), DownUrl(),
                        {{"sandbox.backend", "slurm"}, {"sandbox.concurrent_steps", "0"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("sandbox.concurrent_steps"), std::string::npos);
  auto fallback = StartLoomd(dir.path(), DownUrl(),
                             {{"sandbox.backend", "slurm"}, {"sandbox.slurm_fallback", "cloud"}});
  ASSERT_FALSE(fallback.ok());
  EXPECT_NE(fallback.status().message().find("sandbox.slurm_fallback"), std::string::npos)
      << fallback.status().message();
}

TEST(SandboxBackendTest, LoomdStartsWithTheSlurmBackendOnALocalCluster) {
  std::string missing = testing::SlurmCluster::Missing();
  if (!missing.empty()) {
    const char* ci = getenv("CI");
    if (ci != nullptr && std::string(ci) == "true") FAIL() << missing;
    GTEST_SKIP() << "no local Slurm: " << missing;
  }
  testing::TempDir cluster_dir;
  chmod(cluster_dir.path().c_str(), 0755);
  testing::SlurmCluster cluster;
  ASSERT_TRUE(cluster.Start(cluster_dir.path())) << cluster.error();
  testing::TempDir dir;
  auto d = StartLoomd(dir.path(), DownUrl(),
                      {{"sandbox.backend", "slurm"},
                       {"sandbox.slurm_conf", cluster.slurm_conf()},
                       {"sandbox.concurrent_steps", "1"},
                       {"sandbox.step_memory_mb", "512"}});
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  std::string jobs =
      testing::CommandOutput("SLURM_CONF=" + testing::ShellQuote(cluster.slurm_conf()) +
                             " squeue --noheader --name=loom-sandbox --format=%T");
  EXPECT_EQ(jobs, "RUNNING\n");
  (*d)->Stop(std::chrono::milliseconds(0));

  // The controller down: refused, unless the operator allows the local fallback.
  cluster.StopController();
  std::vector<std::pair<std::string, std::string>> down = {
      {"sandbox.backend", "slurm"},
      {"sandbox.slurm_conf", cluster.slurm_conf()},
      {"sandbox.concurrent_steps", "1"},
      {"sandbox.step_memory_mb", "512"},
      {"sandbox.start_attempts", "1"}};
  testing::TempDir strict_dir;
  auto strict = StartLoomd(strict_dir.path(), DownUrl(), down);
  ASSERT_FALSE(strict.ok());
  EXPECT_NE(strict.status().message().find("sandbox.backend = bwrap"), std::string::npos)
      << strict.status().message();
  down.emplace_back("sandbox.slurm_fallback", "local");
  testing::TempDir local_dir;
  auto local = StartLoomd(local_dir.path(), DownUrl(), down);
  ASSERT_TRUE(local.ok()) << local.status().ToString();
  (*local)->Stop(std::chrono::milliseconds(0));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The real program: SIGHUP reloads (a bad file keeps the old set and says why),
// and loomd lives on; SIGTERM still stops it.
TEST(PolicyReloadTest, SighupReloadsThePoliciesAndABadFileKeepsTheOldOnes) {
  testing::TempDir dir;
  fs::create_directories(dir.path() + "/policies");
  std::ofstream(dir.path() + "/policies/web.toml") << "[budgets]\nmax_steps = 3\n";
  uint16_t port = testing::FreePort();
  std::string log = dir.path() + "/loomd.log";
  pid_t pid =
      testing::Spawn({std::string(testing::BinDir()) + "/loomd", "--data-dir", dir.path() + "/data",
                      "--set", "policies_dir=" + dir.path() + "/policies", "--set", "agents=0",
                      "--listen", "127.0.0.1:" + std::to_string(port)},
                     log);
  ASSERT_GT(pid, 0);
  auto healthy = [&] { return testing::HttpCall(port, "GET", "/healthz").status == 200; };
  auto count = [&](const std::string& text) {
    std::string all = ReadFile(log);
    int n = 0;
    for (size_t at = all.find(text); at != std::string::npos; at = all.find(text, at + 1)) ++n;
    return n;
  };
  auto wait_for = [&](const std::string& text, int times = 1) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (count(text) < times) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  };
  ASSERT_TRUE(wait_for("listening on")) << ReadFile(log);
  EXPECT_EQ(count("1 repository policy from"), 1);

  std::ofstream(dir.path() + "/policies/web.toml") << "[budgets]\nmax_step = 3\n";
  ASSERT_EQ(::kill(pid, SIGHUP), 0);
  ASSERT_TRUE(wait_for("the policies were not reloaded")) << ReadFile(log);
  EXPECT_NE(ReadFile(log).find("web.toml:2:1"), std::string::npos) << ReadFile(log);
  EXPECT_TRUE(healthy());

  std::ofstream(dir.path() + "/policies/api.toml") << "[budgets]\nmax_steps = 5\n";
  fs::remove(dir.path() + "/policies/web.toml");
  ASSERT_EQ(::kill(pid, SIGHUP), 0);
  ASSERT_TRUE(wait_for("1 repository policy from", 2)) << ReadFile(log);
  EXPECT_TRUE(healthy());

  int status = testing::KillAndWait(pid, SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadFile(log);
}

}  // namespace
}  // namespace loom
