#include "repos/internal/confined_fs.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "test_repo.h"

namespace loom::repos::internal {
namespace {

using test_util::Exists;
using test_util::ReadRaw;
using test_util::TempDir;
using test_util::WriteRaw;

TEST(ParseRelPathTest, NormalisesHarmlessForms) {
  Result<RelPath> p = ParseRelPath("./a//b/./c.txt", RootUse::kRefused);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->text, "a/b/c.txt");
  EXPECT_EQ(p->parts.size(), 3u);
}

TEST(ParseRelPathTest, RefusesEscapesAndGitDir) {
  for (const char* bad : {"../x", "a/../../x", "a/..", "/etc/passwd", ".git/config", ".GIT/HEAD",
                          "sub/.git/objects", ".Git"}) {
    Result<RelPath> p = ParseRelPath(bad, RootUse::kRefused);
    EXPECT_FALSE(p.ok()) << bad;
    EXPECT_EQ(p.status().code(), StatusCode::kPermissionDenied) << bad;
  }
  EXPECT_EQ(ParseRelPath(std::string("a\0b", 3), RootUse::kRefused).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseRelPath("", RootUse::kRefused).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(ParseRelPath("", RootUse::kAllowed).ok());
  EXPECT_TRUE(ParseRelPath(".gitignore", RootUse::kRefused).ok());
}

TEST(ConfinedDirTest, RefusesSymlinkedDirectoryAndLeaf) {
  TempDir tmp;
  std::string root = tmp.path() + "/root", outside = tmp.path() + "/outside";
  WriteRaw(outside + "/secret", "s3cret");
  WriteRaw(root + "/ok/file", "fine");
  ASSERT_EQ(symlink(outside.c_str(), (root + "/dirlink").c_str()), 0);
  ASSERT_EQ(symlink((outside + "/secret").c_str(), (root + "/leaflink").c_str()), 0);
  Result<ConfinedDir> dir = ConfinedDir::Open(root);
  ASSERT_TRUE(dir.ok());

  auto rel = [](const char* p) { return *ParseRelPath(p, RootUse::kRefused); };
  EXPECT_EQ(dir->ReadFile(rel("dirlink/secret")).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(dir->ReadFile(rel("leaflink")).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(dir->WriteFile(rel("dirlink/new"), "x", 0644).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(dir->WriteFile(rel("leaflink"), "x", 0644).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(dir->Rename(rel("ok/file"), rel("dirlink/file")).code(), StatusCode::kPermissionDenied);
  EXPECT_FALSE(Exists(outside + "/new"));
  EXPECT_FALSE(Exists(outside + "/file"));
  EXPECT_EQ(ReadRaw(outside + "/secret"), "s3cret");
  Status s = dir->ReadFile(rel("dirlink/secret")).status();
  EXPECT_NE(s.message().find("'dirlink' is a symbolic link"), std::string::npos) << s.message();
  // Listing twice sees the same entries (no shared directory position).
  ASSERT_EQ(dir->List(*ParseRelPath("", RootUse::kAllowed))->size(), 3u);
  ASSERT_EQ(dir->List(*ParseRelPath("", RootUse::kAllowed))->size(), 3u);
  ASSERT_EQ(dir->Walk(*ParseRelPath("", RootUse::kAllowed))->size(), 1u);
  ASSERT_EQ(dir->Walk(*ParseRelPath("", RootUse::kAllowed))->size(), 1u);
  Result<std::string> ok = dir->ReadFile(rel("ok/file"));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, "fine");
}

TEST(ConfinedDirTest, WriteKeepsModeAndRenameRefusesOverwrite) {
  TempDir tmp;
  std::string root = tmp.path();
  WriteRaw(root + "/run.sh", "#!/bin/sh\n");
  chmod((root + "/run.sh").c_str(), 0755);
  WriteRaw(root + "/other", "o");
  Result<ConfinedDir> dir = ConfinedDir::Open(root);
  ASSERT_TRUE(dir.ok());
  auto rel = [](const char* p) { return *ParseRelPath(p, RootUse::kRefused); };
  ASSERT_TRUE(dir->WriteFile(rel("run.sh"), "#!/bin/sh\necho\n", 0644).ok());
  struct stat st;
  ASSERT_EQ(stat((root + "/run.sh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  EXPECT_EQ(dir->Rename(rel("run.sh"), rel("other")).code(), StatusCode::kAlreadyExists);
  ASSERT_TRUE(dir->Rename(rel("run.sh"), rel("new/dir/run.sh")).ok());
  EXPECT_EQ(ReadRaw(root + "/new/dir/run.sh"), "#!/bin/sh\necho\n");
}

TEST(RemoveTreeNoFollowTest, NeverDeletesThroughSymlinks) {
  TempDir tmp;
  std::string root = tmp.path() + "/wt", outside = tmp.path() + "/keep";
  WriteRaw(outside + "/precious", "p");
  WriteRaw(root + "/a/b/c", "c");
  ASSERT_EQ(symlink(outside.c_str(), (root + "/a/link").c_str()), 0);
  ASSERT_TRUE(RemoveTreeNoFollow(root).ok());
  EXPECT_FALSE(Exists(root));
  EXPECT_EQ(ReadRaw(outside + "/precious"), "p");
}

}  // namespace
}  // namespace loom::repos::internal
