#include "common/schema.h"

namespace loom {

const std::vector<Migration>& LoomMigrations() {
  static const std::vector<Migration> kMigrations = {
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
      {6, R"sql(
        -- Why the item's task ended (failed, rejected, cancelled) or its answer.
        ALTER TABLE feedback ADD COLUMN resolution TEXT;
        -- Budget an engineer added on a retry, over the policy's.
        ALTER TABLE tasks ADD COLUMN extra_steps INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE tasks ADD COLUMN extra_tokens INTEGER NOT NULL DEFAULT 0;
        -- (escalations.state may now also be 'closed': its task was cancelled.)
      )sql"},
  };
  return kMigrations;
}

std::string DatabasePath(const std::string& data_dir) { return data_dir + "/loom.db"; }

}  // namespace loom
