#include "common/version.h"

namespace loom {

std::string VersionText(std::string_view program, std::string_view extra) {
  std::string out;
  out.append(program).append(" ").append(VersionNumber());
  out.append(" (commit ").append(VersionCommit()).append(")\nbuild: ").append(BuildOptions());
  if (!extra.empty()) out.append("\n").append(extra);
  return out;
}

}  // namespace loom
