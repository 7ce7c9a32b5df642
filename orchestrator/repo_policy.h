// What a repository's policy (policies/) means for the orchestrator: the git
// settings of its workspaces, its sandbox limits, its agents' budgets and test
// command. The policies are loaded once at start-up (an invalid one stops
// loomd); a repository without a file of its own gets the shipped defaults.
// Pure functions over values; thread-safe.
#pragma once

#include <map>
#include <string>

#include "orchestrator/agent.h"
#include "orchestrator/task_store.h"
#include "policies/policy.h"
#include "repos/workspace.h"
#include "sandbox/executor.h"

namespace loom {

using PolicyMap = std::map<std::string, policies::Policy>;

// `repo`'s policy: policies/<repo>.toml when there is one, else the defaults.
const policies::Policy& PolicyFor(const PolicyMap& policies, const std::string& repo);

// The git layer's view: target branch (the policy's when the repository has a
// policy file, else the registered one), editable and never-edited globs (the
// policy's `protected` paths are refused until approvals of edits exist), author.
repos::RepoRecord RepoRecordFor(const RepoEntry& entry, const PolicyMap& policies);

// The policy's test command, else the one given at registration.
std::string TestCommandFor(const RepoEntry& entry, const policies::Policy& policy);

sandbox::Limits SandboxLimitsFor(const policies::Policy& policy);
AgentBudgets BudgetsFor(const policies::Policy& policy);

}  // namespace loom
