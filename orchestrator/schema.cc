// The order of the modules below is part of the schema: within one version,
// their SQL runs in this order (a later module's statements may refer to an
// earlier one's tables).
#include "orchestrator/schema.h"

#include "common/auth.h"
#include "feedback/intake.h"
#include "orchestrator/escalation_store.h"
#include "orchestrator/forge_store.h"
#include "orchestrator/repo_store.h"
#include "orchestrator/secrets.h"
#include "orchestrator/task_store.h"
#include "orchestrator/webhook_outbox.h"

namespace loom {

const std::vector<Migration>& LoomMigrations() {
  static const std::vector<Migration> kMigrations = AssembleMigrations({
      TokenMigrations(),
      feedback::Migrations(),
      RepoStore::Migrations(),
      TaskStore::Migrations(),
      EscalationStore::Migrations(),
      SecretStore::Migrations(),
      ForgeStore::Migrations(),
      WebhookOutbox::Migrations(),
  });
  return kMigrations;
}

std::string DatabasePath(const std::string& data_dir) { return data_dir + "/loom.db"; }

Status MigrateDatabase(const std::string& db_path) {
  return Db::Open(db_path, LoomMigrations()).status();
}

}  // namespace loom
