#include "common/auth.h"

#include <strings.h>

#include <algorithm>
#include <cctype>

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
      {8, R"sql(
        -- The web origins whose pages may use a reporter token from a browser (CORS).
        CREATE TABLE token_origins(
          token_id INTEGER NOT NULL REFERENCES tokens(id),
          origin TEXT NOT NULL,                -- normalised: https://app.example[:port]
          PRIMARY KEY(token_id, origin)
        ) WITHOUT ROWID;
        CREATE INDEX token_origins_by_origin ON token_origins(origin);
      )sql"},
      {13, R"sql(
        -- The dashboard's sign-in sessions: a token exchanged for a cookie.
        CREATE TABLE sessions(
          id INTEGER PRIMARY KEY,
          hash TEXT NOT NULL UNIQUE,           -- sha256 of the cookie's value; never the value
          token_id INTEGER NOT NULL REFERENCES tokens(id),
          created_at INTEGER NOT NULL,
          expires_at INTEGER NOT NULL          -- ms since the epoch
        );
        CREATE INDEX sessions_by_expiry ON sessions(expires_at);
      )sql"},
  };
  return kMigrations;
}

Result<std::unique_ptr<TokenStore>> TokenStore::Open(const std::string& db_path,
                                                     const Clock* clock) {
  LOOM_ASSIGN_OR_RETURN(auto db, Db::OpenMigrated(db_path));
  return std::unique_ptr<TokenStore>(new TokenStore(std::move(db), clock));
}

Result<std::string> NormalizeOrigin(std::string_view origin) {
  std::string o(origin);
  std::transform(o.begin(), o.end(), o.begin(), [](unsigned char c) { return std::tolower(c); });
  auto bad = [&](std::string_view why) {
    return Status::InvalidArgument("bad origin '" + std::string(origin) + "': " + std::string(why) +
                                   " (expected scheme://host[:port], like https://app.example)");
  };
  std::string scheme;
  if (o.starts_with("https://")) {
    scheme = "https";
  } else if (o.starts_with("http://")) {
    scheme = "http";
  } else {
    return bad("the scheme must be http or https");
  }
  std::string rest = o.substr(scheme.size() + 3);
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.empty()) return bad("no host");
  for (unsigned char c : rest) {
    if (c == '/' || c == '?' || c == '#') return bad("an origin has no path, query or fragment");
    if (c == '@') return bad("an origin has no user name or password");
    if (c == '*') return bad("wildcards are not allowed: list each origin");
    if (!(std::isalnum(c) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']')) {
      return bad("the host has a character a host cannot have");
    }
  }
  std::string host = rest, port;
  if (size_t colon = rest.rfind(':'); colon != std::string::npos && rest.back() != ']') {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](unsigned char c) { return std::isdigit(c); }) ||
        std::stoi(port) == 0 || std::stoi(port) > 65535) {
      return bad("the port must be a number from 1 to 65535");
    }
    if ((scheme == "https" && port == "443") || (scheme == "http" && port == "80")) port.clear();
  }
  if (host.empty()) return bad("no host");
  return scheme + "://" + host + (port.empty() ? "" : ":" + port);
}

std::optional<std::string> CrossOrigin(const HttpRequest& request) {
  std::string_view origin = request.Header("Origin");
  if (origin.empty()) return std::nullopt;
  std::string host(request.Header("Host"));
  std::transform(host.begin(), host.end(), host.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  std::string o(origin);
  std::transform(o.begin(), o.end(), o.begin(), [](unsigned char c) { return std::tolower(c); });
  if (!host.empty() && (o == "http://" + host || o == "https://" + host)) return std::nullopt;
  return std::string(origin);
}

namespace {
Result<std::vector<std::string>> NormalizeOrigins(Role role,
                                                  const std::vector<std::string>& origins) {
  std::vector<std::string> out;
  for (const std::string& o : origins) {
    LOOM_ASSIGN_OR_RETURN(std::string n, NormalizeOrigin(o));
    out.push_back(std::move(n));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (!out.empty() && role != Role::kReporter) {
    return Status::InvalidArgument("origins are for reporter tokens (the feedback widget); a " +
                                   std::string(RoleName(role)) +
                                   " token is never usable from another site's page");
  }
  if (out.size() > 64) return Status::InvalidArgument("at most 64 origins per token");
  return out;
}
}  // namespace

Status TokenStore::WriteOriginsLocked(int64_t id, const std::vector<std::string>& origins) {
  LOOM_ASSIGN_OR_RETURN(Statement * del,
                        db_->Prepare("DELETE FROM token_origins WHERE token_id=?"));
  LOOM_RETURN_IF_ERROR(del->BindAll(id).Run());
  LOOM_ASSIGN_OR_RETURN(Statement * ins,
                        db_->Prepare("INSERT INTO token_origins(token_id, origin) VALUES(?,?)"));
  for (const std::string& o : origins) LOOM_RETURN_IF_ERROR(ins->BindAll(id, o).Run());
  return Status::Ok();
}

Result<std::vector<std::string>> TokenStore::OriginsLocked(int64_t id) {
  LOOM_ASSIGN_OR_RETURN(
      Statement * q,
      db_->Prepare("SELECT origin FROM token_origins WHERE token_id=? ORDER BY origin"));
  q->BindAll(id);
  std::vector<std::string> out;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    out.push_back(q->Text(0));
  }
  return out;
}

Result<std::string> TokenStore::Create(Role role, std::string_view name,
                                       std::optional<int64_t> expires_at_ms,
                                       const std::vector<std::string>& origins) {
  LOOM_ASSIGN_OR_RETURN(std::vector<std::string> allowed, NormalizeOrigins(role, origins));
  LOOM_ASSIGN_OR_RETURN(std::string secret, RandomHex(32));
  std::string token = "loom_" + secret;
  MutexLock lock(&mu_);
  Transaction tx(db_.get());
  LOOM_RETURN_IF_ERROR(tx.Begin());
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
  LOOM_RETURN_IF_ERROR(WriteOriginsLocked(db_->LastInsertRowId(), allowed));
  LOOM_RETURN_IF_ERROR(tx.Commit());
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
    LOOM_ASSIGN_OR_RETURN(p.origins, OriginsLocked(p.token_id));
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
  for (TokenInfo& t : out) {
    LOOM_ASSIGN_OR_RETURN(t.origins, OriginsLocked(t.id));
  }
  return out;
}

Result<TokenInfo> TokenStore::GetLocked(int64_t id) {
  LOOM_ASSIGN_OR_RETURN(
      TokenInfo t, db_->QueryOne(std::string("SELECT ") + kTokenColumns + " FROM tokens WHERE id=?",
                                 "no token " + std::to_string(id), ReadToken, id));
  LOOM_ASSIGN_OR_RETURN(t.origins, OriginsLocked(id));
  return t;
}

Result<TokenInfo> TokenStore::SetOrigins(int64_t id, const std::vector<std::string>& origins) {
  MutexLock lock(&mu_);
  LOOM_ASSIGN_OR_RETURN(TokenInfo t, GetLocked(id));
  LOOM_ASSIGN_OR_RETURN(std::vector<std::string> allowed, NormalizeOrigins(t.role, origins));
  Transaction tx(db_.get());
  LOOM_RETURN_IF_ERROR(tx.Begin());
  LOOM_RETURN_IF_ERROR(WriteOriginsLocked(id, allowed));
  LOOM_RETURN_IF_ERROR(tx.Commit());
  std::erase_if(cache_, [id](const auto& entry) { return entry.second.principal.token_id == id; });
  return GetLocked(id);
}

Result<bool> TokenStore::AnyTokenAllows(std::string_view origin) {
  auto normal = NormalizeOrigin(origin);
  if (!normal.ok()) return false;
  MutexLock lock(&mu_);
  LOOM_ASSIGN_OR_RETURN(auto found,
                        db_->QueryOptional(
                            "SELECT 1 FROM token_origins o JOIN tokens t ON t.id = o.token_id "
                            "WHERE o.origin=? AND t.revoked_at IS NULL AND "
                            "(t.expires_at IS NULL OR t.expires_at > ?) LIMIT 1",
                            [](const Statement&) { return true; }, *normal, clock_->NowMs()));
  return found.has_value();
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

std::string_view CookieValue(const HttpRequest& request, std::string_view name) {
  for (const auto& [key, value] : request.headers) {
    if (key.size() != 6 || strncasecmp(key.c_str(), "cookie", 6) != 0) continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      size_t semi = rest.find(';');
      std::string_view pair = rest.substr(0, semi);
      while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
      if (pair.size() > name.size() && pair.substr(0, name.size()) == name &&
          pair[name.size()] == '=') {
        return pair.substr(name.size() + 1);
      }
      if (semi == std::string_view::npos) break;
      rest.remove_prefix(semi + 1);
    }
  }
  return {};
}

std::string TokenStore::CsrfFor(std::string_view id) {
  return Sha256Hex("loom-csrf:" + std::string(id));
}

Result<Principal> TokenStore::PrincipalLocked(int64_t id) {
  LOOM_ASSIGN_OR_RETURN(TokenInfo t, GetLocked(id));
  if (t.revoked_at_ms) return Status::Unauthenticated("the session's token was revoked");
  if (t.expires_at_ms && clock_->NowMs() >= *t.expires_at_ms) {
    return Status::Unauthenticated("the session's token has expired: ask an admin for a new one");
  }
  Principal p;
  p.token_id = t.id;
  p.role = t.role;
  p.name = t.name;
  p.expires_at_ms = t.expires_at_ms;
  p.origins = t.origins;
  return p;
}

Result<SessionGrant> TokenStore::CreateSession(std::string_view token, int64_t lifetime_ms) {
  LOOM_ASSIGN_OR_RETURN(Principal p, Lookup(token));
  LOOM_ASSIGN_OR_RETURN(std::string id, RandomHex(32));
  int64_t now = clock_->NowMs();
  int64_t expires = now + std::max<int64_t>(lifetime_ms, 1);
  if (p.expires_at_ms) expires = std::min(expires, *p.expires_at_ms);
  MutexLock lock(&mu_);
  LOOM_ASSIGN_OR_RETURN(Statement * purge,
                        db_->Prepare("DELETE FROM sessions WHERE expires_at<=?"));
  LOOM_RETURN_IF_ERROR(purge->BindAll(now).Run());
  LOOM_ASSIGN_OR_RETURN(
      Statement * ins,
      db_->Prepare("INSERT INTO sessions(hash, token_id, created_at, expires_at) VALUES(?,?,?,?)"));
  LOOM_RETURN_IF_ERROR(ins->BindAll(Sha256Hex(id), p.token_id, now, expires).Run());
  return SessionGrant{id, CsrfFor(id), std::move(p), expires};
}

Result<SessionGrant> TokenStore::LookupSession(std::string_view id) {
  int64_t now = clock_->NowMs();
  MutexLock lock(&mu_);
  struct Row {
    int64_t token_id, expires_at;
  };
  LOOM_ASSIGN_OR_RETURN(std::optional<Row> row,
                        db_->QueryOptional(
                            "SELECT token_id, expires_at FROM sessions WHERE hash=?",
                            [](const Statement& r) {
                              return Row{r.Int(0), r.Int(1)};
                            },
                            Sha256Hex(id)));
  if (!row) return Status::Unauthenticated("unknown session: sign in again");
  if (now >= row->expires_at)
    return Status::Unauthenticated("the session has expired: sign in again");
  LOOM_ASSIGN_OR_RETURN(Principal p, PrincipalLocked(row->token_id));
  return SessionGrant{std::string(id), CsrfFor(id), std::move(p), row->expires_at};
}

Status TokenStore::EndSession(std::string_view id) {
  MutexLock lock(&mu_);
  LOOM_ASSIGN_OR_RETURN(Statement * del, db_->Prepare("DELETE FROM sessions WHERE hash=?"));
  return del->BindAll(Sha256Hex(id)).Run();
}

namespace {
bool ChangesState(std::string_view method) {
  return method != "GET" && method != "HEAD" && method != "OPTIONS";
}

// Constant-time comparison of two secrets of public length.
bool SameSecret(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}
}  // namespace

Result<Principal> TokenStore::Authenticate(const HttpRequest& request) {
  std::string_view h = request.Header("Authorization");
  Principal p;
  if (h.empty()) {
    std::string_view session = CookieValue(request, kSessionCookie);
    if (session.empty()) {
      return Status::Unauthenticated(
          "missing Authorization header: send 'Authorization: Bearer <token>' (or sign in to the "
          "dashboard)");
    }
    LOOM_ASSIGN_OR_RETURN(SessionGrant grant, LookupSession(session));
    if (ChangesState(request.method) && !SameSecret(request.Header(kCsrfHeader), grant.csrf)) {
      return Status::PermissionDenied(
          "a request made with the session cookie that changes something must carry the "
          "session's CSRF token in the X-Loom-CSRF header");
    }
    p = std::move(grant.principal);
  } else {
    constexpr std::string_view kBearer = "Bearer ";
    if (h.size() <= kBearer.size() || h.substr(0, kBearer.size()) != kBearer) {
      return Status::Unauthenticated("the Authorization header must be 'Bearer <token>'");
    }
    LOOM_ASSIGN_OR_RETURN(p, Lookup(h.substr(kBearer.size())));
  }
  if (std::optional<std::string> origin = CrossOrigin(request)) {
    auto normal = NormalizeOrigin(*origin);
    if (!normal.ok() || !std::binary_search(p.origins.begin(), p.origins.end(), *normal)) {
      return Status::PermissionDenied("this token may not be used from pages of " + *origin +
                                      ": an admin can allow that origin with `loom token update " +
                                      std::to_string(p.token_id) + " --origin " +
                                      (normal.ok() ? *normal : *origin) + "`");
    }
  }
  return p;
}

}  // namespace loom
