// The bubblewrap executor without its probe: MakeBwrapExecutor probes (a trial run)
// and calls this; the Slurm runner, which starts once per run, calls it directly.
#pragma once

#include <memory>

#include "common/status.h"
#include "sandbox/executor.h"

namespace loom::sandbox::internal {

Result<std::unique_ptr<Executor>> CreateBwrapExecutor(const BwrapOptions& options);

}  // namespace loom::sandbox::internal
