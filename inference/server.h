// The OpenAI-compatible HTTP API of loom-infer.
//
// Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models,
// POST /tokenize, POST /detokenize, GET /health, GET /metrics. An I/O thread
// parses and validates the JSON body, tokenizes it and submits it to the Engine
// (which never blocks); the engine thread streams the result back through the
// exchange (SSE when "stream": true). A client that goes away cancels its
// request. Errors use OpenAI's shape: {"error": {"message", "type", "param",
// "code"}}, with 400 for a malformed request or a prompt longer than the context.
//
// InferenceServer is thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

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
  size_t max_body_bytes = 16 << 20;
};

class InferenceServer {
 public:
  // Binds and serves. `engine`, `tokenizer` and `chat` must outlive the server;
  // the engine's detokenizer should be the tokenizer's Decode.
  static Result<std::unique_ptr<InferenceServer>> Start(ServerOptions options, Engine* engine,
                                                        const Tokenizer* tokenizer,
                                                        const ChatFormat* chat);
  virtual ~InferenceServer() = default;

  virtual uint16_t port() const = 0;
  // Stops accepting and lets in-flight requests finish for up to `drain`.
  virtual void Shutdown(std::chrono::milliseconds drain) = 0;
};

}  // namespace loom::inference
