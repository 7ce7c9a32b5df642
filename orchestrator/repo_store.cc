// The repos table. See repo_store.h.
#include "orchestrator/repo_store.h"

#include <filesystem>

#include "feedback/intake.h"

namespace loom {
namespace {

repos::RepoRecord ReadRepo(const Statement& r) {
  repos::RepoRecord repo;
  repo.name = r.Text(0);
  repo.path = r.Text(1);
  repo.settings.target_branch = r.Text(2);
  repo.test_command = r.Text(3);
  return repo;
}

constexpr const char* kRepoColumns = "name, path, target_branch, test_command";

}  // namespace

const std::vector<Migration>& RepoStore::Migrations() {
  static const std::vector<Migration> kMigrations = {
      {2, R"sql(
        CREATE TABLE repos(
          id INTEGER PRIMARY KEY,
          name TEXT NOT NULL UNIQUE,
          path TEXT NOT NULL,
          target_branch TEXT NOT NULL,
          test_command TEXT NOT NULL,
          created_at INTEGER NOT NULL
        );
      )sql"},
  };
  return kMigrations;
}

Json RepoJson(const repos::RepoRecord& repo) {
  return {{"name", repo.name},
          {"path", repo.path},
          {"branch", repo.settings.target_branch},
          {"test_command", repo.test_command}};
}

Result<repos::RepoRecord> RepoStore::Register(repos::RepoRecord record,
                                              const repos::RemoteCredentials& credentials) {
  // libgit2 work, outside the lock.
  std::string clone;  // the clone made here, removed if registration fails
  Result<repos::RemoteUrl> url = repos::ParseRemoteUrl(record.path);
  if (url.ok() && url->kind != repos::RemoteKind::kLocalPath) {
    if (clones_dir_.empty()) {
      return Status::InvalidArgument("this registry cannot clone '" + record.path +
                                     "': give a local path");
    }
    {
      auto lock = db_->AcquireReader();
      LOOM_ASSIGN_OR_RETURN(auto taken, lock.db()->QueryOptional(
                                            "SELECT 1 FROM repos WHERE name=?",
                                            [](const Statement&) { return true; }, record.name));
      if (taken.has_value()) {
        return Status::AlreadyExists("a repository named '" + record.name +
                                     "' is already registered");
      }
    }
    std::error_code ec;
    std::filesystem::create_directories(clones_dir_, ec);
    std::string source = std::move(record.path);
    record.path = clones_dir_ + "/" + record.name + ".git";
    LOOM_ASSIGN_OR_RETURN(record, repos::CloneRepository(source, std::move(record), credentials));
    clone = record.path;
  } else if (!url.ok() && url.status().code() == StatusCode::kInvalidArgument &&
             record.path.find("://") != std::string::npos) {
    return url.status();
  } else {
    LOOM_ASSIGN_OR_RETURN(record, repos::CheckRepository(std::move(record)));
  }
  Result<repos::RepoRecord> registered = Insert(std::move(record));
  if (!registered.ok() && !clone.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(clone, ec);
  }
  return registered;
}

Result<repos::RepoRecord> RepoStore::Insert(repos::RepoRecord record) {
  auto lock = db_->Acquire();
  Transaction tx(lock.db());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  LOOM_ASSIGN_OR_RETURN(Statement * q,
                        lock.db()->Prepare("INSERT INTO repos(name, path, target_branch, "
                                           "test_command, created_at) VALUES(?,?,?,?,?)"));
  Status s = q->BindAll(record.name, record.path, record.settings.target_branch,
                        record.test_command, lock.NowMs())
                 .Run();
  if (s.code() == StatusCode::kAlreadyExists) {
    return Status::AlreadyExists("a repository named '" + record.name + "' is already registered");
  }
  LOOM_RETURN_IF_ERROR(s);
  LOOM_ASSIGN_OR_RETURN(int64_t registered, Count(lock));
  using Unnamed = feedback::TriageQueue::Unnamed;
  LOOM_RETURN_IF_ERROR(
      feedback::TriageQueue(lock.db())
          .RequeueUnroutable(record.name, registered == 1 ? Unnamed::kRequeue : Unnamed::kStay)
          .status());
  LOOM_RETURN_IF_ERROR(tx.Commit());
  return record;
}

Result<repos::RepoRecord> RepoStore::Get(const std::string& name) {
  auto lock = db_->AcquireReader();
  return lock.db()->QueryOne(std::string("SELECT ") + kRepoColumns + " FROM repos WHERE name=?",
                             "no repository named '" + name + "'", ReadRepo, name);
}

Result<std::vector<repos::RepoRecord>> RepoStore::List() {
  auto lock = db_->AcquireReader();
  LOOM_ASSIGN_OR_RETURN(Statement * q, lock.db()->Prepare(std::string("SELECT ") + kRepoColumns +
                                                          " FROM repos ORDER BY name"));
  std::vector<repos::RepoRecord> out;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    out.push_back(ReadRepo(*q));
  }
  q->Reset();
  return out;
}

Result<bool> RepoStore::IsRegistered(const StoreDb::Lock& lock, const std::string& name) {
  LOOM_ASSIGN_OR_RETURN(auto known, lock.db()->QueryOptional(
                                        "SELECT 1 FROM repos WHERE name=?",
                                        [](const Statement&) { return true; }, name));
  return known.has_value();
}

Result<std::optional<std::string>> RepoStore::OnlyRepository(const StoreDb::Lock& lock) {
  LOOM_ASSIGN_OR_RETURN(Statement * q, lock.db()->Prepare("SELECT name FROM repos LIMIT 2"));
  std::vector<std::string> names;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    names.push_back(q->Text(0));
  }
  if (names.size() != 1) return std::optional<std::string>();
  return std::optional<std::string>(names[0]);
}

Result<int64_t> RepoStore::Count(const StoreDb::Lock& lock) {
  return lock.db()->QueryOne("SELECT count(*) FROM repos", "no count",
                             [](const Statement& r) { return r.Int(0); });
}

}  // namespace loom
