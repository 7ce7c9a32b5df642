#include "common/log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>

#include "common/json.h"
#include "common/secret_mask.h"

namespace loom::log {
namespace {

// Captures what the log writes, through a pipe.
class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::pipe2(fds_, O_NONBLOCK), 0);
    SetOutputFd(fds_[1]);
    SetFormat(Format::kText);
  }
  void TearDown() override {
    SetOutputFd(2);
    SetFormat(Format::kText);
    SetMasker(nullptr);
    ::unsetenv("JOURNAL_STREAM");
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  std::string Drain() {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fds_[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }
  int fds_[2];
};

TEST_F(LogTest, TextLinesCarryTheFieldsOfTheScopesAlive) {
  {
    Scope task("task_id", "7");
    Scope repo("repo", "my app");
    LOOM_LOG(kInfo) << "leased";
  }
  LOOM_LOG(kInfo) << "idle";
  std::string out = Drain();
  auto first = out.substr(0, out.find('\n'));
  auto second = out.substr(out.find('\n') + 1);
  EXPECT_NE(first.find("] leased task_id=7 repo=\"my app\""), std::string::npos) << first;
  EXPECT_NE(second.find("] idle\n"), std::string::npos) << second;
}

TEST_F(LogTest, AnInnerScopeShadowsAnOuterOneWithTheSameKey) {
  Scope outer("request_id", "outer");
  {
    Scope inner("request_id", "inner");
    EXPECT_EQ(CurrentField("request_id"), "inner");
    LOOM_LOG(kInfo) << "x";
  }
  EXPECT_EQ(CurrentField("request_id"), "outer");
  EXPECT_EQ(CurrentField("task_id"), "");
  std::string out = Drain();
  EXPECT_NE(out.find("request_id=inner"), std::string::npos) << out;
  EXPECT_EQ(out.find("outer"), std::string::npos) << out;
}

TEST_F(LogTest, ScopesBelongToTheirThread) {
  Scope here("task_id", "1");
  std::thread([] { LOOM_LOG(kInfo) << "other thread"; }).join();
  std::string out = Drain();
  EXPECT_NE(out.find("other thread"), std::string::npos);
  EXPECT_EQ(out.find("task_id"), std::string::npos) << out;
}

TEST_F(LogTest, JsonLinesCarryTheFieldsAsMembersAndMaskThem) {
  auto masker = std::make_shared<SecretMasker>();
  masker->Add("pw", "hunter2hunter2");
  SetMasker(masker);
  SetFormat(Format::kJson);
  {
    Scope task("task_id", "42");
    Scope repo("repo", "leak-hunter2hunter2");
    LOOM_LOG(kWarning) << "said \"hi\"";
  }
  auto j = ParseJson(Drain());
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_EQ((*j)["level"], "warning");
  EXPECT_EQ((*j)["msg"], "said \"hi\"");
  EXPECT_EQ((*j)["task_id"], "42");
  std::string repo = (*j)["repo"].get<std::string>();
  EXPECT_EQ(repo.find("hunter2hunter2"), std::string::npos) << repo;
  EXPECT_EQ(repo.rfind("leak-", 0), 0u) << repo;
}

TEST_F(LogTest, TheJournalGetsPriorityPrefixesInsteadOfTimestamps) {
  LOOM_LOG(kInfo) << "before";
  EXPECT_EQ(Drain().rfind("20", 0), 0u);  // an ISO time
  struct stat st {};
  ASSERT_EQ(::fstat(fds_[1], &st), 0);
  std::string stream = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  ::setenv("JOURNAL_STREAM", stream.c_str(), 1);
  SetOutputFd(fds_[1]);  // checks the stream again
  LOOM_LOG(kWarning) << "to the journal";
  LOOM_LOG(kInfo) << "info";
  std::string out = Drain();
  EXPECT_EQ(out.rfind("<4>warning ", 0), 0u) << out;
  EXPECT_NE(out.find("\n<6>info "), std::string::npos) << out;
}

}  // namespace
}  // namespace loom::log
