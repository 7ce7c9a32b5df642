// Building the replay model's scripts (orchestrator/replay_model.h) in tests.
#pragma once

#include <string>
#include <utility>

#include "common/json.h"

namespace loom::testing {

// One model reply that calls `tool` with `args`, after `content`.
inline Json Step(const std::string& tool, Json args, const std::string& content = "") {
  return {
      {"message", {{"content", content}, {"tool_calls", {{{"name", tool}, {"arguments", args}}}}}}};
}

// A script of one conversation answered by `replies` in order.
inline Json Script(Json replies) {
  return {{"conversations", {{{"replies", std::move(replies)}}}}};
}

}  // namespace loom::testing
