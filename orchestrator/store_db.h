// The SQLite connection the orchestrator's stores share: tasks and their events
// (task_store.h), escalations (escalation_store.h) and repositories
// (repo_store.h). One connection behind one mutex lets one transaction span
// stores (answering an escalation requeues its task; triage reads the
// repositories and marks feedback while it makes tasks). Besides the
// connection it carries what every write needs: the clock that stamps rows and
// the masker applied to recorded text.
//
// Plain reads (a task, a list of tasks, an event log, escalations, repositories)
// go to a second, read-only connection with a lock of its own (ReadLock): in WAL
// mode it sees every committed write and never waits for the writer, so the API
// answers while an agent's write or a long transaction holds the first.
//
// Thread-safe. A store holds a StoreDb::Lock for the whole of each operation;
// the methods of a store that take a `const StoreDb::Lock&` run inside the
// caller's lock and transaction.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/db.h"
#include "common/json.h"
#include "common/mutex.h"
#include "common/secret_mask.h"
#include "common/status.h"

namespace loom {

class StoreDb {
 public:
  // Opens the database at `db_path`, which MigrateDatabase (schema.h) made
  // current. REQUIRES: `clock` outlives the StoreDb.
  static Result<std::shared_ptr<StoreDb>> Open(const std::string& db_path,
                                               const Clock* clock = SystemClock::Default());

  // Proof that its holder has the connection to itself; valid while it lives.
  // Its accessors read the guarded members through AssertHeld: the analysis
  // cannot follow a lock returned from Acquire() into the caller, but a Lock
  // cannot exist without holding owner_->mu_ (it is neither copied nor moved;
  // Acquire() returns it by guaranteed copy elision).
  class Lock {
   public:
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;
    Db* db() const {
      owner_->mu_.AssertHeld();
      return owner_->db_.get();
    }
    int64_t NowMs() const { return owner_->clock_->NowMs(); }
    // `j` or `text` as it may be recorded: every stored secret masked.
    Json Masked(const Json& j) const;
    std::string Masked(const std::string& text) const;

   private:
    friend class StoreDb;
    explicit Lock(StoreDb* owner) : owner_(owner), lock_(&owner->mu_) {}
    StoreDb* const owner_;
    MutexLock lock_;
  };
  Lock Acquire() { return Lock(this); }

  // The read-only connection to itself; valid while it lives. A read of several
  // statements that must agree runs in a transaction on it (BEGIN ... COMMIT).
  class ReadLock {
   public:
    ReadLock(const ReadLock&) = delete;
    ReadLock& operator=(const ReadLock&) = delete;
    Db* db() const {
      owner_->read_mu_.AssertHeld();  // as Lock's: a ReadLock holds it
      return owner_->reader_.get();
    }

   private:
    friend class StoreDb;
    explicit ReadLock(StoreDb* owner) : owner_(owner), lock_(&owner->read_mu_) {}
    StoreDb* const owner_;
    MutexLock lock_;
  };
  ReadLock AcquireReader() { return ReadLock(this); }

  // From now on every event, state reason, escalation summary and answer is
  // masked by `masker` before it is written (the secret store's; see
  // common/secret_mask.h). Null: nothing is masked.
  void SetMasker(std::shared_ptr<const SecretMasker> masker) EXCLUDES(mu_);

 private:
  StoreDb(std::unique_ptr<Db> db, std::unique_ptr<Db> reader, const Clock* clock)
      : db_(std::move(db)), reader_(std::move(reader)), clock_(clock) {}

  Mutex mu_;
  std::unique_ptr<Db> db_ GUARDED_BY(mu_);
  std::shared_ptr<const SecretMasker> masker_ GUARDED_BY(mu_);
  Mutex read_mu_;
  std::unique_ptr<Db> reader_ GUARDED_BY(read_mu_);
  const Clock* const clock_;
};

}  // namespace loom
