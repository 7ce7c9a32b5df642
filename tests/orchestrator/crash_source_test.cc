#include "orchestrator/crash_source.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "repos/workspace.h"
#include "tests/support/temp_dir.h"

namespace loom {
namespace {

class CrashSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_ = dir_.path() + "/app";
    std::filesystem::create_directories(repo_ + "/src");
    std::filesystem::create_directories(repo_ + "/static");
    std::ofstream calc(repo_ + "/src/calc.py");
    for (int i = 1; i <= 10; ++i) calc << "line" << i << "\n";
    calc.close();
    std::ofstream(repo_ + "/static/app.js") << "a();\nb();\nthrow new Error('x');\n";
    auto commit = repos::InitRepository(repo_, "main", "initial");
    ASSERT_TRUE(commit.ok()) << commit.status().ToString();
    commit_ = *commit;
    // The working tree moves on; the commit is what counts.
    std::ofstream(repo_ + "/src/calc.py") << "changed since\n";
  }
  std::string Task(const std::string& commit, const std::string& trace) {
    return "A user reported a bug.\nTitle: ZeroDivisionError\n\nbody\n\nCommit:\n" + commit +
           "\n\nStack trace:\n" + trace + "\nLogs:\nclick\n";
  }

  testing::TempDir dir_;
  std::string repo_, commit_;
};

TEST_F(CrashSourceTest, ABareInAppFrameGetsTheLinesOfTheCommit) {
  std::string in = Task(commit_.substr(0, 10),
                        "ZeroDivisionError: division by zero\n"
                        "    at average (/srv/app/src/calc.py:5)\n"
                        "    at <module> (lib/runner.py:1) [library]\n");
  std::string out = WithSourceAtCommit(in, repo_);
  EXPECT_NE(out.find("    at average (/srv/app/src/calc.py:5)\n"
                     "        2 | line2\n        3 | line3\n        4 | line4\n"
                     "      > 5 | line5\n        6 | line6\n        7 | line7\n"
                     "        8 | line8\n"
                     "        (src/calc.py at " +
                     commit_.substr(0, 10) +
                     ", read by Loom)\n"
                     "    at <module> (lib/runner.py:1) [library]\n"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("changed since"), std::string::npos);
  EXPECT_NE(out.find("\nLogs:\nclick\n"), std::string::npos) << "the rest is kept";
}

TEST_F(CrashSourceTest, ABrowserFrameIsFoundByItsUrlsPath) {
  std::string out = WithSourceAtCommit(
      Task(commit_, "Error: x\n    at onClick (http://localhost:8080/static/app.js:3:7)\n"), repo_);
  EXPECT_NE(out.find("      > 3 | throw new Error('x');\n"), std::string::npos) << out;
  EXPECT_NE(out.find("        1 | a();\n"), std::string::npos) << out;
}

TEST_F(CrashSourceTest, WhatCannotBeResolvedIsLeftAsItWas) {
  std::string with_sdk_lines = "E: x\n    at average (src/calc.py:5)\n      > 5 | return a / b\n";
  std::string bare = "E: x\n    at average (src/calc.py:5)\n";
  for (const std::string& in :
       {Task(commit_, with_sdk_lines),                         // the SDK sent its lines
        Task("not-a-sha", bare),                               // no commit named
        Task("0123456789abcdef", bare),                        // a commit the repository lacks
        Task(commit_, "E: x\n    at f (src/missing.py:5)\n"),  // a file it lacks
        Task(commit_, "E: x\n    at f (src/calc.py:99)\n"),    // past its end
        Task(commit_, "E: x\n    at f (../../etc/passwd:1)\n")}) {
    EXPECT_EQ(WithSourceAtCommit(in, repo_), in);
  }
  std::string no_commit = "Title: t\n\nStack trace:\n" + bare;
  EXPECT_EQ(WithSourceAtCommit(no_commit, repo_), no_commit);
}

}  // namespace
}  // namespace loom
