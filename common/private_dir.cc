#include "common/private_dir.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

namespace loom {

Status MakePrivateDir(const std::string& path, DirAccess access) {
  mode_t mode = access == DirAccess::kSandboxTraverses && ::geteuid() == 0 ? 0711 : 0700;
  std::error_code ec;
  std::filesystem::path p(path);
  if (p.has_parent_path() && !p.parent_path().empty()) {
    std::filesystem::create_directories(p.parent_path(), ec);
    if (ec)
      return Status::IoError("cannot create " + p.parent_path().string() + ": " + ec.message());
  }
  // Made with the final mode (no window in which it is open to others).
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return Status::FromErrno(errno, "creating " + path);
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno(errno, "checking " + path);
  if (!S_ISDIR(st.st_mode)) return Status::FailedPrecondition(path + " is not a directory");
  if ((st.st_mode & 07777) != mode && ::chmod(path.c_str(), mode) != 0) {
    return Status::FromErrno(errno, "making " + path + " private (chmod)");
  }
  return Status::Ok();
}

}  // namespace loom
