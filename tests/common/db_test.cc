#include "common/db.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "tests/support/temp_dir.h"

namespace loom {
namespace {

const std::vector<Migration> kV1 = {
    {1, "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT UNIQUE)"}};
const std::vector<Migration> kV2 = {kV1[0], {2, "ALTER TABLE t ADD COLUMN n INTEGER DEFAULT 7"}};

TEST(DbTest, AppliesMigrationsOnceAndInOrder) {
  testing::TempDir dir;
  {
    auto db = Db::Open(dir.File("x.db"), kV1);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    EXPECT_EQ((*db)->SchemaVersion(), 1);
    auto* ins = *(*db)->Prepare("INSERT INTO t(name) VALUES(?)");
    ASSERT_TRUE(ins->BindAll("a").Run().ok());
  }
  auto db = Db::Open(dir.File("x.db"), kV2);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  EXPECT_EQ((*db)->SchemaVersion(), 2);
  auto* q = *(*db)->Prepare("SELECT name, n FROM t");
  ASSERT_TRUE(*q->Step());
  EXPECT_EQ(q->Text(0), "a");
  EXPECT_EQ(q->Int(1), 7);
}

TEST(DbTest, RefusesADatabaseNewerThanTheBinary) {
  testing::TempDir dir;
  ASSERT_TRUE(Db::Open(dir.File("x.db"), kV2).ok());
  auto db = Db::Open(dir.File("x.db"), kV1);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), StatusCode::kFailedPrecondition);
}

TEST(DbTest, UncommittedTransactionIsRolledBack) {
  testing::TempDir dir;
  auto db = std::move(Db::Open(dir.File("x.db"), kV1)).value();
  {
    Transaction tx(db.get());
    ASSERT_TRUE(tx.Begin().ok());
    ASSERT_TRUE((*db->Prepare("INSERT INTO t(name) VALUES('gone')"))->Run().ok());
  }
  auto* q = *db->Prepare("SELECT count(*) FROM t");
  ASSERT_TRUE(*q->Step());
  EXPECT_EQ(q->Int(0), 0);
}

TEST(DbTest, ConstraintViolationIsAlreadyExists) {
  testing::TempDir dir;
  auto db = std::move(Db::Open(dir.File("x.db"), kV1)).value();
  auto* ins = *db->Prepare("INSERT INTO t(name) VALUES(?)");
  ASSERT_TRUE(ins->BindAll("dup").Run().ok());
  Status s = ins->BindAll("dup").Run();
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.ToString();
}

TEST(DbTest, QueryOneReadsTheRowOrSaysNotFound) {
  testing::TempDir dir;
  auto db = std::move(Db::Open(dir.File("x.db"), kV1)).value();
  ASSERT_TRUE((*db->Prepare("INSERT INTO t(name) VALUES('a')"))->Run().ok());
  auto name = [](const Statement& r) { return r.Text(0); };
  auto found = db->QueryOne("SELECT name FROM t WHERE id=?", "no row 1", name, 1);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  EXPECT_EQ(*found, "a");
  auto missing = db->QueryOne("SELECT name FROM t WHERE id=?", "no row 9", name, 9);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "no row 9");
  auto maybe = db->QueryOptional("SELECT name FROM t WHERE name=?", name, "b");
  ASSERT_TRUE(maybe.ok());
  EXPECT_FALSE(maybe->has_value());
}

TEST(DbTest, QueryOneLeavesNoReadOpen) {
  testing::TempDir dir;
  auto db = std::move(Db::Open(dir.File("x.db"), kV1)).value();
  ASSERT_TRUE((*db->Prepare("INSERT INTO t(name) VALUES('a'), ('b')"))->Run().ok());
  auto id = db->QueryOne("SELECT id FROM t ORDER BY id", "empty",
                         [](const Statement& r) { return r.Int(0); });
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*id, 1);
  // A statement left on a row would hold a read transaction; a writer on a
  // second connection could not checkpoint, and DROP would be refused as busy.
  EXPECT_TRUE(db->Exec("DROP TABLE t").ok());
}

TEST(DbTest, AssembledMigrationsMergeModulesByVersionInModuleOrder) {
  const std::vector<Migration> a = {{1, "CREATE TABLE a(id INTEGER);"},
                                    {3, "ALTER TABLE a ADD COLUMN x INTEGER;"}};
  const std::vector<Migration> b = {{1, "CREATE TABLE b(a_id INTEGER REFERENCES a(id));"},
                                    {2, "CREATE TABLE c(id INTEGER);"}};
  std::vector<Migration> all = AssembleMigrations({a, b});
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].version, 1);
  EXPECT_EQ(all[0].sql, a[0].sql + b[0].sql);
  EXPECT_EQ(all[1].version, 2);
  EXPECT_EQ(all[2].version, 3);
  testing::TempDir dir;
  auto db = Db::Open(dir.File("x.db"), all);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  EXPECT_EQ((*db)->SchemaVersion(), 3);
}

TEST(DbTest, MigrationsOutOfOrderAreRefused) {
  testing::TempDir dir;
  auto db = Db::Open(dir.File("x.db"), {kV2[1], kV1[0]});
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), StatusCode::kInternal);
}

TEST(DbTest, OpenMigratedTakesTheSchemaAsItIsAndRefusesNone) {
  testing::TempDir dir;
  auto none = Db::OpenMigrated(dir.File("x.db"));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(Db::Open(dir.File("x.db"), kV2).ok());
  auto db = Db::OpenMigrated(dir.File("x.db"));
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  EXPECT_EQ((*db)->SchemaVersion(), 2);
}

TEST(DbTest, GarbageFileIsCorruption) {
  testing::TempDir dir;
  FILE* f = std::fopen(dir.File("bad.db").c_str(), "w");
  std::fputs("this is not a database, just some text that is long enough to look like a header", f);
  std::fclose(f);
  auto db = Db::Open(dir.File("bad.db"), kV1);
  ASSERT_FALSE(db.ok());
  EXPECT_NE(db.status().message().find("bad.db"), std::string::npos) << db.status().ToString();
}

// Opening a second connection must not drop the locks of the first (closing any
// descriptor of the file drops all of a process's POSIX locks on it): another
// process that closes its last connection would then take itself for the last
// one and delete the -wal and -shm files under the first, whose reads go stale.
TEST(DbTest, AnotherProcessWritesAreSeenAfterASecondConnectionOpens) {
  testing::TempDir dir;
  std::string path = dir.File("x.db");
  auto first = Db::Open(path, kV1);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE((*first)->Exec("INSERT INTO t(name) VALUES('before')").ok());
  auto name = [&] {
    return *(*first)->QueryOne("SELECT name FROM t WHERE id=1", "none",
                               [](const Statement& r) { return r.Text(0); });
  };
  EXPECT_EQ(name(), "before");
  auto second = Db::OpenMigrated(path);
  ASSERT_TRUE(second.ok());
  // A process of its own (a forked child would share this one's SQLite state).
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    execlp("python3", "python3", "-c",
           "import sqlite3, sys\n"
           "db = sqlite3.connect(sys.argv[1])\n"
           "db.execute(\"UPDATE t SET name='after'\")\n"
           "db.commit()\n"
           "db.close()\n",
           path.c_str(), nullptr);
    _exit(127);
  }
  int wstatus = 0;
  ASSERT_EQ(waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
  EXPECT_TRUE(std::filesystem::exists(path + "-wal")) << "the other process deleted the WAL";
  EXPECT_EQ(name(), "after");
}

}  // namespace
}  // namespace loom
