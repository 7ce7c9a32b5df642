// loom-infer's settings come, as loomd's, from defaults < a --config file <
// LOOM_INFER_* variables < flags: each layer is seen to win over the one below.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "tests/inference/fixture_path.h"
#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_paths.h"

namespace loom::inference {
namespace {

struct Serving {
  std::string name;
  int port = 0;
};

// Starts loom-infer with `flags` and `env` (NAME=VALUE), reads the name and port
// it says it serves on, and stops it.
Serving RunLoomInfer(const std::vector<std::string>& flags, const std::vector<std::string>& env) {
  loom::testing::TempDir dir;
  for (const std::string& e : env) ::putenv(const_cast<char*>(e.c_str()));
  std::vector<std::string> argv = {std::string(LOOM_BIN_DIR) + "/loom-infer"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  const pid_t pid = loom::testing::Spawn(argv, dir.File("log"));
  for (const std::string& e : env) ::unsetenv(e.substr(0, e.find('=')).c_str());
  Serving s;
  std::smatch m;
  const std::regex serving(R"(serving (\S+) on http://127\.0\.0\.1:(\d+))");
  for (int i = 0; i < 400 && s.port == 0; ++i) {
    std::ifstream in(dir.File("log"));
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string log = ss.str();
    if (std::regex_search(log, m, serving)) {
      s.name = m[1];
      s.port = std::stoi(m[2]);
    } else {
      ::usleep(25000);
    }
  }
  loom::testing::KillAndWait(pid, SIGTERM);
  return s;
}

TEST(LoomInferConfigTest, FileThenVariablesThenFlags) {
  loom::testing::TempDir dir;
  const int file_port = loom::testing::FreePort(), env_port = loom::testing::FreePort(),
            flag_port = loom::testing::FreePort();
  std::ofstream(dir.File("infer.toml"))
      << "port = " << file_port << "\nserved-model-name = \"from-file\"\n";
  const std::string model = loom::testing::FixturePath("tiny-llama");
  const std::string config = dir.File("infer.toml");

  Serving s = RunLoomInfer({"--config", config, "--model", model}, {});
  EXPECT_EQ(s.port, file_port);
  EXPECT_EQ(s.name, "from-file");

  std::string env_port_var = "LOOM_INFER_PORT=" + std::to_string(env_port);
  s = RunLoomInfer({"--config", config, "--model", model}, {env_port_var});
  EXPECT_EQ(s.port, env_port);
  EXPECT_EQ(s.name, "from-file");  // what the variables do not set, the file still does

  s = RunLoomInfer({"--config", config, "--model", model, "--port", std::to_string(flag_port)},
                   {env_port_var});
  EXPECT_EQ(s.port, flag_port);

  // A required flag may come from its variable alone.
  std::string model_var = "LOOM_INFER_MODEL=" + model;
  std::string name_var = "LOOM_INFER_SERVED_MODEL_NAME=from-env";
  s = RunLoomInfer({"--port", std::to_string(flag_port)}, {model_var, name_var});
  EXPECT_EQ(s.port, flag_port);
  EXPECT_EQ(s.name, "from-env");
}

}  // namespace
}  // namespace loom::inference
