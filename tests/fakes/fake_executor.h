// A sandbox::Executor that runs nothing: each run is answered by the test's
// handler (by default: exit 0, no output) and remembered. Thread-compatible.
#pragma once

#include <functional>
#include <vector>

#include "sandbox/executor.h"

namespace loom {

class FakeExecutor : public sandbox::Executor {
 public:
  using Handler = std::function<Result<sandbox::Outcome>(const sandbox::RunSpec&)>;

  // The outcome of a run that exited with `code` after printing `out`.
  static sandbox::Outcome Exited(int code, std::string out = "", int64_t wall_ms = 5) {
    sandbox::Outcome o;
    o.exit_code = code;
    o.stdout_data = std::move(out);
    o.wall_ms = wall_ms;
    return o;
  }

  void set_handler(Handler handler) { handler_ = std::move(handler); }
  const std::vector<sandbox::RunSpec>& runs() const { return runs_; }

  Result<sandbox::Outcome> Run(const sandbox::RunSpec& spec) override {
    runs_.push_back(spec);
    if (handler_) return handler_(spec);
    return Exited(0);
  }

 private:
  Handler handler_;
  std::vector<sandbox::RunSpec> runs_;
};

}  // namespace loom
