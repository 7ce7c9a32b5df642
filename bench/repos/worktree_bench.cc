// Benchmark: task worktree creation on a 20,000-file repository, Loom (libgit2)
// against `git worktree add` measured in the same run on the same repository, and
// the cost of an edit with its snapshot. Prints medians and the ratio.
//
//   repos_bench [--files N] [--runs R] [--edits E]
//
// The scratch directory (about 200 MB) is made under $TMPDIR and removed at exit.
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "repos/workspace.h"

namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

int Run(const std::string& cmd) {
  std::string full =
      "export GIT_AUTHOR_NAME=B GIT_AUTHOR_EMAIL=b@b GIT_COMMITTER_NAME=B "
      "GIT_COMMITTER_EMAIL=b@b GIT_CONFIG_NOSYSTEM=1; " +
      cmd;
  return system(full.c_str());
}

// A repository with `files` files (about 600 bytes each, 100 per directory) in
// one commit on main, written with git fast-import.
bool MakeRepo(const std::string& repo, int files) {
  Run("git init -q -b main " + repo);
  std::string stream_path = repo + "/../stream";
  {
    std::ofstream s(stream_path, std::ios::binary);
    s << "commit refs/heads/main\ncommitter B <b@b> 1700000000 +0000\ndata 4\nbig\n";
    for (int i = 0; i < files; ++i) {
      char path[64];
      snprintf(path, sizeof path, "d%03d/f%05d.txt", i / 100, i);
      std::string body;
      for (int k = 0; k < 12; ++k) {
        body += "line " + std::to_string(k) + " of file " + std::to_string(i) +
                " with some text to make it realistic\n";
      }
      s << "M 100644 inline " << path << "\ndata " << body.size() << "\n" << body << "\n";
    }
  }
  if (Run("cd " + repo + " && git fast-import --quiet < " + stream_path) != 0) {
    fprintf(stderr, "fast-import failed\n");
    return false;
  }
  return Run("cd " + repo + " && git reset -q --hard main") == 0;
}

}  // namespace

int main(int argc, char** argv) {
  int files = 20000, runs = 5, edits = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--files")) files = atoi(argv[i + 1]);
    if (!strcmp(argv[i], "--runs")) runs = atoi(argv[i + 1]);
    if (!strcmp(argv[i], "--edits")) edits = atoi(argv[i + 1]);
  }
  std::string tmpl = (std::filesystem::temp_directory_path() / "loom-bench-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) return 1;
  const std::string dir = tmpl, repo_path = dir + "/repo";
  // Removed on every return, errors included (declared first: destroyed last).
  struct RemoveOnExit {
    std::string path;
    ~RemoveOnExit() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  } scratch{dir};
  if (!MakeRepo(repo_path, files)) return 1;

  auto rec = loom::repos::CheckRepository({"bench", repo_path, "", "", {}});
  if (!rec.ok()) {
    fprintf(stderr, "%s\n", rec.status().ToString().c_str());
    return 1;
  }
  auto repo = loom::repos::Repository::Open(*rec, dir + "/wts");
  if (!repo.ok()) {
    fprintf(stderr, "%s\n", repo.status().ToString().c_str());
    return 1;
  }

  std::vector<double> git_ms, loom_ms;
  for (int r = -1; r < runs; ++r) {  // r == -1: warm-up, not counted
    std::string n = std::to_string(r + 1);
    std::string git_path = dir + "/git-wt-" + n;
    auto t0 = Clock::now();
    if (Run("git -C " + repo_path + " worktree add -q -b gitbench-" + n + " " + git_path +
            " main") != 0) {
      return 1;
    }
    double g = MsSince(t0);
    Run("git -C " + repo_path + " worktree remove --force " + git_path);

    t0 = Clock::now();
    auto ws = (*repo)->CreateWorkspace("bench" + n, "bench");
    double l = MsSince(t0);
    if (!ws.ok()) {
      fprintf(stderr, "%s\n", ws.status().ToString().c_str());
      return 1;
    }
    ws->reset();
    (void)(*repo)->RemoveWorkspace("bench" + n, loom::repos::BranchDisposition::kDelete);
    if (r >= 0) {
      git_ms.push_back(g);
      loom_ms.push_back(l);
      printf("run %d: git worktree add %.1f ms, loom CreateWorkspace %.1f ms\n", r, g, l);
    }
  }
  double gm = Median(git_ms), lm = Median(loom_ms);
  printf("worktree (%d files, %d runs): git median %.1f ms, loom median %.1f ms, ratio %.2f\n",
         files, runs, gm, lm, lm / gm);

  auto ws = (*repo)->CreateWorkspace("edits", "edits");
  if (!ws.ok()) return 1;
  std::vector<double> edit_ms;
  for (int i = 0; i < edits; ++i) {
    char path[64];
    snprintf(path, sizeof path, "d%03d/f%05d.txt", (i * 37) % (files / 100),
             ((i * 37) % (files / 100)) * 100);
    auto t0 = Clock::now();
    loom::Status s;
    if (i % 2 == 0) {
      s = (*ws)
              ->WriteFile(std::string("new/agent_") + std::to_string(i) + ".txt",
                          "content " + std::to_string(i) + "\n")
              .status();
    } else {
      s = (*ws)->ReplaceInFile(path, "line 3 of", "LINE 3 OF").status();
    }
    edit_ms.push_back(MsSince(t0));
    if (!s.ok()) {
      fprintf(stderr, "edit %d: %s\n", i, s.ToString().c_str());
      return 1;
    }
  }
  printf("edits with snapshots (%d): median %.2f ms, p90 %.2f ms, max %.2f ms\n", edits,
         Median(edit_ms), Percentile(edit_ms, 0.9),
         *std::max_element(edit_ms.begin(), edit_ms.end()));
  ws->reset();
  return 0;
}
