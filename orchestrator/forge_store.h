// What loomd keeps about forges (GitHub, GitLab) in its database: the webhook
// deliveries it accepted (idempotency by delivery id, and the record of what
// each did), the pull/merge request of each task, the forge issues feedback
// came from, and line comments waiting for the review they belong to.
// docs/forges.md describes the flow.
//
// Thread-safe: every operation holds the shared StoreDb's lock, as the other
// orchestrator stores do.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/db.h"
#include "common/json.h"
#include "common/status.h"
#include "orchestrator/review_comments.h"
#include "orchestrator/store_db.h"

namespace loom {

// One webhook delivery as received (after its signature verified).
struct ForgeDelivery {
  std::string forge;  // github | gitlab
  std::string id;     // X-GitHub-Delivery, GitLab's Idempotency-Key or X-Gitlab-Event-UUID
  std::string repo;   // the Loom repository whose webhook secret it verified with
  std::string event;  // X-GitHub-Event, X-Gitlab-Event
  std::string body;   // the raw body
  int64_t received_at_ms = 0;
  bool finished = false;
  std::string outcome;  // what it did, once finished
};

// A task's pull request (GitHub) or merge request (GitLab; `number` is its iid).
struct ForgePull {
  int64_t task_id = 0;
  std::string repo;
  std::string forge;
  std::string project;
  int64_t number = 0;
  std::string url;
  bool draft = true;
};

// A forge issue that became a feedback item.
struct ForgeIssue {
  int64_t feedback_id = 0;
  std::string repo;
  std::string forge;
  std::string project;
  int64_t number = 0;
  std::string url;
  std::optional<int64_t> commented_task_id;  // the task whose review it was told of
};

// One event of the task event log, as a consumer reads it.
struct LoggedEvent {
  int64_t id = 0;  // the log's global order
  int64_t task_id = 0;
  std::string type;
  Json data;
  int64_t created_at_ms = 0;
};

class ForgeStore {
 public:
  // The migrations of the forge tables (assembled in orchestrator/schema.h).
  static const std::vector<Migration>& Migrations();

  explicit ForgeStore(std::shared_ptr<StoreDb> db) : db_(std::move(db)) {}

  // Records a delivery durably (its commit returned before this does). Returns
  // the delivery as stored: a new one unfinished, or, for an id recorded before
  // (a redelivery or a replay), the first one with what it did.
  Result<ForgeDelivery> RecordDelivery(const ForgeDelivery& delivery);
  // Marks a delivery done with `outcome`.
  Status FinishDelivery(const std::string& forge, const std::string& id,
                        const std::string& outcome);
  // Deliveries recorded but never finished (loomd stopped between the two), oldest first.
  Result<std::vector<ForgeDelivery>> UnfinishedDeliveries();

  // Records or replaces a task's pull/merge request.
  Status PutPull(const ForgePull& pull);
  Result<std::optional<ForgePull>> PullOfTask(int64_t task_id);
  Result<std::optional<ForgePull>> PullByNumber(const std::string& forge,
                                                const std::string& project, int64_t number);

  // Records that feedback item `issue.feedback_id` came from a forge issue (once).
  Status PutIssue(const ForgeIssue& issue);
  // The forge issues whose feedback was triaged into `task_id`.
  Result<std::vector<ForgeIssue>> IssuesOfTask(int64_t task_id);
  Status MarkIssueCommented(int64_t feedback_id, int64_t task_id);

  // A line comment of a pull/merge request that waits for the review that
  // requests changes (the forges deliver them as separate events, in no
  // promised order). A comment id seen before is ignored.
  Status AddPendingComment(const std::string& forge, const std::string& project, int64_t number,
                           const std::string& comment_id, const std::string& review_id,
                           const LineComment& comment);
  // The pending comments of the request, oldest first, marked taken by
  // `taker` (a delivery id): those of `review_id` and those of no review.
  // Comments of other reviews stay. Taking again with the same `taker` (the
  // delivery applied again after a restart) returns the same comments.
  // A durable consumer's position in the task event log ("pr_sync"): the id
  // of the last event it is done with; 0 before the first.
  Result<int64_t> Cursor(const std::string& consumer);
  Status SetCursor(const std::string& consumer, int64_t after_event);
  // Up to `limit` events of the task event log after event `after_event`, in
  // order, of the given types, or of every type when `types` is empty
  // (TaskStore owns the table; this reads it).
  // The id of the last event in the log now (0 when empty).
  Result<int64_t> LastEventId();
  Result<std::vector<LoggedEvent>> EventsAfter(int64_t after_event,
                                               const std::vector<std::string>& types, int limit);

  Result<std::vector<LineComment>> TakePendingComments(const std::string& forge,
                                                       const std::string& project, int64_t number,
                                                       const std::string& review_id,
                                                       const std::string& taker);

 private:
  std::shared_ptr<StoreDb> db_;
};

}  // namespace loom
