// What a repository's policy (policies/) means for the orchestrator: the git
// settings of its workspaces, its sandbox limits, its agents' budgets and test
// command. The policies are loaded once at start-up (an invalid one stops
// loomd); a repository without a file of its own gets the shipped defaults.
// Pure functions over values; thread-safe.
#pragma once

#include <map>
#include <string>

#include "orchestrator/agent.h"
#include "policies/policy.h"
#include "repos/workspace.h"
#include "sandbox/executor.h"

namespace loom {

using PolicyMap = std::map<std::string, policies::Policy>;

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
