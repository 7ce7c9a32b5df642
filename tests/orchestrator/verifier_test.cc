// The verifier and the tree copy: the suite must pass on the branch; for a bug the
// agent's tests must fail on a copy of the base tree (FAIL_TO_PASS), with the
// evidence recorded. Real directories; the sandboxed runs are a recording lambda.
#include "orchestrator/verifier.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/fakes/fake_executor.h"
#include "tests/fakes/fake_workspace.h"
#include "tests/support/temp_dir.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

void Write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

std::string Read(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(CopyTree, CopiesEverythingButGitAndOnlyIntoANewDirectory) {
  testing::TempDir dir;
  Write(dir.File("src/a.py"), "a\n");
  Write(dir.File("src/tests/test_a.py"), "t\n");
  Write(dir.File("src/.git"), "gitdir: elsewhere\n");
  fs::create_symlink("a.py", dir.File("src/link"));
  Write(dir.File("dest.partial/stale"), "left by a crash\n");
  ASSERT_TRUE(CopyTree(dir.File("src"), dir.File("dest")).ok());
  EXPECT_EQ(Read(dir.File("dest/a.py")), "a\n");
  EXPECT_EQ(Read(dir.File("dest/tests/test_a.py")), "t\n");
  EXPECT_TRUE(fs::is_symlink(dir.File("dest/link")));
  EXPECT_FALSE(fs::exists(dir.File("dest/.git")));
  EXPECT_FALSE(fs::exists(dir.File("dest/stale")));
  EXPECT_FALSE(fs::exists(dir.File("dest.partial")));
  EXPECT_EQ(CopyTree(dir.File("src"), dir.File("dest")).code(), StatusCode::kAlreadyExists);
}

TEST(IsTestPath, KnowsTheUsualConventions) {
  for (const char* path : {"tests/x.py", "test_x.py", "x_test.cc", "a/b.spec.ts", "__tests__/y.js",
                           "spec/z.rb", "TestFoo.java"}) {
    EXPECT_TRUE(IsTestPath(path)) << path;
  }
  for (const char* path : {"src/x.py", "contest.py", "latest/notes.md"}) {
    EXPECT_FALSE(IsTestPath(path)) << path;
  }
}

class VerifierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Write(dir_.File("base/app.py"), "def f():\n    return 1\n");
    workspace_ = std::make_unique<FakeWorkspace>(
        dir_.File("worktree"), FakeWorkspace::Files{{"app.py", "def f():\n    return 1\n"}});
    task_.id = 7;
    task_.kind = "bug";
  }

  Verdict Verify() {
    VerifierOptions options;
    options.test_argv = {"make", "test"};
    options.write_base_tree = [this](const std::string& commit, const std::string& to) {
      base_commits_.push_back(commit);
      return CopyTree(dir_.File("base"), to);
    };
    options.scratch_dir = dir_.path();
    Verifier verifier(
        options,
        [this](const std::vector<std::string>&,
               const std::string& dir) -> Result<sandbox::Outcome> {
          dirs_.push_back(dir);
          bool base = dir != workspace_->info().path;
          if (base) {
            // What the suite sees on the base tree: the agent's test, the old code.
            base_test_ = Read(dir + "/tests/test_app.py");
            base_code_ = Read(dir + "/app.py");
          }
          return FakeExecutor::Exited(base ? base_exit_ : 0);
        },
        [this](const Json& evidence) {
          evidence_.push_back(evidence);
          return Status::Ok();
        });
    return verifier.Verify(task_, *workspace_);
  }

  testing::TempDir dir_;
  std::unique_ptr<FakeWorkspace> workspace_;
  Task task_;
  int base_exit_ = 1;
  std::vector<std::string> dirs_;
  std::vector<std::string> base_commits_;  // asked of write_base_tree
  std::string base_test_, base_code_;
  std::vector<Json> evidence_;
};

TEST_F(VerifierTest, ABugFixWhoseTestFailsOnTheBaseTreePasses) {
  ASSERT_TRUE(workspace_->WriteFile("app.py", "def f():\n    return 2\n").ok());
  ASSERT_TRUE(workspace_->WriteFile("tests/test_app.py", "assert f() == 2\n").ok());
  Verdict v = Verify();
  EXPECT_EQ(v.kind, Verdict::Kind::kPassed) << v.message;
  ASSERT_EQ(dirs_.size(), 2u);  // the branch, then the base tree with the new test
  // Made when the check needed it, from the branch's merge base.
  EXPECT_EQ(base_commits_, std::vector<std::string>{workspace_->info().base_commit});
  EXPECT_EQ(base_test_, "assert f() == 2\n");
  EXPECT_EQ(base_code_, "def f():\n    return 1\n");
  ASSERT_EQ(evidence_.size(), 1u);
  EXPECT_EQ(evidence_[0]["tests"], Json::array({"tests/test_app.py"}));
  // The temporary tree is gone.
  for (const auto& entry : fs::directory_iterator(dir_.path())) {
    EXPECT_EQ(entry.path().filename().string().rfind("verify-", 0), std::string::npos);
  }
}

TEST_F(VerifierTest, ABugFixWithoutATestIsRefused) {
  ASSERT_TRUE(workspace_->WriteFile("app.py", "def f():\n    return 2\n").ok());
  Verdict v = Verify();
  EXPECT_EQ(v.kind, Verdict::Kind::kRefused);
  EXPECT_NE(v.message.find("add a test that reproduces the bug"), std::string::npos);
}

TEST_F(VerifierTest, ATestThatPassesOnTheBaseTreeIsRefused) {
  ASSERT_TRUE(workspace_->WriteFile("tests/test_app.py", "assert True\n").ok());
  base_exit_ = 0;
  Verdict v = Verify();
  EXPECT_EQ(v.kind, Verdict::Kind::kRefused);
  EXPECT_NE(v.message.find("pass on the original code too"), std::string::npos);
  EXPECT_TRUE(evidence_.empty());
}

TEST_F(VerifierTest, AFeatureNeedsOnlyTheSuite) {
  task_.kind = "feature";
  ASSERT_TRUE(workspace_->WriteFile("app.py", "def f():\n    return 2\n").ok());
  EXPECT_EQ(Verify().kind, Verdict::Kind::kPassed);
  EXPECT_EQ(dirs_.size(), 1u);
}

}  // namespace
}  // namespace loom
