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
  };
  return kMigrations;
}

std::string DatabasePath(const std::string& data_dir) { return data_dir + "/loom.db"; }

}  // namespace loom
