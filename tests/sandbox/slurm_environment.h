// One local Slurm cluster (tests/support/slurm_cluster.h) for a whole test binary:
// starting one takes seconds, so the Slurm suites run as one ctest test each and
// share it. Without the packages or root the suites skip with the reason; under
// CI=true they fail instead, since CI must run them.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <memory>
#include <string>

#include "sandbox/executor.h"
#include "tests/support/slurm_cluster.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_paths.h"

namespace loom::sandbox::testing {

class SlurmEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    missing_ = loom::testing::SlurmCluster::Missing();
    if (!missing_.empty()) return;
    dir_ = std::make_unique<loom::testing::TempDir>();
    chmod(dir_->path().c_str(), 0755);
    cluster_ = std::make_unique<loom::testing::SlurmCluster>();
    if (!cluster_->Start(dir_->path())) {
      missing_ = "the local Slurm did not come up: " + cluster_->error();
      failed_ = true;
      cluster_.reset();
    }
  }
  void TearDown() override {
    cluster_.reset();
    dir_.reset();
  }

  // The cluster, or null when the test must skip (or fail: `*message` says which).
  static loom::testing::SlurmCluster* Cluster(std::string* message, bool* must_fail) {
    *message = missing_;
    const char* ci = getenv("CI");
    *must_fail = failed_ || (ci != nullptr && std::string(ci) == "true");
    return cluster_.get();
  }

  // Options for an executor on this cluster, sandboxing as `bwrap` says.
  static SlurmOptions Options(const BwrapOptions& bwrap) {
    SlurmOptions o;
    o.slurm_conf = cluster_->slurm_conf();
    o.runner_path = std::string(LOOM_BIN_DIR) + "/loom-sandbox-runner";
    o.concurrent_steps = static_cast<uint32_t>(std::min(cluster_->cpus(), 2));
    o.memory_per_step_mb = 1024;
    o.allocation_minutes = 30;
    o.start_timeout = std::chrono::seconds(30);
    o.bwrap = bwrap;
    return o;
  }

 private:
  static inline std::string missing_;
  static inline bool failed_ = false;
  static inline std::unique_ptr<loom::testing::TempDir> dir_;
  static inline std::unique_ptr<loom::testing::SlurmCluster> cluster_;
};

// Registered once per binary that includes this header; gtest owns it.
inline ::testing::Environment* const kSlurmEnvironment =
    ::testing::AddGlobalTestEnvironment(new SlurmEnvironment);

// In a test's SetUp: skips (or fails under CI=true) when there is no cluster.
#define LOOM_REQUIRE_SLURM(cluster_var)                                                  \
  loom::testing::SlurmCluster* cluster_var = nullptr;                                    \
  {                                                                                      \
    std::string why;                                                                     \
    bool must_fail = false;                                                              \
    cluster_var = ::loom::sandbox::testing::SlurmEnvironment::Cluster(&why, &must_fail); \
    if (cluster_var == nullptr) {                                                        \
      if (must_fail) FAIL() << why;                                                      \
      GTEST_SKIP() << "no local Slurm: " << why;                                         \
    }                                                                                    \
  }

}  // namespace loom::sandbox::testing
