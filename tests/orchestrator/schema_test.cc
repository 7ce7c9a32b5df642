// The schema, assembled from every module's migrations, is the schema loomd had
// when common/schema.cc defined all of them: a database made before the split
// opens unchanged, and a new database gets exactly the same tables.
#include "orchestrator/schema.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <tuple>

#include "common/auth.h"
#include "feedback/intake.h"
#include "orchestrator/stores.h"
#include "tests/support/temp_dir.h"

namespace loom {
namespace {

// common/schema.cc's migrations as they shipped before each module declared its
// own (versions 1-5), verbatim. Frozen: never edit.
const std::vector<Migration> kShippedBeforeTheSplit = {
    {1, R"sql(
        CREATE TABLE tokens(
          id INTEGER PRIMARY KEY,
          hash TEXT NOT NULL UNIQUE,          -- sha256 of the bearer token; the token itself is never stored
          role TEXT NOT NULL CHECK(role IN ('reporter', 'engineer', 'admin')),
          name TEXT NOT NULL DEFAULT '',
          created_at INTEGER NOT NULL,
          revoked_at INTEGER
        );
        CREATE TABLE feedback(
          id INTEGER PRIMARY KEY,
          kind TEXT NOT NULL CHECK(kind IN ('bug', 'feature', 'question')),
          title TEXT NOT NULL,
          body TEXT NOT NULL,
          reporter TEXT,
          app_version TEXT,
          commit_sha TEXT,
          url TEXT,
          logs TEXT,
          stack_trace TEXT,
          repo TEXT,
          context TEXT NOT NULL DEFAULT '{}',  -- a JSON object
          status TEXT NOT NULL,                -- new | duplicate | triaged | ... (see docs/api.md)
          fingerprint TEXT NOT NULL,
          duplicate_of INTEGER REFERENCES feedback(id),
          reporter_count INTEGER NOT NULL DEFAULT 1,
          token_id INTEGER NOT NULL REFERENCES tokens(id),
          idempotency_key TEXT,
          created_at INTEGER NOT NULL
        );
        CREATE INDEX feedback_fingerprint ON feedback(fingerprint) WHERE duplicate_of IS NULL;
        CREATE INDEX feedback_token ON feedback(token_id, id);
        CREATE UNIQUE INDEX feedback_idempotency ON feedback(token_id, idempotency_key)
          WHERE idempotency_key IS NOT NULL;
        CREATE TABLE feedback_reporters(
          feedback_id INTEGER NOT NULL REFERENCES feedback(id),
          reporter TEXT NOT NULL,
          PRIMARY KEY(feedback_id, reporter)
        ) WITHOUT ROWID;
      )sql"},
    {2, R"sql(
        CREATE TABLE repos(
          id INTEGER PRIMARY KEY,
          name TEXT NOT NULL UNIQUE,
          path TEXT NOT NULL,
          target_branch TEXT NOT NULL,
          test_command TEXT NOT NULL,
          created_at INTEGER NOT NULL
        );
        CREATE TABLE tasks(
          id INTEGER PRIMARY KEY,
          repo TEXT NOT NULL,
          kind TEXT NOT NULL,               -- bug | feature | question (from the feedback)
          title TEXT NOT NULL,
          instructions TEXT NOT NULL,       -- what the agent is asked to do
          state TEXT NOT NULL,              -- see orchestrator/task_store.h
          reason TEXT NOT NULL DEFAULT '',  -- why it is in this state
          branch TEXT,
          base_commit TEXT,
          steps INTEGER NOT NULL DEFAULT 0,
          prompt_tokens INTEGER NOT NULL DEFAULT 0,
          completion_tokens INTEGER NOT NULL DEFAULT 0,
          test_runs INTEGER NOT NULL DEFAULT 0,
          requested_by INTEGER,             -- token id of the first reporter
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL
        );
        CREATE INDEX tasks_state ON tasks(state, id);
        CREATE TABLE task_feedback(
          task_id INTEGER NOT NULL REFERENCES tasks(id),
          feedback_id INTEGER NOT NULL REFERENCES feedback(id),
          PRIMARY KEY(task_id, feedback_id)
        ) WITHOUT ROWID;
        ALTER TABLE feedback ADD COLUMN task_id INTEGER REFERENCES tasks(id);
        CREATE TABLE events(
          id INTEGER PRIMARY KEY,
          task_id INTEGER NOT NULL REFERENCES tasks(id),
          seq INTEGER NOT NULL,             -- 1, 2, 3, ... per task
          type TEXT NOT NULL,
          data TEXT NOT NULL,               -- JSON
          created_at INTEGER NOT NULL,
          UNIQUE(task_id, seq)
        );
        CREATE TABLE escalations(
          id INTEGER PRIMARY KEY,
          task_id INTEGER REFERENCES tasks(id),
          kind TEXT NOT NULL,               -- api_key | gpu | network | approval | question
          summary TEXT NOT NULL,
          secret_name TEXT,
          raised_by TEXT NOT NULL,          -- agent | orchestrator
          state TEXT NOT NULL DEFAULT 'open',  -- open | answered
          answer TEXT,                      -- JSON
          answered_by INTEGER,
          created_at INTEGER NOT NULL,
          answered_at INTEGER
        );
        CREATE INDEX escalations_state ON escalations(state, id);
      )sql"},
    {3, R"sql(
        CREATE TABLE secrets(
          name TEXT PRIMARY KEY,
          sealed TEXT NOT NULL,             -- AES-256-GCM, hex(nonce || ciphertext || tag)
          updated_at INTEGER NOT NULL
        );
      )sql"},
    {4, R"sql(
        ALTER TABLE tokens ADD COLUMN expires_at INTEGER;  -- ms since the epoch; NULL: never
      )sql"},
    {5, R"sql(
        ALTER TABLE tasks ADD COLUMN answer TEXT;  -- a question's answer (state answered)
      )sql"},
    // Added after the split, here in one piece as it would have been written
    // before it: the modules' parts of version 6 must make the same schema.
    {6, R"sql(
        ALTER TABLE feedback ADD COLUMN resolution TEXT;
        ALTER TABLE tasks ADD COLUMN extra_steps INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE tasks ADD COLUMN extra_tokens INTEGER NOT NULL DEFAULT 0;
      )sql"},
    {7, R"sql(
        CREATE INDEX feedback_untriaged ON feedback(token_id, id)
          WHERE task_id IS NULL AND status IN ('new', 'duplicate');
        CREATE INDEX feedback_task ON feedback(task_id) WHERE task_id IS NOT NULL;
        CREATE INDEX feedback_status ON feedback(status, id);
        CREATE INDEX escalations_task ON escalations(task_id, id) WHERE task_id IS NOT NULL;
      )sql"},
    {8, R"sql(
        -- The web origins whose pages may use a reporter token from a browser (CORS).
        CREATE TABLE token_origins(
          token_id INTEGER NOT NULL REFERENCES tokens(id),
          origin TEXT NOT NULL,                -- normalised: https://app.example[:port]
          PRIMARY KEY(token_id, origin)
        ) WITHOUT ROWID;
        CREATE INDEX token_origins_by_origin ON token_origins(origin);
      )sql"},
};

// type/name -> (table, SQL) of every schema object.
std::map<std::string, std::tuple<std::string, std::string>> SchemaOf(const std::string& path) {
  auto db = Db::OpenMigrated(path);
  EXPECT_TRUE(db.ok()) << db.status().ToString();
  std::map<std::string, std::tuple<std::string, std::string>> out;
  if (!db.ok()) return out;
  auto q = (*db)->Prepare("SELECT type, name, tbl_name, sql FROM sqlite_master");
  EXPECT_TRUE(q.ok());
  while (*(*q)->Step()) {
    out[(*q)->Text(0) + "/" + (*q)->Text(1)] = {(*q)->Text(2), (*q)->Text(3)};
  }
  return out;
}

TEST(SchemaTest, VersionsAreOneToNWithoutGaps) {
  const std::vector<Migration>& all = LoomMigrations();
  ASSERT_FALSE(all.empty());
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].version, static_cast<int>(i) + 1);
}

// The assembled migrations up to the last version shipped before the split
// (later ones add tables of their own).
std::vector<Migration> AssembledUpToTheSplit() {
  std::vector<Migration> out;
  for (const Migration& m : LoomMigrations()) {
    if (m.version <= kShippedBeforeTheSplit.back().version) out.push_back(m);
  }
  return out;
}

TEST(SchemaTest, AssembledMigrationsMakeTheSameSchemaAsBeforeTheSplit) {
  testing::TempDir dir;
  ASSERT_TRUE(Db::Open(dir.File("before.db"), kShippedBeforeTheSplit).ok());
  ASSERT_TRUE(Db::Open(dir.File("after.db"), AssembledUpToTheSplit()).ok());
  auto before = SchemaOf(dir.File("before.db"));
  auto after = SchemaOf(dir.File("after.db"));
  EXPECT_GT(before.size(), 10u);
  EXPECT_EQ(before, after);
}

TEST(SchemaTest, ADatabaseMadeBeforeTheSplitOpensWithItsRows) {
  testing::TempDir dir;
  std::string path = DatabasePath(dir.path());
  {
    auto db = Db::Open(path, kShippedBeforeTheSplit);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(
        (*db)
            ->Exec("INSERT INTO tasks(repo, kind, title, instructions, state, "
                   "created_at, updated_at) VALUES('calc', 'bug', 't', 'i', 'queued', 1, 1)")
            .ok());
  }
  ASSERT_TRUE(MigrateDatabase(path).ok());
  auto db = Db::OpenMigrated(path);
  ASSERT_TRUE(db.ok());
  EXPECT_EQ((*db)->SchemaVersion(), LoomMigrations().back().version);
  auto stores = OrchestratorStores::Open(path);
  ASSERT_TRUE(stores.ok()) << stores.status().ToString();
  auto task = stores->tasks->Get(1);
  ASSERT_TRUE(task.ok()) << task.status().ToString();
  EXPECT_EQ(task->title, "t");
}

TEST(SchemaTest, StoresDoNotOpenADatabaseNobodyMigrated) {
  testing::TempDir dir;
  auto stores = OrchestratorStores::Open(DatabasePath(dir.path()));
  ASSERT_FALSE(stores.ok());
  EXPECT_EQ(stores.status().code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace loom
