// The escalations table. See escalation_store.h.
#include "orchestrator/escalation_store.h"

namespace loom {
namespace {

Escalation ReadEscalation(const Statement& r) {
  Escalation e;
  e.id = r.Int(0);
  if (!r.IsNull(1)) e.task_id = r.Int(1);
  e.kind = r.Text(2);
  e.summary = r.Text(3);
  e.secret_name = r.OptionalText(4);
  e.raised_by = r.Text(5);
  e.state = r.Text(6);
  if (!r.IsNull(7)) e.answer = ParseJson(r.Text(7)).value_or(Json());
  e.created_at_ms = r.Int(8);
  return e;
}

constexpr const char* kEscalationColumns =
    "id, task_id, kind, summary, secret_name, raised_by, state, answer, created_at";

// Every row of `q`, bound and not yet stepped; resets it.
Result<std::vector<Escalation>> ReadEscalations(Statement* q) {
  std::vector<Escalation> out;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    out.push_back(ReadEscalation(*q));
  }
  q->Reset();
  return out;
}

// On the writer's connection (under its Lock) or the reader's (a ReadLock).
Result<Escalation> ReadEscalationFrom(Db* db, int64_t id) {
  return db->QueryOne(std::string("SELECT ") + kEscalationColumns + " FROM escalations WHERE id=?",
                      "no escalation " + std::to_string(id), ReadEscalation, id);
}

Result<Escalation> GetLocked(const StoreDb::Lock& lock, int64_t id) {
  return ReadEscalationFrom(lock.db(), id);
}

}  // namespace

const std::vector<Migration>& EscalationStore::Migrations() {
  static const std::vector<Migration> kMigrations = {
      {2, R"sql(
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
      // A task's escalations (ForTask, a cancel closing them) by index.
      {7, R"sql(
        CREATE INDEX escalations_task ON escalations(task_id, id) WHERE task_id IS NOT NULL;
      )sql"},
  };
  return kMigrations;
}

Json Escalation::ToJson() const {
  Json j = {{"id", id},           {"kind", kind},
            {"summary", summary}, {"raised_by", raised_by},
            {"state", state},     {"created_at", created_at_ms}};
  if (task_id) j["task_id"] = *task_id;
  if (secret_name) j["secret_name"] = *secret_name;
  if (!answer.is_null()) j["answer"] = answer;
  return j;
}

Result<int64_t> EscalationStore::Escalate(std::optional<int64_t> task_id, const std::string& kind,
                                          const std::string& summary, const std::string& raised_by,
                                          std::optional<std::string> secret_name) {
  auto lock = db_->Acquire();
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      lock.db()->Prepare("INSERT INTO escalations(task_id, kind, summary, secret_name, raised_by, "
                         "created_at) VALUES(?,?,?,?,?,?)"));
  if (task_id) {
    q->Bind(1, *task_id);
  } else {
    q->BindNull(1);
  }
  q->Bind(2, kind)
      .Bind(3, lock.Masked(summary))
      .Bind(4, secret_name)
      .Bind(5, raised_by)
      .Bind(6, lock.NowMs());
  LOOM_RETURN_IF_ERROR(q->Run());
  return lock.db()->LastInsertRowId();
}

Result<std::vector<Escalation>> EscalationStore::List(bool open_only, int64_t after_id, int limit) {
  auto lock = db_->AcquireReader();
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      lock.db()->Prepare(std::string("SELECT ") + kEscalationColumns +
                         " FROM escalations WHERE id > ?" + (open_only ? " AND state='open'" : "") +
                         " ORDER BY id LIMIT ?"));
  q->BindAll(after_id, static_cast<int64_t>(limit));
  return ReadEscalations(q);
}

Result<std::vector<Escalation>> EscalationStore::ForTask(int64_t task_id) {
  auto lock = db_->AcquireReader();
  LOOM_ASSIGN_OR_RETURN(Statement * q,
                        lock.db()->Prepare(std::string("SELECT ") + kEscalationColumns +
                                           " FROM escalations WHERE task_id=? ORDER BY id"));
  q->Bind(1, task_id);
  return ReadEscalations(q);
}

Json GpuGrant::ToJson() const {
  return {{"escalation_id", escalation_id},
          {"type", type},
          {"count", count},
          {"minutes", minutes},
          {"until_ms", until_ms}};
}

std::optional<GpuGrant> GpuGrantOf(const Escalation& escalation) {
  if (escalation.kind != "gpu" || !escalation.answer.is_object()) return std::nullopt;
  auto it = escalation.answer.find("gpu");
  if (it == escalation.answer.end() || !it->is_object()) return std::nullopt;
  const Json& g = *it;
  auto type = g.find("type");
  auto count = g.find("count");
  auto minutes = g.find("minutes");
  auto until = g.find("until_ms");
  if (type == g.end() || !type->is_string() || count == g.end() || !count->is_number_unsigned() ||
      minutes == g.end() || !minutes->is_number_integer() || until == g.end() ||
      !until->is_number_integer()) {
    return std::nullopt;
  }
  uint64_t n = count->get<uint64_t>();
  if (n < 1 || n > 64) return std::nullopt;
  GpuGrant grant;
  grant.escalation_id = escalation.id;
  grant.type = type->get<std::string>();
  grant.count = static_cast<uint32_t>(n);
  grant.minutes = minutes->get<int64_t>();
  grant.until_ms = until->get<int64_t>();
  return grant;
}

Result<std::optional<GpuGrant>> EscalationStore::ActiveGpuGrant(int64_t task_id, int64_t now_ms) {
  LOOM_ASSIGN_OR_RETURN(std::vector<Escalation> all, ForTask(task_id));
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    auto grant = GpuGrantOf(*it);
    if (grant && grant->until_ms > now_ms) return grant;
  }
  return std::optional<GpuGrant>();
}

Result<Escalation> EscalationStore::Get(int64_t id) {
  auto lock = db_->AcquireReader();
  return ReadEscalationFrom(lock.db(), id);
}

Status EscalationStore::Answer(int64_t id, const Json& answer, int64_t answered_by) {
  auto lock = db_->Acquire();
  Transaction tx(lock.db());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  LOOM_ASSIGN_OR_RETURN(Escalation e, GetLocked(lock, id));
  if (e.state != "open") {
    return Status::FailedPrecondition(
        "escalation " + std::to_string(id) + " is already " +
        (e.state == "closed" ? "closed: its task was cancelled" : "answered"));
  }
  LOOM_ASSIGN_OR_RETURN(Statement * upd,
                        lock.db()->Prepare("UPDATE escalations SET state='answered', answer=?, "
                                           "answered_by=?, answered_at=? WHERE id=?"));
  LOOM_RETURN_IF_ERROR(
      upd->BindAll(DumpJson(lock.Masked(answer)), answered_by, lock.NowMs(), id).Run());
  if (e.task_id) {
    LOOM_RETURN_IF_ERROR(tasks_
                             ->AppendEventLocked(lock, *e.task_id, EventType::kEscalationAnswered,
                                                 {{"escalation_id", id}, {"answer", answer}}, {})
                             .status());
    LOOM_ASSIGN_OR_RETURN(Task t, tasks_->GetLocked(lock, *e.task_id));
    if (t.state == TaskState::kBlocked) {
      LOOM_RETURN_IF_ERROR(
          tasks_->TransitionLocked(lock, *e.task_id, TaskState::kBlocked, TaskState::kQueued,
                                   "escalation " + std::to_string(id) + " answered", {}));
    }
  }
  return tx.Commit();
}

}  // namespace loom
