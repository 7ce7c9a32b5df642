// A scripted OpenAI-compatible model server that replays a recorded
// conversation: the stand-in for an LLM in `loom demo` and in tests (the
// pattern of SWE-agent's ReplayModel and Codex's scripted SSE server).
//
// A script is JSON:
//   {"conversations": [
//      {"match": "text that appears in the request's messages",   // optional
//       "replies": [ step, step, ... ]}, ...]}
// The reply to a request is chosen statelessly: the first conversation whose
// `match` occurs in the request's messages (or that has no `match`), and within
// it the step numbered by how many assistant messages the request already
// carries. So a resumed or retried agent gets the same answer as before, and
// many tasks can share one script. A step is one of:
//   {"message": {"content": "...", "tool_calls": [{"name": "...", "arguments": {...}}]}}
//   {"fail": {"status": 503, "times": 2}}   first N requests for this step fail
//   {"raw": "not json at all"}             a garbage body with status 200
//   {"delay_ms": 200, "message": {...}}    a slow answer
// An optional top-level "max_model_len": N is the context size GET /v1/models
// offers (as vLLM and loom-infer do). Past the end of a conversation the server answers 500. Every
// request is recorded. Supports "stream": true (SSE deltas). Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/status.h"

namespace loom {

class ReplayModel {
 public:
  // Validates the script; InvalidArgument names what is wrong with it.
  static Result<std::unique_ptr<ReplayModel>> Start(Json script, std::string host = "127.0.0.1",
                                                    uint16_t port = 0);
  static Result<std::unique_ptr<ReplayModel>> StartFromFile(const std::string& path,
                                                            std::string host = "127.0.0.1",
                                                            uint16_t port = 0);
  virtual ~ReplayModel() = default;
  virtual uint16_t port() const = 0;
  // "http://127.0.0.1:PORT/v1"
  virtual std::string url() const = 0;
  // Request bodies received so far, in order.
  virtual std::vector<Json> requests() const = 0;
  virtual void Stop() = 0;
};

}  // namespace loom
