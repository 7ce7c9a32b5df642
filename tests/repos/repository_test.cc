// Repository-level behaviour on real repositories: registration checks, bare
// clones, concurrent workspaces, removal, and merges (also one
// that a killed process left half-done).
#include <gtest/gtest.h>

#include <thread>

#include "repos/workspace.h"
#include "test_repo.h"

namespace loom::repos {
namespace {

class RepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    origin_ = MakeFixtureRepo(tmp_.path());
    Result<RepoRecord> rec = CheckRepository({"demo", origin_, "", "", RepoSettings{}});
    ASSERT_TRUE(rec.ok()) << rec.status().ToString();
    rec_ = *rec;
    Result<std::unique_ptr<Repository>> repo = Repository::Open(*rec, tmp_.path() + "/wts");
    ASSERT_TRUE(repo.ok()) << repo.status().ToString();
    repo_ = std::move(*repo);
  }

  // Creates a workspace, applies `edits` (path -> content) and commits them.
  std::string Branch(const std::string& id, const std::map<std::string, std::string>& edits) {
    Result<std::unique_ptr<Workspace>> ws = repo_->CreateWorkspace(id, "work");
    EXPECT_TRUE(ws.ok()) << ws.status().ToString();
    if (!ws.ok()) return "";
    for (const auto& [path, content] : edits) EXPECT_TRUE((*ws)->WriteFile(path, content).ok());
    Result<std::string> c = (*ws)->CommitToBranch({"change " + id, {"fb-" + id}});
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? *c : "";
  }

  TempDir tmp_;
  std::string origin_;
  RepoRecord rec_;
  std::unique_ptr<Repository> repo_;
};

// What each repository would be registered with: its name, path and settings.
RepoRecord Record(std::string name, std::string path, RepoSettings settings = {}) {
  return RepoRecord{std::move(name), std::move(path), "", "", std::move(settings)};
}

TEST(RegistryTest, ExplainsMissingEmptyCorruptAndBranchlessRepositories) {
  TempDir tmp;
  Result<RepoRecord> missing = CheckRepository(Record("a", tmp.path() + "/nope"));
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);

  Sh("git init -q -b main " + tmp.path() + "/empty");
  Result<RepoRecord> empty = CheckRepository(Record("b", tmp.path() + "/empty"));
  EXPECT_EQ(empty.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(empty.status().message().find("empty"), std::string::npos) << empty.status().message();

  std::string repo = MakeFixtureRepo(tmp.path());
  RepoSettings other;
  other.target_branch = "release";
  Result<RepoRecord> branchless = CheckRepository(Record("c", repo, other));
  EXPECT_EQ(branchless.status().code(), StatusCode::kNotFound);
  EXPECT_NE(branchless.status().message().find("'release'"), std::string::npos);

  // Damage the object that main's commit points to.
  std::string tree = Git(repo, "rev-parse main^{tree}");
  std::string obj = repo + "/.git/objects/" + tree.substr(0, 2) + "/" + tree.substr(2);
  Sh("chmod u+w '" + obj + "' && printf garbage > '" + obj + "'");
  Result<RepoRecord> corrupt = CheckRepository(Record("d", repo));
  EXPECT_EQ(corrupt.status().code(), StatusCode::kCorruption) << corrupt.status().ToString();

  EXPECT_EQ(CheckRepository(Record("bad/name", repo)).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(RegistryTest, ChecksMakeThePathAbsoluteAndKeepTheRecord) {
  TempDir tmp;
  std::string origin = MakeFixtureRepo(tmp.path());
  RepoRecord record = Record("local", origin + "/./", {});
  record.test_command = "make test";
  Result<RepoRecord> checked = CheckRepository(record);
  ASSERT_TRUE(checked.ok()) << checked.status().ToString();
  EXPECT_EQ(checked->path, origin + "/");
  EXPECT_EQ(checked->test_command, "make test");
  EXPECT_EQ(checked->origin, "");
}

TEST(RegistryTest, ClonesBareWithTheTargetBranch) {
  TempDir tmp;
  std::string origin = MakeFixtureRepo(tmp.path());
  Sh("git -C " + origin + " branch release");
  RepoSettings s;
  s.target_branch = "release";
  s.allowed_globs = {"src/**"};
  Result<RepoRecord> cloned = CloneRepository(origin, Record("cl", tmp.path() + "/clone.git", s));
  ASSERT_TRUE(cloned.ok()) << cloned.status().ToString();
  EXPECT_EQ(Git(tmp.path() + "/clone.git", "rev-parse --is-bare-repository"), "true");
  EXPECT_EQ(Git(tmp.path() + "/clone.git", "rev-parse release"), Git(origin, "rev-parse main"));
  EXPECT_EQ(cloned->origin, origin);
  EXPECT_EQ(cloned->path, tmp.path() + "/clone.git");
  EXPECT_EQ(cloned->settings.target_branch, "release");
  EXPECT_EQ(cloned->settings.allowed_globs, std::vector<std::string>{"src/**"});
  EXPECT_EQ(CloneRepository(origin, Record("x", tmp.path() + "/clone.git", s)).status().code(),
            StatusCode::kAlreadyExists);
}

// A worktree deleted by hand, or whose .git link a test run replaced, is reported
// when reopened, and removing the workspace still cleans up everything.
TEST_F(RepositoryTest, AWorktreeOfAnotherDataDirIsReportedAndLeftAlone) {
  // A new data dir on a repository used before: its task 1 met the earlier task 1's
  // worktree and failed with "worktree of task 1 is damaged" (or wrote into it).
  ASSERT_TRUE(repo_->CreateWorkspace("1", "earlier").ok());
  Result<std::unique_ptr<Repository>> other = Repository::Open(rec_, tmp_.path() + "/wts-new");
  ASSERT_TRUE(other.ok());
  auto expect_refused = [&](const std::string& also) {
    Result<std::unique_ptr<Workspace>> opened = (*other)->OpenWorkspace("1");
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().code(), StatusCode::kFailedPrecondition);
    for (const std::string& part : {std::string("another loomd data directory"),
                                    std::string("worktree remove --force loom-1"),
                                    std::string("branch -D loom/1-earlier"), also}) {
      EXPECT_NE(opened.status().message().find(part), std::string::npos)
          << part << " in " << opened.status().ToString();
    }
    EXPECT_EQ((*other)->CreateWorkspace("1", "later").status().code(),
              StatusCode::kFailedPrecondition);
  };
  expect_refused(tmp_.path() + "/wts/loom-1");
  // The earlier workspace is untouched and still opens where it was made.
  EXPECT_TRUE(repo_->OpenWorkspace("1").ok());
  EXPECT_EQ(Git(origin_, "branch --list --format='%(refname:short)' 'loom/1-*'"), "loom/1-earlier");
  // Once its directory is gone (its data dir deleted), the message says so.
  Sh("rm -rf '" + tmp_.path() + "/wts/loom-1'");
  expect_refused("(no longer there)");
}

TEST_F(RepositoryTest, ReportsDamagedWorktreeAndStillRemovesIt) {
  ASSERT_TRUE(repo_->CreateWorkspace("d1", "gone").ok());
  ASSERT_TRUE(repo_->CreateWorkspace("d2", "broken link").ok());
  std::string gone = tmp_.path() + "/wts/loom-d1", broken = tmp_.path() + "/wts/loom-d2";
  ASSERT_TRUE(Exists(gone)) << gone;
  Sh("rm -rf '" + gone + "'");
  Sh("rm -f '" + broken + "/.git' && ln -s /etc '" + broken + "/.git'");
  EXPECT_FALSE(repo_->OpenWorkspace("d1").ok());
  EXPECT_FALSE(repo_->OpenWorkspace("d2").ok());
  for (const char* id : {"d1", "d2"}) {
    Status s = repo_->RemoveWorkspace(id, BranchDisposition::kDelete);
    EXPECT_TRUE(s.ok()) << id << ": " << s.ToString();
    EXPECT_FALSE(Exists(origin_ + "/.git/worktrees/loom-" + std::string(id))) << id;
    EXPECT_EQ(Git(origin_, "for-each-ref refs/loom/snapshots/" + std::string(id)), "") << id;
  }
  EXPECT_FALSE(Exists(broken));
  EXPECT_TRUE(Exists("/etc/passwd"));
  EXPECT_EQ(Git(origin_, "branch --list 'loom/d*'"), "");
  EXPECT_EQ(Git(origin_, "worktree list --porcelain | grep -c '^worktree'"), "1");
}

// The worktree is registered by loomd itself (not git_worktree_add, which opens
// every other worktree): git must still take it for an ordinary linked worktree.
TEST_F(RepositoryTest, GitSeesARegisteredWorktreeAsItsOwn) {
  ASSERT_TRUE(repo_->CreateWorkspace("g1", "seen by git").ok());
  Result<std::unique_ptr<Workspace>> ws = repo_->CreateWorkspace("g2", "seen by git");
  ASSERT_TRUE(ws.ok()) << ws.status().ToString();
  const std::string path = (*ws)->info().path;
  EXPECT_EQ(Git(path, "rev-parse --abbrev-ref HEAD"), "loom/g2-seen-by-git");
  EXPECT_EQ(Git(path, "status --porcelain --untracked-files=all"), "");
  EXPECT_EQ(Git(origin_, "worktree list --porcelain | grep -c '^worktree'"), "3");
  ASSERT_TRUE((*ws)->WriteFile("src/a.txt", "changed\n").ok());
  ASSERT_TRUE((*ws)->CommitToBranch({"change", {}}).ok());
  EXPECT_EQ(Git(path, "status --porcelain --untracked-files=all"), "");
  // git refuses to check the task branch out a second time.
  EXPECT_EQ(Sh("git -C " + origin_ +
               " checkout -q loom/g2-seen-by-git 2>/dev/null && echo checked-out || echo refused"),
            "refused\n");
  EXPECT_EQ(Git(origin_, "rev-parse --abbrev-ref HEAD"), "main");
}

// The one other place a task branch can be checked out is the repository's own
// work tree; a workspace is not made on a branch checked out there.
TEST_F(RepositoryTest, RefusesATaskBranchCheckedOutInTheRepository) {
  Sh("git -C " + origin_ + " checkout -q -b loom/h1-here");
  Result<std::unique_ptr<Workspace>> ws = repo_->CreateWorkspace("h1", "here");
  EXPECT_EQ(ws.status().code(), StatusCode::kFailedPrecondition) << ws.status().ToString();
  EXPECT_FALSE(Exists(tmp_.path() + "/wts/loom-h1"));
  EXPECT_FALSE(Exists(origin_ + "/.git/worktrees/loom-h1"));
  Sh("git -C " + origin_ + " checkout -q main");
  EXPECT_TRUE(repo_->CreateWorkspace("h1", "here").ok());
}

TEST_F(RepositoryTest, FastForwardsWhenTargetDidNotMove) {
  std::string head = Branch("m1", {{"src/new.cc", "new\n"}});
  Result<MergeOutcome> m = repo_->MergeBranch("m1");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->kind, MergeOutcome::Kind::kFastForward);
  EXPECT_EQ(m->commit, head);
  EXPECT_EQ(Git(origin_, "rev-parse main"), head);
  // The checked-out target work tree follows the merge.
  EXPECT_EQ(ReadRaw(origin_ + "/src/new.cc"), "new\n");
  EXPECT_EQ(Git(origin_, "status --porcelain"), "");
  EXPECT_EQ(repo_->MergeBranch("m1")->kind, MergeOutcome::Kind::kUpToDate);
}

TEST_F(RepositoryTest, CreatesMergeCommitWhenTargetMoved) {
  std::string head = Branch("m2", {{"src/a.txt", "a\n"}});
  Sh("cd " + origin_ + " && echo other > other.txt && git add other.txt && git commit -qm moved");
  std::string moved = Git(origin_, "rev-parse main");
  Result<MergeOutcome> m = repo_->MergeBranch("m2");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->kind, MergeOutcome::Kind::kMergeCommit);
  EXPECT_EQ(Git(origin_, "rev-parse main"), m->commit);
  EXPECT_EQ(Git(origin_, "rev-parse main^1"), moved);
  EXPECT_EQ(Git(origin_, "rev-parse main^2"), head);
  EXPECT_EQ(Sh("git -C " + origin_ + " show main:src/a.txt"), "a\n");
  EXPECT_EQ(Git(origin_, "status --porcelain"), "");
  Result<DiffReport> d = repo_->DiffBranch("m2");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->base_commit, head);  // merged: nothing left to review
  EXPECT_TRUE(d->files.empty());
}

TEST_F(RepositoryTest, ReportsConflictsAndLeavesTargetUntouched) {
  Branch("m3", {{"README.md", "# agent\n"}, {"docs/guide.md", "agent guide\n"}});
  Sh("cd " + origin_ +
     " && echo '# human' > README.md && echo 'human guide' > docs/guide.md "
     "&& git commit -qam human");
  std::string before = Git(origin_, "rev-parse main");
  Result<MergeOutcome> m = repo_->MergeBranch("m3");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->kind, MergeOutcome::Kind::kConflict);
  EXPECT_EQ(m->conflicting_paths, (std::vector<std::string>{"README.md", "docs/guide.md"}));
  EXPECT_EQ(Git(origin_, "rev-parse main"), before);
  EXPECT_EQ(ReadRaw(origin_ + "/README.md"), "# human\n");
  EXPECT_EQ(Git(origin_, "status --porcelain"), "");
}

TEST_F(RepositoryTest, RefusesMergeThatWouldClobberLocalChangesOfCheckedOutTarget) {
  Branch("m4", {{"README.md", "# agent\n"}});
  WriteRaw(origin_ + "/README.md", "# uncommitted human edit\n");
  std::string before = Git(origin_, "rev-parse main");
  Result<MergeOutcome> m = repo_->MergeBranch("m4");
  EXPECT_EQ(m.status().code(), StatusCode::kFailedPrecondition) << m.status().ToString();
  EXPECT_EQ(Git(origin_, "rev-parse main"), before);
  EXPECT_EQ(ReadRaw(origin_ + "/README.md"), "# uncommitted human edit\n");
}

// The state a process killed during a merge into the checked-out target leaves
// once main moved: the journal, main at the branch head, and the checkout cut
// short (one of the branch's files written, the index still the old one).
class InterruptedMergeTest : public RepositoryTest {
 protected:
  void SetUp() override {
    RepositoryTest::SetUp();
    head_ = Branch("m5", {{"src/new.cc", "new\n"}, {"README.md", "# agent\n"}});
    old_ = Git(origin_, "rev-parse main");
    WriteRaw(origin_ + "/.git/LOOM_MERGE", old_ + " " + head_ + "\n");
    Sh("git -C " + origin_ + " update-ref refs/heads/main " + head_ + " " + old_);
    WriteRaw(origin_ + "/src/new.cc", "new\n");
  }
  std::string head_, old_;
};

TEST_F(InterruptedMergeTest, FinishesTheCheckoutWhenTheTargetHadMoved) {
  Status s = repo_->FinishInterruptedMerge();
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Git(origin_, "rev-parse main"), head_);
  EXPECT_EQ(ReadRaw(origin_ + "/README.md"), "# agent\n");
  EXPECT_EQ(Git(origin_, "status --porcelain --untracked-files=all"), "");
  EXPECT_FALSE(Exists(origin_ + "/.git/LOOM_MERGE"));
}

TEST_F(InterruptedMergeTest, AChangeMadeSinceIsRefusedAndTheJournalKept) {
  WriteRaw(origin_ + "/README.md", "# a human edit\n");
  Status s = repo_->FinishInterruptedMerge();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("README.md"), std::string::npos) << s.ToString();
  EXPECT_EQ(ReadRaw(origin_ + "/README.md"), "# a human edit\n");
  EXPECT_TRUE(Exists(origin_ + "/.git/LOOM_MERGE"));
  // Once the edit is discarded, the next merge call finishes it first.
  WriteRaw(origin_ + "/README.md", "# agent\n");
  EXPECT_EQ(repo_->MergeBranch("m5")->kind, MergeOutcome::Kind::kUpToDate);
  EXPECT_EQ(Git(origin_, "status --porcelain --untracked-files=all"), "");
  EXPECT_FALSE(Exists(origin_ + "/.git/LOOM_MERGE"));
}

TEST_F(InterruptedMergeTest, ARefLockLeftByAKillDuringTheMoveIsRemoved) {
  // Killed while moving main: the ref did not move and its lock stayed, and every
  // later merge answered "locked by another process" (the random kill test found it).
  Sh("git -C " + origin_ + " update-ref refs/heads/main " + old_ + " " + head_);
  Sh("rm " + origin_ + "/src/new.cc");
  WriteRaw(origin_ + "/.git/refs/heads/main.lock", old_ + "\n");
  Sh("touch -d '1 hour ago' " + origin_ + "/.git/refs/heads/main.lock");
  Status s = repo_->FinishInterruptedMerge();
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(Exists(origin_ + "/.git/refs/heads/main.lock"));
  Result<MergeOutcome> m = repo_->MergeBranch("m5");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(Git(origin_, "rev-parse main"), head_);
}

TEST_F(InterruptedMergeTest, ChangesNothingWhenTheTargetHadNotMoved) {
  Sh("git -C " + origin_ + " update-ref refs/heads/main " + old_ + " " + head_);
  Sh("rm " + origin_ + "/src/new.cc");
  Status s = repo_->FinishInterruptedMerge();
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Git(origin_, "rev-parse main"), old_);
  EXPECT_EQ(Git(origin_, "status --porcelain --untracked-files=all"), "");
  EXPECT_FALSE(Exists(origin_ + "/.git/LOOM_MERGE"));
}

}  // namespace
}  // namespace loom::repos
