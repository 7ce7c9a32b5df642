// Where this build's tree is, for tests: the source tree, the binaries and the
// reference fixtures. The values live in one generated file (test_paths.cc.in), not
// in every test's compile flags, so moving a clone recompiles one file (ccache hits
// the rest).
#pragma once

namespace loom::testing {

const char* SourceDir();    // the repository's root
const char* BinDir();       // where loomd, loom and the test helpers are built
const char* FixturesDir();  // tests/fixtures (the environment may override: fixture_path.h)

}  // namespace loom::testing

#define LOOM_SOURCE_DIR (::loom::testing::SourceDir())
#define LOOM_BIN_DIR (::loom::testing::BinDir())
#define LOOM_FIXTURES_DIR (::loom::testing::FixturesDir())
