// The orchestrator's stores on the one connection they share (store_db.h), as
// loomd opens them: repositories, tasks and their events, escalations.
#pragma once

#include <memory>
#include <string>

#include "common/clock.h"
#include "common/status.h"
#include "orchestrator/escalation_store.h"
#include "orchestrator/repo_store.h"
#include "orchestrator/store_db.h"
#include "orchestrator/task_store.h"

namespace loom {

struct OrchestratorStores {
  // Opens them on the database at `db_path`, which MigrateDatabase (schema.h)
  // made current. REQUIRES: `clock` outlives the stores.
  static Result<OrchestratorStores> Open(const std::string& db_path,
                                         const Clock* clock = SystemClock::Default());

  std::shared_ptr<StoreDb> db;
  std::unique_ptr<RepoStore> repos;
  std::unique_ptr<TaskStore> tasks;              // uses `repos`
  std::unique_ptr<EscalationStore> escalations;  // uses `tasks`
};

}  // namespace loom
