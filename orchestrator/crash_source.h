// Source lines for a crash report's stack trace, read from the repository at the
// commit its release names (docs/crash-reports.md). SDKs send the lines of the
// app's files where they can; a browser's minified bundle, or an SDK that sends
// none, leaves frames bare. Before an agent starts on such a task, each bare
// in-app frame of the instructions' "Stack trace:" gets the lines around it from
// `Commit:`, as the repository holds them, marked as read there.
#pragma once

#include <string>

namespace loom {

// `instructions` (a task's, as triage wrote them) with source lines added under
// each in-app frame that has none and whose file is in the commit. A frame's file
// is looked up as given, without a URL's scheme and host or a leading "/" or "./",
// then by ever shorter tails ("/srv/app/src/calc.py": "srv/app/src/calc.py",
// "app/src/calc.py", "src/calc.py", "calc.py"). Unchanged without a commit (7 to
// 40 hex digits) or when nothing resolves.
std::string WithSourceAtCommit(const std::string& instructions, const std::string& repo_path);

}  // namespace loom
