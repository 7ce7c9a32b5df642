// What a repository's policy (policies/) means for the orchestrator: the git
// settings of its workspaces, its sandbox limits, its agents' budgets and test
// command. The policies are loaded at start-up (an invalid one stops loomd) and
// again on SIGHUP (an invalid one keeps the old set); a repository without a
// file of its own gets the shipped defaults. Pure functions over values and one
// holder; thread-safe.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "common/mutex.h"
#include "orchestrator/agent.h"
#include "policies/policy.h"
#include "repos/workspace.h"
#include "sandbox/executor.h"

namespace loom {

using PolicyMap = std::map<std::string, policies::Policy>;

// The repositories' policies, replaced whole when loomd reloads them. A reader
// takes a snapshot that stays as it was for as long as it is held: a task runs
// under the policies it started with, a request under those it came in with.
class PolicySet {
 public:
  explicit PolicySet(PolicyMap initial = {})
      : current_(std::make_shared<const PolicyMap>(std::move(initial))) {}
  std::shared_ptr<const PolicyMap> Snapshot() const EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return current_;
  }
  void Replace(PolicyMap next) EXCLUDES(mu_) {
    auto fresh = std::make_shared<const PolicyMap>(std::move(next));
    MutexLock lock(&mu_);
    current_ = std::move(fresh);
  }

 private:
  mutable Mutex mu_;
  std::shared_ptr<const PolicyMap> current_ GUARDED_BY(mu_);
};

// `repo`'s policy: policies/<repo>.toml when there is one, else the defaults.
const policies::Policy& PolicyFor(const PolicyMap& policies, const std::string& repo);

// The repository as its tasks see it: the registered record (RepoStore) with
// its policy applied. What is registered is the default, and the policy
// overrides: the target branch is the policy's when the repository has a policy
// file, else the registered one; the test command is the policy's when it sets
// one, else the registered one. The editable and never-edited globs (the
// policy's `protected` paths, refused until an approval) and the commit author
// come from the policy alone.
repos::RepoRecord RepoRecordFor(const repos::RepoRecord& registered, const PolicyMap& policies);

sandbox::Limits SandboxLimitsFor(const policies::Policy& policy);
AgentBudgets BudgetsFor(const policies::Policy& policy);

}  // namespace loom
