// The Sentry ingestion endpoint (see sentry.h). A request goes: DSN lookup and
// key check, CORS, rate limit, decompression (capped), parse and scrub of the
// whole envelope, then one SubmitCrash whose answer is sent after the commit.
// Every refusal is a 4xx with {"error": ...} and a `detail` Sentry's tools
// print; nothing is stored for a refused request.
#include <charconv>
#include <map>

#include "common/crypto.h"
#include "common/json_reader.h"
#include "common/mutex.h"
#include "feedback/internal/decompress.h"
#include "feedback/internal/envelope.h"
#include "feedback/sentry.h"

namespace loom::feedback {
namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;

std::optional<int64_t> ParsePositive(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v <= 0) return std::nullopt;
  return v;
}

// sentry_key from "Sentry sentry_key=abc, sentry_version=7, sentry_client=..."
std::string KeyFromAuthHeader(std::string_view h) {
  if (h.size() >= 7 && (h.substr(0, 7) == "Sentry " || h.substr(0, 7) == "sentry ")) {
    h.remove_prefix(7);
  }
  while (!h.empty()) {
    size_t comma = h.find(',');
    std::string_view part = h.substr(0, comma);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    if (part.starts_with("sentry_key=")) return std::string(part.substr(11));
    if (comma == std::string_view::npos) break;
    h.remove_prefix(comma + 1);
  }
  return "";
}

HttpResponse Refuse(int status, const std::string& message) {
  Json body = {{"detail", message},
               {"error",
                {{"code", status == 413   ? "too_large"
                          : status == 429 ? "rate_limited"
                          : status == 401 ? "unauthenticated"
                          : status == 403 ? "forbidden"
                          : status == 404 ? "not_found"
                          : status == 415 ? "unsupported_encoding"
                                          : "invalid_request"},
                 {"message", message}}}};
  return HttpResponse::Json(status, DumpJson(body));
}

int StatusFor(const Status& s) {
  switch (s.code()) {
    case StatusCode::kResourceExhausted:
      return 413;
    case StatusCode::kUnimplemented:
      return 415;
    case StatusCode::kInvalidArgument:
      return 400;
    default:
      return HttpStatusFor(s.code());
  }
}

// Adds the CORS headers to whatever the wrapped exchange answers.
class CorsExchange : public HttpExchange {
 public:
  CorsExchange(std::shared_ptr<HttpExchange> inner, Headers headers)
      : inner_(std::move(inner)), headers_(std::move(headers)) {}
  void Respond(HttpResponse r) override {
    r.headers.insert(r.headers.end(), headers_.begin(), headers_.end());
    inner_->Respond(std::move(r));
  }
  void StartStream(int status, std::string content_type, Headers headers) override {
    headers.insert(headers.end(), headers_.begin(), headers_.end());
    inner_->StartStream(status, std::move(content_type), std::move(headers));
  }
  bool Write(std::string data) override { return inner_->Write(std::move(data)); }
  void Finish() override { inner_->Finish(); }
  bool ClientGone() const override { return inner_->ClientGone(); }

 private:
  const std::shared_ptr<HttpExchange> inner_;
  const Headers headers_;
};

}  // namespace

struct SentryApi::Impl {
  Store* store;
  SentryKeys* keys;
  TokenStore* tokens;
  RateLimiter* limiter;
  SentryOptions options;
  std::function<void()> on_stored;
  internal::EventLimits limits;
  Counter* requests;  // {endpoint, outcome}
  Counter* items;     // {type, outcome}

  // The DSN's token, read at most once a second per token: a crash storm
  // must not query the tokens table per event on the I/O threads.
  Mutex token_mu;
  std::map<int64_t, std::pair<Result<TokenInfo>, int64_t>> token_cache GUARDED_BY(token_mu);

  Result<TokenInfo> Token(int64_t id) EXCLUDES(token_mu) {
    const int64_t now = SystemClock::Default()->NowMs();
    MutexLock lock(&token_mu);
    auto it = token_cache.find(id);
    if (it != token_cache.end() && now - it->second.second < TokenStore::kCacheTtlMs) {
      return it->second.first;
    }
    Result<TokenInfo> info = tokens->Get(id);
    if (token_cache.size() > 10000) token_cache.clear();
    token_cache.insert_or_assign(id, std::pair(info, now));
    return info;
  }

  enum class Endpoint { kEnvelope, kStore };

  void Ingest(HttpRequest& req, std::shared_ptr<HttpExchange> ex, Endpoint endpoint) {
    const char* label = endpoint == Endpoint::kEnvelope ? "envelope" : "store";
    auto refuse = [&](int status, const std::string& message, const char* outcome) {
      requests->Add({label, outcome});
      ex->Respond(Refuse(status, message));
    };
    auto project = ParsePositive(req.params["project_id"]);
    if (!project)
      return refuse(404, "the project id in the URL must be a positive number", "bad_key");
    std::string key = KeyFromAuthHeader(req.Header("X-Sentry-Auth"));
    if (key.empty()) key = KeyFromAuthHeader(req.Header("Authorization"));
    if (key.empty()) {
      if (auto it = req.query.find("sentry_key"); it != req.query.end()) key = it->second;
    }
    Result<SentryKey> dsn = keys->Lookup(*project);
    std::optional<std::string> origin = CrossOrigin(req);
    if (origin) {
      // Browsers read the answer (and its rate limits) only with these.
      ex = std::make_shared<CorsExchange>(
          std::move(ex),
          Headers{{"Access-Control-Allow-Origin", *origin},
                  {"Vary", "Origin"},
                  {"Access-Control-Expose-Headers", "X-Sentry-Rate-Limits, Retry-After"}});
    }
    if (key.empty()) {
      return refuse(
          401, "no DSN key: send X-Sentry-Auth: Sentry sentry_key=... or ?sentry_key=", "bad_key");
    }
    if (!dsn.ok()) {
      return refuse(dsn.status().code() == StatusCode::kNotFound ? 404 : 403,
                    dsn.status().message(), "bad_key");
    }
    if (!ConstantTimeEquals(key, dsn->public_key)) {
      return refuse(401, "the key does not belong to project " + std::to_string(*project),
                    "bad_key");
    }
    Result<TokenInfo> token = Token(dsn->token_id);
    const int64_t now_ms = SystemClock::Default()->NowMs();
    if (!token.ok() || token->revoked_at_ms ||
        (token->expires_at_ms && *token->expires_at_ms <= now_ms)) {
      return refuse(403,
                    "the DSN's reporter token was revoked or expired: an admin makes a new DSN",
                    "bad_key");
    }
    if (origin && !token->origins.empty() &&
        std::find(token->origins.begin(), token->origins.end(), *origin) == token->origins.end()) {
      return refuse(403,
                    "pages of " + *origin +
                        " may not use this DSN: an admin allows it with "
                        "`loom token update " +
                        std::to_string(dsn->token_id) + " --origin " + *origin + "`",
                    "origin");
    }
    if (int64_t wait_ms = limiter->Acquire("dsn:" + std::to_string(*project)); wait_ms > 0) {
      int64_t secs = (wait_ms + 999) / 1000;
      HttpResponse r =
          Refuse(429, "too many events for this DSN; retry after " + std::to_string(secs) + " s");
      r.headers.emplace_back("Retry-After", std::to_string(secs));
      r.headers.emplace_back("X-Sentry-Rate-Limits", std::to_string(secs) + "::key");
      requests->Add({label, "rate_limited"});
      return ex->Respond(std::move(r));
    }
    auto body =
        internal::Decompress(req.body, req.Header("Content-Encoding"), options.max_envelope_bytes);
    if (!body.ok()) return refuse(StatusFor(body.status()), body.status().message(), "invalid");

    std::optional<CrashReport> event;
    std::string event_id;
    if (endpoint == Endpoint::kEnvelope) {
      auto parsed = internal::ParseEnvelope(*body, limits, *project, req.remote_address);
      if (!parsed.ok()) {
        return refuse(StatusFor(parsed.status()), parsed.status().message(), "invalid");
      }
      for (const auto& [type, n] : parsed->dropped) items->Add({ItemLabel(type), "dropped"}, n);
      event = std::move(parsed->event);
      event_id = parsed->event_id;
    } else {
      auto parsed = internal::ParseEvent(*body, limits, *project, req.remote_address);
      if (!parsed.ok()) {
        return refuse(StatusFor(parsed.status()), parsed.status().message(), "invalid");
      }
      event = std::move(*parsed);
      event_id = event->event_id;
    }
    if (!event) {
      requests->Add({label, "no_event"});
      return ex->Respond(HttpResponse::Json(200, DumpJson(Json{{"id", event_id}})));
    }
    event->token_id = dsn->token_id;
    event->repo = dsn->repo;
    store->SubmitCrash(std::move(*event), [this, ex, label, event_id](Result<SubmitResult> r) {
      if (!r.ok()) {
        requests->Add({label, "error"});
        return ex->Respond(ErrorResponse(r.status()));
      }
      requests->Add({label, "stored"});
      items->Add({"event", r->replayed ? "replayed" : r->status}, 1);
      if ((r->status == "new" || r->status == "reopened") && !r->replayed && on_stored) {
        on_stored();
      }
      ex->Respond(HttpResponse::Json(200, DumpJson(Json{{"id", event_id}})));
    });
  }

  // Item types as metric labels: Sentry's known ones, else "other" (an SDK
  // picks the type: raw, it would grow the label set without bound).
  static std::string ItemLabel(const std::string& type) {
    for (const char* known : {"session", "sessions", "transaction", "attachment", "client_report",
                              "user_report", "profile", "replay_event", "replay_recording",
                              "check_in", "span", "log", "statsd", "feedback"}) {
      if (type == known) return type;
    }
    return "other";
  }

  void Preflight(HttpRequest& req, std::shared_ptr<HttpExchange> ex) {
    HttpResponse r;
    r.status = 204;
    std::optional<std::string> origin = CrossOrigin(req);
    if (origin) {
      // The key is checked on the POST itself; a preflight carries none.
      r.headers = {{"Access-Control-Allow-Origin", *origin},
                   {"Vary", "Origin"},
                   {"Access-Control-Allow-Methods", "POST"},
                   {"Access-Control-Allow-Headers",
                    "Content-Type, Content-Encoding, X-Sentry-Auth, Authorization"},
                   {"Access-Control-Expose-Headers", "X-Sentry-Rate-Limits, Retry-After"},
                   {"Access-Control-Max-Age", "600"}};
    }
    ex->Respond(std::move(r));
  }

  Result<Principal> Admin(HttpRequest& req) {
    LOOM_ASSIGN_OR_RETURN(Principal who, tokens->Authenticate(req));
    if (!who.AtLeast(Role::kAdmin)) {
      return Status::PermissionDenied("only an admin token manages DSNs");
    }
    return who;
  }

  Json DsnJson(const SentryKey& k, const HttpRequest& req) {
    Json j = k.ToJson();
    std::string host(req.Header("Host"));
    if (host.empty()) host = "127.0.0.1";
    j["dsn"] = "http://" + k.public_key + "@" + host + "/" + std::to_string(k.project_id);
    return j;
  }

  void CreateDsn(HttpRequest& req, std::shared_ptr<HttpExchange> ex) {
    auto who = Admin(req);
    if (!who.ok()) return ex->Respond(ErrorResponse(who.status()));
    auto parsed = ParseJson(req.body);
    if (!parsed.ok()) return ex->Respond(ErrorResponse(parsed.status()));
    std::string repo;
    int64_t token_id = 0;
    JsonReader in(*parsed);
    in.String("repo", &repo, Presence::kNonEmpty)
        .Int("token_id", &token_id, Presence::kOptional, 1)
        .NoOtherMembers();
    if (!in.ok()) return ex->Respond(ErrorResponse(in.status(), in.field()));
    if (repo.size() > 200) {
      return ex->Respond(ErrorResponse(Status::InvalidArgument("repo is too long"), "repo"));
    }
    if (token_id != 0) {
      auto info = tokens->Get(token_id);
      if (!info.ok()) return ex->Respond(ErrorResponse(info.status(), "token_id"));
      if (info->role != Role::kReporter || info->revoked_at_ms) {
        return ex->Respond(
            ErrorResponse(Status::InvalidArgument("token " + std::to_string(token_id) +
                                                  " is not a usable reporter token"),
                          "token_id"));
      }
    } else {
      // A reporter token of its own, never shown: the DSN's key stands for it.
      auto token = tokens->Create(Role::kReporter, "sentry dsn for " + repo);
      if (!token.ok()) return ex->Respond(ErrorResponse(token.status()));
      auto principal = tokens->Lookup(*token);
      if (!principal.ok()) return ex->Respond(ErrorResponse(principal.status()));
      token_id = principal->token_id;
    }
    auto key = keys->Create(repo, token_id);
    if (!key.ok()) return ex->Respond(ErrorResponse(key.status()));
    ex->Respond(HttpResponse::Json(201, DumpJson(DsnJson(*key, req))));
  }

  void ListDsns(HttpRequest& req, std::shared_ptr<HttpExchange> ex) {
    auto who = Admin(req);
    if (!who.ok()) return ex->Respond(ErrorResponse(who.status()));
    auto list = keys->List();
    if (!list.ok()) return ex->Respond(ErrorResponse(list.status()));
    Json items = Json::array();
    for (const auto& k : *list) items.push_back(DsnJson(k, req));
    ex->Respond(HttpResponse::Json(200, DumpJson(Json{{"items", items}})));
  }

  void RevokeDsn(HttpRequest& req, std::shared_ptr<HttpExchange> ex) {
    auto who = Admin(req);
    if (!who.ok()) return ex->Respond(ErrorResponse(who.status()));
    auto id = ParsePositive(req.params["id"]);
    if (!id) return ex->Respond(ErrorResponse(Status::NotFound("no DSN " + req.params["id"])));
    auto key = keys->Revoke(*id);
    if (!key.ok()) return ex->Respond(ErrorResponse(key.status()));
    ex->Respond(HttpResponse::Json(200, DumpJson(DsnJson(*key, req))));
  }
};

SentryApi::SentryApi(Store* store, SentryKeys* keys, TokenStore* tokens, RateLimiter* limiter,
                     MetricsRegistry* metrics, SentryOptions options,
                     std::function<void()> on_stored)
    : impl_(std::make_unique<Impl>()) {
  impl_->store = store;
  impl_->keys = keys;
  impl_->tokens = tokens;
  impl_->limiter = limiter;
  impl_->options = options;
  impl_->on_stored = std::move(on_stored);
  impl_->limits.max_event_bytes = options.max_event_bytes;
  impl_->limits.max_breadcrumbs = options.breadcrumbs;
  impl_->limits.scrub = {options.scrub_emails, options.scrub_ip_addresses, options.scrub_secrets,
                         options.scrub_cards};
  impl_->requests = metrics->NewCounter("loom_sentry_requests_total",
                                        "Requests to the Sentry ingestion endpoints, by outcome.",
                                        {"endpoint", "outcome"});
  impl_->items = metrics->NewCounter(
      "loom_sentry_items_total",
      "Envelope items: events by what they did to their group (new, grouped, reopened, "
      "replayed), other types dropped.",
      {"type", "outcome"});
}

SentryApi::~SentryApi() = default;

void SentryApi::Register(Router& router) {
  Impl* impl = impl_.get();
  // The router ignores a trailing slash: "/api/1/envelope/" matches too.
  router.Add("POST", "/api/{project_id}/envelope",
             [impl](HttpRequest& r, std::shared_ptr<HttpExchange> ex) {
               impl->Ingest(r, std::move(ex), Impl::Endpoint::kEnvelope);
             });
  router.Add("POST", "/api/{project_id}/store",
             [impl](HttpRequest& r, std::shared_ptr<HttpExchange> ex) {
               impl->Ingest(r, std::move(ex), Impl::Endpoint::kStore);
             });
  for (const char* path : {"/api/{project_id}/envelope", "/api/{project_id}/store"}) {
    router.Add("OPTIONS", path, [impl](HttpRequest& r, std::shared_ptr<HttpExchange> ex) {
      impl->Preflight(r, std::move(ex));
    });
  }
  router.Add("POST", "/v1/sentry/dsns", [impl](HttpRequest& r, std::shared_ptr<HttpExchange> ex) {
    impl->CreateDsn(r, std::move(ex));
  });
  router.Add("GET", "/v1/sentry/dsns", [impl](HttpRequest& r, std::shared_ptr<HttpExchange> ex) {
    impl->ListDsns(r, std::move(ex));
  });
  router.Add("DELETE", "/v1/sentry/dsns/{id}",
             [impl](HttpRequest& r, std::shared_ptr<HttpExchange> ex) {
               impl->RevokeDsn(r, std::move(ex));
             });
}

}  // namespace loom::feedback
