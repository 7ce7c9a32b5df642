#include "common/auth.h"

#include "common/crypto.h"
#include "common/schema.h"

namespace loom {

Result<std::unique_ptr<TokenStore>> TokenStore::Open(const std::string& db_path,
                                                     const Clock* clock) {
  LOOM_ASSIGN_OR_RETURN(auto db, Db::Open(db_path, LoomMigrations()));
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
  LOOM_ASSIGN_OR_RETURN(Statement * q,
                        db_->Prepare("SELECT 1 FROM tokens WHERE role='admin' AND revoked_at IS "
                                     "NULL AND (expires_at IS NULL OR expires_at > ?)"));
  q->Bind(1, clock_->NowMs());
  LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
  q->Reset();
  return row;
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
    LOOM_ASSIGN_OR_RETURN(
        Statement * q,
        db_->Prepare(
            "SELECT id, role, name, expires_at FROM tokens WHERE hash=? AND revoked_at IS NULL"));
    q->Bind(1, std::string_view(hash));
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) return Status::Unauthenticated("unknown or revoked token");
    p.token_id = q->Int(0);
    auto role = ParseRole(q->Text(1));
    if (!role.ok()) {
      q->Reset();
      return Status::Corruption("token " + std::to_string(p.token_id) + " has a bad role");
    }
    p.role = *role;
    p.name = q->Text(2);
    if (!q->IsNull(3)) p.expires_at_ms = q->Int(3);
    q->Reset();
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

TokenInfo ReadToken(Statement* q) {
  TokenInfo t;
  t.id = q->Int(0);
  t.role = ParseRole(q->Text(1)).value_or(Role::kReporter);
  t.name = q->Text(2);
  t.created_at_ms = q->Int(3);
  if (!q->IsNull(4)) t.expires_at_ms = q->Int(4);
  if (!q->IsNull(5)) t.revoked_at_ms = q->Int(5);
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
    out.push_back(ReadToken(q));
  }
  return out;
}

Result<TokenInfo> TokenStore::GetLocked(int64_t id) {
  LOOM_ASSIGN_OR_RETURN(Statement * q, db_->Prepare(std::string("SELECT ") + kTokenColumns +
                                                    " FROM tokens WHERE id=?"));
  q->Bind(1, id);
  LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
  if (!row) return Status::NotFound("no token " + std::to_string(id));
  TokenInfo t = ReadToken(q);
  q->Reset();
  return t;
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
