// RepoStore, the one registry of repositories, on a real SQLite file and real
// git repositories; and RepoRecordFor, where a repository's policy overrides
// what was registered.
#include "orchestrator/repo_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "orchestrator/repo_policy.h"
#include "orchestrator/schema.h"
#include "orchestrator/stores.h"
#include "tests/support/temp_dir.h"

namespace loom {
namespace {

class RepoStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(MigrateDatabase(DatabasePath(dir_.path())).ok());
    auto s = OrchestratorStores::Open(DatabasePath(dir_.path()));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    stores_ = std::move(*s);
  }

  // A real repository (one file, one commit on `branch`) at <dir>/<name>.
  std::string MakeRepo(const std::string& name, const std::string& branch = "main") {
    std::string path = dir_.path() + "/" + name;
    EXPECT_TRUE(std::filesystem::create_directories(path));
    std::ofstream(path + "/README") << name << "\n";
    EXPECT_TRUE(repos::InitRepository(path, branch, "initial").ok());
    return path;
  }

  repos::RepoRecord Record(const std::string& name, const std::string& path,
                           const std::string& branch = "main") {
    repos::RepoRecord r;
    r.name = name;
    r.path = path;
    r.test_command = "make test";
    r.settings.target_branch = branch;
    return r;
  }

  testing::TempDir dir_;
  OrchestratorStores stores_;
};

TEST_F(RepoStoreTest, RegistersACheckedRepositoryOnce) {
  std::string path = MakeRepo("app", "develop");
  auto registered = stores_.repos->Register(Record("app", path + "/./", "develop"));
  ASSERT_TRUE(registered.ok()) << registered.status().ToString();
  EXPECT_EQ(registered->path, path + "/");
  auto got = stores_.repos->Get("app");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->path, path + "/");
  EXPECT_EQ(got->test_command, "make test");
  EXPECT_EQ(got->settings.target_branch, "develop");
  EXPECT_EQ(stores_.repos->Register(Record("app", path, "develop")).status().code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(stores_.repos->Get("web").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(RepoJson(*got)["branch"], "develop");
}

TEST_F(RepoStoreTest, RefusesWhatIsNotARepositoryAndRegistersNothing) {
  std::string path = MakeRepo("app");
  EXPECT_EQ(stores_.repos->Register(Record("gone", dir_.path() + "/nope")).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(stores_.repos->Register(Record("app", path, "release")).status().code(),
            StatusCode::kNotFound);  // no target branch
  EXPECT_EQ(stores_.repos->Register(Record("bad/name", path)).status().code(),
            StatusCode::kInvalidArgument);
  auto list = stores_.repos->List();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

// A repository registered by URL is cloned into the data dir and the clone is
// registered; the upstream stays its remote "origin" and is never written to.
TEST_F(RepoStoreTest, RegistersAUrlByCloningItIntoTheDataDir) {
  std::string upstream = MakeRepo("upstream");
  std::string url = "file://" + upstream;
  auto registered = stores_.repos->Register(Record("app", url));
  ASSERT_TRUE(registered.ok()) << registered.status().ToString();
  std::string clone = dir_.path() + "/clones/app.git";
  EXPECT_EQ(registered->path, clone);
  EXPECT_EQ(registered->origin, url);
  EXPECT_TRUE(std::filesystem::exists(clone + "/HEAD"));
  auto got = stores_.repos->Get("app");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->path, clone);
  auto fetched = repos::FetchBranch(clone, "main", {});
  ASSERT_TRUE(fetched.ok()) << fetched.status().ToString();

  // The name is checked before anything is cloned; a failed clone leaves nothing.
  EXPECT_EQ(stores_.repos->Register(Record("app", url)).status().code(),
            StatusCode::kAlreadyExists);
  EXPECT_FALSE(stores_.repos->Register(Record("gone", "file://" + dir_.path() + "/nope.git")).ok());
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/clones/gone.git"));
  EXPECT_EQ(stores_.repos->Register(Record("ftp", "ftp://host/app.git")).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(stores_.repos->Get("gone").ok());

  // A store with nowhere to clone refuses URLs and still takes paths.
  RepoStore bare(stores_.db);
  EXPECT_EQ(bare.Register(Record("other", url)).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(RepoStoreTest, ListsByName) {
  ASSERT_TRUE(stores_.repos->Register(Record("web", MakeRepo("web"))).ok());
  ASSERT_TRUE(stores_.repos->Register(Record("app", MakeRepo("app"))).ok());
  auto list = stores_.repos->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "app");
  EXPECT_EQ((*list)[1].name, "web");
}

TEST(RepoRecordForTest, TheRegisteredValuesAreTheDefaultAndThePolicyOverrides) {
  repos::RepoRecord registered;
  registered.name = "app";
  registered.path = "/srv/app";
  registered.test_command = "make test";
  registered.settings.target_branch = "develop";

  // No policy file: what was registered.
  repos::RepoRecord plain = RepoRecordFor(registered, {});
  EXPECT_EQ(plain.settings.target_branch, "develop");
  EXPECT_EQ(plain.test_command, "make test");
  EXPECT_EQ(plain.path, "/srv/app");

  // A policy file that sets both overrides both.
  policies::Policy policy = policies::DefaultPolicy();
  policy.repo.target_branch = "release";
  policy.repo.test_command = "ctest";
  policy.paths.protected_paths = {"secrets/"};
  repos::RepoRecord overridden = RepoRecordFor(registered, {{"app", policy}});
  EXPECT_EQ(overridden.settings.target_branch, "release");
  EXPECT_EQ(overridden.test_command, "ctest");
  EXPECT_EQ(overridden.settings.protected_globs, std::vector<std::string>{"secrets/"});

  // A policy without a test command keeps the registered one.
  policy.repo.test_command.clear();
  EXPECT_EQ(RepoRecordFor(registered, {{"app", policy}}).test_command, "make test");
  // Another repository's policy changes nothing here.
  EXPECT_EQ(RepoRecordFor(registered, {{"web", policy}}).settings.target_branch, "develop");
}

}  // namespace
}  // namespace loom
