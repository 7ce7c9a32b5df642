// The seccomp deny-list applied to every payload, compiled to a classic BPF program
// that bwrap loads (`--seccomp FD`) just before it execs the command.
#pragma once

#include <string>

#include "common/status.h"
#include "sandbox/executor.h"

namespace loom::sandbox::internal {

// Returns the BPF program (struct sock_filter[]) as bytes, for x86_64 plus the i386
// and x32 ABIs. `network` decides which socket families are allowed.
Result<std::string> BuildSeccompProgram(Network network);

// OK when the kernel supports seccomp filters; else how to fix it.
Status CheckSeccompAvailable();

}  // namespace loom::sandbox::internal
