// The orchestrator's routes run off the HTTP I/O threads: a request that waits
// (here on a database another connection holds for writing) leaves the I/O
// thread free for everyone else, and reads do not queue behind it.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "common/db.h"
#include "common/json.h"
#include "orchestrator/schema.h"
#include "repos/workspace.h"
#include "tests/support/daemon_fixture.h"

namespace loom {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

class ApiThreadsTest : public testing::DaemonFixture {};

TEST_F(ApiThreadsTest, ARequestWaitingOnTheDatabaseDoesNotStallTheIoThread) {
  StartDaemon({{"http.threads", "1"}});
  std::string repo = dir_.path() + "/app";
  std::filesystem::create_directories(repo);
  ASSERT_TRUE(repos::InitRepository(repo, "main", "initial").ok());
  ASSERT_EQ(Call("GET", "/v1/repos", admin_).status, 200);  // the token is known

  auto locker = Db::Open(DatabasePath(dir_.path()), LoomMigrations());
  ASSERT_TRUE(locker.ok()) << locker.status().ToString();
  ASSERT_TRUE((*locker)->Exec("BEGIN IMMEDIATE").ok());  // writers wait (busy timeout 5 s)
  testing::ClientResponse added;
  std::thread writer([&] {
    Json body = {{"name", "app"}, {"path", repo}, {"test_command", "true"}};
    added = Call("POST", "/v1/repos", admin_, DumpJson(body));
  });
  std::this_thread::sleep_for(milliseconds(300));  // the POST is waiting on the lock

  auto start = steady_clock::now();
  EXPECT_EQ(testing::HttpCall(daemon_->port(), "GET", "/healthz").status, 200);
  EXPECT_EQ(Call("GET", "/v1/feedback", engineer_).status, 200);  // a read: WAL lets it by
  // The task routes read on the stores' read-only connection: they answer too,
  // though the POST holds the stores' write connection while it waits.
  EXPECT_EQ(Call("GET", "/v1/tasks", engineer_).status, 200);
  EXPECT_EQ(Call("GET", "/v1/escalations", engineer_).status, 200);
  EXPECT_EQ(Call("GET", "/v1/repos", engineer_).status, 200);
  EXPECT_LT(steady_clock::now() - start, milliseconds(2000));

  ASSERT_TRUE((*locker)->Exec("COMMIT").ok());
  writer.join();
  EXPECT_EQ(added.status, 201) << added.body;
}

}  // namespace
}  // namespace loom
