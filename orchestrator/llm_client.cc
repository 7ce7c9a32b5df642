// OpenAI-compatible chat client over libcurl, with retries and SSE streaming,
// over one endpoint or several replicas (model_endpoints.h routes, this file
// tries them in the order given and says which could not be reached).
#include "orchestrator/llm_client.h"

#include <random>
#include <thread>

#include "common/json_reader.h"
#include "common/log.h"
#include "orchestrator/http_client.h"

namespace loom {
namespace {

// Tool calls one streamed reply may hold; a larger index is ignored.
constexpr int64_t kMaxStreamedToolCalls = 64;

bool Retryable(int status) { return status == 429 || status == 408 || status >= 500; }

void ReadUsage(const Json& j, ChatReply* reply) {
  if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
    // The server's word: a wrong type keeps the count we had, never throws.
    reply->prompt_tokens = IntOr(*u, "prompt_tokens", reply->prompt_tokens);
    reply->completion_tokens = IntOr(*u, "completion_tokens", reply->completion_tokens);
    if (auto d = u->find("prompt_tokens_details"); d != u->end() && d->is_object()) {
      reply->cached_tokens = IntOr(*d, "cached_tokens", reply->cached_tokens);
    }
  }
}

// How an attempt ended when it did not bring a reply.
enum class Reached {
  kNo,   // the replica could not be reached, or broke off: it is marked down
  kYes,  // it answered (an error status, a malformed reply): it is up
};

// Accumulates streamed chat.completion.chunk deltas into a reply.
class StreamAccumulator {
 public:
  // Feeds raw bytes; false once the stream is malformed.
  bool Feed(std::string_view data) {
    buffer_.append(data);
    size_t pos;
    while ((pos = buffer_.find('\n')) != std::string::npos) {
      std::string line = buffer_.substr(0, pos);
      buffer_.erase(0, pos + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.rfind("data:", 0) != 0) continue;
      std::string payload = line.substr(5);
      while (!payload.empty() && payload.front() == ' ') payload.erase(0, 1);
      if (payload == "[DONE]") {
        done_ = true;
        continue;
      }
      auto chunk = ParseJson(payload);
      if (!chunk.ok() || !chunk->is_object()) return false;
      ++events_;
      Apply(*chunk);
    }
    return true;
  }
  bool done() const { return done_; }
  int events() const { return events_; }
  ChatReply Take() { return std::move(reply_); }

 private:
  void Apply(const Json& chunk) {
    ReadUsage(chunk, &reply_);
    auto choices = chunk.find("choices");
    if (choices == chunk.end() || !choices->is_array() || choices->empty()) return;
    const Json& choice = (*choices)[0];
    if (choice.contains("finish_reason") && choice["finish_reason"].is_string()) {
      reply_.finish_reason = choice["finish_reason"];
    }
    auto delta = choice.find("delta");
    if (delta == choice.end() || !delta->is_object()) return;
    if (delta->contains("content") && (*delta)["content"].is_string()) {
      reply_.content += (*delta)["content"].get<std::string>();
    }
    if (auto tcs = delta->find("tool_calls"); tcs != delta->end() && tcs->is_array()) {
      for (const auto& tc : *tcs) {
        // The index is the server's (the model's) word: bounded before it sizes anything.
        int64_t index = IntOr(tc, "index", 0);
        if (index < 0 || index >= kMaxStreamedToolCalls) continue;
        if (static_cast<size_t>(index) >= reply_.tool_calls.size())
          reply_.tool_calls.resize(static_cast<size_t>(index) + 1);
        ToolCall& call = reply_.tool_calls[index];
        if (tc.contains("id") && tc["id"].is_string()) call.id = tc["id"];
        if (auto fn = tc.find("function"); fn != tc.end() && fn->is_object()) {
          if (fn->contains("name") && (*fn)["name"].is_string())
            call.name += (*fn)["name"].get<std::string>();
          if (fn->contains("arguments") && (*fn)["arguments"].is_string()) {
            call.arguments += (*fn)["arguments"].get<std::string>();
          }
        }
      }
    }
  }
  std::string buffer_;
  ChatReply reply_;
  bool done_ = false;
  int events_ = 0;
};

class OpenAiClient : public LlmClient {
 public:
  explicit OpenAiClient(LlmOptions options) : options_(std::move(options)) {
    endpoints_ = options_.endpoints;
    if (!endpoints_) {
      // A list loomd would refuse (CheckModelUrl) is kept as one endpoint: its
      // calls fail with curl's word for it, as they always did.
      auto urls = ModelEndpoints::ParseUrls(options_.url);
      endpoints_ = std::make_shared<ModelEndpoints>(
          urls.ok() ? std::move(*urls) : std::vector<std::string>{options_.url},
          MakeModelProber(options_, std::chrono::seconds(2)));
      if (endpoints_->size() > 1) endpoints_->StartHealthChecks();
    }
  }

  Result<ChatReply> Chat(const Json& messages, const Json& tools) override {
    // The choke point for what a model is sent: masked, whatever the caller did.
    Json request = {{"model", options_.model},
                    {"messages", options_.masker ? options_.masker->MaskJson(messages) : messages},
                    {"max_tokens", options_.max_tokens},
                    {"temperature", options_.temperature}};
    if (tools.is_array() && !tools.empty()) {
      request["tools"] = tools;
      request["tool_choice"] = "auto";
    }
    if (options_.stream) {
      request["stream"] = true;
      request["stream_options"] = {{"include_usage", true}};
    }
    std::string body = DumpJson(request);
    std::vector<std::pair<std::string, std::string>> headers = {
        {"Content-Type", "application/json"}};
    if (!options_.api_key.empty())
      headers.emplace_back("Authorization", "Bearer " + options_.api_key);
    const std::string key = AffinityKey(request["messages"]);

    HttpClient http;
    std::mt19937 rng(std::random_device{}());
    Status last;
    int attempts = 0;
    for (int round = 0; round <= options_.max_retries; ++round) {
      if (round > 0) {
        auto base = options_.backoff * (1 << std::min(round - 1, 10));
        auto jitter = std::chrono::milliseconds(rng() % (base.count() / 2 + 1));
        std::this_thread::sleep_for(base + jitter);
      }
      for (size_t i : endpoints_->Route(key)) {
        const std::string& base_url = endpoints_->url(i);
        ++attempts;
        Reached reached = Reached::kNo;
        Result<ChatReply> r =
            Attempt(http, base_url + "/chat/completions", body, headers, &reached);
        if (r.ok()) {
          endpoints_->MarkAnswered(i);
          r->attempts = attempts;
          r->endpoint = base_url;
          return r;
        }
        last = r.status();
        if (last.code() != StatusCode::kUnavailable &&
            last.code() != StatusCode::kDeadlineExceeded) {
          return last;  // not transient: a bad request or a malformed reply
        }
        if (reached == Reached::kNo) endpoints_->MarkDown(i, last.message());
        LOOM_LOG(kWarning) << "LLM call to " << base_url << " failed (attempt " << attempts
                           << "): " << last.message();
      }
    }
    std::string which = "the model endpoint " + endpoints_->url(0);
    if (endpoints_->size() > 1) {
      which = "every model endpoint (";
      for (size_t i = 0; i < endpoints_->size(); ++i) {
        which += (i ? ", " : "") + endpoints_->url(i);
      }
      which += ")";
    }
    return Status::Unavailable(which + " failed, " + std::to_string(attempts) + " times in " +
                               std::to_string(options_.max_retries + 1) +
                               " rounds; last error: " + last.message());
  }

 private:
  // `*reached` is set to kYes once the replica answered with a status.
  Result<ChatReply> Attempt(HttpClient& http, const std::string& url, const std::string& body,
                            const std::vector<std::pair<std::string, std::string>>& headers,
                            Reached* reached) {
    if (!options_.stream) {
      LOOM_ASSIGN_OR_RETURN(HttpResult res,
                            http.Call("POST", url, body, headers, options_.timeout));
      *reached = Reached::kYes;
      if (res.status == 200) return ParseCompletion(res.body);
      return StatusFor(res.status, res.body);
    }
    StreamAccumulator acc;
    bool malformed = false;
    std::string error_body;
    auto r = http.Stream("POST", url, body, headers, options_.timeout, [&](std::string_view d) {
      error_body.append(d.substr(0, 4096 - std::min<size_t>(4096, error_body.size())));
      if (!acc.Feed(d)) {
        malformed = true;
        return false;
      }
      return true;
    });
    if (malformed) return Status::Corruption("the model's stream is not valid server-sent JSON");
    if (!r.ok()) return r.status();
    if (r->status != 200) {
      *reached = Reached::kYes;
      return StatusFor(r->status, error_body);
    }
    if (acc.events() == 0 && !acc.done()) {
      return Status::Corruption("the model's reply is not an event stream: " +
                                error_body.substr(0, 200));
    }
    // Cut short (the replica died mid-reply): Unavailable, left as not reached.
    if (!acc.done()) return Status::Unavailable("the model's stream ended before [DONE]");
    *reached = Reached::kYes;
    return acc.Take();
  }

  static Status StatusFor(int status, const std::string& body) {
    std::string msg =
        "the model endpoint answered HTTP " + std::to_string(status) + ": " + body.substr(0, 300);
    if (Retryable(status)) return Status::Unavailable(msg);
    if (status == 401 || status == 403) return Status::PermissionDenied(msg);
    return Status::InvalidArgument(msg);
  }

  LlmOptions options_;
  std::shared_ptr<ModelEndpoints> endpoints_;
};

}  // namespace

Json ChatReply::ToMessage() const {
  Json m = {{"role", "assistant"}, {"content", content}};
  if (!tool_calls.empty()) {
    m["tool_calls"] = Json::array();
    for (const auto& tc : tool_calls) {
      m["tool_calls"].push_back({{"id", tc.id},
                                 {"type", "function"},
                                 {"function", {{"name", tc.name}, {"arguments", tc.arguments}}}});
    }
  }
  return m;
}

Result<ChatReply> ParseCompletion(std::string_view body) {
  auto parsed = ParseJson(body);
  if (!parsed.ok())
    return Status::Corruption("the model's reply is not JSON: " + parsed.status().message());
  const Json& j = *parsed;
  auto choices = j.find("choices");
  if (!j.is_object() || choices == j.end() || !choices->is_array() || choices->empty() ||
      !(*choices)[0].is_object() || !(*choices)[0].contains("message") ||
      !(*choices)[0]["message"].is_object()) {
    return Status::Corruption("the model's reply has no choices[0].message");
  }
  ChatReply reply;
  const Json& choice = (*choices)[0];
  const Json& msg = choice["message"];
  if (msg.contains("content") && msg["content"].is_string()) reply.content = msg["content"];
  if (choice.contains("finish_reason") && choice["finish_reason"].is_string()) {
    reply.finish_reason = choice["finish_reason"];
  }
  if (auto tcs = msg.find("tool_calls"); tcs != msg.end() && tcs->is_array()) {
    for (const auto& tc : *tcs) {
      if (!tc.is_object()) return Status::Corruption("a tool call is not an object");
      ToolCall call;
      if (tc.contains("id") && tc["id"].is_string()) call.id = tc["id"];
      auto fn = tc.find("function");
      if (fn == tc.end() || !fn->is_object())
        return Status::Corruption("a tool call has no function");
      if (fn->contains("name") && (*fn)["name"].is_string()) call.name = (*fn)["name"];
      if (fn->contains("arguments")) {
        const Json& a = (*fn)["arguments"];
        call.arguments = a.is_string() ? a.get<std::string>() : DumpJson(a);
      }
      reply.tool_calls.push_back(std::move(call));
    }
  }
  ReadUsage(j, &reply);
  return reply;
}

std::unique_ptr<LlmClient> MakeOpenAiClient(LlmOptions options) {
  return std::make_unique<OpenAiClient>(std::move(options));
}

std::string AffinityKey(const Json& messages) {
  std::string key;
  if (!messages.is_array()) return key;
  for (const Json& m : messages) {
    key += DumpJson(m);
    key += '\n';
    if (m.is_object() && m.contains("role") && m["role"] == "user") break;
  }
  return key;
}

ModelEndpoints::Prober MakeModelProber(const LlmOptions& options,
                                       std::chrono::milliseconds timeout) {
  LlmOptions probe;
  probe.api_key = options.api_key;
  probe.model = options.model;
  return [probe, timeout](const std::string& url) {
    LlmOptions one = probe;
    one.url = url;
    return ProbeModelEndpoint(one, timeout).status();
  };
}

Result<ModelEndpointInfo> ProbeModelEndpoint(const LlmOptions& options,
                                             std::chrono::milliseconds timeout) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (!options.api_key.empty()) headers.emplace_back("Authorization", "Bearer " + options.api_key);
  std::string url = options.url + "/models";
  HttpClient http;
  LOOM_ASSIGN_OR_RETURN(HttpResult r, http.Call("GET", url, "", headers, timeout));
  if (r.status != 200) {
    return Status::FailedPrecondition("GET " + url + " answered " + std::to_string(r.status) +
                                      ": " + r.body.substr(0, 200));
  }
  auto body = ParseJson(r.body);
  if (!body.ok() || !body->is_object() || !body->contains("data") || !(*body)["data"].is_array()) {
    return Status::FailedPrecondition("GET " + url + " did not answer a model list");
  }
  ModelEndpointInfo info;
  const Json* chosen = nullptr;
  for (const Json& m : (*body)["data"]) {
    if (!m.is_object() || !m.contains("id") || !m["id"].is_string()) continue;
    info.models.push_back(m["id"].get<std::string>());
    if (info.models.back() == options.model) chosen = &m;
  }
  if (!chosen && (*body)["data"].size() == 1 && (*body)["data"][0].is_object()) {
    chosen = &(*body)["data"][0];
  }
  if (chosen) info.max_model_len = IntOr(*chosen, "max_model_len", 0);
  return info;
}

Status CheckContextFits(const ModelEndpointInfo& info, const LlmOptions& options,
                        size_t fixed_prompt_bytes) {
  if (info.max_model_len <= 0) return Status::Ok();
  int64_t fixed_tokens = static_cast<int64_t>(fixed_prompt_bytes / 4);
  int64_t needed = fixed_tokens + options.max_tokens;
  if (needed <= info.max_model_len) return Status::Ok();
  return Status::FailedPrecondition(
      "the model at " + options.url + " has a context of " + std::to_string(info.max_model_len) +
      " tokens, but an agent's prompt starts at about " + std::to_string(fixed_tokens) +
      " tokens (instructions and tool schemas) and asks for replies of up to " +
      std::to_string(options.max_tokens) +
      ": every task would fail at its first step. Serve the model with a longer context "
      "(loom-infer: more --kv-blocks; vLLM: --max-model-len) or pick a model that has one");
}

}  // namespace loom
