// The schema of loomd's database (loom.db in the data directory), as numbered
// migrations. Every component that opens the database opens it with these, so
// the whole history of the schema is in one place. Append; never edit a
// migration that has shipped.
#pragma once

#include <string>
#include <vector>

#include "common/db.h"

namespace loom {

const std::vector<Migration>& LoomMigrations();
// <data_dir>/loom.db
std::string DatabasePath(const std::string& data_dir);

}  // namespace loom
