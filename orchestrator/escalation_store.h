// Escalations: what an agent or the orchestrator asks a person (an API key, a
// GPU, network access, an approval, an answer), and the person's answer.
// Answering one requeues its blocked task in the same transaction, through the
// task store on the shared connection (store_db.h). Thread-safe.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/db.h"
#include "common/json.h"
#include "common/status.h"
#include "orchestrator/store_db.h"
#include "orchestrator/task_store.h"

namespace loom {

struct Escalation {
  int64_t id = 0;
  std::optional<int64_t> task_id;
  std::string kind, summary, raised_by, state;
  std::optional<std::string> secret_name;
  Json answer;
  int64_t created_at_ms = 0;
  Json ToJson() const;
};

// GPUs a person granted a task: the answer to its `gpu` escalation carries
// {"gpu": {"type", "count", "minutes", "until_ms"}}. Until `until_ms` the task's
// sandbox runs ask for them (sandbox::RunSpec::gpus: a Slurm job in the GPU
// partition with --gres=gpu:<type>:<count>).
struct GpuGrant {
  int64_t escalation_id = 0;
  std::string type;
  uint32_t count = 0;
  int64_t minutes = 0;
  int64_t until_ms = 0;
  // {"escalation_id", "type", "count", "minutes", "until_ms"}
  Json ToJson() const;
};

// The grant an escalation's answer holds; nullopt when it holds none, or one that
// does not read as a grant (answers are stored, and read back whatever they hold).
std::optional<GpuGrant> GpuGrantOf(const Escalation& escalation);

class EscalationStore {
 public:
  // The migrations of the escalations table (assembled in orchestrator/schema.h).
  static const std::vector<Migration>& Migrations();

  // REQUIRES: `tasks` works on the same StoreDb and outlives this store.
  EscalationStore(std::shared_ptr<StoreDb> db, TaskStore* tasks)
      : db_(std::move(db)), tasks_(tasks) {}

  // Records an open escalation (its summary masked); returns its id.
  Result<int64_t> Escalate(std::optional<int64_t> task_id, const std::string& kind,
                           const std::string& summary, const std::string& raised_by,
                           std::optional<std::string> secret_name = std::nullopt);
  // Oldest first: up to `limit` escalations (open ones only, when `open_only`)
  // whose id is greater than `after_id` (keyset paging on the state index).
  Result<std::vector<Escalation>> List(bool open_only, int64_t after_id = 0,
                                       int limit = std::numeric_limits<int>::max());
  // Every escalation of task `task_id`, oldest first (by index: it costs the
  // same whatever the number of escalations ever raised).
  Result<std::vector<Escalation>> ForTask(int64_t task_id);
  Result<Escalation> Get(int64_t id);
  // The latest GPU grant of task `task_id` still running at `now_ms`, if any.
  Result<std::optional<GpuGrant>> ActiveGpuGrant(int64_t task_id, int64_t now_ms);
  // Records the answer (masked) with an "escalation_answered" event on its task
  // and requeues the task if it is blocked, in one transaction.
  // FailedPrecondition when the escalation is already answered.
  Status Answer(int64_t id, const Json& answer, int64_t answered_by);

 private:
  std::shared_ptr<StoreDb> db_;
  TaskStore* tasks_;
};

}  // namespace loom
