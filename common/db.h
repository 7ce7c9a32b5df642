// SQLite, the way loomd uses it: one database file in WAL mode, numbered
// migrations applied in order at open, prepared statements, and transactions
// that are either committed or rolled back (RAII).
//
// A Db is one connection: thread-compatible (use it from one thread at a time).
// Components that write from a dedicated thread open their own Db on the same
// file; WAL lets readers proceed while a writer commits. Durability: commits
// use synchronous=FULL, so a row whose commit returned survives kill -9 and
// power loss.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace loom {

// One step of a database's schema. Each module declares the migrations of the
// tables it owns; the program that owns the database file assembles them into
// one list (AssembleMigrations; loomd's is orchestrator/schema.h, numbered 1, 2,
// 3, ... without gaps). The runner only requires increasing versions, so that a
// module's tests can make its tables alone from its own migrations; a database
// made from such a partial list is for those tests, never for loomd.
struct Migration {
  int version;      // increasing; each applied exactly once, in order
  std::string sql;  // may hold several statements
};

// Merges modules' migrations into one list ordered by version. A version that
// several modules contribute to becomes one migration (one transaction) whose
// SQL is theirs in the order the modules are given.
std::vector<Migration> AssembleMigrations(const std::vector<std::vector<Migration>>& modules);

class Statement;

class Db {
 public:
  enum class Durability { kFull, kNormal };
  struct Options {
    Durability durability = Durability::kFull;
    int busy_timeout_ms = 5000;
    bool read_only = false;
  };

  // Opens (creating if needed) the database at `path` and applies the
  // migrations it has not seen (tracked in PRAGMA user_version). A database
  // newer than the migrations known to this binary is refused.
  static Result<std::unique_ptr<Db>> Open(const std::string& path,
                                          const std::vector<Migration>& migrations,
                                          Options options);
  static Result<std::unique_ptr<Db>> Open(const std::string& path,
                                          const std::vector<Migration>& migrations) {
    return Open(path, migrations, Options{});
  }
  // Opens the existing database at `path` as it is, without migrating it: for a
  // store that shares a database whose owner migrated it first (loomd does at
  // start). FailedPrecondition when the file has no schema yet.
  static Result<std::unique_ptr<Db>> OpenMigrated(const std::string& path, Options options);
  static Result<std::unique_ptr<Db>> OpenMigrated(const std::string& path) {
    return OpenMigrated(path, Options{});
  }
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // Runs statements that return no rows.
  Status Exec(std::string_view sql);
  // Prepares one statement (cached: preparing the same SQL again is cheap).
  Result<Statement*> Prepare(std::string_view sql);
  // The query-one idiom: prepares `sql`, binds `args` from index 1, steps
  // once and returns `read(row)` for the first row, or NotFound(`not_found`)
  // when there is none. The statement is reset before this returns, so no read
  // stays open. `read` is called as T(const Statement&).
  template <typename Read, typename... Args>
  auto QueryOne(std::string_view sql, std::string_view not_found, Read&& read, const Args&... args)
      -> Result<std::invoke_result_t<Read&, const Statement&>>;
  // As QueryOne, but no row is std::nullopt rather than an error.
  template <typename Read, typename... Args>
  auto QueryOptional(std::string_view sql, Read&& read, const Args&... args)
      -> Result<std::optional<std::invoke_result_t<Read&, const Statement&>>>;

  int64_t LastInsertRowId() const;
  int Changes() const;
  int SchemaVersion() const { return schema_version_; }
  const std::string& path() const { return path_; }

  Status Begin();  // BEGIN IMMEDIATE: takes the write lock now, not at the first write
  Status Commit();
  Status Rollback();

 private:
  Db() = default;
  static Result<std::unique_ptr<Db>> OpenImpl(const std::string& path,
                                              const std::vector<Migration>* migrations,
                                              Options options);
  Status Migrate(const std::vector<Migration>& migrations);
  Result<int> UserVersion();
  Status Error(std::string_view what) const;

  struct Closer {
    void operator()(sqlite3* db) const;
  };
  std::unique_ptr<sqlite3, Closer> db_;
  std::vector<std::pair<std::string, std::unique_ptr<Statement>>> cache_;
  std::string path_;
  int schema_version_ = 0;
  friend class Statement;
};

// A prepared statement owned by its Db. Bind parameters by 1-based index,
// Step() through rows, read columns by 0-based index. Reset() happens on the
// next Bind*/Step after the last row, or explicitly.
class Statement {
 public:
  ~Statement();
  Statement& Bind(int index, int64_t v);
  Statement& Bind(int index, double v);
  Statement& Bind(int index, std::string_view v);
  Statement& Bind(int index, const char* v) { return Bind(index, std::string_view(v)); }
  Statement& Bind(int index, const std::string& v) { return Bind(index, std::string_view(v)); }
  Statement& Bind(int index, int v) { return Bind(index, static_cast<int64_t>(v)); }
  Statement& Bind(int index, const std::optional<std::string>& v);
  Statement& BindNull(int index);
  // Binds several values from index 1.
  template <typename... Args>
  Statement& BindAll(const Args&... args) {
    int i = 0;
    (Bind(++i, args), ...);
    return *this;
  }

  // true: a row is ready; false: done. Errors (constraint, busy, I/O) as Status.
  Result<bool> Step();
  // Steps to completion, for statements that return no rows.
  Status Run();
  void Reset();

  bool IsNull(int col) const;
  int64_t Int(int col) const;
  double Double(int col) const;
  std::string Text(int col) const;
  std::optional<std::string> OptionalText(int col) const;

 private:
  friend class Db;
  Statement(Db* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  void ResetIfDone();
  Db* db_;
  sqlite3_stmt* stmt_;
  bool done_ = false;
  Status bind_error_;
};

template <typename Read, typename... Args>
auto Db::QueryOptional(std::string_view sql, Read&& read, const Args&... args)
    -> Result<std::optional<std::invoke_result_t<Read&, const Statement&>>> {
  using T = std::invoke_result_t<Read&, const Statement&>;
  LOOM_ASSIGN_OR_RETURN(Statement * q, Prepare(sql));
  if constexpr (sizeof...(args) > 0) q->BindAll(args...);
  LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
  if (!row) return std::optional<T>();
  std::optional<T> value(read(static_cast<const Statement&>(*q)));
  q->Reset();
  return value;
}

template <typename Read, typename... Args>
auto Db::QueryOne(std::string_view sql, std::string_view not_found, Read&& read,
                  const Args&... args) -> Result<std::invoke_result_t<Read&, const Statement&>> {
  LOOM_ASSIGN_OR_RETURN(auto value, QueryOptional(sql, read, args...));
  if (!value) return Status::NotFound(std::string(not_found));
  return std::move(*value);
}

// Rolls back unless Commit() was called.
class Transaction {
 public:
  explicit Transaction(Db* db) : db_(db) {}
  ~Transaction() {
    if (active_) (void)db_->Rollback();
  }
  Status Begin() {
    LOOM_RETURN_IF_ERROR(db_->Begin());
    active_ = true;
    return Status::Ok();
  }
  Status Commit() {
    active_ = false;
    return db_->Commit();
  }

 private:
  Db* db_;
  bool active_ = false;
};

}  // namespace loom
