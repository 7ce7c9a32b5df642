// Bearer tokens with roles. A token is "loom_" + 32 random bytes in hex; only
// its SHA-256 is stored, so a copy of the database does not give access.
//
// A token may expire (expires_at) and may be revoked (revoked_at); either ends
// it at once. Lookups are cached in memory (hash -> principal) for at most
// kCacheTtl: a revocation through Revoke() drops the cached entry immediately,
// and a row changed in the database by anyone else takes effect within
// kCacheTtl. Expiry is checked on every lookup, cached or not. Thread-safe.
//
// A reporter token may carry origins (https://app.example): the web origins
// whose pages may use it from a browser (the feedback widget). A request that a
// browser sends from another origin (its Origin header names neither one of them
// nor loomd's own host) is refused with PermissionDenied, whatever the route: a
// token copied out of one app's page works in no other site's. Requests without
// an Origin header (the CLI, curl, an app's server) are not browsers' and pass.
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
  std::vector<std::string> origins;  // normalised (NormalizeOrigin), sorted
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
  std::vector<std::string> origins;
};

// "https://App.Example:443/" -> "https://app.example": a web origin as browsers
// send it in the Origin header (lower case, no default port, no path).
// InvalidArgument, saying what is wrong, for anything else (a path, a query,
// userinfo, a scheme other than http or https, "*", "null").
Result<std::string> NormalizeOrigin(std::string_view origin);

// The request's Origin header when a browser sent it from another origin than
// loomd's own (its Host header); nullopt for a same-origin or a non-browser
// request.
std::optional<std::string> CrossOrigin(const HttpRequest& request);

class TokenStore {
 public:
  static constexpr int64_t kCacheTtlMs = 1000;

  // Opens its own connection to the database at `db_path`.
  static Result<std::unique_ptr<TokenStore>> Open(const std::string& db_path,
                                                  const Clock* clock = SystemClock::Default());

  // Creates a token and returns it in clear text; it cannot be shown again.
  // With `expires_at_ms`, it is refused from that time on.
  // `origins` (reporter tokens only) are normalised with NormalizeOrigin.
  Result<std::string> Create(Role role, std::string_view name,
                             std::optional<int64_t> expires_at_ms = std::nullopt,
                             const std::vector<std::string>& origins = {});
  // True when at least one usable admin token exists (bootstrap refuses a second time).
  Result<bool> HasAdmin();
  // Unauthenticated when the token is unknown, revoked or expired.
  Result<Principal> Lookup(std::string_view token);
  // Reads "Authorization: Bearer <token>": Unauthenticated when it is missing
  // or not usable; PermissionDenied when a browser sent it from an origin the
  // token does not allow (CrossOrigin).
  Result<Principal> Authenticate(const HttpRequest& request);
  // True when some usable token allows `origin` (a CORS preflight, which carries
  // no token, is answered for such an origin only).
  Result<bool> AnyTokenAllows(std::string_view origin);

  // Every token, oldest first.
  Result<std::vector<TokenInfo>> List();
  Result<TokenInfo> Get(int64_t id);
  // Revokes token `id`; requests with it are refused from now on. NotFound when
  // there is no such token; revoking a revoked token changes nothing.
  Result<TokenInfo> Revoke(int64_t id);
  // Replaces token `id`'s origins (an empty list: none, browsers are refused).
  // InvalidArgument for a bad origin or origins on a token that is not a
  // reporter's; NotFound when there is no such token.
  Result<TokenInfo> SetOrigins(int64_t id, const std::vector<std::string>& origins);

 private:
  struct Cached {
    Principal principal;
    int64_t cached_at_ms;
  };
  TokenStore(std::unique_ptr<Db> db, const Clock* clock) : db_(std::move(db)), clock_(clock) {}
  Result<TokenInfo> GetLocked(int64_t id) REQUIRES(mu_);
  Result<std::vector<std::string>> OriginsLocked(int64_t id) REQUIRES(mu_);
  Status WriteOriginsLocked(int64_t id, const std::vector<std::string>& origins) REQUIRES(mu_);

  Mutex mu_;
  std::unique_ptr<Db> db_ GUARDED_BY(mu_);
  const Clock* clock_;
  std::unordered_map<std::string, Cached> cache_ GUARDED_BY(mu_);
};

}  // namespace loom
