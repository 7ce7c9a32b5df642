// Probe for issue 25: does a workspace operation's cost depend on how many other
// worktrees the repository has? Run under strace by worktree_walk.sh, which counts
// the file system calls between the two marker calls (access("/loom-probe-begin")
// and access("/loom-probe-end")) that touch another task's admin files under
// .git/worktrees.
//
//   worktree_walk_probe setup DIR N      a 3-file repository with N workspaces
//   worktree_walk_probe OP DIR ID        one operation on task ID, between markers
//
// OP: create (a new workspace), open (reopen one), write (an edit and its
// snapshot), commit (CommitToBranch), diff (Workspace::Diff), diffbranch
// (Repository::DiffBranch), remove (RemoveWorkspace, branch deleted).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "repos/workspace.h"

namespace {

using loom::repos::Repository;
using loom::repos::Workspace;

void Mark(const char* what) { (void)access(what, F_OK); }

int Fail(const loom::Status& s) {
  fprintf(stderr, "%s\n", s.ToString().c_str());
  return 1;
}

std::unique_ptr<Repository> OpenRepo(const std::string& dir) {
  loom::repos::RepoRecord rec{"probe", dir + "/repo", "", "", {}};
  auto repo = Repository::Open(rec, dir + "/wts");
  if (!repo.ok()) {
    Fail(repo.status());
    exit(1);
  }
  return std::move(*repo);
}

int Setup(const std::string& dir, int n) {
  std::string cmd = "set -e; mkdir -p '" + dir + "/repo'; cd '" + dir +
                    "/repo'; git init -q -b main; printf 'a\\n' > a.txt; printf 'b\\n' > b.txt;"
                    " mkdir src; printf 'c\\n' > src/c.txt; git add -A;"
                    " git -c user.name=B -c user.email=b@b commit -q -m init";
  if (system(cmd.c_str()) != 0) return 1;
  auto repo = OpenRepo(dir);
  for (int i = 1; i <= n; ++i) {
    auto ws = repo->CreateWorkspace(std::to_string(i), "task");
    if (!ws.ok()) return Fail(ws.status());
    if (auto s = (*ws)->WriteFile("a.txt", "edit " + std::to_string(i) + "\n"); !s.ok()) {
      return Fail(s.status());
    }
  }
  return 0;
}

int Op(const std::string& op, const std::string& dir, const std::string& id) {
  auto repo = OpenRepo(dir);
  std::unique_ptr<Workspace> ws;
  if (op != "create" && op != "remove" && op != "diffbranch") {
    auto opened = repo->OpenWorkspace(id);
    if (!opened.ok()) return Fail(opened.status());
    ws = std::move(*opened);
  }
  if (op == "commit") {
    if (auto s = ws->WriteFile("b.txt", "probe\n"); !s.ok()) return Fail(s.status());
  }
  loom::Status s;
  Mark("/loom-probe-begin");
  if (op == "create") {
    s = repo->CreateWorkspace(id, "probe").status();
  } else if (op == "open") {
    s = repo->OpenWorkspace(id).status();
  } else if (op == "write") {
    s = ws->WriteFile("src/c.txt", "probe\n").status();
  } else if (op == "commit") {
    s = ws->CommitToBranch({"probe", {}}).status();
  } else if (op == "diff") {
    s = ws->Diff().status();
  } else if (op == "diffbranch") {
    s = repo->DiffBranch(id).status();
  } else if (op == "remove") {
    s = repo->RemoveWorkspace(id, loom::repos::BranchDisposition::kDelete);
  } else {
    fprintf(stderr, "unknown operation %s\n", op.c_str());
    return 2;
  }
  Mark("/loom-probe-end");
  return s.ok() ? 0 : Fail(s);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "setup") return Setup(argv[2], atoi(argv[3]));
  if (argc == 4) return Op(argv[1], argv[2], argv[3]);
  fprintf(stderr, "usage: %s setup DIR N | OP DIR ID\n", argv[0]);
  return 2;
}
