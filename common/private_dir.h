// Directories of loomd's data dir, private from the moment they exist.
//
// Everything under the data dir is the daemon's alone (the database, secret.key,
// every task's tree), except that a root loomd's sandboxed runs use another uid,
// which must pass through the directories above their own trees. Those get 0711
// (traverse, no listing); every other directory 0700. loomd also runs with
// umask 077, so what is created below them is private too.
#pragma once

#include <string>

#include "common/status.h"

namespace loom {

enum class DirAccess {
  kPrivate,           // 0700
  kSandboxTraverses,  // 0711 when this process is root, else 0700
};

// Creates `path` (and missing parents) and sets its mode, tightening an
// existing directory's mode as well.
Status MakePrivateDir(const std::string& path, DirAccess access);

}  // namespace loom
