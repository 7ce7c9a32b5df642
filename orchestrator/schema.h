// loomd's database (loom.db in the data directory) and its one ordered list of
// migrations, assembled here from the migrations each module declares beside
// the tables it owns: tokens (common/auth.h), feedback (feedback/intake.h),
// repositories (repo_store.h), tasks and their events (task_store.h),
// escalations (escalation_store.h), secrets (secrets.h). The numbering is
// global and shared: a version several modules contribute to runs their SQL
// in one transaction, in the order listed in schema.cc. Append; never edit a
// migration that has shipped.
//
// loomd migrates the database once at start (MigrateDatabase), before any
// store opens it; the stores open it as it is (Db::OpenMigrated).
#pragma once

#include <string>
#include <vector>

#include "common/db.h"
#include "common/status.h"

namespace loom {

const std::vector<Migration>& LoomMigrations();

// <data_dir>/loom.db
std::string DatabasePath(const std::string& data_dir);

// Creates the database at `db_path` if needed and applies the migrations it has
// not seen. FailedPrecondition for a database newer than this binary.
Status MigrateDatabase(const std::string& db_path);

}  // namespace loom
