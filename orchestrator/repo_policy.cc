#include "orchestrator/repo_policy.h"

namespace loom {

const policies::Policy& PolicyFor(const PolicyMap& policies, const std::string& repo) {
  auto it = policies.find(repo);
  return it == policies.end() ? policies::DefaultPolicy() : it->second;
}

repos::RepoRecord RepoRecordFor(const repos::RepoRecord& registered, const PolicyMap& policies) {
  const policies::Policy& p = PolicyFor(policies, registered.name);
  repos::RepoRecord record = registered;
  if (policies.count(registered.name)) record.settings.target_branch = p.repo.target_branch;
  if (!p.repo.test_command.empty()) record.test_command = p.repo.test_command;
  record.settings.allowed_globs = p.paths.allowed;
  record.settings.protected_globs = p.paths.protected_paths;
  record.settings.author_name = p.agent.author_name;
  record.settings.author_email = p.agent.author_email;
  return record;
}

sandbox::Limits SandboxLimitsFor(const policies::Policy& policy) {
  const policies::SandboxPolicy& s = policy.sandbox;
  sandbox::Limits l;
  l.wall_time = std::chrono::seconds(s.timeout_s);
  l.cpu_time = std::chrono::seconds(s.cpu_s);
  l.memory_bytes = static_cast<uint64_t>(s.memory_mb) << 20;
  l.max_processes = static_cast<uint32_t>(s.pids);
  l.max_open_files = static_cast<uint32_t>(s.open_files);
  l.max_file_size_bytes = static_cast<uint64_t>(s.file_size_mb) << 20;
  l.max_output_bytes = static_cast<uint64_t>(s.output_kb) << 10;
  l.tmp_size_bytes = static_cast<uint64_t>(s.tmp_mb) << 20;
  return l;
}

AgentBudgets BudgetsFor(const policies::Policy& policy) {
  const policies::BudgetsPolicy& b = policy.budgets;
  AgentBudgets out;
  out.max_steps = static_cast<int>(b.max_steps);
  out.max_tokens = b.max_tokens;
  out.max_wall = std::chrono::minutes(b.max_wall_minutes);
  out.max_test_runs = static_cast<int>(b.max_test_runs);
  out.max_consecutive_malformed = static_cast<int>(b.max_consecutive_malformed);
  out.stuck_repeats = static_cast<int>(b.stuck_repeats);
  out.max_tool_attempts = static_cast<int>(b.max_tool_attempts);
  out.max_tool_output = static_cast<size_t>(b.max_tool_output_kb) << 10;
  return out;
}

}  // namespace loom
