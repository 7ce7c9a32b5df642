// Where the reference fixtures live: $LOOM_FIXTURES_DIR if set, else the path
// this build was made with (tests/fixtures in the source tree).
#pragma once

#include <cstdlib>
#include <string>

#include "tests/support/test_paths.h"

namespace loom::testing {

inline std::string FixturePath(const std::string& rel) {
  const char* env = std::getenv("LOOM_FIXTURES_DIR");
  std::string base = (env != nullptr && *env != '\0') ? env : LOOM_FIXTURES_DIR;
  return rel.empty() ? base : base + "/" + rel;
}

}  // namespace loom::testing

// Tests inside loom::inference see loom::inference::testing first (tests/fakes).
namespace loom::inference::testing {
using ::loom::testing::FixturePath;
}  // namespace loom::inference::testing
