// Sign-in and sign-out over TokenStore's sessions. The cookie carries only the
// random session id; its attributes keep it from scripts (HttpOnly), from other
// sites' requests (SameSite=Strict) and, behind HTTPS, from plain HTTP (Secure).
#include "orchestrator/session_api.h"

#include "common/json.h"
#include "common/json_reader.h"

namespace loom {
namespace {

// Behind a TLS-terminating proxy the page is HTTPS although loomd speaks HTTP.
bool OverHttps(const HttpRequest& req) {
  return req.Header("X-Forwarded-Proto") == "https" || req.Header("Origin").starts_with("https://");
}

std::string Cookie(const HttpRequest& req, std::string_view value, int64_t max_age_s) {
  return std::string(kSessionCookie) + "=" + std::string(value) +
         "; HttpOnly; SameSite=Strict; Path=/; Max-Age=" + std::to_string(max_age_s) +
         (OverHttps(req) ? "; Secure" : "");
}

Json SessionJson(const SessionGrant& s) {
  return {{"role", RoleName(s.principal.role)},
          {"name", s.principal.name},
          {"token_id", s.principal.token_id},
          {"csrf", s.csrf},
          {"expires_at_ms", s.expires_at_ms}};
}

HttpResponse WithNoStore(HttpResponse r) {
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

void SignIn(TokenStore* tokens, const SessionOptions& options, HttpRequest& req,
            std::shared_ptr<HttpExchange> ex) {
  if (std::optional<std::string> origin = CrossOrigin(req)) {
    return ex->Respond(ErrorResponse(
        Status::PermissionDenied("signing in from pages of " + *origin + " is not allowed")));
  }
  auto body = ParseJson(req.body);
  if (!body.ok()) return ex->Respond(ErrorResponse(body.status()));
  std::string token;
  JsonReader in(*body);
  in.String("token", &token, Presence::kNonEmpty);
  if (!in.ok()) return ex->Respond(ErrorResponse(in.status(), in.field()));
  auto who = tokens->Lookup(token);
  if (!who.ok()) return ex->Respond(ErrorResponse(who.status(), "token"));
  if (!who->AtLeast(Role::kEngineer)) {
    return ex->Respond(ErrorResponse(
        Status::PermissionDenied("the dashboard is for engineer and admin tokens"), "token"));
  }
  auto session = tokens->CreateSession(token, options.lifetime_ms);
  if (!session.ok()) return ex->Respond(ErrorResponse(session.status(), "token"));
  HttpResponse r = WithNoStore(HttpResponse::Json(201, DumpJson(SessionJson(*session))));
  int64_t max_age_s = std::max<int64_t>(options.lifetime_ms / 1000, 1);
  r.headers.emplace_back("Set-Cookie", Cookie(req, session->id, max_age_s));
  ex->Respond(std::move(r));
}

void Show(TokenStore* tokens, HttpRequest& req, std::shared_ptr<HttpExchange> ex) {
  std::string_view id = CookieValue(req, kSessionCookie);
  if (id.empty()) {
    return ex->Respond(WithNoStore(
        ErrorResponse(Status::Unauthenticated("not signed in: POST /v1/session {token}"))));
  }
  auto session = tokens->LookupSession(id);
  if (!session.ok()) return ex->Respond(WithNoStore(ErrorResponse(session.status())));
  ex->Respond(WithNoStore(HttpResponse::Json(200, DumpJson(SessionJson(*session)))));
}

void SignOut(TokenStore* tokens, HttpRequest& req, std::shared_ptr<HttpExchange> ex) {
  std::string_view id = CookieValue(req, kSessionCookie);
  if (id.empty()) {
    return ex->Respond(ErrorResponse(Status::Unauthenticated("not signed in")));
  }
  // The same check as every cookie request that changes state (CSRF included).
  if (!req.Header("Authorization").empty()) {
    return ex->Respond(ErrorResponse(
        Status::InvalidArgument("DELETE /v1/session ends the cookie's session: send no token")));
  }
  auto who = tokens->Authenticate(req);
  if (!who.ok()) return ex->Respond(ErrorResponse(who.status()));
  if (Status s = tokens->EndSession(id); !s.ok()) return ex->Respond(ErrorResponse(s));
  HttpResponse r = WithNoStore(HttpResponse::Json(200, "{\"signed_out\":true}"));
  r.headers.emplace_back("Set-Cookie", Cookie(req, "", 0));
  ex->Respond(std::move(r));
}

}  // namespace

void RegisterSessionRoutes(Router& router, TokenStore* tokens, SessionOptions options) {
  router.Add("POST", "/v1/session",
             [tokens, options](HttpRequest& r, std::shared_ptr<HttpExchange> ex) {
               SignIn(tokens, options, r, std::move(ex));
             });
  router.Add("GET", "/v1/session", [tokens](HttpRequest& r, std::shared_ptr<HttpExchange> ex) {
    Show(tokens, r, std::move(ex));
  });
  router.Add("DELETE", "/v1/session", [tokens](HttpRequest& r, std::shared_ptr<HttpExchange> ex) {
    SignOut(tokens, r, std::move(ex));
  });
}

}  // namespace loom
