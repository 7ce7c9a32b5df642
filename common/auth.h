// Bearer tokens with roles. A token is "loom_" + 32 random bytes in hex; only
// its SHA-256 is stored, so a copy of the database does not give access.
// Lookups are cached in memory (hash -> principal); revocation is not yet
// supported, so the cache never goes stale. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/db.h"
#include "common/http_server.h"
#include "common/status.h"

namespace loom {

enum class Role { kReporter = 0, kEngineer = 1, kAdmin = 2 };
std::string_view RoleName(Role role);
Result<Role> ParseRole(std::string_view name);

struct Principal {
  int64_t token_id = 0;
  Role role = Role::kReporter;
  std::string name;
  // True when the role is at least `min`: admin > engineer > reporter.
  bool AtLeast(Role min) const { return static_cast<int>(role) >= static_cast<int>(min); }
};

class TokenStore {
 public:
  // Opens its own connection to the database at `db_path`.
  static Result<std::unique_ptr<TokenStore>> Open(const std::string& db_path);

  // Creates a token and returns it in clear text; it cannot be shown again.
  Result<std::string> Create(Role role, std::string_view name);
  // True when at least one admin token exists (bootstrap refuses a second time).
  Result<bool> HasAdmin();
  // Unauthenticated when the token is unknown.
  Result<Principal> Lookup(std::string_view token);
  // Reads "Authorization: Bearer <token>": Unauthenticated when it is missing
  // or unknown.
  Result<Principal> Authenticate(const HttpRequest& request);

 private:
  explicit TokenStore(std::unique_ptr<Db> db) : db_(std::move(db)) {}
  std::mutex mu_;
  std::unique_ptr<Db> db_;                            // GUARDED_BY(mu_)
  std::unordered_map<std::string, Principal> cache_;  // GUARDED_BY(mu_)
};

}  // namespace loom
