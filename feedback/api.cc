#include "feedback/api.h"

#include <charconv>

#include "common/paging.h"

namespace loom::feedback {
namespace {

std::optional<int64_t> ParseId(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v <= 0) return std::nullopt;
  return v;
}

// An item as `who` may see it: reporters see their own items only, and not which
// item of someone else's theirs duplicates (so no id of another's item leaks).
Json ForCaller(const Item& item, const Principal& who) {
  Json j = item.ToJson();
  if (!who.AtLeast(Role::kEngineer)) j.erase("duplicate_of");
  return j;
}

// Adds `headers` to whatever the wrapped exchange answers.
class HeaderExchange : public HttpExchange {
 public:
  HeaderExchange(std::shared_ptr<HttpExchange> inner,
                 std::vector<std::pair<std::string, std::string>> headers)
      : inner_(std::move(inner)), headers_(std::move(headers)) {}
  void Respond(HttpResponse response) override {
    response.headers.insert(response.headers.end(), headers_.begin(), headers_.end());
    inner_->Respond(std::move(response));
  }
  void StartStream(int status, std::string content_type,
                   std::vector<std::pair<std::string, std::string>> headers) override {
    headers.insert(headers.end(), headers_.begin(), headers_.end());
    inner_->StartStream(status, std::move(content_type), std::move(headers));
  }
  bool Write(std::string data) override { return inner_->Write(std::move(data)); }
  void Finish() override { inner_->Finish(); }
  bool ClientGone() const override { return inner_->ClientGone(); }

 private:
  const std::shared_ptr<HttpExchange> inner_;
  const std::vector<std::pair<std::string, std::string>> headers_;
};

std::vector<std::pair<std::string, std::string>> AllowOrigin(const std::string& origin) {
  return {{"Access-Control-Allow-Origin", origin},
          {"Vary", "Origin"},
          {"Access-Control-Expose-Headers", "Retry-After"}};
}

}  // namespace

Result<Principal> Api::Authenticate(HttpRequest& req, std::shared_ptr<HttpExchange>* ex) {
  Result<Principal> who = tokens_->Authenticate(req);
  std::optional<std::string> origin = CrossOrigin(req);
  if (!origin) return who;
  bool allowed = who.ok();
  if (!who.ok() && who.status().code() == StatusCode::kUnauthenticated) {
    allowed = tokens_->AnyTokenAllows(*origin).value_or(false);
  }
  *ex = std::make_shared<HeaderExchange>(
      std::move(*ex), allowed
                          ? AllowOrigin(*origin)
                          : std::vector<std::pair<std::string, std::string>>{{"Vary", "Origin"}});
  return who;
}

void Api::Preflight(HttpRequest& req, std::shared_ptr<HttpExchange> ex) {
  HttpResponse r;
  r.status = 204;
  r.headers.emplace_back("Allow", "GET, POST, OPTIONS");
  std::optional<std::string> origin = CrossOrigin(req);
  if (!origin) return ex->Respond(std::move(r));
  auto allowed = tokens_->AnyTokenAllows(*origin);
  if (!allowed.ok()) return ex->Respond(ErrorResponse(allowed.status()));
  if (!*allowed) {
    HttpResponse refused = ErrorResponse(Status::PermissionDenied(
        "no token allows requests from pages of " + *origin +
        ": an admin can allow the origin for the app's reporter token with `loom token update "
        "ID --origin ORIGIN`"));
    refused.headers.emplace_back("Vary", "Origin");
    return ex->Respond(std::move(refused));
  }
  r.headers = AllowOrigin(*origin);
  r.headers.emplace_back("Access-Control-Allow-Methods", "GET, POST");
  r.headers.emplace_back("Access-Control-Allow-Headers",
                         "Authorization, Content-Type, Idempotency-Key");
  r.headers.emplace_back("Access-Control-Max-Age", "600");
  ex->Respond(std::move(r));
}

Api::Api(Store* store, TokenStore* tokens, RateLimiter* limiter, MetricsRegistry* metrics,
         Limits limits, std::function<void()> on_stored)
    : store_(store),
      tokens_(tokens),
      limiter_(limiter),
      limits_(limits),
      on_stored_(std::move(on_stored)) {
  submitted_ = metrics->NewCounter("loom_feedback_submitted_total",
                                   "Feedback items stored, by kind and outcome (new or duplicate).",
                                   {"kind", "status"});
  rejected_ = metrics->NewCounter("loom_feedback_rejected_total",
                                  "Feedback submissions refused, by reason.", {"reason"});
  items_ = metrics->NewGauge("loom_feedback_items", "Feedback items in the store, by status.",
                             {"status"});
}

Status Api::LoadCounts() {
  LOOM_ASSIGN_OR_RETURN(Counts counts, store_->CountByStatus());
  for (const auto& [status, n] : counts.by_status) items_->Set({status}, static_cast<double>(n));
  return Status::Ok();
}

void Api::Register(Router& router) {
  router.Add("POST", "/v1/feedback", [this](HttpRequest& r, std::shared_ptr<HttpExchange> ex) {
    Submit(r, std::move(ex));
  });
  router.Add("GET", "/v1/feedback",
             [this](HttpRequest& r, std::shared_ptr<HttpExchange> ex) { List(r, std::move(ex)); });
  router.Add("GET", "/v1/feedback/{id}",
             [this](HttpRequest& r, std::shared_ptr<HttpExchange> ex) { Show(r, std::move(ex)); });
  for (const char* path : {"/v1/feedback", "/v1/feedback/{id}"}) {
    router.Add("OPTIONS", path, [this](HttpRequest& r, std::shared_ptr<HttpExchange> ex) {
      Preflight(r, std::move(ex));
    });
  }
}

void Api::Submit(HttpRequest& req, std::shared_ptr<HttpExchange> ex) {
  auto who = Authenticate(req, &ex);
  if (!who.ok()) {
    rejected_->Add({"auth"});
    return ex->Respond(ErrorResponse(who.status()));
  }
  if (int64_t wait_ms = limiter_->Acquire("token:" + std::to_string(who->token_id)); wait_ms > 0) {
    rejected_->Add({"rate_limited"});
    HttpResponse r = ErrorResponse(Status::ResourceExhausted(
        "too many submissions from this token; retry after " + std::to_string(wait_ms) + " ms"));
    r.headers.emplace_back("Retry-After", std::to_string((wait_ms + 999) / 1000));
    return ex->Respond(std::move(r));
  }
  auto parsed = ParseSubmission(req.body, limits_);
  if (auto* bad = std::get_if<Invalid>(&parsed)) {
    rejected_->Add({"invalid"});
    return ex->Respond(ErrorResponse(Status::InvalidArgument(bad->message), bad->field));
  }
  Item item = std::move(std::get<Item>(parsed));
  item.token_id = who->token_id;
  std::string kind = item.kind;
  bool sees_all = who->AtLeast(Role::kEngineer);
  int64_t token_id = who->token_id;
  store_->Submit(std::move(item), std::string(req.Header("Idempotency-Key")),
                 [this, ex, kind, sees_all, token_id](Result<SubmitResult> r) {
                   if (!r.ok()) return ex->Respond(ErrorResponse(r.status()));
                   Json body = {{"id", r->id}, {"status", r->status}};
                   // A reporter learns the original's id only when it is their own.
                   if (r->duplicate_of && (sees_all || r->original_token_id == token_id)) {
                     body["duplicate_of"] = *r->duplicate_of;
                   }
                   if (!r->replayed) {
                     submitted_->Add({kind, r->status});
                     items_->Add({r->status}, 1);
                     if (on_stored_) on_stored_();
                   }
                   ex->Respond(HttpResponse::Json(r->replayed ? 200 : 201, DumpJson(body)));
                 });
}

void Api::List(HttpRequest& req, std::shared_ptr<HttpExchange> ex) {
  auto who = Authenticate(req, &ex);
  if (!who.ok()) return ex->Respond(ErrorResponse(who.status()));
  ListQuery q;
  auto opt = [&](const char* name) -> std::optional<std::string> {
    auto it = req.query.find(name);
    if (it == req.query.end() || it->second.empty()) return std::nullopt;
    return it->second;
  };
  q.status = opt("status");
  q.kind = opt("kind");
  q.repo = opt("repo");
  auto page = ParsePage(req);
  if (auto* bad = std::get_if<HttpResponse>(&page)) return ex->Respond(std::move(*bad));
  q.after_id = std::get<Page>(page).after;
  q.limit = std::get<Page>(page).limit;
  if (!who->AtLeast(Role::kEngineer)) q.token_id = who->token_id;
  auto items = store_->List(q);
  if (!items.ok()) return ex->Respond(ErrorResponse(items.status()));
  Json out = Json::array();
  for (const auto& it : *items) out.push_back(ForCaller(it, *who));
  int64_t last = items->empty() ? 0 : items->back().id;
  ex->Respond(
      HttpResponse::Json(200, DumpJson(PageJson(std::move(out), std::get<Page>(page), last))));
}

void Api::Show(HttpRequest& req, std::shared_ptr<HttpExchange> ex) {
  auto who = Authenticate(req, &ex);
  if (!who.ok()) return ex->Respond(ErrorResponse(who.status()));
  auto id = ParseId(req.params["id"]);
  if (!id)
    return ex->Respond(ErrorResponse(Status::NotFound("no feedback item " + req.params["id"])));
  auto item = store_->Get(*id);
  // A reporter may not learn that other people's items exist: same 404.
  if (!item.ok() || (!who->AtLeast(Role::kEngineer) && item->token_id != who->token_id)) {
    return ex->Respond(ErrorResponse(Status::NotFound("no feedback item " + std::to_string(*id))));
  }
  ex->Respond(HttpResponse::Json(200, DumpJson(ForCaller(*item, *who))));
}

}  // namespace loom::feedback
