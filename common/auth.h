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
//
// Sessions (the dashboard's sign-in, docs/dashboard.md): a token is exchanged
// once for a random session id, sent back by the browser as the httpOnly
// cookie `loom_session`. Only its SHA-256 is stored (the sessions table), with
// its token and an expiry; a request with the cookie acts with the token's role
// for as long as both the session and the token are usable (revoking the token
// ends its sessions). A cookie request that changes state (any method but GET,
// HEAD and OPTIONS) must also carry the session's CSRF token in `X-Loom-CSRF`
// (SHA-256 of "loom-csrf:" + the session id: a page of another site can neither
// read the cookie nor compute it); without it the request is refused (403).
// Requests with a bearer token are unaffected.
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

// The cookie and header of a browser session.
inline constexpr std::string_view kSessionCookie = "loom_session";
inline constexpr std::string_view kCsrfHeader = "X-Loom-CSRF";

// A session as its holder sees it: `id` is the cookie's value (shown once, at
// creation, and never stored), `csrf` what X-Loom-CSRF must carry.
struct SessionGrant {
  std::string id;
  std::string csrf;
  Principal principal;
  int64_t expires_at_ms = 0;
};

// The value of cookie `name` in the request's Cookie header(s); empty if none.
std::string_view CookieValue(const HttpRequest& request, std::string_view name);

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
  // Reads "Authorization: Bearer <token>", or without it the session cookie:
  // Unauthenticated when neither is there or usable; PermissionDenied when a
  // browser sent it from an origin the token does not allow (CrossOrigin), and
  // for a cookie request that changes state without the session's CSRF token.
  Result<Principal> Authenticate(const HttpRequest& request);

  // Exchanges `token` for a session that lasts `lifetime_ms` (never past the
  // token's own expiry). Unauthenticated for an unusable token. Expired sessions
  // are deleted on the way.
  Result<SessionGrant> CreateSession(std::string_view token, int64_t lifetime_ms);
  // The session with cookie value `id`: Unauthenticated when it is unknown,
  // expired or its token no longer usable.
  Result<SessionGrant> LookupSession(std::string_view id);
  // Ends the session (sign-out); ending an unknown one changes nothing.
  Status EndSession(std::string_view id);
  // The CSRF token of session `id`.
  static std::string CsrfFor(std::string_view id);
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
  // The principal of token `id` if it is neither revoked nor expired.
  Result<Principal> PrincipalLocked(int64_t id) REQUIRES(mu_);
  Result<std::vector<std::string>> OriginsLocked(int64_t id) REQUIRES(mu_);
  Status WriteOriginsLocked(int64_t id, const std::vector<std::string>& origins) REQUIRES(mu_);

  Mutex mu_;
  std::unique_ptr<Db> db_ GUARDED_BY(mu_);
  const Clock* clock_;
  std::unordered_map<std::string, Cached> cache_ GUARDED_BY(mu_);
};

}  // namespace loom
