// RepoCache: each registered repository is opened once and kept, and opened
// again when what its tasks see changes (its record or its policy); on a real
// SQLite file and real git repositories.
#include "orchestrator/repo_cache.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "orchestrator/schema.h"
#include "orchestrator/stores.h"
#include "tests/support/temp_dir.h"

namespace loom {
namespace {

class RepoCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(MigrateDatabase(DatabasePath(dir_.path())).ok());
    auto s = OrchestratorStores::Open(DatabasePath(dir_.path()));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    stores_ = std::move(*s);
    std::string path = dir_.path() + "/app";
    ASSERT_TRUE(std::filesystem::create_directories(path));
    std::ofstream(path + "/README") << "app\n";
    ASSERT_TRUE(repos::InitRepository(path, "main", "initial").ok());
    repos::RepoRecord record;
    record.name = "app";
    record.path = path;
    record.test_command = "make test";
    ASSERT_TRUE(stores_.repos->Register(record).ok());
  }

  testing::TempDir dir_;
  OrchestratorStores stores_;
  PolicySet policies_;
};

TEST_F(RepoCacheTest, OpensEachRepositoryOnceAndKeepsIt) {
  RepoCache cache(stores_.repos.get(), &policies_, dir_.path());
  auto first = cache.Get("app");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  for (int i = 0; i < 5; ++i) {
    auto again = cache.Get("app");
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->get(), first->get());
  }
  EXPECT_EQ(cache.opens(), 1);
  EXPECT_EQ((*first)->WorkspacePath("7"), dir_.path() + "/worktrees/app/loom-7");
  EXPECT_EQ(cache.Get("nope").status().code(), StatusCode::kNotFound);
}

TEST_F(RepoCacheTest, APolicyReloadReopensWithTheNewPolicy) {
  RepoCache cache(stores_.repos.get(), &policies_, dir_.path());
  auto before = cache.Get("app");
  ASSERT_TRUE(before.ok());
  policies::Policy policy;
  policy.repo.test_command = "pytest -q";
  policy.paths.protected_paths = {"secret/"};
  policies_.Replace({{"app", policy}});
  auto after = cache.Get("app");
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_NE(after->get(), before->get());
  EXPECT_EQ((*after)->record().test_command, "pytest -q");
  EXPECT_EQ((*after)->record().settings.protected_globs, std::vector<std::string>{"secret/"});
  // The one held before the reload is still whole.
  EXPECT_EQ((*before)->record().test_command, "make test");
  EXPECT_EQ(cache.Get("app")->get(), after->get());
  EXPECT_EQ(cache.opens(), 2);
}

TEST_F(RepoCacheTest, ATaskWithApprovedProtectedEditsGetsItsOwnRepository) {
  policies::Policy policy;
  policy.paths.protected_paths = {"secret/"};
  policies_.Replace({{"app", policy}});
  RepoCache cache(stores_.repos.get(), &policies_, dir_.path());
  auto refused = cache.Get("app", ProtectedPaths::kRefused);
  auto approved = cache.Get("app", ProtectedPaths::kApproved);
  ASSERT_TRUE(refused.ok() && approved.ok());
  EXPECT_EQ((*refused)->record().settings.protected_globs, std::vector<std::string>{"secret/"});
  EXPECT_TRUE((*approved)->record().settings.protected_globs.empty());
  // Both stay open: alternating between them opens nothing more.
  EXPECT_EQ(cache.Get("app", ProtectedPaths::kRefused)->get(), refused->get());
  EXPECT_EQ(cache.Get("app", ProtectedPaths::kApproved)->get(), approved->get());
  EXPECT_EQ(cache.opens(), 2);
}

}  // namespace
}  // namespace loom
