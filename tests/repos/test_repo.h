// Test helpers: temp directories and real git repositories built with the git CLI
// (the product code never runs git; tests use it to make fixtures and to check).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace loom::repos::test_util {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "loom-repos-XXXXXX").string();
    char* p = mkdtemp(tmpl.data());
    if (p) path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs a shell command; returns its stdout. Fails the test on a non-zero exit.
inline std::string Sh(const std::string& cmd) {
  std::string full =
      "export GIT_AUTHOR_NAME=Tester GIT_AUTHOR_EMAIL=t@example.com "
      "GIT_COMMITTER_NAME=Tester GIT_COMMITTER_EMAIL=t@example.com GIT_CONFIG_NOSYSTEM=1 "
      "HOME=/nonexistent; " +
      cmd;
  FILE* f = popen(full.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  int rc = pclose(f);
  EXPECT_EQ(rc, 0) << "command failed: " << cmd << "\n" << out;
  return out;
}

inline std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

inline void WriteRaw(const std::string& path, const std::string& content) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

inline std::string ReadRaw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline bool Exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(std::filesystem::symlink_status(path, ec));
}

// A repository with a commit on `main`: text, CRLF, binary, unicode and nested
// files, an executable, a symlink, and a file with an eol=crlf attribute.
inline std::string MakeFixtureRepo(const std::string& dir) {
  std::string repo = dir + "/origin";
  Sh("git init -q -b main " + repo);
  WriteRaw(repo + "/README.md", "# demo\n");
  WriteRaw(repo + "/src/app.cc", "int Add(int a, int b) {\n  return a + b;\n}\n");
  WriteRaw(repo + "/src/dup.cc", "x = 1;\nx = 1;\n");
  WriteRaw(repo + "/crlf.txt", "one\r\ntwo\r\nthree\r\n");
  WriteRaw(repo + "/data.bin", std::string("\x00\x01\x02\xff\x00zz", 7));
  WriteRaw(repo + "/docs/guide.md", "guide\n");
  WriteRaw(repo +
               "/donn\xc3\xa9"
               "es/\xc3\xa9t\xc3\xa9.txt",
           "unicode\n");
  WriteRaw(repo + "/.gitattributes", "*.win text eol=crlf\n");
  WriteRaw(repo + "/notes.win", "alpha\nbeta\n");
  WriteRaw(repo + "/tool.sh", "#!/bin/sh\necho hi\n");
  Sh("cd " + repo +
     " && chmod +x tool.sh && ln -s README.md link.md && "
     "git -c core.autocrlf=false add -A && git commit -qm initial");
  return repo;
}

// `git -C dir args`, trimmed.
inline std::string Git(const std::string& dir, const std::string& args) {
  return Trimmed(Sh("git -C '" + dir + "' " + args));
}

// A new commit on `branch` of the (bare or not) repository `repo`, with the tree of
// `parent` and `parent` as its parent, made without a work tree; returns its id.
inline std::string CommitOnBranch(const std::string& repo, const std::string& branch,
                                  const std::string& parent, const std::string& message) {
  std::string c =
      Git(repo, "commit-tree " + parent + "^{tree} -p " + parent + " -m '" + message + "'");
  Git(repo, "update-ref refs/heads/" + branch + " " + c);
  return c;
}

}  // namespace loom::repos::test_util

namespace loom::repos {
// The helpers by their short names, for this module's tests.
using test_util::CommitOnBranch;
using test_util::Exists;
using test_util::Git;
using test_util::MakeFixtureRepo;
using test_util::ReadRaw;
using test_util::Sh;
using test_util::TempDir;
using test_util::Trimmed;
using test_util::WriteRaw;
}  // namespace loom::repos
