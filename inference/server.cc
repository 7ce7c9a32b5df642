// InferenceServer: a Router over HttpServer. Each generation route turns its
// JSON into a GenerationRequest on the I/O thread (answering 400 with an
// OpenAI-style error for anything malformed), submits it, and hands the
// exchange to a Reply object that the engine thread feeds event by event:
// buffered into one JSON response, or written as SSE chunks followed by
// "data: [DONE]". Chat replies run the model's text through the chat format's
// tool-call parser so that tool calls come back as structured `tool_calls`
// (streamed as name and argument fragments).
#include "inference/server.h"

#include <atomic>
#include <cmath>
#include <random>
#include <set>
#include <sstream>

#include "common/http_server.h"
#include "common/json.h"
#include "common/json_reader.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/mutex.h"
#include "inference/text/chat_format.h"
#include "inference/text/tokenizer.h"
#include "inference/text/tool_call_parser.h"

namespace loom::inference {
namespace {

// ---- errors ----------------------------------------------------------------

HttpResponse OpenAiError(int status, std::string_view message, std::string_view type,
                         std::string_view param = {}, std::string_view code = {}) {
  Json err = {{"message", message},
              {"type", type},
              {"param", param.empty() ? Json(nullptr) : Json(param)},
              {"code", code.empty() ? Json(nullptr) : Json(code)}};
  // loomd's name for the offending field, beside OpenAI's `param`.
  if (!param.empty()) err["field"] = param;
  return HttpResponse::Json(status, DumpJson(Json{{"error", err}}));
}

// A request error: the message, and the offending field when there is one.
struct BadRequest {
  std::string message;
  std::string param;
};

HttpResponse ErrorFor(const Status& st, std::string_view param = {}) {
  switch (st.code()) {
    case StatusCode::kInvalidArgument:
      return OpenAiError(400, st.message(), "invalid_request_error", param);
    case StatusCode::kUnavailable:
      return OpenAiError(503, st.message(), "server_error", {}, "unavailable");
    case StatusCode::kResourceExhausted:
      return OpenAiError(429, st.message(), "rate_limit_error");
    default:
      return OpenAiError(500, st.message(), "server_error");
  }
}

// ---- reading requests ---------------------------------------------------------
// Bodies cross the JSON boundary through ParseJson (depth-limited, no
// exceptions) and a JsonReader; a reader's first error becomes the 400.

std::optional<BadRequest> BadFrom(const JsonReader& in) {
  if (in.ok()) return std::nullopt;
  return BadRequest{in.error().message, in.error().field};
}

// Fields of OpenAI's API this server does not implement yet: a request that asks
// for them (with anything but their neutral value) is refused, naming the field,
// rather than answered as if it had not asked.
std::optional<BadRequest> Unsupported(const Json& body) {
  auto refuse = [](const char* field) {
    return BadRequest{
        std::string(field) + " is not supported by loom-infer yet (docs/inference.md)", field};
  };
  auto set = [&](const char* field) -> const Json* {
    const Json& v = MemberOrNull(body, field);
    return v.is_null() ? nullptr : &v;
  };
  if (const Json* v = set("logprobs"); v && !(v->is_boolean() && !v->get<bool>())) {
    return refuse("logprobs");
  }
  if (set("top_logprobs")) return refuse("top_logprobs");
  for (const char* penalty : {"presence_penalty", "frequency_penalty"}) {
    if (const Json* v = set(penalty); v && !(v->is_number() && v->get<double>() == 0.0)) {
      return refuse(penalty);
    }
  }
  if (const Json* v = set("repetition_penalty");
      v && !(v->is_number() && v->get<double>() == 1.0)) {
    return refuse("repetition_penalty");
  }
  if (const Json* v = set("logit_bias"); v && !(v->is_object() && v->empty())) {
    return refuse("logit_bias");
  }
  if (const Json* v = set("response_format");
      v && !(v->is_object() && MemberOrNull(*v, "type") == "text")) {
    return refuse("response_format");
  }
  if (const Json* v = set("best_of"); v && !(v->is_number_integer() && v->get<int64_t>() == 1)) {
    return refuse("best_of");
  }
  if (const Json* v = set("echo"); v && !(v->is_boolean() && !v->get<bool>())) {
    return refuse("echo");
  }
  if (const Json* v = set("suffix"); v && !(v->is_string() && v->get<std::string>().empty())) {
    return refuse("suffix");
  }
  return std::nullopt;
}

// The sampling fields shared by both generation routes.
std::optional<BadRequest> ParseSampling(const Json& body, int32_t default_max_tokens,
                                        GenerationRequest* req, bool* stream, bool* include_usage) {
  if (auto bad = Unsupported(body)) return bad;
  JsonReader in(body);
  double temperature = 1.0, top_p = 1.0;
  int64_t top_k = 0, max_tokens = default_max_tokens, n = 1;
  int64_t seed = 0;
  const char* max_name = in.Has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  const Json* stream_options = nullptr;
  const Json* stop = nullptr;
  in.Number("temperature", &temperature, Presence::kOptional, 0.0, 2.0)
      .Number("top_p", &top_p, Presence::kOptional, 0.0, 1.0)
      .Int("top_k", &top_k, Presence::kOptional, -1, INT32_MAX)
      .Int("n", &n, Presence::kOptional, 1, 1)
      .Int(max_name, &max_tokens, Presence::kOptional, 1, INT32_MAX)
      .Int("seed", &seed)
      .Bool("stream", stream)
      .Bool("ignore_eos", &req->ignore_eos)
      .Object("stream_options", &stream_options)
      .Any("stop", &stop);
  if (stream_options != nullptr && in.ok()) {
    in.Include(JsonReader(*stream_options, "stream_options").Bool("include_usage", include_usage));
  }
  if (auto bad = BadFrom(in)) return bad;
  if (top_p <= 0.0) return BadRequest{"top_p must be greater than 0", "top_p"};
  if (in.Has("seed")) req->sampling.seed = static_cast<uint64_t>(seed);
  if (stop != nullptr) {
    if (stop->is_string()) {
      req->stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const Json& x : *stop) {
        if (!x.is_string()) return BadRequest{"stop must be a string or a list of strings", "stop"};
        req->stop.push_back(x.get<std::string>());
      }
    } else {
      return BadRequest{"stop must be a string or a list of strings", "stop"};
    }
  }
  req->sampling.temperature = static_cast<float>(temperature);
  req->sampling.top_p = static_cast<float>(top_p);
  req->sampling.top_k = top_k < 0 ? 0 : static_cast<int32_t>(top_k);
  req->max_tokens = static_cast<int32_t>(max_tokens);
  return std::nullopt;
}

int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string RandomId(std::string_view prefix) {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 rng(std::random_device{}());
  std::ostringstream os;
  os << prefix << std::hex << (rng() & 0xffffffffffffull) << counter.fetch_add(1);
  return os.str();
}

std::string Sse(const Json& j) { return "data: " + DumpJson(j) + "\n\n"; }

Json UsageJson(const GenerationEvent& ev) {
  return {{"prompt_tokens", ev.prompt_tokens},
          {"completion_tokens", ev.completion_tokens},
          {"total_tokens", ev.prompt_tokens + ev.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", ev.cached_tokens}}}};
}

// ---- replies -----------------------------------------------------------------

// What becomes of one request's events: one JSON response or an SSE stream.
// Thread-safe: the engine thread (OnEvent) and the I/O thread (Started) meet
// under mu_.
class Reply {
 public:
  Reply(std::shared_ptr<HttpExchange> ex, std::string model, bool stream, bool include_usage)
      : ex_(std::move(ex)),
        model_(std::move(model)),
        stream_(stream),
        include_usage_(include_usage),
        created_(NowSeconds()) {}
  virtual ~Reply() = default;

  // The engine callback: false when the client is gone or the reply is done.
  // Events that arrive before Started() (the engine may be quicker than the
  // I/O thread) are kept and replayed by it.
  bool OnEvent(const GenerationEvent& ev) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    if (!started_) {
      early_.push_back(ev);
      return true;
    }
    return Handle(ev);
  }

  // Called once the engine accepted the request: starts the SSE stream when
  // asked and replays early events. False when the request should be cancelled.
  bool Started() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    started_ = true;
    if (stream_) {
      ex_->StartStream(200, "text/event-stream",
                       {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}});
      OnStreamStart();
    }
    bool keep = true;
    for (const auto& ev : early_) {
      if (keep) keep = Handle(ev);
    }
    early_.clear();
    return keep;
  }

 protected:
  // The stream's first chunks (after the headers).
  virtual void OnStreamStart() {}
  // New text; `last` on the final event. False when the client is gone.
  virtual bool OnText(const std::string& text, bool last) = 0;
  virtual void OnFinish(const GenerationEvent& ev) = 0;

  bool Write(const Json& chunk) { return ex_->Write(Sse(chunk)); }

  bool Handle(const GenerationEvent& ev) REQUIRES(mu_) {
    if (ex_->ClientGone()) return false;
    tokens_.insert(tokens_.end(), ev.tokens.begin(), ev.tokens.end());
    if (ev.finish == FinishReason::kError) {
      if (stream_) {
        Write(Json{{"error",
                    {{"message", ev.error.message()},
                     {"type", "server_error"},
                     {"param", nullptr},
                     {"code", nullptr}}}});
        ex_->Write("data: [DONE]\n\n");
        ex_->Finish();
      } else {
        ex_->Respond(ErrorFor(ev.error));
      }
      return false;
    }
    if (ev.finish == FinishReason::kCancelled) {
      if (stream_) {
        ex_->Finish();
      } else {
        ex_->Respond(ErrorFor(ev.error));
      }
      return false;
    }
    bool ok = OnText(ev.text, ev.finish != FinishReason::kNone);
    if (ev.finish != FinishReason::kNone) {
      OnFinish(ev);
      if (stream_) {
        ex_->Write("data: [DONE]\n\n");
        ex_->Finish();
      }
      return false;
    }
    return ok;
  }

  Mutex mu_;  // the engine thread and Started() on the I/O thread
  bool started_ GUARDED_BY(mu_) = false;
  std::vector<GenerationEvent> early_ GUARDED_BY(mu_);

  std::shared_ptr<HttpExchange> ex_;
  std::string model_;
  bool stream_;
  bool include_usage_;
  int64_t created_;
  std::vector<int32_t> tokens_;
};

std::string FinishName(FinishReason r) { return std::string(FinishReasonName(r)); }

class CompletionReply final : public Reply {
 public:
  CompletionReply(std::shared_ptr<HttpExchange> ex, std::string model, bool stream,
                  bool include_usage, bool return_token_ids)
      : Reply(std::move(ex), std::move(model), stream, include_usage),
        id_(RandomId("cmpl-")),
        return_token_ids_(return_token_ids) {}

 private:
  Json Chunk(const std::string& text, Json finish) const {
    return {{"id", id_},
            {"object", "text_completion"},
            {"created", created_},
            {"model", model_},
            {"choices", Json::array({{{"index", 0},
                                      {"text", text},
                                      {"logprobs", nullptr},
                                      {"finish_reason", std::move(finish)}}})}};
  }

  bool OnText(const std::string& text, bool /*last*/) override {
    if (!stream_) {
      text_ += text;
      return true;
    }
    if (text.empty()) return true;
    return Write(Chunk(text, nullptr));
  }

  void OnFinish(const GenerationEvent& ev) override {
    if (stream_) {
      Json last = Chunk("", FinishName(ev.finish));
      if (return_token_ids_) last["choices"][0]["token_ids"] = tokens_;
      Write(last);
      if (include_usage_) {
        Json u = Chunk("", nullptr);
        u["choices"] = Json::array();
        u["usage"] = UsageJson(ev);
        Write(u);
      }
      return;
    }
    Json body = Chunk(text_, FinishName(ev.finish));
    if (return_token_ids_) body["choices"][0]["token_ids"] = tokens_;
    body["usage"] = UsageJson(ev);
    ex_->Respond(HttpResponse::Json(200, DumpJson(body)));
  }

  std::string id_;
  bool return_token_ids_;
  std::string text_;
};

// Chat replies: text goes through the tool-call parser when tools are on.
class ChatReply final : public Reply {
 public:
  ChatReply(std::shared_ptr<HttpExchange> ex, std::string model, bool stream, bool include_usage,
            bool return_token_ids, std::optional<ChatFormatKind> tools_format, std::string prefill)
      : Reply(std::move(ex), std::move(model), stream, include_usage),
        id_(RandomId("chatcmpl-")),
        return_token_ids_(return_token_ids),
        tools_format_(tools_format),
        prefill_(std::move(prefill)) {
    if (tools_format_) parser_.emplace(*tools_format_);
  }

  void OnStreamStart() override {
    Write(Chunk(Json{{"role", "assistant"}, {"content", ""}}, nullptr));
    if (parser_ && !prefill_.empty()) Send(parser_->Push(prefill_));
  }

 private:
  Json Chunk(Json delta, Json finish) const {
    return {{"id", id_},
            {"object", "chat.completion.chunk"},
            {"created", created_},
            {"model", model_},
            {"choices", Json::array({{{"index", 0},
                                      {"delta", std::move(delta)},
                                      {"logprobs", nullptr},
                                      {"finish_reason", std::move(finish)}}})}};
  }

  bool Send(const OutputDelta& d) {
    bool ok = true;
    if (!d.content.empty()) ok = Write(Chunk(Json{{"content", d.content}}, nullptr));
    for (const auto& tc : d.tool_calls) {
      Json call = {{"index", tc.index}};
      if (!tc.id.empty()) {
        call["id"] = tc.id;
        call["type"] = "function";
        call["function"] = {{"name", tc.name}, {"arguments", tc.arguments}};
      } else {
        call["function"] = {{"arguments", tc.arguments}};
      }
      ok = Write(Chunk(Json{{"tool_calls", Json::array({call})}}, nullptr)) && ok;
    }
    return ok;
  }

  bool OnText(const std::string& text, bool last) override {
    if (!stream_) {
      text_ += text;
      return true;
    }
    bool ok = true;
    if (!parser_) {
      if (!text.empty()) ok = Write(Chunk(Json{{"content", text}}, nullptr));
      return ok;
    }
    if (!text.empty()) ok = Send(parser_->Push(text));
    if (last) ok = Send(parser_->Finish()) && ok;
    return ok;
  }

  std::string FinishReasonFor(const GenerationEvent& ev, bool called) const {
    if (ev.finish == FinishReason::kStop && called) return "tool_calls";
    return FinishName(ev.finish);
  }

  void OnFinish(const GenerationEvent& ev) override {
    if (stream_) {
      Json last = Chunk(Json::object(), FinishReasonFor(ev, parser_ && parser_->tool_calls() > 0));
      if (return_token_ids_) last["choices"][0]["token_ids"] = tokens_;
      Write(last);
      if (include_usage_) {
        Json u = Chunk(Json::object(), nullptr);
        u["choices"] = Json::array();
        u["usage"] = UsageJson(ev);
        Write(u);
      }
      return;
    }
    Json message = {{"role", "assistant"}};
    bool called = false;
    if (tools_format_) {
      ParsedOutput parsed = ParseToolCalls(*tools_format_, prefill_ + text_);
      called = !parsed.tool_calls.empty();
      message["content"] = parsed.content.empty() && called ? Json(nullptr) : Json(parsed.content);
      if (called) {
        Json calls = Json::array();
        for (const auto& tc : parsed.tool_calls) {
          calls.push_back({{"id", tc.id},
                           {"type", "function"},
                           {"function", {{"name", tc.name}, {"arguments", tc.arguments}}}});
        }
        message["tool_calls"] = std::move(calls);
      }
    } else {
      message["content"] = text_;
    }
    Json body = {{"id", id_},
                 {"object", "chat.completion"},
                 {"created", created_},
                 {"model", model_},
                 {"choices", Json::array({{{"index", 0},
                                           {"message", std::move(message)},
                                           {"logprobs", nullptr},
                                           {"finish_reason", FinishReasonFor(ev, called)}}})},
                 {"usage", UsageJson(ev)}};
    if (return_token_ids_) body["choices"][0]["token_ids"] = tokens_;
    ex_->Respond(HttpResponse::Json(200, DumpJson(body)));
  }

  std::string id_;
  bool return_token_ids_;
  std::optional<ChatFormatKind> tools_format_;  // set when tool calls are parsed
  std::string prefill_;                         // the assistant turn's forced opening (tool_choice)
  std::optional<ToolCallStreamParser> parser_;
  std::string text_;
};

// ---- the server ----------------------------------------------------------------

class ServerImpl final : public InferenceServer {
 public:
  ServerImpl(ServerOptions options, Engine* engine, const Tokenizer* tokenizer,
             const ChatFormat* chat)
      : options_(std::move(options)), engine_(engine), tokenizer_(tokenizer), chat_(chat) {
    ready_.store(engine != nullptr, std::memory_order_release);
    http_requests_ = metrics_.NewCounter("loom_infer_http_requests_total",
                                         "HTTP requests by route and status", {"route", "status"});
    http_latency_ = metrics_.NewHistogram("loom_infer_http_request_seconds",
                                          "HTTP request latency (streams: until the end)",
                                          {"route"}, MetricsRegistry::LatencyBuckets());
    first_token_ = metrics_.NewHistogram(
        "loom_infer_time_to_first_token_seconds",
        "From a generation request's submission (queueing included) to its first token", {},
        {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60});
    inter_token_ = metrics_.NewHistogram(
        "loom_infer_inter_token_seconds", "Time between a request's consecutive tokens", {},
        {0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1});
  }

  Status Listen() {
    auto add = [this](const char* method, const char* path, HttpHandler handler) {
      paths_.insert(path);
      router_.Add(method, path, std::move(handler));
    };
    add("GET", "/health", [this](auto& rq, auto ex) { Health(rq, ex); });
    add("GET", "/v1/models", [this](auto& rq, auto ex) { Models(rq, ex); });
    add("GET", "/metrics", [this](auto& rq, auto ex) { Metrics(rq, ex); });
    add("POST", "/tokenize", [this](auto& rq, auto ex) { Tokenize(rq, ex); });
    add("POST", "/detokenize", [this](auto& rq, auto ex) { Detokenize(rq, ex); });
    add("POST", "/v1/completions", [this](auto& rq, auto ex) { Completions(rq, ex); });
    add("POST", "/v1/chat/completions", [this](auto& rq, auto ex) { ChatCompletions(rq, ex); });
    HttpServerOptions ho;
    ho.host = options_.host;
    ho.port = options_.port;
    ho.io_threads = options_.io_threads;
    ho.max_body_bytes = options_.max_body_bytes;
    ho.idle_timeout = std::chrono::minutes(10);
    ho.on_complete = [this](const HttpRequest& rq, int status, std::chrono::nanoseconds latency) {
      std::string route = router_.RouteLabel(rq);
      http_requests_->Add({route, std::to_string(status)});
      http_latency_->Observe({route}, std::chrono::duration<double>(latency).count());
    };
    auto server = HttpServer::Start(std::move(ho), [this](HttpRequest& rq,
                                                          std::shared_ptr<HttpExchange> ex) {
      if (!ready_.load(std::memory_order_acquire)) {
        if (rq.path == "/health") {
          return ex->Respond(HttpResponse::Json(503, R"({"status":"loading"})"));
        }
        return ex->Respond(OpenAiError(503, "the model is still loading; retry shortly",
                                       "server_error", {}, "model_loading"));
      }
      if (!Authorized(rq)) {
        return ex->Respond(OpenAiError(401, "a missing or wrong API key (Authorization: Bearer)",
                                       "invalid_request_error", {}, "invalid_api_key"));
      }
      // What no route takes is answered in OpenAI's shape, not the Router's.
      if (router_.RouteLabel(rq) == "unmatched") {
        if (paths_.count(rq.path)) {
          return ex->Respond(OpenAiError(405, rq.method + " is not allowed on " + rq.path,
                                         "invalid_request_error", {}, "method_not_allowed"));
        }
        return ex->Respond(
            OpenAiError(404, "no route for " + rq.path, "invalid_request_error", {}, "not_found"));
      }
      router_.Dispatch(rq, std::move(ex));
    });
    if (!server.ok()) return server.status();
    http_ = std::move(server).value();
    return Status::Ok();
  }

  ~ServerImpl() override { Shutdown(std::chrono::seconds(2)); }

  uint16_t port() const override { return http_->port(); }
  void Attach(Engine* engine) override {
    engine_ = engine;
    ready_.store(true, std::memory_order_release);  // publishes engine_ to the I/O threads
  }
  void Shutdown(std::chrono::milliseconds drain) override {
    if (http_) http_->Shutdown(drain);
  }

 private:
  // With an API key, every route but /health and /metrics needs it as a bearer
  // token (compared in constant time).
  bool Authorized(const HttpRequest& rq) const {
    if (options_.api_key.empty() || rq.path == "/health" || rq.path == "/metrics") return true;
    std::string_view auth = rq.Header("Authorization");
    const std::string_view bearer = "Bearer ";
    if (auth.substr(0, bearer.size()) != bearer) return false;
    std::string_view given = auth.substr(bearer.size());
    const std::string& key = options_.api_key;
    unsigned diff = given.size() == key.size() ? 0 : 1;
    for (size_t i = 0; i < key.size(); ++i) {
      diff |= static_cast<unsigned char>(key[i]) ^
              static_cast<unsigned char>(i < given.size() ? given[i] : 0);
    }
    return diff == 0;
  }

  // True when the body's "model" (if any) names the served model: its name, an
  // alias or "default"; else answers 404 model_not_found.
  bool ModelServed(const Json& body, HttpExchange& ex) const {
    const Json& model = MemberOrNull(body, "model");
    if (model.is_null()) return true;
    if (!model.is_string()) {
      ex.Respond(OpenAiError(400, "model must be a string", "invalid_request_error", "model"));
      return false;
    }
    const std::string& name = model.get_ref<const std::string&>();
    if (name == options_.model_name || name == "default") return true;
    for (const std::string& alias : options_.aliases) {
      if (name == alias) return true;
    }
    ex.Respond(OpenAiError(
        404,
        "The model `" + name + "` does not exist; this server serves `" + options_.model_name + "`",
        "invalid_request_error", "model", "model_not_found"));
    return false;
  }

  // Parses the body as a JSON object, or answers 400 and returns nullopt.
  static std::optional<Json> Body(HttpRequest& rq, HttpExchange& ex) {
    auto j = ParseJson(rq.body);
    if (!j.ok()) {
      ex.Respond(OpenAiError(400, "the body is not valid JSON: " + j.status().message(),
                             "invalid_request_error"));
      return std::nullopt;
    }
    if (!j->is_object()) {
      ex.Respond(OpenAiError(400, "the body must be a JSON object", "invalid_request_error"));
      return std::nullopt;
    }
    return std::move(j).value();
  }

  void Health(HttpRequest&, std::shared_ptr<HttpExchange> ex) {
    ex->Respond(HttpResponse::Json(200, R"({"status":"ok"})"));
  }

  void Models(HttpRequest&, std::shared_ptr<HttpExchange> ex) {
    Json data = Json::array();
    std::vector<std::string> names = {options_.model_name};
    names.insert(names.end(), options_.aliases.begin(), options_.aliases.end());
    for (const std::string& name : names) {
      data.push_back({{"id", name},
                      {"object", "model"},
                      {"created", started_},
                      {"owned_by", "loom"},
                      {"max_model_len", engine_->max_context()}});
    }
    ex->Respond(HttpResponse::Json(200, DumpJson(Json{{"object", "list"}, {"data", data}})));
  }

  void Metrics(HttpRequest&, std::shared_ptr<HttpExchange> ex) {
    EngineStats s = engine_->Stats();
    std::ostringstream os;
    auto metric = [&](const char* name, const char* type, const char* help, double v) {
      os << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n'
         << name << ' ' << v << '\n';
    };
    metric("loom_infer_queue_depth", "gauge", "Requests waiting to run", double(s.queue_depth));
    metric("loom_infer_running", "gauge", "Requests in the running batch", double(s.running));
    metric("loom_infer_kv_blocks_used", "gauge", "KV cache blocks referenced",
           double(s.kv_blocks_used));
    metric("loom_infer_kv_blocks_total", "gauge", "KV cache blocks", double(s.kv_blocks_total));
    metric("loom_infer_tokens_per_second", "gauge", "Generated tokens per second, recent",
           s.tokens_per_second);
    metric("loom_infer_prefix_cache_hit_rate", "gauge",
           "Prompt tokens taken from the prefix cache / prompt tokens", s.prefix_hit_rate());
    metric("loom_infer_requests_total", "counter", "Finished generation requests",
           double(s.requests_total));
    metric("loom_infer_prompt_tokens_total", "counter", "Prompt tokens admitted",
           double(s.prompt_tokens_total));
    metric("loom_infer_prefix_cache_hit_tokens_total", "counter",
           "Prompt tokens taken from the prefix cache", double(s.prefix_hit_tokens_total));
    metric("loom_infer_generated_tokens_total", "counter", "Tokens generated",
           double(s.generated_tokens_total));
    metric("loom_infer_computed_tokens_total", "counter", "Tokens run through the model",
           double(s.computed_tokens_total));
    metric("loom_infer_preemptions_total", "counter", "Sequences preempted for KV blocks",
           double(s.preemptions_total));
    os << metrics_.Render();
    HttpResponse r = HttpResponse::Text(200, os.str());
    r.content_type = "text/plain; version=0.0.4";
    ex->Respond(std::move(r));
  }

  void Tokenize(HttpRequest& rq, std::shared_ptr<HttpExchange> ex) {
    auto body = Body(rq, *ex);
    if (!body) return;
    JsonReader in(*body);
    const char* field = in.Has("content") ? "content" : "prompt";
    std::string text;
    bool special = true;
    if (!in.Has(field)) {
      ex->Respond(OpenAiError(400, "give the text to tokenize as \"content\" (a string)",
                              "invalid_request_error", "content"));
      return;
    }
    in.String(field, &text).Bool("parse_special", &special);
    if (auto e = BadFrom(in)) {
      ex->Respond(OpenAiError(400, e->message, "invalid_request_error", e->param));
      return;
    }
    auto ids = tokenizer_->Encode(text, special ? SpecialTokens::kParse : SpecialTokens::kAsText);
    Json out = {{"tokens", ids}, {"count", ids.size()}, {"max_model_len", engine_->max_context()}};
    ex->Respond(HttpResponse::Json(200, DumpJson(out)));
  }

  void Detokenize(HttpRequest& rq, std::shared_ptr<HttpExchange> ex) {
    auto body = Body(rq, *ex);
    if (!body) return;
    std::vector<int32_t> ids;
    if (auto e = TokenIds(*body, "tokens", &ids)) {
      ex->Respond(OpenAiError(400, e->message, "invalid_request_error", e->param));
      return;
    }
    std::string text = tokenizer_->Decode(ids);
    ex->Respond(HttpResponse::Json(200, DumpJson(Json{{"content", text}, {"prompt", text}})));
  }

  // A list of token ids in the vocabulary.
  std::optional<BadRequest> TokenIds(const Json& body, const char* name,
                                     std::vector<int32_t>* out) const {
    const Json* list = nullptr;
    JsonReader in(body);
    in.Array(name, &list, Presence::kRequired);
    if (!in.ok()) return BadRequest{std::string(name) + " must be a list of token ids", name};
    return IdList(*list, name, out);
  }

  std::optional<BadRequest> IdList(const Json& list, const char* name,
                                   std::vector<int32_t>* out) const {
    const int64_t vocab = std::max<int64_t>(engine_->config().vocab_size, tokenizer_->vocab_size());
    for (const Json& t : list) {
      if (!t.is_number_integer() || (!t.is_number_unsigned() && t.get<int64_t>() < 0) ||
          t.get<uint64_t>() >= static_cast<uint64_t>(vocab)) {
        return BadRequest{std::string(name) + " must hold token ids in [0, " +
                              std::to_string(vocab) + "), got " + DumpJson(t),
                          name};
      }
      out->push_back(t.get<int32_t>());
    }
    return std::nullopt;
  }

  // Submits `req`; on success the reply owns the exchange from now on.
  void Submit(GenerationRequest req, std::shared_ptr<Reply> reply, HttpExchange& ex,
              std::string_view param) {
    // Token timing, on the engine thread: from submission to the first event with
    // tokens, then between tokens (the tokens of one event share its gap evenly).
    using Clock = std::chrono::steady_clock;
    auto last = std::make_shared<std::pair<Clock::time_point, bool>>(Clock::now(), false);
    auto id = engine_->Submit(std::move(req), [this, reply, last](const GenerationEvent& ev) {
      if (!ev.tokens.empty()) {
        auto now = Clock::now();
        double gap = std::chrono::duration<double>(now - last->first).count();
        if (!last->second) {
          first_token_->Observe({}, gap);
        } else {
          for (size_t i = 0; i < ev.tokens.size(); ++i) {
            inter_token_->Observe({}, gap / static_cast<double>(ev.tokens.size()));
          }
        }
        *last = {now, true};
      }
      return reply->OnEvent(ev);
    });
    if (!id.ok()) {
      ex.Respond(ErrorFor(id.status(), param));
      return;
    }
    if (!reply->Started()) engine_->Cancel(*id);
  }

  void Completions(HttpRequest& rq, std::shared_ptr<HttpExchange> ex) {
    auto body = Body(rq, *ex);
    if (!body || !ModelServed(*body, *ex)) return;
    GenerationRequest req;
    bool stream = false, include_usage = false, return_ids = false;
    auto bad = ParseSampling(*body, 16, &req, &stream, &include_usage);
    if (!bad) bad = BadFrom(JsonReader(*body).Bool("return_token_ids", &return_ids));
    if (!bad) bad = CompletionPrompt(*body, &req.prompt);
    if (bad) {
      ex->Respond(OpenAiError(400, bad->message, "invalid_request_error", bad->param));
      return;
    }
    auto reply = std::make_shared<CompletionReply>(ex, options_.model_name, stream, include_usage,
                                                   return_ids);
    Submit(std::move(req), std::move(reply), *ex, "prompt");
  }

  // "prompt": a string, a list of token ids, or a one-element list of either.
  std::optional<BadRequest> CompletionPrompt(const Json& body, std::vector<int32_t>* out) const {
    const char* kMsg = "prompt must be a string or a list of token ids (one prompt per request)";
    const Json* p = nullptr;
    JsonReader(body).Any("prompt", &p);
    if (p == nullptr) return BadRequest{"prompt is required", "prompt"};
    if (p->is_array() && p->size() == 1 && ((*p)[0].is_string() || (*p)[0].is_array())) {
      p = &(*p)[0];
    }
    if (p->is_string()) {
      // A raw-text prompt gets what the tokenizer's post-processor adds (Llama 3's BOS).
      *out = tokenizer_->template_prefix();
      auto ids = tokenizer_->Encode(p->get<std::string>(), SpecialTokens::kParse);
      out->insert(out->end(), ids.begin(), ids.end());
      if (ids.empty()) return BadRequest{"the prompt is empty", "prompt"};
      return std::nullopt;
    }
    if (!p->is_array()) return BadRequest{kMsg, "prompt"};
    if (p->empty()) return BadRequest{"the prompt is empty", "prompt"};
    return IdList(*p, "prompt", out);
  }

  void ChatCompletions(HttpRequest& rq, std::shared_ptr<HttpExchange> ex) {
    auto body = Body(rq, *ex);
    if (!body || !ModelServed(*body, *ex)) return;
    auto bad_request = [&](const BadRequest& b) {
      ex->Respond(OpenAiError(400, b.message, "invalid_request_error", b.param));
    };
    GenerationRequest req;
    bool stream = false, include_usage = false, return_ids = false;
    auto bad = ParseSampling(*body, engine_->max_context(), &req, &stream, &include_usage);
    if (bad) return bad_request(*bad);
    JsonReader in(*body);
    const Json *messages = nullptr, *tools_in = nullptr, *tool_choice = nullptr;
    in.Bool("return_token_ids", &return_ids)
        .Array("messages", &messages, Presence::kRequired)
        .Array("tools", &tools_in)
        .Any("tool_choice", &tool_choice);
    if (!in.ok() && in.field() == "messages") {
      return bad_request({"messages must be a non-empty list of messages", "messages"});
    }
    if (!in.ok() && in.field() == "tools") {
      return bad_request({"tools must be a list of {\"type\": \"function\", ...}", "tools"});
    }
    if (auto b = BadFrom(in)) return bad_request(*b);
    if (messages->empty()) {
      return bad_request({"messages must be a non-empty list of messages", "messages"});
    }
    Json tools = tools_in != nullptr && !tools_in->empty() ? *tools_in : Json(nullptr);

    // tool_choice: "auto" (default with tools), "none", "required", or a named function.
    std::string choice = tools.is_null() ? "none" : "auto";
    std::string forced_name;
    if (tool_choice != nullptr) {
      const Json& tc = *tool_choice;
      const Json& fn = MemberOrNull(tc, "function");
      if (tc.is_string()) {
        choice = tc.get<std::string>();
        if (choice != "auto" && choice != "none" && choice != "required") {
          return bad_request(
              {"tool_choice must be \"auto\", \"none\", \"required\" or "
               "{\"type\": \"function\", \"function\": {\"name\": ...}}",
               "tool_choice"});
        }
      } else if (MemberOrNull(fn, "name").is_string()) {
        choice = "named";
        forced_name = StringOr(fn, "name");
      } else {
        return bad_request(
            {"tool_choice must be \"auto\", \"none\", \"required\" or "
             "{\"type\": \"function\", \"function\": {\"name\": ...}}",
             "tool_choice"});
      }
      if (choice != "none" && tools.is_null()) {
        return bad_request({"tool_choice \"" + choice + "\" needs tools", "tool_choice"});
      }
    }
    if (choice == "none") tools = nullptr;

    auto prompt = chat_->Render(*messages, tools, GenerationPrompt::kAdd);
    if (!prompt.ok()) return bad_request({prompt.status().message(), "messages"});
    // required / named: the assistant turn starts with the call's opening.
    std::string prefill;
    if (choice == "required" || choice == "named") {
      std::string name_part = choice == "named" ? PythonJsonDumps(Json(forced_name)) : "\"";
      if (choice == "named")
        name_part +=
            chat_->kind() == ChatFormatKind::kLlama3 ? ", \"parameters\": " : ", \"arguments\": ";
      prefill = chat_->kind() == ChatFormatKind::kLlama3 ? "{\"name\": " + name_part
                                                         : "<tool_call>\n{\"name\": " + name_part;
    }
    req.prompt = tokenizer_->Encode(*prompt + prefill, SpecialTokens::kParse);
    for (const auto& s : chat_->stop_tokens()) {
      if (auto id = tokenizer_->TokenId(s)) req.stop_token_ids.push_back(*id);
    }
    std::optional<ChatFormatKind> tools_format;
    if (!tools.is_null()) tools_format = chat_->kind();
    auto reply = std::make_shared<ChatReply>(ex, options_.model_name, stream, include_usage,
                                             return_ids, tools_format, prefill);
    Submit(std::move(req), std::move(reply), *ex, "messages");
  }

  ServerOptions options_;
  Engine* engine_;  // written once, before ready_ turns true
  std::atomic<bool> ready_{false};
  const Tokenizer* tokenizer_;
  const ChatFormat* chat_;
  int64_t started_ = NowSeconds();
  MetricsRegistry metrics_;
  Counter* http_requests_ = nullptr;
  Histogram* http_latency_ = nullptr;
  Histogram* first_token_ = nullptr;
  Histogram* inter_token_ = nullptr;
  Router router_;
  // The routes' paths, to tell a wrong method (405) from an unknown path (404).
  std::set<std::string> paths_;  // set by Listen()
  std::unique_ptr<HttpServer> http_;
};

}  // namespace

Result<std::unique_ptr<InferenceServer>> InferenceServer::Start(ServerOptions options,
                                                                Engine* engine,
                                                                const Tokenizer* tokenizer,
                                                                const ChatFormat* chat) {
  if (tokenizer == nullptr || chat == nullptr) {
    return Status::InvalidArgument("the server needs a tokenizer and a chat format");
  }
  auto server = std::make_unique<ServerImpl>(std::move(options), engine, tokenizer, chat);
  LOOM_RETURN_IF_ERROR(server->Listen());
  return std::unique_ptr<InferenceServer>(std::move(server));
}

}  // namespace loom::inference
