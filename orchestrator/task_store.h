// Tasks, their state machine and their event log, in loomd's database.
//
// States (DESIGN.md, "Life of a feedback item"):
//   queued -> running -> (blocked <-> queued) -> verifying -> review
//   review -> merged | changes_requested -> queued | rejected
//   failed (budget spent or unrecoverable), which an engineer may retry (-> queued)
//   running -> answered (a question: the agent's answer, no commit)
//   queued | running | blocked | verifying | changes_requested -> cancelled (-> queued: retried)
// Every transition is one SQLite transaction that checks the current state
// (compare-and-set), writes the new state and appends an event, before the
// caller acts on it. The event log is the task's memory: the agent rebuilds its
// conversation from it after a restart. Triage makes tasks of feedback through
// feedback's TriageQueue, in the same transaction. TaskStore is thread-safe:
// it works on the connection the orchestrator's stores share (store_db.h),
// under its lock; transactions are short.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/db.h"
#include "common/json.h"
#include "common/metrics.h"
#include "common/status.h"
#include "orchestrator/event_type.h"
#include "orchestrator/store_db.h"

namespace loom {

enum class TaskState {
  kQueued,
  kRunning,
  kBlocked,
  kVerifying,
  kReview,
  kChangesRequested,
  kMerged,
  kRejected,
  kFailed,
  kAnswered,
  kCancelled,
};
std::string_view TaskStateName(TaskState s);
Result<TaskState> ParseTaskState(std::string_view name);
bool TransitionAllowed(TaskState from, TaskState to);

struct Task {
  int64_t id = 0;
  std::string repo;
  std::string kind;
  std::string title;
  std::string instructions;
  TaskState state = TaskState::kQueued;
  std::string reason;
  std::optional<std::string> branch, base_commit;
  std::optional<std::string> answer;  // a question's answer (state answered)
  int64_t steps = 0, prompt_tokens = 0, completion_tokens = 0, test_runs = 0;
  // Budget added by engineers' retries, over the policy's (model calls, tokens).
  int64_t extra_steps = 0, extra_tokens = 0;
  std::optional<int64_t> requested_by;
  std::vector<int64_t> feedback_ids;
  int64_t created_at_ms = 0, updated_at_ms = 0;
  Json ToJson() const;
};

struct Event {
  int64_t task_id = 0;
  int64_t seq = 0;
  EventType type = EventType::kUnknown;
  Json data;
  int64_t created_at_ms = 0;
  Json ToJson() const;
};

enum class ReviewDecision { kMerged, kChangesRequested, kRejected };

// What a task's feedback items show their reporters: in_progress, in_review,
// merged, rejected, failed, answered or cancelled. Along with the status, every
// transition writes the item's `resolution`: the task's reason when it ended
// (merged, rejected, failed, cancelled), its answer when answered, else null.
std::string_view FeedbackStatusFor(TaskState s);

// Usage to add to a task's counters along with an event.
struct Usage {
  int64_t steps = 0, prompt_tokens = 0, completion_tokens = 0, test_runs = 0;
};

class RepoStore;

// What one round of triage did.
struct TriageRound {
  std::vector<int64_t> created;  // the tasks it made, in order
  int linked = 0;                // items linked to a task (new ones or their originals')
  int unroutable = 0;            // items set aside as unroutable
  int waiting = 0;               // duplicates whose original is not triaged yet
  // Items that left the queue: when none did, another round now would do nothing.
  int moved() const { return linked + unroutable; }
};

class TaskStore {
 public:
  // The migrations of the tasks, task_feedback and events tables (assembled
  // with the other modules' in orchestrator/schema.h).
  static const std::vector<Migration>& Migrations();

  // REQUIRES: `repos` works on the same StoreDb and outlives this store.
  TaskStore(std::shared_ptr<StoreDb> db, RepoStore* repos) : db_(std::move(db)), repos_(repos) {}

  // Items one round of triage reads at most.
  static constexpr int kTriageBatch = 200;

  // One round of triage, in one transaction: up to `max_items` untriaged
  // feedback items, taken fairly across reporter tokens (TriageQueue::Untriaged),
  // each turned into a task (an original) or linked to its original's task (a
  // duplicate). Items naming no repository go to the only registered one. An
  // item that cannot be routed (the repository it names is not registered; it
  // names none and none or several are) is set aside as `unroutable` with the
  // reason, out of the queue, until a repository is registered
  // (RepoStore::Register); a duplicate of an unroutable item is too. Its cost
  // does not depend on how many items wait or were ever filed.
  Result<TriageRound> TriageBatch(int max_items = kTriageBatch);
  // Rounds of TriageBatch until one moves no item: everything triageable now.
  // Returns the ids of the tasks created.
  Result<std::vector<int64_t>> Triage();

  Result<Task> Get(int64_t id);
  Result<std::vector<Task>> List(std::optional<TaskState> state, int64_t after_id, int limit);

  // The transitions below (Transition, RecordAnswer, RecordReview, LeaseNext,
  // RecoverInterrupted, RecordCancel, RecordRetry; EscalationStore::Answer) are the task
  // lifecycle's (lifecycle.h): the daemon asks it, never these directly.
  //
  // Moves `id` from `from` to `to` with an event {type: "state", from, to,
  // reason, ...extra}. FailedPrecondition when the task is no longer in `from`
  // (someone else moved it) or the transition is not allowed.
  Status Transition(int64_t id, TaskState from, TaskState to, const std::string& reason,
                    Json extra = Json::object());
  // A question's answer: `from` -> answered, with the answer stored on the task
  // (masked) and in the state event, in one transaction.
  Status RecordAnswer(int64_t id, TaskState from, const std::string& answer);
  // An engineer's decision on a task in `review`, in one transaction:
  // kMerged: -> merged (after the merge succeeded; `extra` holds its commit);
  // kRejected: -> rejected; kChangesRequested: -> changes_requested, a
  // "review_comment" event with `text` (the agent's next instruction), -> queued.
  // FailedPrecondition when the task is no longer in review.
  Status RecordReview(int64_t id, ReviewDecision decision, const std::string& text,
                      int64_t reviewer, Json extra = Json::object());
  // The bound on tasks waiting in review of a repository (its policy's
  // review.max_waiting).
  using ReviewBound = std::function<int64_t(const std::string& repo)>;
  // The oldest queued task moved to running, or nullopt when none is queued.
  // With `max_waiting`, a repository with that many tasks in review or more is
  // passed over: its queued tasks stay queued, their reason saying why.
  Result<std::optional<Task>> LeaseNext(const ReviewBound& max_waiting = {});
  // After a restart: running and verifying tasks go back to queued (nothing runs
  // them any more). Returns how many.
  Result<int> RecoverInterrupted();
  Status SetBranch(int64_t id, const std::string& branch, const std::string& base_commit);
  // Forgets the task's branch and base commit (its workspace was removed).
  Status ClearBranch(int64_t id);
  // A cancellation, in one transaction: `from` -> cancelled with `reason`, and
  // the task's open escalations closed (state "closed").
  Status RecordCancel(int64_t id, TaskState from, const std::string& reason, int64_t by);
  // A retry, in one transaction: `from` (failed or cancelled) -> queued, the
  // branch and answer forgotten (a fresh start), `extra_steps`/`extra_tokens`
  // added to the task's extra budget, and a "retried" event {by, extra_steps,
  // extra_tokens, steps, tokens, test_runs} holding the counters at the retry:
  // the agent counts its budget from there.
  Status RecordRetry(int64_t id, TaskState from, int64_t by, int64_t extra_steps,
                     int64_t extra_tokens);

  // Appends an event and adds `usage` to the task's counters in one
  // transaction; returns the event's seq.
  Result<int64_t> AppendEvent(int64_t task_id, EventType type, const Json& data, Usage usage = {});

  // From now on counts into `metrics` (docs/metrics.md): transitions
  // (loom_task_transitions_total{from,to}), the time a task spent in the state it
  // leaves (loom_task_state_duration_seconds{state}) and events
  // (loom_task_events_total{type}; type="created" counts new tasks). Each is counted
  // when written, inside its transaction (one that then rolls back, which only a
  // failing disk does, is counted all the same). Call once, before the store is shared.
  void Meter(MetricsRegistry* metrics);
  Result<std::vector<Event>> Events(int64_t task_id, int64_t after_seq = 0, int limit = 100000);

  // Within the caller's lock and transaction (another store's: answering an
  // escalation records an event and requeues the task in its transaction).
  Result<Task> GetLocked(const StoreDb::Lock& lock, int64_t id);
  // Reads on `db`, the writer's (under its Lock) or the reader's (a ReadLock).
  static Result<Task> ReadTaskFrom(Db* db, int64_t id);
  static Result<std::vector<Task>> ListFrom(Db* db, std::optional<TaskState> state,
                                            int64_t after_id, int limit);
  Result<int64_t> AppendEventLocked(const StoreDb::Lock& lock, int64_t task_id, EventType type,
                                    const Json& data, const Usage& usage);
  Status TransitionLocked(const StoreDb::Lock& lock, int64_t id, TaskState from, TaskState to,
                          const std::string& reason, Json extra);

 private:
  std::shared_ptr<StoreDb> db_;
  RepoStore* repos_;
  Counter* transitions_ = nullptr;  // null until Meter()
  Histogram* state_seconds_ = nullptr;
  Counter* events_ = nullptr;
  // The reporter token the last round of triage stopped at (TriageQueue::Untriaged).
  std::atomic<int64_t> triage_cursor_{0};
};

}  // namespace loom
