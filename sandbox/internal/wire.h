// The runner protocol between the Slurm executor and `loom-sandbox-runner`, the
// program each job step runs. The executor writes one RunSpec (plus the bubblewrap
// options) as JSON on the step's stdin, so nothing of it, secrets included, travels
// in an environment or a command line; the runner answers on the step's stdout
// with JSON lines: first {"step":"<job>.<step>"} as soon as it starts, then exactly
// one {"outcome":{...}} or {"error":{"code":N,"message":"..."}}. The payload's own
// output is inside the outcome, so nothing a payload prints can forge a line.
// Byte strings (argv, env values, output) that are not UTF-8 travel as {"hex":"..."}
// and come back byte for byte.
#pragma once

#include <string>

#include "common/json.h"
#include "common/status.h"
#include "sandbox/executor.h"

namespace loom::sandbox::internal {

struct RunnerRequest {
  RunSpec spec;  // spec.cancel is not sent: the runner cancels on SIGTERM
  BwrapOptions bwrap;
};

Json EncodeRequest(const RunnerRequest& request);
// InvalidArgument, naming the field, for anything malformed.
Result<RunnerRequest> DecodeRequest(const Json& j);

Json EncodeOutcome(const Outcome& outcome);
Result<Outcome> DecodeOutcome(const Json& j);

Json EncodeError(const Status& status);
Status DecodeError(const Json& j);

}  // namespace loom::sandbox::internal
