// The role a bearer token grants (common/auth.h) and a repository policy names for
// approvers and mergers (policies/policy.h): one enum for both, in the lowest
// module that needs it. Ordered: admin > engineer > reporter.
#pragma once

#include <string_view>

#include "common/status.h"

namespace loom {

enum class Role { kReporter = 0, kEngineer = 1, kAdmin = 2 };

// "reporter", "engineer", "admin".
std::string_view RoleName(Role role);
// The inverse of RoleName; InvalidArgument for any other name.
Result<Role> ParseRole(std::string_view name);

}  // namespace loom
