// Feedback intake: what an app user files, validated, fingerprinted, stored
// durably and deduplicated.
//
// Submissions are written by one writer thread that group-commits: every
// submission that arrived while the previous commit was syncing goes into the
// next transaction, so a durable write (fsync) is shared by many requests.
// The caller's callback runs after the commit that holds its item returned: an
// id that was answered is on disk. Reads use their own connection (WAL lets
// them run while the writer commits). FeedbackStore is thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "common/clock.h"
#include "common/db.h"
#include "common/json.h"
#include "common/mutex.h"
#include "common/status.h"
#include "feedback/crash.h"

namespace loom::feedback {

// The migrations of the feedback tables (assembled with the other modules' by
// loomd: orchestrator/schema.h).
const std::vector<Migration>& Migrations();

struct Item {
  int64_t id = 0;
  std::string kind;  // bug | feature | question
  std::string title;
  std::string body;
  std::optional<std::string> reporter, app_version, commit, url, logs, stack_trace, repo;
  Json context = Json::object();
  // new | duplicate | triaged (a task was made of it), then its task's progress:
  // in_progress | in_review | merged | rejected | failed | answered | cancelled;
  // or unroutable: triage found no repository for it (`resolution` says why) and
  // set it aside until one is registered.
  std::string status;
  std::string fingerprint;
  std::optional<int64_t> duplicate_of;
  int64_t reporter_count = 1;
  int64_t token_id = 0;
  int64_t created_at_ms = 0;
  std::optional<int64_t> task_id;  // the task triage made of it (or of its original)
  // Why its task ended (failed, rejected, cancelled, merged) or the answer to a
  // question, written with the status by the task's transition; for an
  // unroutable item, why triage could not route it.
  std::optional<std::string> resolution;
  // For an item a crash group filed (Store::SubmitCrash): the group's counts
  // ({"group", "occurrences", "users", "first_seen", "last_seen", "releases",
  // "reopened"}); null for other items.
  Json crash;

  Json ToJson() const;
};

// Field limits, in bytes of UTF-8.
struct Limits {
  size_t title = 300;
  size_t body = 64 << 10;
  size_t short_field = 200;  // reporter, app_version, commit, repo
  size_t url = 2048;
  size_t logs = 256 << 10;
  size_t stack_trace = 64 << 10;
  size_t context = 32 << 10;  // serialised
};

// A validation failure: what is wrong and which field.
struct Invalid {
  std::string field;
  std::string message;
};

// Parses a POST /v1/feedback body into an Item (id, status, fingerprint and
// token unset). Rejects malformed JSON, invalid UTF-8, unknown or missing
// fields, wrong types, unknown kinds and over-long fields.
std::variant<Item, Invalid> ParseSubmission(std::string_view body, const Limits& limits);

// Groups duplicates: the kind, the normalised title (lower case, numbers and
// hex ids blanked, punctuation and repeated spaces dropped) and the top three
// normalised stack frames, hashed.
std::string Fingerprint(const Item& item);

struct SubmitResult {
  int64_t id = 0;
  std::string status;
  std::optional<int64_t> duplicate_of;
  int64_t original_token_id = 0;  // the token that filed duplicate_of's item
  bool replayed = false;          // an earlier submission with the same idempotency key
  int64_t crash_group = 0;        // SubmitCrash: the group the crash was counted in
};

struct ListQuery {
  std::optional<std::string> status, kind, repo;
  std::optional<int64_t> token_id;  // only this token's items (reporters)
  int64_t after_id = 0;             // paging cursor: items with id > after_id
  int limit = 50;
};

struct Counts {
  std::vector<std::pair<std::string, int64_t>> by_status;
};

// Triage's view of the feedback table, on a connection the caller owns, so
// that what it reads and writes joins the caller's transaction (the task store
// makes a task of an item and marks the item in one). The only way anything
// above feedback/ touches the table. Thread-compatible: the caller serializes
// its use of `db`.
//
// Every statement is an index search (migration 7), so that triage and the task
// transitions cost the same with 10 items as with 10 million: the untriaged
// items have a partial index of their own (token, id), and the items of a task
// an index on task_id.
class TriageQueue {
 public:
  explicit TriageQueue(Db* db) : db_(db) {}
  // Up to `limit` items no task was made of yet (status new or duplicate), fair
  // across the tokens that filed them: the oldest item of each token first, then
  // the second oldest of each, and so on, so that one token's backlog delays
  // another's items by one round at most. Tokens are visited from the one after
  // `*after_token` on, wrapping around, and `*after_token` is left at the last
  // one visited: when more tokens wait than a round takes, the next round starts
  // with those this one left out. The items come back oldest first (an original
  // before its duplicates). Costs O(limit) index searches, whatever the backlog.
  Result<std::vector<Item>> Untriaged(int limit, int64_t* after_token);
  // The task item `id` was triaged into; nullopt while it has none.
  Result<std::optional<int64_t>> TaskOf(int64_t id);
  // Why item `id` is unroutable; nullopt when it is not.
  Result<std::optional<std::string>> UnroutableReason(int64_t id);
  // Links item `id` to `task_id`: a new item becomes triaged, a duplicate stays one.
  Status MarkTriaged(int64_t id, int64_t task_id);
  // Sets untriaged item `id` aside: status unroutable, `reason` as its
  // resolution (shown to the reporter and to engineers). It leaves the queue
  // until RequeueUnroutable puts it back.
  Status MarkUnroutable(int64_t id, std::string_view reason);
  // Puts the unroutable items that name repository `repo` back in the queue
  // (new, or duplicate for a duplicate; resolution cleared), and, with
  // kRequeue, those that name none. Returns how many. Called when `repo` is
  // registered, in the registration's transaction.
  enum class Unnamed { kStay, kRequeue };
  Result<int> RequeueUnroutable(std::string_view repo, Unnamed unnamed);
  // The status every item of `task_id` shows its reporter from now on
  // (in_progress, in_review, merged, ...: the task's state as a reporter sees it),
  // and why it ended or the question's answer (`resolution`; none while it runs).
  Status SetTaskStatus(int64_t task_id, std::string_view status,
                       const std::optional<std::string>& resolution = std::nullopt);

  // The SQL of every statement above, for a test that checks with EXPLAIN QUERY
  // PLAN that none scans the table.
  static std::vector<std::string> StatementsForPlanCheck();

 private:
  Db* db_;
};

class Store {
 public:
  // Opens the database at `db_path`, which its owner migrated (loomd:
  // orchestrator/schema.h). REQUIRES: `clock` (which stamps created_at)
  // outlives the store.
  static Result<std::unique_ptr<Store>> Open(const std::string& db_path,
                                             const Clock* clock = SystemClock::Default());
  ~Store();  // flushes pending submissions and joins the writer

  using Callback = std::function<void(Result<SubmitResult>)>;
  // Queues `item` for the next group commit; `done` runs on the writer thread
  // once the item is durable (or with the error). An idempotency key makes a
  // retried submission from the same token return the first item.
  void Submit(Item item, std::string idempotency_key, Callback done) EXCLUDES(mu_);
  Result<SubmitResult> SubmitAndWait(Item item, std::string idempotency_key = "");
  // Queues a crash report (already scrubbed) for the next group commit. It is
  // counted in its group (same DSN, same CrashFingerprint): occurrences, distinct
  // users, first/last seen, releases. A new group files a new feedback item
  // (status "new"); a group whose item's task has ended (merged, rejected, ...)
  // files a new item when a release it has not seen crashes the same way
  // (status "reopened"); otherwise the crash is only counted on the group's
  // item (status "grouped"). An event id seen before from the same DSN counts
  // nothing (replayed). `done` as for Submit.
  void SubmitCrash(CrashReport report, Callback done) EXCLUDES(mu_);
  Result<SubmitResult> SubmitCrashAndWait(CrashReport report);

  Result<Item> Get(int64_t id) EXCLUDES(read_mu_);
  Result<std::vector<Item>> List(const ListQuery& query) EXCLUDES(read_mu_);
  Result<Counts> CountByStatus() EXCLUDES(read_mu_);

 private:
  struct Pending {
    Item item;
    std::string idempotency_key;
    Callback done;
    std::optional<CrashReport> crash;  // set: a crash report instead of `item`
  };
  Store(std::unique_ptr<Db> writer, std::unique_ptr<Db> reader, const Clock* clock);
  void WriterLoop() EXCLUDES(mu_);
  Result<SubmitResult> Insert(Item& item, const std::string& idempotency_key);
  Result<SubmitResult> InsertCrash(const CrashReport& report);
  // Fills item.crash for an item a crash group filed.
  Status AttachCrashStats(Item* item) REQUIRES(read_mu_);

  const Clock* const clock_;
  std::unique_ptr<Db> writer_db_;  // writer thread only
  Mutex read_mu_;
  std::unique_ptr<Db> reader_db_ GUARDED_BY(read_mu_);

  Mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread writer_;
};

}  // namespace loom::feedback
