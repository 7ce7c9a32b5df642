// Bearer tokens with roles. A token is "loom_" + 32 random bytes in hex; only
// its SHA-256 is stored, so a copy of the database does not give access.
//
// A token may expire (expires_at) and may be revoked (revoked_at); either ends
// it at once. Lookups are cached in memory (hash -> principal) for at most
// kCacheTtl: a revocation through Revoke() drops the cached entry immediately,
// and a row changed in the database by anyone else takes effect within
// kCacheTtl. Expiry is checked on every lookup, cached or not. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/db.h"
#include "common/http_server.h"
#include "common/mutex.h"
#include "common/role.h"
#include "common/status.h"

namespace loom {

// The migrations of the tokens table (assembled with the other modules' by
// loomd: orchestrator/schema.h).
const std::vector<Migration>& TokenMigrations();

struct Principal {
  int64_t token_id = 0;
  Role role = Role::kReporter;
  std::string name;
  std::optional<int64_t> expires_at_ms;
  // True when the role is at least `min`: admin > engineer > reporter.
  bool AtLeast(Role min) const { return static_cast<int>(role) >= static_cast<int>(min); }
};

// What an admin sees of a token (never the token itself).
struct TokenInfo {
  int64_t id = 0;
  Role role = Role::kReporter;
  std::string name;
  int64_t created_at_ms = 0;
  std::optional<int64_t> expires_at_ms;
  std::optional<int64_t> revoked_at_ms;
};

class TokenStore {
 public:
  static constexpr int64_t kCacheTtlMs = 1000;

  // Opens its own connection to the database at `db_path`.
  static Result<std::unique_ptr<TokenStore>> Open(const std::string& db_path,
                                                  const Clock* clock = SystemClock::Default());

  // Creates a token and returns it in clear text; it cannot be shown again.
  // With `expires_at_ms`, it is refused from that time on.
  Result<std::string> Create(Role role, std::string_view name,
                             std::optional<int64_t> expires_at_ms = std::nullopt);
  // True when at least one usable admin token exists (bootstrap refuses a second time).
  Result<bool> HasAdmin();
  // Unauthenticated when the token is unknown, revoked or expired.
  Result<Principal> Lookup(std::string_view token);
  // Reads "Authorization: Bearer <token>": Unauthenticated when it is missing
  // or not usable.
  Result<Principal> Authenticate(const HttpRequest& request);

  // Every token, oldest first.
  Result<std::vector<TokenInfo>> List();
  Result<TokenInfo> Get(int64_t id);
  // Revokes token `id`; requests with it are refused from now on. NotFound when
  // there is no such token; revoking a revoked token changes nothing.
  Result<TokenInfo> Revoke(int64_t id);

 private:
  struct Cached {
    Principal principal;
    int64_t cached_at_ms;
  };
  TokenStore(std::unique_ptr<Db> db, const Clock* clock) : db_(std::move(db)), clock_(clock) {}
  Result<TokenInfo> GetLocked(int64_t id) REQUIRES(mu_);

  Mutex mu_;
  std::unique_ptr<Db> db_ GUARDED_BY(mu_);
  const Clock* clock_;
  std::unordered_map<std::string, Cached> cache_ GUARDED_BY(mu_);
};

}  // namespace loom
