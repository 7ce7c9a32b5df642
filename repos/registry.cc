// Checks made before a repository is registered (the registry itself is the
// orchestrator's RepoStore, in loomd's database), and the bare clone (CloneBare in
// remote.cc does the libgit2 work).

#include <filesystem>

#include "repos/internal/git_util.h"
#include "repos/remote.h"
#include "repos/workspace.h"

namespace loom::repos {
namespace {

Status ValidateName(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 64 && name.front() != '.';
  for (char c : name) {
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-');
  }
  if (!ok) {
    return Status::InvalidArgument("bad repository name '" + std::string(name) +
                                   "': use 1-64 of [A-Za-z0-9_.-], not starting with '.'");
  }
  return Status::Ok();
}

Result<std::string> Absolute(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path, ec);
  if (ec) return Status::InvalidArgument("bad path '" + path + "': " + ec.message());
  return p.lexically_normal().string();
}

}  // namespace

Result<RepoRecord> CheckRepository(RepoRecord record) {
  LOOM_RETURN_IF_ERROR(ValidateName(record.name));
  LOOM_ASSIGN_OR_RETURN(record.path, Absolute(record.path));
  LOOM_RETURN_IF_ERROR(internal::ValidateRepository(record.path, record.settings));
  return record;
}

Result<RepoRecord> CloneRepository(std::string source, RepoRecord record) {
  return CloneRepository(std::move(source), std::move(record), RemoteCredentials{});
}

Result<RepoRecord> CloneRepository(std::string source, RepoRecord record,
                                   const RemoteCredentials& credentials) {
  LOOM_RETURN_IF_ERROR(ValidateName(record.name));
  LOOM_ASSIGN_OR_RETURN(std::string abs, Absolute(record.path));
  LOOM_RETURN_IF_ERROR(CloneBare(source, abs, record.settings.target_branch, credentials).status());
  Status valid = internal::ValidateRepository(abs, record.settings);
  if (!valid.ok()) {
    std::error_code ec;
    std::filesystem::remove_all(abs, ec);
    return valid.WithContext("cloned '" + source + "'");
  }
  record.path = std::move(abs);
  record.origin = std::move(source);
  return record;
}

}  // namespace loom::repos
