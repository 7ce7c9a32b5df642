// Glob patterns over worktree-relative paths: the one rule set for the allowed and
// protected paths of a repository. policies/ validates a policy's patterns with
// ValidateGlob when it loads them; repos/ refuses settings whose patterns fail it and
// enforces them with GlobMatch, so what a policy file means is what an agent gets.
//
// Rules. Patterns are anchored at the worktree root and matched segment by segment:
// `*` any run of characters and `?` one character, both within a segment (neither
// crosses a `/`); a segment `**` matches zero or more segments; a trailing `/` means
// everything under that directory (`dir/` is `dir/**`; both also match `dir` itself).
// A leading `.` is an ordinary character: `*` matches dotfiles and `**` dot-directories
// (`*` matches `.env`, `**` matches `.github/ci.yml`).
// Refused: empty, absolute (leading `/`), `.`/`..`/empty segments, `**` inside a
// segment, `[`, `]`, `{`, `}`, `\`, control characters, more than 4096 characters.
//
// Pure functions; thread-safe.
#pragma once

#include <string_view>

#include "common/status.h"

namespace loom {

// OK, or InvalidArgument saying what is wrong with the pattern.
Status ValidateGlob(std::string_view pattern);
// False for an invalid pattern (so a bad pattern never grants or protects anything
// by accident; validate first to tell the two apart). `path` is matched as given (no
// normalisation): a '/'-separated relative path.
bool GlobMatch(std::string_view pattern, std::string_view path);

}  // namespace loom
