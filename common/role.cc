#include "common/role.h"

#include <string>

namespace loom {

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kReporter:
      return "reporter";
    case Role::kEngineer:
      return "engineer";
    case Role::kAdmin:
      return "admin";
  }
  return "?";
}

Result<Role> ParseRole(std::string_view name) {
  for (Role r : {Role::kReporter, Role::kEngineer, Role::kAdmin}) {
    if (name == RoleName(r)) return r;
  }
  return Status::InvalidArgument("unknown role '" + std::string(name) +
                                 "': use reporter, engineer or admin");
}

}  // namespace loom
