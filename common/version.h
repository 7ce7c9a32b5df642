// What a program says to --version: Loom's version, the git commit it was built
// from (with "-modified" when the tree had uncommitted changes) and the build
// options. The numbers are written into a generated source at build time
// (cmake/version.cmake), so the commit follows the checkout.
#pragma once

#include <string>
#include <string_view>

namespace loom {

std::string_view VersionNumber();  // "0.1.0"
std::string_view VersionCommit();  // "1a2b3c4d5e6f", "1a2b3c4d5e6f-modified" or "unknown"
std::string_view BuildOptions();   // "RelWithDebInfo, GNU 12.2.0, CUDA off"

// "loomd 0.1.0 (commit 1a2b3c4d5e6f)\nbuild: RelWithDebInfo, GNU 12.2.0, CUDA off",
// then a line of `extra` when given (a program's own, e.g. the CUDA runtime found).
std::string VersionText(std::string_view program, std::string_view extra = {});

}  // namespace loom
