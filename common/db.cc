#include "common/db.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

namespace loom {

void Db::Closer::operator()(sqlite3* db) const { sqlite3_close_v2(db); }

Status Db::Error(std::string_view what) const {
  int code = sqlite3_extended_errcode(db_.get());
  std::string msg = std::string(what) + ": " + sqlite3_errmsg(db_.get()) + " (" + path_ + ")";
  switch (code & 0xff) {
    case SQLITE_CONSTRAINT:
      return Status::AlreadyExists(msg);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status::Unavailable(msg);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status::Corruption(msg);
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
      return Status::IoError(msg);
    default:
      return Status::Internal(msg);
  }
}

std::vector<Migration> AssembleMigrations(const std::vector<std::vector<Migration>>& modules) {
  std::vector<Migration> out;
  for (const auto& module : modules) {
    for (const Migration& m : module) {
      auto it = out.begin();
      while (it != out.end() && it->version < m.version) ++it;
      if (it != out.end() && it->version == m.version) {
        it->sql += m.sql;
      } else {
        out.insert(it, m);
      }
    }
  }
  return out;
}

Result<std::unique_ptr<Db>> Db::Open(const std::string& path,
                                     const std::vector<Migration>& migrations, Options options) {
  return OpenImpl(path, &migrations, options);
}

Result<std::unique_ptr<Db>> Db::OpenMigrated(const std::string& path, Options options) {
  LOOM_ASSIGN_OR_RETURN(auto db, OpenImpl(path, nullptr, options));
  if (db->schema_version_ == 0) {
    return Status::FailedPrecondition("database " + path +
                                      " has no schema yet: it is opened with its migrations first "
                                      "(loomd migrates it at start)");
  }
  return db;
}

Result<std::unique_ptr<Db>> Db::OpenImpl(const std::string& path,
                                         const std::vector<Migration>* migrations,
                                         Options options) {
  std::unique_ptr<Db> db(new Db());
  db->path_ = path;
  sqlite3* raw = nullptr;
  int flags =
      SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE |
      (options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (!options.read_only && !path.empty() && path[0] != ':' && !path.starts_with("file:")) {
    // Private before SQLite opens it: SQLite gives the -wal and -shm files it
    // makes the database's mode, so they are never readable by others. Files an
    // older version left readable are tightened. Errors surface from the open below.
    // Only a missing file is made here: closing a descriptor of a database file
    // drops every POSIX lock this process holds on it, the shared lock of its
    // other connections included, and another process that then closes its last
    // connection believes it is the last one, checkpoints and deletes the -wal
    // and -shm files under them: their later reads are stale and their commits
    // go to an unlinked WAL (SQLite's "How To Corrupt", 2.2).
    struct stat existing;
    if (::stat(path.c_str(), &existing) != 0) {
      int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd >= 0) ::close(fd);
    }
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      std::string file = path + suffix;
      struct stat st;
      if (::stat(file.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
        ::chmod(file.c_str(), st.st_mode & 0700);
      }
    }
  }
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  db->db_.reset(raw);
  if (rc != SQLITE_OK) {
    return Status::IoError("cannot open database " + path + ": " +
                           (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  sqlite3_busy_timeout(raw, options.busy_timeout_ms);
  sqlite3_extended_result_codes(raw, 1);
  if (!options.read_only) {
    LOOM_RETURN_IF_ERROR(db->Exec("PRAGMA journal_mode=WAL"));
  }
  LOOM_RETURN_IF_ERROR(db->Exec(options.durability == Durability::kFull
                                    ? "PRAGMA synchronous=FULL"
                                    : "PRAGMA synchronous=NORMAL"));
  LOOM_RETURN_IF_ERROR(db->Exec("PRAGMA foreign_keys=ON"));
  if (!options.read_only && migrations) LOOM_RETURN_IF_ERROR(db->Migrate(*migrations));
  LOOM_ASSIGN_OR_RETURN(db->schema_version_, db->UserVersion());
  return db;
}

Db::~Db() {
  cache_.clear();  // finalize statements before the connection closes
}

Status Db::Migrate(const std::vector<Migration>& migrations) {
  LOOM_ASSIGN_OR_RETURN(int current, UserVersion());
  int newest = migrations.empty() ? 0 : migrations.back().version;
  if (current > newest) {
    return Status::FailedPrecondition(
        "database " + path_ + " has schema version " + std::to_string(current) +
        " but this binary knows only up to " + std::to_string(newest) + ": use a newer loomd");
  }
  int previous = 0;
  for (const auto& m : migrations) {
    if (m.version <= previous) {
      return Status::Internal("migrations must be numbered in increasing order");
    }
    previous = m.version;
    if (m.version <= current) continue;
    Transaction tx(this);
    LOOM_RETURN_IF_ERROR(tx.Begin());
    Status s = Exec(m.sql);
    if (!s.ok()) return s.WithContext("migration " + std::to_string(m.version));
    LOOM_RETURN_IF_ERROR(Exec("PRAGMA user_version=" + std::to_string(m.version)));
    LOOM_RETURN_IF_ERROR(tx.Commit());
  }
  return Status::Ok();
}

Result<int> Db::UserVersion() {
  LOOM_ASSIGN_OR_RETURN(std::optional<int> v,
                        QueryOptional("PRAGMA user_version", [](const Statement& row) {
                          return static_cast<int>(row.Int(0));
                        }));
  return v.value_or(0);
}

Status Db::Exec(std::string_view sql) {
  std::string s(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_.get(), s.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    return Error("executing '" + s.substr(0, 60) + "'").WithContext(msg);
  }
  return Status::Ok();
}

Result<Statement*> Db::Prepare(std::string_view sql) {
  for (auto& [text, stmt] : cache_) {
    if (text == sql) {
      stmt->Reset();
      return stmt.get();
    }
  }
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v3(db_.get(), sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
  if (rc != SQLITE_OK) return Error("preparing '" + std::string(sql.substr(0, 80)) + "'");
  cache_.emplace_back(std::string(sql), std::unique_ptr<Statement>(new Statement(this, raw)));
  return cache_.back().second.get();
}

int64_t Db::LastInsertRowId() const { return sqlite3_last_insert_rowid(db_.get()); }
int Db::Changes() const { return sqlite3_changes(db_.get()); }
Status Db::Begin() { return Exec("BEGIN IMMEDIATE"); }
Status Db::Commit() { return Exec("COMMIT"); }
Status Db::Rollback() { return Exec("ROLLBACK"); }

Statement::~Statement() { sqlite3_finalize(stmt_); }

void Statement::ResetIfDone() {
  if (done_) Reset();
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  done_ = false;
  bind_error_ = Status::Ok();
}

Statement& Statement::Bind(int index, int64_t v) {
  ResetIfDone();
  if (sqlite3_bind_int64(stmt_, index, v) != SQLITE_OK) bind_error_ = db_->Error("bind");
  return *this;
}
Statement& Statement::Bind(int index, double v) {
  ResetIfDone();
  if (sqlite3_bind_double(stmt_, index, v) != SQLITE_OK) bind_error_ = db_->Error("bind");
  return *this;
}
Statement& Statement::Bind(int index, std::string_view v) {
  ResetIfDone();
  if (sqlite3_bind_text64(stmt_, index, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8) !=
      SQLITE_OK) {
    bind_error_ = db_->Error("bind");
  }
  return *this;
}
Statement& Statement::Bind(int index, const std::optional<std::string>& v) {
  return v ? Bind(index, std::string_view(*v)) : BindNull(index);
}
Statement& Statement::BindNull(int index) {
  ResetIfDone();
  if (sqlite3_bind_null(stmt_, index) != SQLITE_OK) bind_error_ = db_->Error("bind");
  return *this;
}

Result<bool> Statement::Step() {
  if (!bind_error_.ok()) return bind_error_;
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  done_ = true;
  if (rc == SQLITE_DONE) return false;
  Status s = db_->Error("step");
  sqlite3_reset(stmt_);
  return s;
}

Status Statement::Run() {
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, Step());
    if (!row) return Status::Ok();
  }
}

bool Statement::IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
int64_t Statement::Int(int col) const { return sqlite3_column_int64(stmt_, col); }
double Statement::Double(int col) const { return sqlite3_column_double(stmt_, col); }
std::string Statement::Text(int col) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
  int n = sqlite3_column_bytes(stmt_, col);
  return p ? std::string(p, static_cast<size_t>(n)) : std::string();
}
std::optional<std::string> Statement::OptionalText(int col) const {
  if (IsNull(col)) return std::nullopt;
  return Text(col);
}

}  // namespace loom
