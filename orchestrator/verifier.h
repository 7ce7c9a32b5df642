// Verification of an agent's change before it goes to review: the test suite
// passes on the branch's final tree and, for a bug, SWE-bench's FAIL_TO_PASS
// holds: the tests the agent added or changed, applied to a pristine copy of the
// base tree, fail there (they reproduce the bug).
//
// The pristine base tree is made only when FAIL_TO_PASS needs it, straight into
// a temporary directory under scratch/ (exported from the merge base's commit by
// the caller's BaseTreeWriter), and removed after the run: no copy per task is
// kept on disk (issue 25).
//
// The verifier runs nothing itself: the sandboxed runs go through the caller's
// runner (which counts them and records them in the task's log), and the
// FAIL_TO_PASS evidence through its recorder. Thread-compatible.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/json.h"
#include "common/status.h"
#include "orchestrator/task_store.h"
#include "repos/workspace.h"
#include "sandbox/executor.h"

namespace loom {

// Copies the tree at `from` (regular files, directories, symlinks as links;
// a top-level `.git` is left out) to `to`, which must not exist. The copy is made
// under `to` + ".partial" and renamed, so `to` exists only complete; a
// ".partial" left by a crash is replaced.
Status CopyTree(const std::string& from, const std::string& to);

// Whether `path` names a test file by the usual conventions (test_*.py,
// *_test.cc, *.spec.ts, anything under tests/...).
bool IsTestPath(const std::string& path);

// Writes the pristine tree of commit `commit` (the branch's merge base with the
// target) into `dir`, which must not exist.
using BaseTreeWriter = std::function<Status(const std::string& commit, const std::string& dir)>;
// The BaseTreeWriter of a repository: repos::ExportTree from its objects.
BaseTreeWriter ExportFromRepository(std::string repo_path);

struct VerifierOptions {
  std::vector<std::string> test_argv;  // the policy's test command
  // For bugs: the FAIL_TO_PASS check, on a base tree `write_base_tree` makes;
  // empty disables the check.
  bool require_failing_test = true;
  BaseTreeWriter write_base_tree;
  std::string scratch_dir;  // where the temporary trees are made
  size_t max_output = 16 << 10;
  const Clock* clock = SystemClock::Default();  // names the temporary trees
};

// Runs `argv` sandboxed in `dir`; `base` says it is a copy of the base tree (for
// the log). The outcome has the task's secrets masked.
using SuiteRunner = std::function<Result<sandbox::Outcome>(const std::vector<std::string>& argv,
                                                           const std::string& dir)>;
// Records the FAIL_TO_PASS evidence {tests, base}; an error refuses the finish.
using EvidenceRecorder = std::function<Status(const Json& evidence)>;

struct Verdict {
  enum class Kind {
    kPassed,   // the change may be committed and reviewed
    kRefused,  // the agent must do more (`message` says what)
    kError,    // verification could not be done (`message` says why)
  };
  Kind kind = Kind::kPassed;
  std::string message;  // what the model is told when not passed
};

class Verifier {
 public:
  Verifier(VerifierOptions options, SuiteRunner run, EvidenceRecorder record);

  // The suite on `workspace`'s worktree, then FAIL_TO_PASS when `task` is a bug.
  Verdict Verify(const Task& task, repos::Workspace& workspace);

 private:
  Verdict CheckFailToPass(const Task& task, repos::Workspace& workspace);

  VerifierOptions options_;
  SuiteRunner run_;
  EvidenceRecorder record_;
};

}  // namespace loom
