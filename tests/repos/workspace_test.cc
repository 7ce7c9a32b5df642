// Workspace behaviour on real repositories: edits, confinement, snapshots,
// crash-resume, branch commits and diffs.
#include "repos/workspace.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "common/posix.h"
#include "policies/policy.h"
#include "test_repo.h"

namespace loom::repos {
namespace {

class WorkspaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    origin_ = MakeFixtureRepo(tmp_.path());
    Open(RepoSettings{});
  }

  void Open(RepoSettings settings) {
    Result<RepoRecord> rec = CheckRepository(
        RepoRecord{"demo" + std::to_string(n_++), origin_, "", "", std::move(settings)});
    ASSERT_TRUE(rec.ok()) << rec.status().ToString();
    Result<std::unique_ptr<Repository>> repo = Repository::Open(*rec, tmp_.path() + "/worktrees");
    ASSERT_TRUE(repo.ok()) << repo.status().ToString();
    repo_ = std::move(*repo);
  }

  std::unique_ptr<Workspace> Create(const std::string& id, const std::string& slug = "Fix it") {
    Result<std::unique_ptr<Workspace>> ws = repo_->CreateWorkspace(id, slug);
    EXPECT_TRUE(ws.ok()) << ws.status().ToString();
    return ws.ok() ? std::move(*ws) : nullptr;
  }

  TempDir tmp_;
  std::string origin_;
  std::unique_ptr<Repository> repo_;
  int n_ = 0;
};

TEST_F(WorkspaceTest, CreatesBranchAndCleanWorktreeFromTargetHead) {
  auto ws = Create("t1", "Fix login bug!");
  ASSERT_TRUE(ws);
  EXPECT_EQ(ws->info().branch, "loom/t1-fix-login-bug");
  EXPECT_EQ(Git(ws->info().path, "rev-parse HEAD"), Git(origin_, "rev-parse main"));
  EXPECT_EQ(Git(ws->info().path, "symbolic-ref HEAD"), "refs/heads/loom/t1-fix-login-bug");
  EXPECT_EQ(Git(ws->info().path, "status --porcelain"), "");
  EXPECT_EQ(ReadRaw(ws->info().path + "/crlf.txt"), "one\r\ntwo\r\nthree\r\n");
  EXPECT_EQ(Git(origin_, "rev-parse refs/loom/snapshots/t1"), Git(origin_, "rev-parse main"));
  EXPECT_EQ(repo_->CreateWorkspace("t1", "again").status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(repo_->CreateWorkspace("../x", "s").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(WorkspaceTest, WriteFileIsReadableAndSnapshotted) {
  auto ws = Create("t2");
  Result<SnapshotInfo> s = ws->WriteFile("src/new/dir/file.txt", "hello\n");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->step, 1);
  EXPECT_EQ(*ws->ReadFile("src/new/dir/file.txt"), "hello\n");
  EXPECT_EQ(Sh("git -C " + origin_ + " show refs/loom/snapshots/t2:src/new/dir/file.txt"),
            "hello\n");
  EXPECT_EQ(*ws->ReadFile("src/app.cc", 2, 3), "  return a + b;\n}\n");
  Result<std::vector<SnapshotInfo>> snaps = ws->ListSnapshots();
  ASSERT_TRUE(snaps.ok());
  ASSERT_EQ(snaps->size(), 2u);
  EXPECT_EQ((*snaps)[0].step, 0);
  EXPECT_EQ((*snaps)[1].summary, "write src/new/dir/file.txt");
}

TEST_F(WorkspaceTest, ReplaceInFileNeedsExactlyOneMatch) {
  auto ws = Create("t3");
  ASSERT_TRUE(ws->ReplaceInFile("src/app.cc", "return a + b;", "return a - b;").ok());
  EXPECT_EQ(ReadRaw(ws->info().path + "/src/app.cc"),
            "int Add(int a, int b) {\n  return a - b;\n}\n");

  Status none = ws->ReplaceInFile("src/app.cc", "int Add(int a, int c)", "x").status();
  EXPECT_EQ(none.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(none.message().find("not found"), std::string::npos);
  EXPECT_NE(none.message().find("line 1: int Add(int a, int b) {"), std::string::npos)
      << none.message();

  Status many = ws->ReplaceInFile("src/dup.cc", "x = 1;", "x = 2;").status();
  EXPECT_EQ(many.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(many.message().find("2 times (at lines 1, 2)"), std::string::npos) << many.message();
  EXPECT_EQ(ReadRaw(ws->info().path + "/src/dup.cc"), "x = 1;\nx = 1;\n");
  EXPECT_EQ(ws->ListSnapshots()->size(), 2u);  // failed edits record nothing
}

TEST_F(WorkspaceTest, ReplaceKeepsCrlfLineEndings) {
  auto ws = Create("t4");
  ASSERT_TRUE(ws->ReplaceInFile("crlf.txt", "one\ntwo\n", "uno\ndos\n").ok());
  EXPECT_EQ(ReadRaw(ws->info().path + "/crlf.txt"), "uno\r\ndos\r\nthree\r\n");
  EXPECT_EQ(Sh("git -C " + origin_ + " show refs/loom/snapshots/t4:crlf.txt"),
            "uno\r\ndos\r\nthree\r\n");
}

TEST_F(WorkspaceTest, CheckoutAppliesAttributesAndKeepsModesAndSymlinks) {
  auto ws = Create("t15");
  std::string wt = ws->info().path;
  EXPECT_EQ(ReadRaw(wt + "/notes.win"), "alpha\r\nbeta\r\n");  // eol=crlf on checkout
  EXPECT_TRUE(std::filesystem::is_symlink(wt + "/link.md"));
  EXPECT_NE(
      std::filesystem::status(wt + "/tool.sh").permissions() & std::filesystem::perms::owner_exec,
      std::filesystem::perms::none);
  EXPECT_EQ(Git(wt, "status --porcelain"), "");
  // Reading through the tracked symlink is refused like any other symlink.
  EXPECT_EQ(ws->ReadFile("link.md").status().code(), StatusCode::kPermissionDenied);
  // Writing CRLF text to an eol=crlf file stores LF in the snapshot.
  ASSERT_TRUE(ws->WriteFile("notes.win", "alpha\r\ngamma\r\n").ok());
  EXPECT_EQ(Sh("git -C " + origin_ + " show refs/loom/snapshots/t15:notes.win"), "alpha\ngamma\n");
  ASSERT_TRUE(ws->ReplaceInFile("tool.sh", "echo hi", "echo bye").ok());
  EXPECT_NE(Sh("git -C " + origin_ + " ls-tree refs/loom/snapshots/t15 tool.sh").find("100755"),
            std::string::npos);
  // Deleting the tracked symlink removes the link, not its target.
  ASSERT_TRUE(ws->DeleteFile("link.md").ok());
  EXPECT_EQ(ReadRaw(wt + "/README.md"), "# demo\n");
  ASSERT_TRUE(ws->WriteFile("data.bin", "now text").ok());
  ASSERT_TRUE(ws->RollbackTo(0).ok());
  EXPECT_EQ(ReadRaw(wt + "/data.bin"), std::string("\x00\x01\x02\xff\x00zz", 7));
  EXPECT_TRUE(std::filesystem::is_symlink(wt + "/link.md"));
  EXPECT_EQ(ReadRaw(wt + "/notes.win"), "alpha\r\nbeta\r\n");
}

TEST_F(WorkspaceTest, DeleteAndRenameAreSnapshotted) {
  auto ws = Create("t5");
  ASSERT_TRUE(ws->DeleteFile("docs/guide.md").ok());
  ASSERT_TRUE(ws->RenameFile("README.md", "doc/READ ME.md").ok());
  EXPECT_FALSE(Exists(ws->info().path + "/docs"));
  EXPECT_EQ(ReadRaw(ws->info().path + "/doc/READ ME.md"), "# demo\n");
  std::string tree = Sh("git -C " + origin_ + " ls-tree -r --name-only refs/loom/snapshots/t5");
  EXPECT_EQ(tree.find("docs/guide.md"), std::string::npos);
  EXPECT_EQ(tree.find("README.md\n"), std::string::npos);
  EXPECT_NE(tree.find("doc/READ ME.md"), std::string::npos);
  EXPECT_EQ(ws->RenameFile("src/app.cc", "src/dup.cc").status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(ws->DeleteFile("nope.txt").status().code(), StatusCode::kNotFound);
}

TEST_F(WorkspaceTest, RefusesPathsOutsideTheWorktree) {
  auto ws = Create("t6");
  for (const char* bad : {"../escape.txt", "/tmp/abs.txt", "src/../../x", ".git/config",
                          ".GIT/hooks/pre-commit", "src/.git/x"}) {
    EXPECT_EQ(ws->WriteFile(bad, "x").status().code(), StatusCode::kPermissionDenied) << bad;
    EXPECT_EQ(ws->ReadFile(bad).status().code(), StatusCode::kPermissionDenied) << bad;
  }
  EXPECT_FALSE(Exists(tmp_.path() + "/worktrees/escape.txt"));
  EXPECT_FALSE(Exists("/tmp/abs.txt"));
}

TEST_F(WorkspaceTest, RefusesSymlinksPlantedLaterByATestRun) {
  auto ws = Create("t7");
  std::string wt = ws->info().path, outside = tmp_.path() + "/outside";
  WriteRaw(outside + "/secret.txt", "secret");
  ASSERT_TRUE(ws->WriteFile("gen/out.txt", "1").ok());
  // A test run replaces gen/ with a symlink and plants a leaf symlink.
  Sh("rm -rf '" + wt + "/gen' && ln -s '" + outside + "' '" + wt + "/gen'");
  Sh("ln -s '" + outside + "/secret.txt' '" + wt + "/src/leak.txt'");

  Status w = ws->WriteFile("gen/out.txt", "2").status();
  EXPECT_EQ(w.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(w.message().find("symbolic link"), std::string::npos) << w.message();
  EXPECT_EQ(ws->ReadFile("gen/secret.txt").status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(ws->ReadFile("src/leak.txt").status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(ws->WriteFile("src/leak.txt", "x").status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(ws->ReplaceInFile("src/leak.txt", "secret", "x").status().code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(ws->ListFiles("gen").status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(ws->Search("secret", "gen").status().code(), StatusCode::kPermissionDenied);
  Result<std::vector<SearchMatch>> all = ws->Search("secret");
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->empty());  // the walk never follows symlinks
  EXPECT_EQ(ReadRaw(outside + "/secret.txt"), "secret");
  EXPECT_FALSE(Exists(outside + "/out.txt"));
}

TEST_F(WorkspaceTest, RefusesPathsOutsideAllowedGlobsAndProtectedOnes) {
  RepoSettings settings;
  settings.allowed_globs = {"src/**", "**/*.md"};
  settings.protected_globs = {"src/generated/**"};
  Open(settings);
  auto ws = Create("t8");
  EXPECT_TRUE(ws->WriteFile("src/x.cc", "x").ok());
  EXPECT_TRUE(ws->WriteFile("notes.md", "x").ok());
  Status outside = ws->WriteFile("Makefile", "x").status();
  EXPECT_EQ(outside.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(outside.message().find("outside the allowed paths (src/**, **/*.md)"),
            std::string::npos);
  Status prot = ws->WriteFile("src/generated/a.cc", "x").status();
  EXPECT_EQ(prot.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(prot.message().find("protected"), std::string::npos);
  EXPECT_EQ(ws->DeleteFile("crlf.txt").status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(ws->RenameFile("src/app.cc", "app.cc").status().code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(ws->ReadFile("crlf.txt").ok());  // reads are not limited by globs
}

// The policy side (ParsePolicy validates, Decide classifies) and the workspace side
// (Repository::Open validates, edits are enforced) follow one rule set, so for every
// pattern and path they agree: `**`, `*`, `dir/`, dotfiles and dot-directories,
// an empty list, and a leading `/` (refused by both, never read as relative).
TEST_F(WorkspaceTest, EnforcesPathGlobsExactlyAsThePolicyDecidesThem) {
  const std::vector<std::string> patterns = {"**",      "*",    "src/**", "src/",   ".github/",
                                             "**/*.md", "*.md", ".*",     "**/.env"};
  const std::vector<std::string> paths = {
      "a.txt",     ".env",      "src/app.cc", "src/.hidden/x.cc", ".github/workflows/ci.yml",
      "docs/a.md", "README.md", "sub/.env"};
  auto policy_of = [](const std::string& allowed, const std::string& prot) {
    Result<policies::Policy> p = policies::ParsePolicy(
        "[paths]\nallowed = [" + allowed + "]\nprotected = [" + prot + "]\n", "t.toml");
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? *p : policies::Policy{};
  };
  int n = 0;
  for (const std::string& pattern : patterns) {
    // As the only allowed pattern.
    policies::Policy allow = policy_of("\"" + pattern + "\"", "");
    RepoSettings settings;
    settings.allowed_globs = {pattern};
    settings.protected_globs = {};
    Open(settings);
    auto ws = Create("g" + std::to_string(n++));
    ASSERT_TRUE(ws);
    for (const std::string& path : paths) {
      bool decided = policies::Decide(allow, path) == policies::PathDecision::kAllowed;
      Status wrote = ws->WriteFile(path, "x\n").status();
      EXPECT_EQ(wrote.ok(), decided)
          << "allowed " << pattern << ", " << path << ": " << wrote.ToString();
    }
    // As the only protected pattern.
    policies::Policy protect = policy_of("\"**\"", "\"" + pattern + "\"");
    settings.allowed_globs = {"**"};
    settings.protected_globs = {pattern};
    Open(settings);
    ws = Create("g" + std::to_string(n++));
    ASSERT_TRUE(ws);
    for (const std::string& path : paths) {
      bool prot = policies::Decide(protect, path) == policies::PathDecision::kProtected;
      Status wrote = ws->WriteFile(path, "x\n").status();
      EXPECT_EQ(!wrote.ok(), prot)
          << "protected " << pattern << ", " << path << ": " << wrote.ToString();
    }
  }
  // No allowed pattern allows nothing, on both sides.
  policies::Policy none = policy_of("", "");
  RepoSettings settings;
  settings.allowed_globs = {};
  Open(settings);
  auto ws = Create("g" + std::to_string(n++));
  ASSERT_TRUE(ws);
  EXPECT_EQ(policies::Decide(none, "a.txt"), policies::PathDecision::kOutside);
  EXPECT_EQ(ws->WriteFile("a.txt", "x\n").status().code(), StatusCode::kPermissionDenied);
  // A leading '/' is refused by both validators.
  EXPECT_FALSE(policies::ParsePolicy("[paths]\nallowed = [\"/src/**\"]\n", "t.toml").ok());
  for (auto member : {&RepoSettings::allowed_globs, &RepoSettings::protected_globs}) {
    RepoSettings bad;
    bad.*member = {"/src/**"};
    Result<RepoRecord> rec =
        CheckRepository(RepoRecord{"bad" + std::to_string(n++), origin_, "", "", bad});
    EXPECT_EQ(rec.status().code(), StatusCode::kInvalidArgument);
    Result<RepoRecord> good = CheckRepository(RepoRecord{"good", origin_, "", "", RepoSettings{}});
    ASSERT_TRUE(good.ok()) << good.status().ToString();
    RepoRecord record = *good;
    record.settings = bad;
    EXPECT_EQ(Repository::Open(record, tmp_.path() + "/worktrees").status().code(),
              StatusCode::kInvalidArgument);
  }
}

TEST_F(WorkspaceTest, ListsAndSearchesFiles) {
  auto ws = Create("t9");
  Result<std::vector<FileEntry>> root = ws->ListFiles("");
  ASSERT_TRUE(root.ok());
  std::vector<std::string> names;
  for (const FileEntry& e : *root) names.push_back(e.path);
  const std::string kUnicodeDir =
      "donn\xc3\xa9"
      "es";
  EXPECT_EQ(names,
            (std::vector<std::string>{".gitattributes", "README.md", "crlf.txt", "data.bin", "docs",
                                      kUnicodeDir, "link.md", "notes.win", "src", "tool.sh"}));
  Result<std::vector<SearchMatch>> m = ws->Search("return", "src");
  ASSERT_TRUE(m.ok());
  ASSERT_EQ(m->size(), 1u);
  EXPECT_EQ((*m)[0].path, "src/app.cc");
  EXPECT_EQ((*m)[0].line, 2);
  // Patterns are literal: regex syntax is plain text (no backtracking to exploit).
  Result<std::vector<SearchMatch>> lit = ws->Search("(a*)*c", "", {10});
  ASSERT_TRUE(lit.ok());
  EXPECT_TRUE(lit->empty());
  Result<std::vector<SearchMatch>> first = ws->Search("return", "", {1});
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->size(), 1u);
  EXPECT_EQ(*ws->ReadFile("donn\xc3\xa9"
                          "es/\xc3\xa9t\xc3\xa9.txt"),
            "unicode\n");
}

TEST_F(WorkspaceTest, RollbackRestoresAStepAndKeepsHistory) {
  auto ws = Create("t10");
  ASSERT_TRUE(ws->WriteFile("a.txt", "1").ok());
  ASSERT_TRUE(ws->WriteFile("a.txt", "2").ok());
  ASSERT_TRUE(ws->DeleteFile("README.md").ok());
  ASSERT_TRUE(ws->WriteFile("b.txt", "b").ok());
  Result<SnapshotInfo> r = ws->RollbackTo(1);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->step, 5);
  EXPECT_EQ(ReadRaw(ws->info().path + "/a.txt"), "1");
  EXPECT_EQ(ReadRaw(ws->info().path + "/README.md"), "# demo\n");
  EXPECT_FALSE(Exists(ws->info().path + "/b.txt"));
  EXPECT_EQ(ws->ListSnapshots()->size(), 6u);
  Result<SnapshotDetail> d = ws->InspectSnapshot(2);
  ASSERT_TRUE(d.ok());
  ASSERT_EQ(d->diff.files.size(), 1u);
  EXPECT_EQ(d->diff.files[0].path, "a.txt");
  EXPECT_NE(d->diff.unified.find("+2"), std::string::npos);
  EXPECT_EQ(ws->RollbackTo(99).status().code(), StatusCode::kNotFound);
}

TEST_F(WorkspaceTest, ResumesAfterCrashAtEveryStep) {
  std::string path;
  for (int step = 1; step <= 4; ++step) {
    {
      std::unique_ptr<Workspace> ws;
      if (step == 1) {
        ws = Create("t11");
      } else {
        Result<std::unique_ptr<Workspace>> r = repo_->OpenWorkspace("t11");
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        ws = std::move(*r);
      }
      path = ws->info().path;
      ASSERT_TRUE(ws->WriteFile("f.txt", "step " + std::to_string(step)).ok());
    }
    // The process dies after writing the next edit to disk, before its snapshot.
    WriteRaw(path + "/f.txt", "half-done edit");
    WriteRaw(path + "/stray.txt", "new file never snapshotted");
    Sh("rm '" + path + "/README.md'");
    Result<std::unique_ptr<Workspace>> ws = repo_->OpenWorkspace("t11");
    ASSERT_TRUE(ws.ok()) << ws.status().ToString();
    EXPECT_EQ((*ws)->resume_report().step, step);
    EXPECT_EQ((*ws)->resume_report().restored_paths.size(), 3u);
    EXPECT_EQ(ReadRaw(path + "/f.txt"), "step " + std::to_string(step));
    EXPECT_EQ(ReadRaw(path + "/README.md"), "# demo\n");
    EXPECT_FALSE(Exists(path + "/stray.txt"));
    EXPECT_EQ(Sh("git -C '" + path + "' show refs/loom/snapshots/t11:f.txt"),
              "step " + std::to_string(step));
  }
}

TEST_F(WorkspaceTest, ResumesAWorktreeTakenBackFromTheSandbox) {
  if (geteuid() != 0) GTEST_SKIP() << "lending a worktree to another uid needs root";
  auto ws = Create("t16");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(ws->WriteFile("tests/test_new.py", "new test\n").ok());
  std::string path = ws->info().path;
  EXPECT_EQ(repo_->WorkspacePath("t16"), path);
  ws.reset();
  // The process died during a sandboxed run: the worktree (not its .git) still
  // belongs to the sandbox uid, and libgit2 would call it "no repository". The
  // caller takes it back first (sandbox::ReclaimWorktree wraps this ReclaimTree).
  Sh("cd '" + path + "' && find . -path ./.git -prune -o -exec chown -h 64000:64000 {} +");
  Result<size_t> reclaimed = ReclaimTree(repo_->WorkspacePath("t16"));
  ASSERT_TRUE(reclaimed.ok()) << reclaimed.status().ToString();
  EXPECT_GT(*reclaimed, 10u);
  Result<std::unique_ptr<Workspace>> r = repo_->OpenWorkspace("t16");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)->resume_report().step, 1);
  EXPECT_EQ(ReadRaw(path + "/tests/test_new.py"), "new test\n");
  EXPECT_EQ(Sh("find '" + path + "' ! -uid 0 -o ! -gid 0"), "");
  ASSERT_TRUE((*r)->WriteFile("b.txt", "b\n").ok());
  EXPECT_EQ((*r)->ListSnapshots()->back().step, 2);
}

TEST_F(WorkspaceTest, RemakesAWorkspaceWhoseCreationWasCutShort) {
  auto ws = Create("t17");
  ASSERT_TRUE(ws);
  std::string path = ws->info().path;
  ws.reset();
  // Killed after the worktree was registered and partly checked out, before the
  // snapshot ref (the last step of creation) and with that ref's lock held.
  Sh("git -C '" + origin_ + "' update-ref -d refs/loom/snapshots/t17 && rm -r '" + path + "/src'");
  WriteRaw(origin_ + "/.git/refs/loom/snapshots/t17.lock", "");
  EXPECT_EQ(repo_->OpenWorkspace("t17").status().code(), StatusCode::kNotFound);
  ws = Create("t17");
  ASSERT_TRUE(ws);
  EXPECT_EQ(Git(path, "status --porcelain"), "");
  EXPECT_EQ(ReadRaw(path + "/src/app.cc"), "int Add(int a, int b) {\n  return a + b;\n}\n");

  // Killed inside git_worktree_add, before the worktree's HEAD: admin files that
  // libgit2 does not take for a worktree.
  ws.reset();
  Sh("rm '" + origin_ + "/.git/worktrees/loom-t17/HEAD'");
  EXPECT_EQ(repo_->OpenWorkspace("t17").status().code(), StatusCode::kNotFound);
  ws = Create("t17");
  ASSERT_TRUE(ws);
  EXPECT_EQ(Git(path, "status --porcelain"), "");

  // A complete workspace is never made again.
  ASSERT_TRUE(ws->WriteFile("a.txt", "a\n").ok());
  ws.reset();
  EXPECT_EQ(repo_->CreateWorkspace("t17", "Fix it").status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(ReadRaw(path + "/a.txt"), "a\n");
}

TEST_F(WorkspaceTest, ResumesPastLocksLeftByAKilledProcess) {
  auto ws = Create("t18");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(ws->WriteFile("a.txt", "a\n").ok());
  std::string branch = ws->info().branch;
  ws.reset();
  WriteRaw(origin_ + "/.git/refs/loom/snapshots/t18.lock", "");
  WriteRaw(origin_ + "/.git/refs/heads/" + branch + ".lock", "");
  WriteRaw(origin_ + "/.git/worktrees/loom-t18/index.lock", "");
  Result<std::unique_ptr<Workspace>> r = repo_->OpenWorkspace("t18");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE((*r)->WriteFile("b.txt", "b\n").ok());
  Result<std::string> commit = (*r)->CommitToBranch({"two files", {}});
  EXPECT_TRUE(commit.ok()) << commit.status().ToString();
}

TEST_F(WorkspaceTest, CommitToBranchWithTrailersAndDiff) {
  RepoSettings settings;
  settings.author_name = "Loom agent";
  settings.author_email = "agent@loom.test";
  Open(settings);
  auto ws = Create("t12", "add feature");
  ASSERT_TRUE(ws->ReplaceInFile("src/app.cc", "a + b", "b + a").ok());
  ASSERT_TRUE(ws->WriteFile("data.bin", std::string("\x00\x07new", 5)).ok());
  ASSERT_TRUE(ws->WriteFile("\xc3\xbcml\xc3\xa4ut.txt", "umlaut\n").ok());
  Result<std::string> c = ws->CommitToBranch({"Swap operands\n", {"fb-1", "fb-2"}});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  std::string wt = ws->info().path;
  EXPECT_EQ(Git(wt, "rev-parse HEAD"), *c);
  EXPECT_EQ(Git(wt, "log -1 --format=%an%n%ae%n%B"),
            "Loom agent\nagent@loom.test\nSwap operands\n\nLoom-Task: t12\nLoom-Feedback: fb-1, "
            "fb-2");
  EXPECT_EQ(Git(wt, "status --porcelain"), "");  // index follows the branch
  EXPECT_EQ(ws->CommitToBranch({"again", {}}).status().code(), StatusCode::kFailedPrecondition);

  Result<DiffReport> d = repo_->DiffBranch("t12");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->base_commit, Git(origin_, "rev-parse main"));
  ASSERT_EQ(d->files.size(), 3u);
  std::map<std::string, FileStat> by_path;
  for (const FileStat& f : d->files) by_path[f.path] = f;
  EXPECT_TRUE(by_path["data.bin"].binary);
  EXPECT_EQ(by_path["src/app.cc"].additions, 1);
  EXPECT_EQ(by_path["src/app.cc"].deletions, 1);
  EXPECT_EQ(by_path["\xc3\xbcml\xc3\xa4ut.txt"].change, FileStat::Change::kAdded);
  EXPECT_NE(d->unified.find("+  return b + a;"), std::string::npos);
  EXPECT_EQ(d->unified, Sh("git -C " + origin_ + " diff main...loom/t12-add-feature"));
}

// Before any branch commit, Diff() shows the latest snapshot against the merge
// base: what a reviewer (or the agent) sees of the work so far, renames included.
TEST_F(WorkspaceTest, DiffShowsTheLatestSnapshotAgainstTheMergeBase) {
  auto ws = Create("t16", "diff me");
  ASSERT_TRUE(ws->ReplaceInFile("src/app.cc", "a + b", "a - b").ok());
  ASSERT_TRUE(ws->WriteFile("src/new.cc", "one\ntwo\n").ok());
  ASSERT_TRUE(ws->DeleteFile("docs/guide.md").ok());
  ASSERT_TRUE(ws->RenameFile("src/dup.cc", "src/moved.cc").ok());
  Result<DiffReport> d = ws->Diff();
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->base_commit, Git(origin_, "rev-parse main"));
  Result<std::vector<SnapshotInfo>> snaps = ws->ListSnapshots();
  ASSERT_TRUE(snaps.ok());
  EXPECT_EQ(d->head_commit, snaps->back().commit);
  std::map<std::string, FileStat> by_path;
  for (const FileStat& f : d->files) by_path[f.path] = f;
  ASSERT_EQ(d->files.size(), 4u) << d->unified;
  EXPECT_EQ(by_path["src/app.cc"].change, FileStat::Change::kModified);
  EXPECT_EQ(by_path["src/app.cc"].additions, 1);
  EXPECT_EQ(by_path["src/app.cc"].deletions, 1);
  EXPECT_EQ(by_path["src/new.cc"].change, FileStat::Change::kAdded);
  EXPECT_EQ(by_path["src/new.cc"].additions, 2);
  EXPECT_EQ(by_path["docs/guide.md"].change, FileStat::Change::kDeleted);
  EXPECT_EQ(by_path["src/moved.cc"].change, FileStat::Change::kRenamed);
  EXPECT_EQ(by_path["src/moved.cc"].old_path, "src/dup.cc");
  EXPECT_NE(d->unified.find("+  return a - b;"), std::string::npos) << d->unified;
  // The branch itself has not moved: its diff is still empty.
  Result<DiffReport> branch = repo_->DiffBranch("t16");
  ASSERT_TRUE(branch.ok()) << branch.status().ToString();
  EXPECT_TRUE(branch->files.empty());
}

TEST_F(WorkspaceTest, LargeAndBinaryFilesRoundTrip) {
  auto ws = Create("t13");
  std::string big(20 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>(i % 251);
  ASSERT_TRUE(ws->WriteFile("big/blob.bin", big).ok());
  Result<std::string> back = ws->ReadFile("big/blob.bin");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, big);
  EXPECT_EQ(Trimmed(Sh("git -C " + origin_ + " cat-file -s refs/loom/snapshots/t13:big/blob.bin")),
            std::to_string(big.size()));
}

TEST_F(WorkspaceTest, LeavesSubmodulesAlone) {
  std::string sub = tmp_.path() + "/sub";
  Sh("git init -q -b main " + sub + " && cd " + sub +
     " && echo s > s.txt && git add . && "
     "git commit -qm s && cd " +
     origin_ +
     " && git -c protocol.file.allow=always submodule "
     "add -q " +
     sub + " vendor/sub && git commit -qm 'add submodule'");
  auto ws = Create("t14");
  Status s = ws->WriteFile("vendor/sub/s.txt", "x").status();
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(s.message().find("submodule"), std::string::npos) << s.message();
  ASSERT_TRUE(ws->WriteFile("top.txt", "t").ok());
  ASSERT_TRUE(ws->CommitToBranch({"top", {}}).ok());
  EXPECT_NE(Sh("git -C " + origin_ + " ls-tree loom/t14-fix-it vendor/sub").find("commit"),
            std::string::npos);
}

}  // namespace
}  // namespace loom::repos
