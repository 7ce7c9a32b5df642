// Repository upkeep on real repositories: exporting a commit's tree, packing
// loose objects (every object still readable, by libgit2 and by git itself),
// packing refs, and listing what tasks left behind.
#include "repos/maintenance.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "repos/workspace.h"
#include "test_repo.h"

namespace loom::repos {
namespace {

class MaintenanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    origin_ = MakeFixtureRepo(tmp_.path());
    Result<RepoRecord> rec = CheckRepository({"demo", origin_, "", "", RepoSettings{}});
    ASSERT_TRUE(rec.ok()) << rec.status().ToString();
    Result<std::unique_ptr<Repository>> repo = Repository::Open(*rec, tmp_.path() + "/wts");
    ASSERT_TRUE(repo.ok()) << repo.status().ToString();
    repo_ = std::move(*repo);
  }

  // A workspace with one committed edit: new loose objects and refs.
  void Task(const std::string& id) {
    Result<std::unique_ptr<Workspace>> ws = repo_->CreateWorkspace(id, "work");
    ASSERT_TRUE(ws.ok()) << ws.status().ToString();
    ASSERT_TRUE((*ws)->WriteFile("src/task" + id + ".cc", "int f() { return " + id + "; }\n").ok());
    ASSERT_TRUE((*ws)->CommitToBranch({"change " + id, {}}).ok());
  }

  TempDir tmp_;
  std::string origin_;
  std::unique_ptr<Repository> repo_;
};

TEST_F(MaintenanceTest, ExportsACommitTreeAsACheckoutWouldWithoutGit) {
  std::string head = Git(origin_, "rev-parse HEAD");
  std::string out = tmp_.path() + "/export";
  ASSERT_TRUE(ExportTree(origin_, head, out).ok());
  EXPECT_EQ(ReadRaw(out + "/src/app.cc"), ReadRaw(origin_ + "/src/app.cc"));
  EXPECT_EQ(ReadRaw(out + "/data.bin"), ReadRaw(origin_ + "/data.bin"));
  EXPECT_EQ(ReadRaw(out + "/notes.win"), "alpha\r\nbeta\r\n");  // eol=crlf applied
  EXPECT_TRUE(std::filesystem::is_symlink(out + "/link.md"));
  EXPECT_EQ(std::filesystem::read_symlink(out + "/link.md"), "README.md");
  auto perms = std::filesystem::status(out + "/tool.sh").permissions();
  EXPECT_NE(perms & std::filesystem::perms::owner_exec, std::filesystem::perms::none);
  EXPECT_FALSE(Exists(out + "/.git"));
  EXPECT_FALSE(Exists(out + ".partial"));
  // Same files as the checkout, nothing more.
  EXPECT_EQ(Sh("cd '" + out + "' && find . | sort"),
            Sh("cd '" + origin_ + "' && find . -path ./.git -prune -o -print | sort"));
  // Only into a new directory; a bad id is refused.
  EXPECT_EQ(ExportTree(origin_, head, out).code(), StatusCode::kAlreadyExists);
  EXPECT_FALSE(ExportTree(origin_, "nothex", tmp_.path() + "/x").ok());
}

TEST_F(MaintenanceTest, PackingLeavesNoLooseObjectAndEveryObjectReadable) {
  for (std::string id : {"1", "2", "3"}) Task(id);
  std::string before = Sh("git -C '" + origin_ + "' rev-list --all --objects | sort");
  Result<int64_t> loose = CountLooseObjects(origin_);
  ASSERT_TRUE(loose.ok());
  ASSERT_GT(*loose, 10);

  Result<ObjectPackReport> packed = PackLooseObjects(origin_);
  ASSERT_TRUE(packed.ok()) << packed.status().ToString();
  EXPECT_EQ(packed->loose_before, *loose);
  EXPECT_EQ(packed->packed, *loose);
  EXPECT_GT(packed->loose_bytes, 0u);
  EXPECT_GT(packed->pack_bytes, 0u);
  EXPECT_TRUE(Exists(packed->pack));
  EXPECT_EQ(*CountLooseObjects(origin_), 0);

  // Every object is still there: git checks the whole repository, and lists
  // the same objects; the live workspaces still work through libgit2.
  Sh("git -C '" + origin_ + "' fsck --full --strict --no-dangling 2>&1");
  EXPECT_EQ(Sh("git -C '" + origin_ + "' rev-list --all --objects | sort"), before);
  EXPECT_EQ(Sh("git -C '" + origin_ + "' count-objects -v | grep '^count:'"), "count: 0\n");
  Result<std::unique_ptr<Workspace>> ws = repo_->OpenWorkspace("2");
  ASSERT_TRUE(ws.ok()) << ws.status().ToString();
  EXPECT_EQ(*(*ws)->ReadFile("src/task2.cc"), "int f() { return 2; }\n");
  ASSERT_TRUE((*ws)->WriteFile("src/more.cc", "more\n").ok());
  EXPECT_TRUE((*ws)->Diff().ok());

  // Nothing loose: nothing to do. The new edit's objects are packed next time.
  Result<ObjectPackReport> again = PackLooseObjects(origin_);
  ASSERT_TRUE(again.ok());
  EXPECT_GT(again->packed, 0);
  EXPECT_EQ(*CountLooseObjects(origin_), 0);
  Result<ObjectPackReport> idle = PackLooseObjects(origin_);
  ASSERT_TRUE(idle.ok());
  EXPECT_EQ(idle->packed, 0);
  EXPECT_TRUE(idle->pack.empty());
  Sh("git -C '" + origin_ + "' fsck --full --strict --no-dangling 2>&1");
}

TEST_F(MaintenanceTest, MergesManyPacksIntoOneAndEveryObjectStaysReadable) {
  for (std::string id : {"1", "2", "3", "4"}) {
    Task(id);
    ASSERT_TRUE(PackLooseObjects(origin_).ok());
  }
  auto packs = [&] {
    return Trimmed(Sh("ls '" + origin_ + "/.git/objects/pack' | grep -c pack$"));
  };
  ASSERT_EQ(packs(), "4");
  std::string before = Sh("git -C '" + origin_ + "' rev-list --all --objects | sort");
  // At or under the bound: nothing to do.
  Result<PackMergeReport> none = MergePacks(origin_, 4);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->pack.empty());
  // A workspace keeps a handle open across the merge, as loomd's cache does.
  Result<std::unique_ptr<Workspace>> ws = repo_->OpenWorkspace("2");
  ASSERT_TRUE(ws.ok()) << ws.status().ToString();
  Result<PackMergeReport> merged = MergePacks(origin_, 1);
  ASSERT_TRUE(merged.ok()) << merged.status().ToString();
  EXPECT_EQ(merged->packs_before, 4);
  EXPECT_GT(merged->objects, 10);
  EXPECT_EQ(packs(), "1");
  EXPECT_TRUE(Exists(merged->pack));
  Sh("git -C '" + origin_ + "' fsck --full --strict --no-dangling 2>&1");
  EXPECT_EQ(Sh("git -C '" + origin_ + "' rev-list --all --objects | sort"), before);
  EXPECT_EQ(*(*ws)->ReadFile("src/task2.cc"), "int f() { return 2; }\n");
  EXPECT_TRUE((*ws)->WriteFile("src/after.cc", "after\n").ok());
  EXPECT_TRUE((*ws)->Diff().ok());
  EXPECT_TRUE(repo_->DiffBranch("3").ok());
}

TEST_F(MaintenanceTest, PacksLooseRefsAndTheyStillResolve) {
  for (std::string id : {"1", "2"}) Task(id);
  std::string refs_before =
      Sh("git -C '" + origin_ + "' for-each-ref --format='%(refname) %(objectname)'");
  Result<RefPackReport> r = PackRefs(origin_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GE(r->loose_before, 5);  // main, two branches, two snapshot refs
  EXPECT_EQ(r->loose_after, 0);
  EXPECT_EQ(Sh("git -C '" + origin_ + "' for-each-ref --format='%(refname) %(objectname)'"),
            refs_before);
  EXPECT_TRUE(Exists(origin_ + "/.git/packed-refs"));
  // A packed snapshot ref moves on as before.
  Result<std::unique_ptr<Workspace>> ws = repo_->OpenWorkspace("1");
  ASSERT_TRUE(ws.ok()) << ws.status().ToString();
  Result<SnapshotInfo> snap = (*ws)->WriteFile("x.txt", "x\n");
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(Git(origin_, "rev-parse refs/loom/snapshots/1"), snap->commit);
  // And a packed one is deleted with its workspace.
  ASSERT_TRUE(repo_->RemoveWorkspace("2", BranchDisposition::kDelete).ok());
  EXPECT_EQ(Sh("git -C '" + origin_ +
               "' for-each-ref refs/loom/snapshots/2 refs/heads/loom/"
               "2-work"),
            "");
}

TEST_F(MaintenanceTest, ListsTheTasksThatLeftSnapshotRefsOrWorktrees) {
  for (std::string id : {"7", "12"}) Task(id);
  // A worktree whose directory is gone still counts, as does a lone snapshot ref.
  std::filesystem::remove_all(repo_->WorkspacePath("7"));
  Git(origin_, "update-ref refs/loom/snapshots/30 HEAD");
  Result<std::vector<std::string>> ids = TaskIdsWithGitState(origin_);
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  EXPECT_EQ(*ids, (std::vector<std::string>{"12", "30", "7"}));
  ASSERT_TRUE(repo_->RemoveWorkspace("7", BranchDisposition::kKeep).ok());
  ASSERT_TRUE(repo_->RemoveWorkspace("12", BranchDisposition::kKeep).ok());
  ASSERT_TRUE(repo_->RemoveWorkspace("30", BranchDisposition::kKeep).ok());
  EXPECT_TRUE(TaskIdsWithGitState(origin_)->empty());
  EXPECT_EQ(Sh("ls '" + origin_ + "/.git/worktrees' 2>/dev/null | wc -l"), "0\n");
}

}  // namespace
}  // namespace loom::repos
