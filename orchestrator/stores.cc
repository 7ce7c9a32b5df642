#include "orchestrator/stores.h"

#include <filesystem>

namespace loom {

Result<OrchestratorStores> OrchestratorStores::Open(const std::string& db_path,
                                                    const Clock* clock) {
  OrchestratorStores s;
  LOOM_ASSIGN_OR_RETURN(s.db, StoreDb::Open(db_path, clock));
  // Repositories registered by URL are cloned beside the database.
  s.repos = std::make_unique<RepoStore>(
      s.db, (std::filesystem::path(db_path).parent_path() / "clones").string());
  s.tasks = std::make_unique<TaskStore>(s.db, s.repos.get());
  s.escalations = std::make_unique<EscalationStore>(s.db, s.tasks.get());
  return s;
}

}  // namespace loom
