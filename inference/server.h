// The OpenAI-compatible HTTP API of loom-infer.
//
// Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models,
// POST /tokenize, POST /detokenize, GET /health, GET /metrics. An I/O thread
// parses and validates the JSON body, tokenizes it and submits it to the Engine
// (which never blocks); the engine thread streams the result back through the
// exchange (SSE when "stream": true). A client that goes away cancels its
// request. Errors use OpenAI's shape: {"error": {"message", "type", "param",
// "code"}}, with 400 for a malformed request, a prompt longer than the context or
// a field this server does not support (never silently ignored), 401 for a
// missing or wrong API key, 404 `model_not_found` for a model it does not serve,
// and 404/405 for unknown routes and methods.
//
// InferenceServer is thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "inference/engine/engine.h"

namespace loom::inference {

class Tokenizer;
class ChatFormat;

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8000;  // 0 picks a free port
  int io_threads = 2;
  std::string model_name = "loom";  // /v1/models and the "model" of responses
  // More names a request's "model" may give (besides model_name and "default",
  // which always names the served model): --served-model-name a,b,c.
  std::vector<std::string> aliases;
  // When set, /v1/* and /tokenize, /detokenize need "Authorization: Bearer <key>"
  // (401 in OpenAI's shape otherwise); /health and /metrics stay open.
  std::string api_key;
  size_t max_body_bytes = 16 << 20;
};

class InferenceServer {
 public:
  // Binds and serves. `engine`, `tokenizer` and `chat` must outlive the server;
  // the engine's detokenizer should be the tokenizer's Decode. `engine` may be
  // null while the weights load: until Attach() gives it, GET /health answers 503
  // {"status":"loading"} and every other route 503 (code "model_loading"), so the
  // port answers from the start.
  static Result<std::unique_ptr<InferenceServer>> Start(ServerOptions options, Engine* engine,
                                                        const Tokenizer* tokenizer,
                                                        const ChatFormat* chat);
  // The engine of a server started without one; from now on it serves.
  // REQUIRES: called once, and only when Start had no engine.
  virtual void Attach(Engine* engine) = 0;
  virtual ~InferenceServer() = default;

  virtual uint16_t port() const = 0;
  // Stops accepting and lets in-flight requests finish for up to `drain`.
  virtual void Shutdown(std::chrono::milliseconds drain) = 0;
};

}  // namespace loom::inference
