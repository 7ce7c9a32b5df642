#include "common/auth.h"

#include <chrono>

#include "common/crypto.h"
#include "common/schema.h"

namespace loom {

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kReporter:
      return "reporter";
    case Role::kEngineer:
      return "engineer";
    case Role::kAdmin:
      return "admin";
  }
  return "?";
}

Result<Role> ParseRole(std::string_view name) {
  for (Role r : {Role::kReporter, Role::kEngineer, Role::kAdmin}) {
    if (name == RoleName(r)) return r;
  }
  return Status::InvalidArgument("unknown role '" + std::string(name) +
                                 "': use reporter, engineer or admin");
}

Result<std::unique_ptr<TokenStore>> TokenStore::Open(const std::string& db_path) {
  LOOM_ASSIGN_OR_RETURN(auto db, Db::Open(db_path, LoomMigrations()));
  return std::unique_ptr<TokenStore>(new TokenStore(std::move(db)));
}

Result<std::string> TokenStore::Create(Role role, std::string_view name) {
  LOOM_ASSIGN_OR_RETURN(std::string secret, RandomHex(32));
  std::string token = "loom_" + secret;
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  std::lock_guard<std::mutex> lock(mu_);
  LOOM_ASSIGN_OR_RETURN(
      Statement * ins,
      db_->Prepare("INSERT INTO tokens(hash, role, name, created_at) VALUES(?,?,?,?)"));
  LOOM_RETURN_IF_ERROR(ins->BindAll(Sha256Hex(token), RoleName(role), name, now).Run());
  return token;
}

Result<bool> TokenStore::HasAdmin() {
  std::lock_guard<std::mutex> lock(mu_);
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      db_->Prepare("SELECT 1 FROM tokens WHERE role='admin' AND revoked_at IS NULL"));
  LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
  q->Reset();
  return row;
}

Result<Principal> TokenStore::Lookup(std::string_view token) {
  std::string hash = Sha256Hex(token);
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = cache_.find(hash); it != cache_.end()) return it->second;
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      db_->Prepare("SELECT id, role, name FROM tokens WHERE hash=? AND revoked_at IS NULL"));
  q->Bind(1, std::string_view(hash));
  LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
  if (!row) return Status::Unauthenticated("unknown token");
  Principal p;
  p.token_id = q->Int(0);
  auto role = ParseRole(q->Text(1));
  if (!role.ok())
    return Status::Corruption("token " + std::to_string(p.token_id) + " has a bad role");
  p.role = *role;
  p.name = q->Text(2);
  q->Reset();
  cache_[hash] = p;
  return p;
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
