// Fault injection for crash tests: a named point in a multi-step change where a
// test can make the process die exactly as `kill -9` would, to prove the change
// is atomic across a crash at that point (tests/orchestrator/crash_resume_test.cc).
//
// CrashPoint(name) sends SIGKILL to this process when the environment variable
// LOOM_CRASH_POINT equals `name` when the process started; otherwise it does
// nothing (the variable is read once). Thread-safe.
#pragma once

#include <string_view>

namespace loom {

void CrashPoint(std::string_view name);

}  // namespace loom
