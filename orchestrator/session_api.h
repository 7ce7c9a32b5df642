// The dashboard's sign-in (docs/dashboard.md): a token exchanged for a session
// cookie, and sign-out.
//
//   POST   /v1/session   {token} -> 201 {role, name, token_id, csrf, expires_at_ms}
//                        and Set-Cookie: loom_session=...; HttpOnly; SameSite=Strict;
//                        Path=/; Max-Age=...; Secure when the page came over HTTPS
//   GET    /v1/session   the cookie's session: 200 as above (the page reads its
//                        CSRF token here after a reload), 401 when there is none
//   DELETE /v1/session   ends the cookie's session (needs X-Loom-CSRF) and clears it
//
// Engineer and admin tokens only: a reporter token is meant to be public (the
// widget) and gains nothing from a session. A sign-in from another origin is
// refused. The routes answer on the I/O thread (one indexed SQLite row each).
// Thread-safe.
#pragma once

#include <cstdint>

#include "common/auth.h"
#include "common/http_server.h"

namespace loom {

struct SessionOptions {
  int64_t lifetime_ms = int64_t{12} * 3600 * 1000;
};

// REQUIRES: `tokens` outlives the router's use.
void RegisterSessionRoutes(Router& router, TokenStore* tokens, SessionOptions options);

}  // namespace loom
