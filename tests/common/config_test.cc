#include "common/config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/support/temp_dir.h"

namespace loom {
namespace {

Config MakeConfig() {
  return Config({{"data_dir", Config::Type::kString, ".loom", "where state lives"},
                 {"http.max_body_bytes", Config::Type::kInt, "1048576", "body limit"},
                 {"log.json", Config::Type::kBool, "false", "JSON logs"}});
}

TEST(ConfigTest, DefaultsApplyWithoutAFile) {
  Config c = MakeConfig();
  EXPECT_EQ(c.GetString("data_dir"), ".loom");
  EXPECT_EQ(c.GetInt("http.max_body_bytes"), 1048576);
  EXPECT_EQ(c.SourceOf("data_dir"), "default");
}

TEST(ConfigTest, FileThenEnvironmentThenFlagsOverride) {
  testing::TempDir dir;
  std::ofstream(dir.File("loom.toml")) << "data_dir = \"/var/loom\"\n[http]\nmax_body_bytes = 10\n";
  Config c = MakeConfig();
  ASSERT_TRUE(c.LoadFile(dir.File("loom.toml")).ok());
  EXPECT_EQ(c.GetString("data_dir"), "/var/loom");
  EXPECT_EQ(c.GetInt("http.max_body_bytes"), 10);
  std::vector<std::string> env = {"LOOM_HTTP_MAX_BODY_BYTES=20", "OTHER=1"};
  ASSERT_TRUE(c.LoadEnvironment(&env).ok());
  EXPECT_EQ(c.GetInt("http.max_body_bytes"), 20);
  ASSERT_TRUE(c.Set("http.max_body_bytes", "30", "flag").ok());
  EXPECT_EQ(c.GetInt("http.max_body_bytes"), 30);
  EXPECT_EQ(c.GetString("data_dir"), "/var/loom");
}

TEST(ConfigTest, UnknownKeyInFileNamesFileLineAndKey) {
  testing::TempDir dir;
  std::ofstream(dir.File("loom.toml")) << "data_dir = \"x\"\n\n[http]\nmax_bdy_bytes = 1\n";
  Config c = MakeConfig();
  Status s = c.LoadFile(dir.File("loom.toml"));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("loom.toml:4"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("http.max_bdy_bytes"), std::string::npos) << s.message();
}

TEST(ConfigTest, WrongTypeNamesTheKey) {
  testing::TempDir dir;
  std::ofstream(dir.File("loom.toml")) << "[http]\nmax_body_bytes = \"big\"\n";
  Config c = MakeConfig();
  Status s = c.LoadFile(dir.File("loom.toml"));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("http.max_body_bytes: expected an integer"), std::string::npos)
      << s.message();
  std::vector<std::string> env = {"LOOM_LOG_JSON=maybe"};
  Status e = c.LoadEnvironment(&env);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.message().find("LOOM_LOG_JSON"), std::string::npos) << e.message();
}

TEST(ConfigTest, SyntaxErrorNamesTheLine) {
  testing::TempDir dir;
  std::ofstream(dir.File("loom.toml")) << "data_dir = \"x\"\ndata_dir = = 3\n";
  Config c = MakeConfig();
  Status s = c.LoadFile(dir.File("loom.toml"));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("loom.toml:2"), std::string::npos) << s.message();
}

TEST(ConfigTest, MissingFileIsNotFound) {
  Config c = MakeConfig();
  EXPECT_EQ(c.LoadFile("/nonexistent/loom.toml").code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace loom
