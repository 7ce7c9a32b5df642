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
  repo.origin = r.Text(4);
  return repo;
}

constexpr const char* kRepoColumns = "name, path, target_branch, test_command, origin";

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
      {9, R"sql(
        -- A repository cloned from a server: the URL, and the names of the
        -- secrets (orchestrator/remote_credentials.h) that reach it.
        ALTER TABLE repos ADD COLUMN origin TEXT NOT NULL DEFAULT '';
        ALTER TABLE repos ADD COLUMN remote_username TEXT NOT NULL DEFAULT '';
        ALTER TABLE repos ADD COLUMN password_secret TEXT NOT NULL DEFAULT '';
        ALTER TABLE repos ADD COLUMN ssh_key_secret TEXT NOT NULL DEFAULT '';
        ALTER TABLE repos ADD COLUMN ssh_passphrase_secret TEXT NOT NULL DEFAULT '';
        ALTER TABLE repos ADD COLUMN known_hosts_secret TEXT NOT NULL DEFAULT '';
        ALTER TABLE repos ADD COLUMN accept_any_host_key INTEGER NOT NULL DEFAULT 0;
        -- This data dir's id, made once: task branch and worktree names carry it.
        CREATE TABLE instance(
          id INTEGER PRIMARY KEY CHECK (id = 1),
          name TEXT NOT NULL
        );
        INSERT INTO instance(id, name) VALUES (1, 'i' || lower(hex(randomblob(4))));
      )sql"},
  };
  return kMigrations;
}

Json RepoJson(const repos::RepoRecord& repo, const std::optional<RepoRemote>& remote) {
  Json j = {{"name", repo.name},
            {"path", repo.path},
            {"branch", repo.settings.target_branch},
            {"test_command", repo.test_command}};
  if (remote) {
    Json r = {{"url", remote->url}};
    const RemoteSecretNames& n = remote->secrets;
    for (const auto& [field, value] :
         {std::pair{"username", &n.username}, std::pair{"password_secret", &n.password},
          std::pair{"ssh_key_secret", &n.ssh_key},
          std::pair{"ssh_passphrase_secret", &n.ssh_passphrase},
          std::pair{"known_hosts_secret", &n.known_hosts}}) {
      if (!value->empty()) r[field] = *value;
    }
    if (n.accept_any_host_key) r["accept_any_host_key"] = true;
    j["remote"] = std::move(r);
  }
  return j;
}

Result<repos::RepoRecord> RepoStore::Register(repos::RepoRecord record,
                                              const repos::RemoteCredentials& credentials,
                                              const RemoteSecretNames& secret_names) {
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
  // Secret names mean something only for a clone.
  Result<repos::RepoRecord> registered =
      Insert(std::move(record), clone.empty() ? RemoteSecretNames{} : secret_names);
  if (!registered.ok() && !clone.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(clone, ec);
  }
  return registered;
}

Result<repos::RepoRecord> RepoStore::Insert(repos::RepoRecord record,
                                            const RemoteSecretNames& names) {
  auto lock = db_->Acquire();
  Transaction tx(lock.db());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      lock.db()->Prepare("INSERT INTO repos(name, path, target_branch, test_command, created_at, "
                         "origin, remote_username, password_secret, ssh_key_secret, "
                         "ssh_passphrase_secret, known_hosts_secret, accept_any_host_key) "
                         "VALUES(?,?,?,?,?,?,?,?,?,?,?,?)"));
  Status s = q->BindAll(record.name, record.path, record.settings.target_branch,
                        record.test_command, lock.NowMs(), record.origin, names.username,
                        names.password, names.ssh_key, names.ssh_passphrase, names.known_hosts,
                        int64_t{names.accept_any_host_key ? 1 : 0})
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

Result<std::optional<RepoRemote>> RepoStore::Remote(const std::string& name) {
  auto lock = db_->AcquireReader();
  LOOM_ASSIGN_OR_RETURN(
      RepoRemote remote,
      lock.db()->QueryOne(
          "SELECT origin, remote_username, password_secret, ssh_key_secret, "
          "ssh_passphrase_secret, known_hosts_secret, accept_any_host_key FROM repos WHERE name=?",
          "no repository named '" + name + "'",
          [](const Statement& r) {
            RepoRemote out;
            out.url = r.Text(0);
            out.secrets.username = r.Text(1);
            out.secrets.password = r.Text(2);
            out.secrets.ssh_key = r.Text(3);
            out.secrets.ssh_passphrase = r.Text(4);
            out.secrets.known_hosts = r.Text(5);
            out.secrets.accept_any_host_key = r.Int(6) != 0;
            return out;
          },
          name));
  if (remote.url.empty()) return std::optional<RepoRemote>();
  return std::optional<RepoRemote>(std::move(remote));
}

Result<std::string> RepoStore::InstanceId() {
  auto lock = db_->AcquireReader();
  return lock.db()->QueryOne("SELECT name FROM instance WHERE id=1",
                             "the database has no instance id (migration 9)",
                             [](const Statement& r) { return r.Text(0); });
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
