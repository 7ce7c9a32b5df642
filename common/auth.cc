#include "common/auth.h"

#include "common/crypto.h"

namespace loom {

const std::vector<Migration>& TokenMigrations() {
  static const std::vector<Migration> kMigrations = {
      {1, R"sql(
        CREATE TABLE tokens(
          id INTEGER PRIMARY KEY,
          hash TEXT NOT NULL UNIQUE,          -- sha256 of the bearer token; the token itself is never stored
          role TEXT NOT NULL CHECK(role IN ('reporter', 'engineer', 'admin')),
          name TEXT NOT NULL DEFAULT '',
          created_at INTEGER NOT NULL,
          revoked_at INTEGER
        );
      )sql"},
      {4, R"sql(
        ALTER TABLE tokens ADD COLUMN expires_at INTEGER;  -- ms since the epoch; NULL: never
      )sql"},
  };
  return kMigrations;
}

Result<std::unique_ptr<TokenStore>> TokenStore::Open(const std::string& db_path,
                                                     const Clock* clock) {
  LOOM_ASSIGN_OR_RETURN(auto db, Db::OpenMigrated(db_path));
  return std::unique_ptr<TokenStore>(new TokenStore(std::move(db), clock));
}

Result<std::string> TokenStore::Create(Role role, std::string_view name,
                                       std::optional<int64_t> expires_at_ms) {
  LOOM_ASSIGN_OR_RETURN(std::string secret, RandomHex(32));
  std::string token = "loom_" + secret;
  MutexLock lock(&mu_);
  LOOM_ASSIGN_OR_RETURN(
      Statement * ins,
      db_->Prepare(
          "INSERT INTO tokens(hash, role, name, created_at, expires_at) VALUES(?,?,?,?,?)"));
  ins->BindAll(Sha256Hex(token), RoleName(role), name, clock_->NowMs());
  if (expires_at_ms) {
    ins->Bind(5, *expires_at_ms);
  } else {
    ins->BindNull(5);
  }
  LOOM_RETURN_IF_ERROR(ins->Run());
  return token;
}

Result<bool> TokenStore::HasAdmin() {
  MutexLock lock(&mu_);
  LOOM_ASSIGN_OR_RETURN(auto admin, db_->QueryOptional(
                                        "SELECT 1 FROM tokens WHERE role='admin' AND revoked_at "
                                        "IS NULL AND (expires_at IS NULL OR expires_at > ?)",
                                        [](const Statement&) { return true; }, clock_->NowMs()));
  return admin.has_value();
}

Result<Principal> TokenStore::Lookup(std::string_view token) {
  std::string hash = Sha256Hex(token);
  int64_t now = clock_->NowMs();
  MutexLock lock(&mu_);
  Principal p;
  if (auto it = cache_.find(hash); it != cache_.end() &&
                                   now - it->second.cached_at_ms < kCacheTtlMs &&
                                   now >= it->second.cached_at_ms) {
    p = it->second.principal;
  } else {
    cache_.erase(hash);
    struct Row {
      int64_t id;
      std::string role, name;
      std::optional<int64_t> expires_at_ms;
    };
    LOOM_ASSIGN_OR_RETURN(
        std::optional<Row> row,
        db_->QueryOptional(
            "SELECT id, role, name, expires_at FROM tokens WHERE hash=? AND revoked_at IS NULL",
            [](const Statement& r) {
              return Row{r.Int(0), r.Text(1), r.Text(2),
                         r.IsNull(3) ? std::nullopt : std::optional<int64_t>(r.Int(3))};
            },
            hash));
    if (!row) return Status::Unauthenticated("unknown or revoked token");
    p.token_id = row->id;
    auto role = ParseRole(row->role);
    if (!role.ok()) {
      return Status::Corruption("token " + std::to_string(p.token_id) + " has a bad role");
    }
    p.role = *role;
    p.name = row->name;
    p.expires_at_ms = row->expires_at_ms;
    cache_[hash] = {p, now};
  }
  if (p.expires_at_ms && now >= *p.expires_at_ms) {
    return Status::Unauthenticated("token " + std::to_string(p.token_id) +
                                   " has expired: ask an admin for a new one");
  }
  return p;
}

namespace {
constexpr const char* kTokenColumns = "id, role, name, created_at, expires_at, revoked_at";

TokenInfo ReadToken(const Statement& r) {
  TokenInfo t;
  t.id = r.Int(0);
  t.role = ParseRole(r.Text(1)).value_or(Role::kReporter);
  t.name = r.Text(2);
  t.created_at_ms = r.Int(3);
  if (!r.IsNull(4)) t.expires_at_ms = r.Int(4);
  if (!r.IsNull(5)) t.revoked_at_ms = r.Int(5);
  return t;
}
}  // namespace

Result<std::vector<TokenInfo>> TokenStore::List() {
  MutexLock lock(&mu_);
  LOOM_ASSIGN_OR_RETURN(Statement * q, db_->Prepare(std::string("SELECT ") + kTokenColumns +
                                                    " FROM tokens ORDER BY id"));
  std::vector<TokenInfo> out;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    out.push_back(ReadToken(*q));
  }
  return out;
}

Result<TokenInfo> TokenStore::GetLocked(int64_t id) {
  return db_->QueryOne(std::string("SELECT ") + kTokenColumns + " FROM tokens WHERE id=?",
                       "no token " + std::to_string(id), ReadToken, id);
}

Result<TokenInfo> TokenStore::Get(int64_t id) {
  MutexLock lock(&mu_);
  return GetLocked(id);
}

Result<TokenInfo> TokenStore::Revoke(int64_t id) {
  MutexLock lock(&mu_);
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      db_->Prepare("UPDATE tokens SET revoked_at=? WHERE id=? AND revoked_at IS NULL"));
  LOOM_RETURN_IF_ERROR(q->BindAll(clock_->NowMs(), id).Run());
  std::erase_if(cache_, [id](const auto& entry) { return entry.second.principal.token_id == id; });
  return GetLocked(id);
}

Result<Principal> TokenStore::Authenticate(const HttpRequest& request) {
  std::string_view h = request.Header("Authorization");
  if (h.empty()) {
    return Status::Unauthenticated(
        "missing Authorization header: send 'Authorization: Bearer <token>'");
  }
  constexpr std::string_view kBearer = "Bearer ";
  if (h.size() <= kBearer.size() || h.substr(0, kBearer.size()) != kBearer) {
    return Status::Unauthenticated("the Authorization header must be 'Bearer <token>'");
  }
  return Lookup(h.substr(kBearer.size()));
}

}  // namespace loom
