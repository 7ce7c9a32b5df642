// The agents' link to a model: any OpenAI-compatible /v1/chat/completions
// endpoint with tools (loom-infer, vLLM, SGLang, llama.cpp, a hosted API), or
// several replicas of one model (model_endpoints.h): each call goes to its
// conversation's replica (prefix affinity, so that replica's prefix cache keeps
// hitting), and a call that cannot reach a replica goes on at once to the next
// one of that conversation's order.
//
// Transient failures (connection refused or reset, timeouts, 429, 5xx) are
// retried: first on the other replicas that are up, then, when every one has
// failed, in another round after an exponential backoff; when the rounds run
// out the call fails with Unavailable, which the orchestrator turns into an
// escalation ("no inference backend") rather than a failed task. A reply that
// is not a valid completion is Corruption: the agent counts it as a malformed
// reply. LlmClient objects are thread-safe (each call uses its own connection).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/secret_mask.h"
#include "common/status.h"
#include "orchestrator/model_endpoints.h"

namespace loom {

struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // JSON text as the model produced it (may be malformed)
};

struct ChatReply {
  std::string content;
  std::vector<ToolCall> tool_calls;
  std::string finish_reason;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  // Prompt tokens the server took from its prefix cache, where it says
  // (usage.prompt_tokens_details.cached_tokens: loom-infer, vLLM); else 0.
  int64_t cached_tokens = 0;
  int attempts = 1;      // HTTP attempts it took, over every replica tried
  std::string endpoint;  // the base URL of the replica that answered

  // The assistant message to append to the conversation (OpenAI format).
  Json ToMessage() const;
};

struct LlmOptions {
  // Base URL (/chat/completions is appended), or the replicas' base URLs
  // separated by commas (ModelEndpoints::ParseUrls).
  std::string url = "http://127.0.0.1:8000/v1";
  // The replicas to route over, with their health; null: the client makes them
  // from `url` (with a health thread when there are several). loomd passes its
  // own so that GET /v1/fleet shows their state.
  std::shared_ptr<ModelEndpoints> endpoints;
  std::string model = "default";
  std::string api_key;  // sent as a bearer token when set
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  int max_retries = 4;                     // rounds over the replicas after the first
  std::chrono::milliseconds backoff{500};  // before a round; doubled per round, with jitter
  bool stream = false;                     // use SSE streaming
  int max_tokens = 4096;
  double temperature = 0.0;
  // Masks the messages of every request (the secret store's); null: none.
  std::shared_ptr<const SecretMasker> masker;
};

class LlmClient {
 public:
  virtual ~LlmClient() = default;
  // `messages` and `tools` are in OpenAI's format.
  virtual Result<ChatReply> Chat(const Json& messages, const Json& tools) = 0;
};

std::unique_ptr<LlmClient> MakeOpenAiClient(LlmOptions options);

// Parses a non-streaming completion body. Corruption when it is not one.
Result<ChatReply> ParseCompletion(std::string_view body);

// The routing key of a conversation: its messages up to and including the
// first user message (for an agent, the system prompt and the task), which stay
// the same at every step of one conversation and differ between tasks. Empty
// when `messages` is not an array.
std::string AffinityKey(const Json& messages);

// A Prober for ModelEndpoints: ProbeModelEndpoint of one replica with
// `options`' key, within `timeout`.
ModelEndpoints::Prober MakeModelProber(const LlmOptions& options,
                                       std::chrono::milliseconds timeout);

// What an endpoint's GET /models says of itself.
struct ModelEndpointInfo {
  std::vector<std::string> models;  // ids served
  // The context size of `options.model` (or of the only model served) where the
  // endpoint offers it (vLLM, SGLang and loom-infer give "max_model_len"); 0: unknown.
  int64_t max_model_len = 0;
};

// Asks the endpoint (`options.url`, one base URL) for its models, once, without retries.
// Unavailable when it cannot be reached; FailedPrecondition when it answers with an error status.
Result<ModelEndpointInfo> ProbeModelEndpoint(const LlmOptions& options,
                                             std::chrono::milliseconds timeout);

// FailedPrecondition, saying what to change, when a context of `info.max_model_len`
// tokens cannot hold a prompt's fixed part (`fixed_prompt_bytes`, counted as one
// token per 4 bytes, which undercounts for code and JSON) plus a reply of
// `options.max_tokens`. Ok when the context size is unknown.
Status CheckContextFits(const ModelEndpointInfo& info, const LlmOptions& options,
                        size_t fixed_prompt_bytes);

}  // namespace loom
