// Crash groups and DSNs in the feedback database (migration 14; see
// Store::SubmitCrash in intake.h and SentryKeys in sentry.h).
//
// A crash is written by the store's writer thread, inside its group commit and
// its own savepoint, like a submission: the event id is recorded first (an
// SDK's retry of a stored event counts nothing), then the group is counted or
// created, and a feedback item is filed only for a new group or a reopened one.
// So a crash storm costs a few small row updates per event, not a feedback item
// each, and the triage queue sees one item per group.
#include <algorithm>

#include "common/crypto.h"
#include "common/json_reader.h"
#include "feedback/intake.h"
#include "feedback/sentry.h"

namespace loom::feedback {
namespace {

constexpr size_t kMaxStackTrace = 64 << 10;
constexpr size_t kMaxLogs = 16 << 10;

bool Ended(std::string_view status) {
  return status == "merged" || status == "rejected" || status == "failed" ||
         status == "cancelled" || status == "answered";
}

std::string CutTo(std::string s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  s.resize(n);
  return s;
}

// Files the feedback item a crash group stands for.
Result<int64_t> InsertItem(Db* db, const CrashReport& r, const std::string& fingerprint,
                           int64_t now) {
  std::optional<std::string> release, commit, url, logs;
  if (!r.release.empty()) release = r.release;
  if (std::string c = CommitOfRelease(r.release); !c.empty()) commit = c;
  if (!r.request_url.empty()) url = r.request_url;
  if (!r.breadcrumbs.empty()) logs = CutTo(FormatBreadcrumbs(r), kMaxLogs);
  std::string trace = CutTo(FormatStackTrace(r), kMaxStackTrace);
  Json context = {{"source", "sentry"},     {"event_id", r.event_id},
                  {"platform", r.platform}, {"environment", r.environment},
                  {"level", r.level},       {"sentry_project", r.project_id}};
  LOOM_ASSIGN_OR_RETURN(
      Statement * ins,
      db->Prepare("INSERT INTO feedback(kind, title, body, app_version, commit_sha, url, logs, "
                  "stack_trace, repo, context, status, fingerprint, token_id, created_at) "
                  "VALUES('bug',?,?,?,?,?,?,?,?,?,'new',?,?,?)"));
  ins->BindAll(CrashTitle(r), CrashBody(r), release, commit, url, logs,
               trace.empty() ? std::optional<std::string>() : std::optional<std::string>(trace),
               r.repo, DumpJson(context), "sentry:" + fingerprint, r.token_id, now);
  LOOM_RETURN_IF_ERROR(ins->Run());
  return db->LastInsertRowId();
}

SentryKey ReadKey(const Statement& r) {
  SentryKey k;
  k.project_id = r.Int(0);
  k.public_key = r.Text(1);
  k.token_id = r.Int(2);
  k.repo = r.Text(3);
  k.created_at_ms = r.Int(4);
  if (!r.IsNull(5)) k.revoked_at_ms = r.Int(5);
  return k;
}

constexpr const char* kKeyColumns = "id, public_key, token_id, repo, created_at, revoked_at";

}  // namespace

Result<SubmitResult> Store::InsertCrash(const CrashReport& r) {
  Db* db = writer_db_.get();
  const int64_t now = clock_->NowMs();
  LOOM_ASSIGN_OR_RETURN(
      Statement * seen,
      db->Prepare("INSERT OR IGNORE INTO crash_events(project_id, event_id, group_id, "
                  "received_at) VALUES(?,?,0,?)"));
  LOOM_RETURN_IF_ERROR(seen->BindAll(r.project_id, r.event_id, now).Run());
  if (db->Changes() == 0) {
    // A retry of an event already stored: answer as the first time.
    LOOM_ASSIGN_OR_RETURN(
        auto earlier, db->QueryOptional(
                          "SELECT g.id, g.feedback_id FROM crash_events e JOIN crash_groups g ON "
                          "g.id = e.group_id WHERE e.project_id=? AND e.event_id=?",
                          [](const Statement& row) { return std::pair(row.Int(0), row.Int(1)); },
                          r.project_id, r.event_id));
    SubmitResult out{earlier ? earlier->second : 0, "grouped", std::nullopt, r.token_id, true};
    out.crash_group = earlier ? earlier->first : 0;
    return out;
  }
  const std::string fingerprint = CrashFingerprint(r);
  struct Group {
    int64_t id, feedback_id;
    std::string status;
  };
  LOOM_ASSIGN_OR_RETURN(
      std::optional<Group> group,
      db->QueryOptional(
          "SELECT g.id, g.feedback_id, f.status FROM crash_groups g JOIN feedback f ON "
          "f.id = g.feedback_id WHERE g.project_id=? AND g.fingerprint=?",
          [](const Statement& row) {
            return Group{row.Int(0), row.Int(1), row.Text(2)};
          },
          r.project_id, fingerprint));
  std::string status = "grouped";
  int64_t group_id = 0, feedback_id = 0;
  if (!group) {
    LOOM_ASSIGN_OR_RETURN(feedback_id, InsertItem(db, r, fingerprint, now));
    LOOM_ASSIGN_OR_RETURN(
        Statement * ins,
        db->Prepare("INSERT INTO crash_groups(project_id, fingerprint, feedback_id, occurrences, "
                    "users, first_seen, last_seen) VALUES(?,?,?,0,0,?,?)"));
    LOOM_RETURN_IF_ERROR(ins->BindAll(r.project_id, fingerprint, feedback_id, now, now).Run());
    group_id = db->LastInsertRowId();
    status = "new";
  } else {
    group_id = group->id;
    feedback_id = group->feedback_id;
    bool new_release = false;
    if (!r.release.empty()) {
      LOOM_ASSIGN_OR_RETURN(
          auto known, db->QueryOptional(
                          "SELECT 1 FROM crash_group_releases WHERE group_id=? AND release=?",
                          [](const Statement& row) { return row.Int(0); }, group_id, r.release));
      new_release = !known.has_value();
    }
    if (Ended(group->status) && new_release) {
      // A regression: the crash came back in a release made after its task ended.
      LOOM_ASSIGN_OR_RETURN(feedback_id, InsertItem(db, r, fingerprint, now));
      LOOM_ASSIGN_OR_RETURN(
          Statement * move,
          db->Prepare("UPDATE crash_groups SET feedback_id=?, reopened=reopened+1 WHERE id=?"));
      LOOM_RETURN_IF_ERROR(move->BindAll(feedback_id, group_id).Run());
      status = "reopened";
    }
  }
  if (status != "grouped") {
    LOOM_ASSIGN_OR_RETURN(
        Statement * link,
        db->Prepare("INSERT INTO crash_group_items(feedback_id, group_id) VALUES(?,?)"));
    LOOM_RETURN_IF_ERROR(link->BindAll(feedback_id, group_id).Run());
  }
  int64_t new_user = 0;
  if (!r.user.empty()) {
    LOOM_ASSIGN_OR_RETURN(
        Statement * user,
        db->Prepare("INSERT OR IGNORE INTO crash_group_users(group_id, user) VALUES(?,?)"));
    LOOM_RETURN_IF_ERROR(user->BindAll(group_id, r.user).Run());
    new_user = db->Changes();
  }
  LOOM_ASSIGN_OR_RETURN(
      Statement * count,
      db->Prepare("UPDATE crash_groups SET occurrences=occurrences+1, users=users+?, last_seen=? "
                  "WHERE id=?"));
  LOOM_RETURN_IF_ERROR(count->BindAll(new_user, now, group_id).Run());
  if (!r.release.empty()) {
    LOOM_ASSIGN_OR_RETURN(
        Statement * rel,
        db->Prepare("INSERT INTO crash_group_releases(group_id, release, occurrences, first_seen, "
                    "last_seen) VALUES(?,?,1,?,?) ON CONFLICT(group_id, release) DO UPDATE SET "
                    "occurrences=occurrences+1, last_seen=excluded.last_seen"));
    LOOM_RETURN_IF_ERROR(rel->BindAll(group_id, r.release, now, now).Run());
  }
  // The item's reporter count is the group's distinct users (at least one).
  LOOM_ASSIGN_OR_RETURN(
      Statement * reporters,
      db->Prepare("UPDATE feedback SET reporter_count=(SELECT max(users, 1) FROM crash_groups "
                  "WHERE id=?) WHERE id=?"));
  LOOM_RETURN_IF_ERROR(reporters->BindAll(group_id, feedback_id).Run());
  LOOM_ASSIGN_OR_RETURN(
      Statement * event,
      db->Prepare("UPDATE crash_events SET group_id=? WHERE project_id=? AND event_id=?"));
  LOOM_RETURN_IF_ERROR(event->BindAll(group_id, r.project_id, r.event_id).Run());
  SubmitResult out{feedback_id, status, std::nullopt, r.token_id, false};
  out.crash_group = group_id;
  return out;
}

Status Store::AttachCrashStats(Item* item) {
  if (!item->fingerprint.starts_with("sentry:")) return Status::Ok();
  Db* db = reader_db_.get();
  LOOM_ASSIGN_OR_RETURN(
      std::optional<Json> stats,
      db->QueryOptional(
          "SELECT g.id, g.occurrences, g.users, g.first_seen, g.last_seen, g.reopened, "
          "g.feedback_id FROM crash_group_items i JOIN crash_groups g ON g.id = i.group_id "
          "WHERE i.feedback_id=?",
          [](const Statement& row) {
            return Json{{"group", row.Int(0)},       {"occurrences", row.Int(1)},
                        {"users", row.Int(2)},       {"first_seen", row.Int(3)},
                        {"last_seen", row.Int(4)},   {"reopened", row.Int(5)},
                        {"current_item", row.Int(6)}};
          },
          item->id));
  if (!stats) return Status::Ok();
  LOOM_ASSIGN_OR_RETURN(
      Statement * rel,
      db->Prepare("SELECT release, occurrences, first_seen, last_seen FROM crash_group_releases "
                  "WHERE group_id=? ORDER BY last_seen DESC, release LIMIT 50"));
  rel->Bind(1, IntOr(*stats, "group", 0));
  Json releases = Json::array();
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, rel->Step());
    if (!row) break;
    releases.push_back({{"release", rel->Text(0)},
                        {"occurrences", rel->Int(1)},
                        {"first_seen", rel->Int(2)},
                        {"last_seen", rel->Int(3)}});
  }
  (*stats)["releases"] = std::move(releases);
  item->crash = std::move(*stats);
  return Status::Ok();
}

Json SentryKey::ToJson() const {
  Json j = {{"project_id", project_id},
            {"public_key", public_key},
            {"token_id", token_id},
            {"repo", repo},
            {"created_at", created_at_ms}};
  if (revoked_at_ms) j["revoked_at"] = *revoked_at_ms;
  return j;
}

Result<std::unique_ptr<SentryKeys>> SentryKeys::Open(const std::string& db_path,
                                                     const Clock* clock) {
  LOOM_ASSIGN_OR_RETURN(auto db, Db::OpenMigrated(db_path));
  return std::unique_ptr<SentryKeys>(new SentryKeys(std::move(db), clock));
}

Result<SentryKey> SentryKeys::Create(std::string_view repo, int64_t token_id) {
  LOOM_ASSIGN_OR_RETURN(std::string key, RandomHex(16));
  MutexLock lock(&mu_);
  LOOM_ASSIGN_OR_RETURN(
      Statement * ins,
      db_->Prepare("INSERT INTO sentry_keys(public_key, token_id, repo, created_at) "
                   "VALUES(?,?,?,?)"));
  LOOM_RETURN_IF_ERROR(ins->BindAll(key, token_id, repo, clock_->NowMs()).Run());
  int64_t id = db_->LastInsertRowId();
  return db_->QueryOne(std::string("SELECT ") + kKeyColumns + " FROM sentry_keys WHERE id=?",
                       "no DSN " + std::to_string(id), ReadKey, id);
}

Result<std::vector<SentryKey>> SentryKeys::List() {
  MutexLock lock(&mu_);
  LOOM_ASSIGN_OR_RETURN(Statement * q, db_->Prepare(std::string("SELECT ") + kKeyColumns +
                                                    " FROM sentry_keys ORDER BY id"));
  std::vector<SentryKey> out;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    out.push_back(ReadKey(*q));
  }
  return out;
}

Result<SentryKey> SentryKeys::Revoke(int64_t project_id) {
  MutexLock lock(&mu_);
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      db_->Prepare("UPDATE sentry_keys SET revoked_at=? WHERE id=? AND revoked_at IS NULL"));
  LOOM_RETURN_IF_ERROR(q->BindAll(clock_->NowMs(), project_id).Run());
  cache_.erase(project_id);
  return db_->QueryOne(std::string("SELECT ") + kKeyColumns + " FROM sentry_keys WHERE id=?",
                       "no DSN with project id " + std::to_string(project_id), ReadKey, project_id);
}

Result<SentryKey> SentryKeys::Lookup(int64_t project_id) {
  MutexLock lock(&mu_);
  const int64_t now = clock_->NowMs();
  if (auto it = cache_.find(project_id); it != cache_.end() && now - it->second.at_ms < 1000) {
    return it->second.key;
  }
  Result<SentryKey> key =
      db_->QueryOne(std::string("SELECT ") + kKeyColumns + " FROM sentry_keys WHERE id=?",
                    "no DSN with project id " + std::to_string(project_id), ReadKey, project_id);
  if (key.ok() && key->revoked_at_ms) {
    key = Status::PermissionDenied("the DSN of project " + std::to_string(project_id) +
                                   " was revoked");
  }
  if (key.ok() || key.status().code() == StatusCode::kNotFound ||
      key.status().code() == StatusCode::kPermissionDenied) {
    if (cache_.size() > 10000) cache_.clear();
    cache_.insert_or_assign(project_id, Cached{key, now});
  }
  return key;
}

}  // namespace loom::feedback
