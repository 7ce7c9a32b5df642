// Confined file access: see confined_fs.h for the contract.
//
// Directories are walked with openat(O_DIRECTORY | O_NOFOLLOW) from the root
// descriptor; when a step fails with ELOOP/ENOTDIR the component is lstat'ed
// (fstatat AT_SYMLINK_NOFOLLOW) so the error can say which component was a symlink.
// Writes go to a temporary file in the target directory and are renamed into place,
// so a reader never sees half a file and a symlink at the target name is replaced,
// never written through.
#include "repos/internal/confined_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace loom::repos::internal {
namespace {

constexpr int kMaxWalkDepth = 64;
constexpr uint64_t kMaxReadBytes = 512ull << 20;

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::string Prefix(const RelPath& p, size_t n) {
  std::string s;
  for (size_t i = 0; i < n && i < p.parts.size(); ++i) {
    if (i) s += '/';
    s += p.parts[i];
  }
  return s;
}

Status Refuse(const RelPath& p, const std::string& why) {
  return Status::PermissionDenied("path '" + p.text + "' is refused: " + why);
}

FileMeta MetaFromStat(const struct stat& st) {
  FileMeta m;
  m.mode = st.st_mode;
  m.size = static_cast<uint64_t>(st.st_size);
  if (S_ISREG(st.st_mode)) {
    m.kind = FileMeta::Kind::kFile;
  } else if (S_ISDIR(st.st_mode)) {
    m.kind = FileMeta::Kind::kDirectory;
  } else if (S_ISLNK(st.st_mode)) {
    m.kind = FileMeta::Kind::kSymlink;
  } else {
    m.kind = FileMeta::Kind::kOther;
  }
  return m;
}

std::vector<std::string> SplitSlash(std::string_view s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find('/', start);
    if (end == std::string_view::npos) end = s.size();
    if (end > start) out.emplace_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace

Result<RelPath> ParseRelPath(std::string_view path, RootUse root) {
  RelPath out;
  if (path.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument("path contains a NUL byte");
  }
  if (!path.empty() && path.front() == '/') {
    return Status::PermissionDenied("path '" + std::string(path) +
                                    "' is refused: absolute paths are not allowed; give a "
                                    "path relative to the worktree root");
  }
  for (std::string& seg : SplitSlash(path)) {
    if (seg == ".") continue;
    if (seg == "..") {
      return Status::PermissionDenied("path '" + std::string(path) +
                                      "' is refused: '..' components are not allowed");
    }
    if (IEquals(seg, ".git")) {
      return Status::PermissionDenied("path '" + std::string(path) +
                                      "' is refused: the .git directory is off limits");
    }
    if (seg.size() > 255) {
      return Status::InvalidArgument("path '" + std::string(path) +
                                     "' has a component longer than 255 bytes");
    }
    out.parts.push_back(std::move(seg));
  }
  for (size_t i = 0; i < out.parts.size(); ++i) {
    if (i) out.text += '/';
    out.text += out.parts[i];
  }
  if (out.parts.empty() && root == RootUse::kRefused) {
    return Status::InvalidArgument("path '" + std::string(path) + "' names no file");
  }
  return out;
}

Result<ConfinedDir> ConfinedDir::Open(const std::string& root) {
  int fd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "cannot open worktree '" + root + "'");
  return ConfinedDir(UniqueFd(fd));
}

Result<UniqueFd> ConfinedDir::OpenDir(const RelPath& path, size_t n, CreateDirs create) const {
  UniqueFd cur(fcntl(root_.get(), F_DUPFD_CLOEXEC, 0));
  if (cur.get() < 0) return Status::FromErrno(errno, "dup");
  for (size_t i = 0; i < n; ++i) {
    const char* name = path.parts[i].c_str();
    int fd = openat(cur.get(), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create == CreateDirs::kYes) {
      if (mkdirat(cur.get(), name, 0755) < 0 && errno != EEXIST) {
        return Status::FromErrno(errno, "cannot create directory '" + Prefix(path, i + 1) + "'");
      }
      fd = openat(cur.get(), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
      int err = errno;
      if (err == ENOENT) {
        return Status::NotFound("path '" + path.text + "': directory '" + Prefix(path, i + 1) +
                                "' does not exist");
      }
      struct stat st;
      if ((err == ELOOP || err == ENOTDIR) &&
          fstatat(cur.get(), name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) {
          return Refuse(path, "'" + Prefix(path, i + 1) +
                                  "' is a symbolic link, and symlinks are never followed");
        }
        return Status::InvalidArgument("path '" + path.text + "': '" + Prefix(path, i + 1) +
                                       "' is not a directory");
      }
      return Status::FromErrno(err, "cannot open directory '" + Prefix(path, i + 1) + "'");
    }
    cur = UniqueFd(fd);
  }
  return cur;
}

Result<FileMeta> ConfinedDir::Stat(const RelPath& path) const {
  if (path.parts.empty()) return FileMeta{FileMeta::Kind::kDirectory, S_IFDIR | 0755, 0};
  Result<UniqueFd> dir = OpenDir(path, path.parts.size() - 1, CreateDirs::kNo);
  if (!dir.ok()) {
    if (dir.status().code() == StatusCode::kNotFound) return FileMeta{};
    return dir.status();
  }
  struct stat st;
  if (fstatat(dir->get(), path.parts.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT) return FileMeta{};
    return Status::FromErrno(errno, "cannot stat '" + path.text + "'");
  }
  return MetaFromStat(st);
}

Result<std::string> ConfinedDir::ReadFile(const RelPath& path) const {
  LOOM_ASSIGN_OR_RETURN(UniqueFd dir, OpenDir(path, path.parts.size() - 1, CreateDirs::kNo));
  int fd = openat(dir.get(), path.parts.back().c_str(),
                  O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return Status::NotFound("file '" + path.text + "' does not exist");
    if (err == ELOOP) return Refuse(path, "it is a symbolic link, and symlinks are never followed");
    return Status::FromErrno(err, "cannot open '" + path.text + "'");
  }
  UniqueFd file(fd);
  struct stat st;
  if (fstat(fd, &st) < 0) return Status::FromErrno(errno, "cannot stat '" + path.text + "'");
  if (S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument("'" + path.text + "' is a directory; use list_files");
  }
  if (!S_ISREG(st.st_mode)) return Refuse(path, "it is not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxReadBytes) {
    return Status::ResourceExhausted("file '" + path.text + "' is larger than 512 MiB");
  }
  std::string out;
  out.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (true) {
    if (done == out.size()) out.resize(out.size() + 65536);
    ssize_t n = read(fd, out.data() + done, out.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "cannot read '" + path.text + "'");
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
}

Status ConfinedDir::WriteFile(const RelPath& path, std::string_view content, mode_t mode_in,
                              ModePolicy policy) const {
  LOOM_ASSIGN_OR_RETURN(UniqueFd dir, OpenDir(path, path.parts.size() - 1, CreateDirs::kYes));
  const std::string& leaf = path.parts.back();
  mode_t mode = mode_in & 07777;
  struct stat st;
  if (fstatat(dir.get(), leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISLNK(st.st_mode)) {
      return Refuse(path, "it is a symbolic link, and symlinks are never written through");
    }
    if (S_ISDIR(st.st_mode)) {
      return Status::InvalidArgument("'" + path.text + "' is a directory");
    }
    if (!S_ISREG(st.st_mode)) return Refuse(path, "it is not a regular file");
    if (policy == ModePolicy::kKeepExisting) mode = st.st_mode & 07777;
  }
  static std::atomic<uint64_t> counter{0};
  std::string tmp = ".loom-tmp-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
  int fd =
      openat(dir.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) return Status::FromErrno(errno, "cannot create a file next to '" + path.text + "'");
  UniqueFd file(fd);
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      unlinkat(dir.get(), tmp.c_str(), 0);
      return Status::FromErrno(err, "cannot write '" + path.text + "'");
    }
    done += static_cast<size_t>(n);
  }
  fchmod(fd, mode);  // umask may have narrowed it
  file = UniqueFd();
  if (renameat(dir.get(), tmp.c_str(), dir.get(), leaf.c_str()) < 0) {
    int err = errno;
    unlinkat(dir.get(), tmp.c_str(), 0);
    return Status::FromErrno(err, "cannot replace '" + path.text + "'");
  }
  return Status::Ok();
}

Status ConfinedDir::Unlink(const RelPath& path) const {
  LOOM_ASSIGN_OR_RETURN(UniqueFd dir, OpenDir(path, path.parts.size() - 1, CreateDirs::kNo));
  struct stat st;
  if (fstatat(dir.get(), path.parts.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT) return Status::NotFound("file '" + path.text + "' does not exist");
    return Status::FromErrno(errno, "cannot stat '" + path.text + "'");
  }
  if (S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument("'" + path.text +
                                   "' is a directory; delete the files in it one by one");
  }
  if (unlinkat(dir.get(), path.parts.back().c_str(), 0) < 0) {
    return Status::FromErrno(errno, "cannot delete '" + path.text + "'");
  }
  return Status::Ok();
}

Status ConfinedDir::Rename(const RelPath& from, const RelPath& to) const {
  LOOM_ASSIGN_OR_RETURN(UniqueFd from_dir, OpenDir(from, from.parts.size() - 1, CreateDirs::kNo));
  struct stat st;
  if (fstatat(from_dir.get(), from.parts.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT) return Status::NotFound("file '" + from.text + "' does not exist");
    return Status::FromErrno(errno, "cannot stat '" + from.text + "'");
  }
  if (S_ISLNK(st.st_mode)) return Refuse(from, "it is a symbolic link");
  if (!S_ISREG(st.st_mode)) {
    return Status::InvalidArgument("'" + from.text + "' is not a regular file");
  }
  LOOM_ASSIGN_OR_RETURN(UniqueFd to_dir, OpenDir(to, to.parts.size() - 1, CreateDirs::kYes));
  if (renameat2(from_dir.get(), from.parts.back().c_str(), to_dir.get(), to.parts.back().c_str(),
                RENAME_NOREPLACE) < 0) {
    if (errno == EEXIST) {
      return Status::AlreadyExists("cannot rename to '" + to.text +
                                   "': it already exists; delete it first");
    }
    return Status::FromErrno(errno, "cannot rename '" + from.text + "' to '" + to.text + "'");
  }
  return Status::Ok();
}

Result<std::vector<FileEntry>> ConfinedDir::List(const RelPath& dir_path) const {
  LOOM_ASSIGN_OR_RETURN(UniqueFd dir, OpenDir(dir_path, dir_path.parts.size(), CreateDirs::kNo));
  int fd = openat(dir.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR* d = fd < 0 ? nullptr : fdopendir(fd);
  if (!d) {
    if (fd >= 0) close(fd);
    return Status::FromErrno(errno, "cannot list '" + dir_path.text + "'");
  }
  std::vector<FileEntry> out;
  while (struct dirent* e = readdir(d)) {
    std::string_view name = e->d_name;
    if (name == "." || name == ".." || IEquals(name, ".git")) continue;
    struct stat st;
    if (fstatat(dir.get(), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
    FileMeta m = MetaFromStat(st);
    FileEntry fe;
    fe.path = dir_path.text.empty() ? std::string(name) : dir_path.text + "/" + std::string(name);
    fe.size = m.size;
    switch (m.kind) {
      case FileMeta::Kind::kFile:
        fe.kind = FileEntry::Kind::kFile;
        break;
      case FileMeta::Kind::kDirectory:
        fe.kind = FileEntry::Kind::kDirectory;
        break;
      case FileMeta::Kind::kSymlink:
        fe.kind = FileEntry::Kind::kSymlink;
        break;
      default:
        fe.kind = FileEntry::Kind::kOther;
        break;
    }
    out.push_back(std::move(fe));
  }
  closedir(d);
  std::sort(out.begin(), out.end(),
            [](const FileEntry& a, const FileEntry& b) { return a.path < b.path; });
  return out;
}

Status ConfinedDir::WalkInto(int dir_fd, const std::string& prefix, int depth,
                             std::vector<std::string>* out) const {
  if (depth > kMaxWalkDepth) return Status::Ok();
  int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR* d = fd < 0 ? nullptr : fdopendir(fd);
  if (!d) {
    if (fd >= 0) close(fd);
    return Status::FromErrno(errno, "cannot list '" + prefix + "'");
  }
  std::vector<std::pair<std::string, bool>> entries;  // name, is_dir
  while (struct dirent* e = readdir(d)) {
    std::string_view name = e->d_name;
    if (name == "." || name == ".." || IEquals(name, ".git")) continue;
    struct stat st;
    if (fstatat(dir_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
    if (S_ISDIR(st.st_mode)) {
      entries.emplace_back(std::string(name), true);
    } else if (S_ISREG(st.st_mode)) {
      entries.emplace_back(std::string(name), false);
    }
  }
  closedir(d);
  std::sort(entries.begin(), entries.end());
  for (const auto& [name, is_dir] : entries) {
    std::string rel = prefix.empty() ? name : prefix + "/" + name;
    if (!is_dir) {
      out->push_back(std::move(rel));
      continue;
    }
    int sub = openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) continue;  // replaced by a symlink meanwhile: skip, never follow
    UniqueFd sub_fd(sub);
    LOOM_RETURN_IF_ERROR(WalkInto(sub, rel, depth + 1, out));
  }
  return Status::Ok();
}

Result<std::vector<std::string>> ConfinedDir::Walk(const RelPath& dir_path) const {
  LOOM_ASSIGN_OR_RETURN(UniqueFd dir, OpenDir(dir_path, dir_path.parts.size(), CreateDirs::kNo));
  std::vector<std::string> out;
  LOOM_RETURN_IF_ERROR(WalkInto(dir.get(), dir_path.text, 0, &out));
  return out;
}

Status ConfinedDir::WriteSymlink(const RelPath& path, const std::string& target) const {
  LOOM_ASSIGN_OR_RETURN(UniqueFd dir, OpenDir(path, path.parts.size() - 1, CreateDirs::kYes));
  unlinkat(dir.get(), path.parts.back().c_str(), 0);
  if (symlinkat(target.c_str(), dir.get(), path.parts.back().c_str()) < 0) {
    return Status::FromErrno(errno, "cannot restore symlink '" + path.text + "'");
  }
  return Status::Ok();
}

void ConfinedDir::PruneEmptyParents(const RelPath& path) const {
  for (size_t n = path.parts.size() - 1; n > 0; --n) {
    Result<UniqueFd> parent = OpenDir(path, n - 1, CreateDirs::kNo);
    if (!parent.ok()) return;
    if (unlinkat(parent->get(), path.parts[n - 1].c_str(), AT_REMOVEDIR) < 0) return;
  }
}

namespace {

// The names in the directory `dir_fd` (without "." and ".."); `where` names it in errors.
Result<std::vector<std::string>> ListNames(int dir_fd, const std::string& where) {
  int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR* d = fd < 0 ? nullptr : fdopendir(fd);
  if (!d) {
    if (fd >= 0) close(fd);
    return Status::FromErrno(errno, "cannot list '" + where + "'");
  }
  std::vector<std::string> names;
  while (struct dirent* e = readdir(d)) {
    std::string_view name = e->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  closedir(d);
  return names;
}

Status RemoveChildren(int dir_fd, const std::string& where, int depth) {
  if (depth > 4 * kMaxWalkDepth) return Status::ResourceExhausted("tree too deep: " + where);
  LOOM_ASSIGN_OR_RETURN(std::vector<std::string> names, ListNames(dir_fd, where));
  for (const std::string& name : names) {
    if (unlinkat(dir_fd, name.c_str(), 0) == 0 || errno == ENOENT) continue;
    if (errno != EISDIR && errno != EPERM) {
      return Status::FromErrno(errno, "cannot remove '" + where + "/" + name + "'");
    }
    int sub = openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) return Status::FromErrno(errno, "cannot open '" + where + "/" + name + "'");
    UniqueFd sub_fd(sub);
    LOOM_RETURN_IF_ERROR(RemoveChildren(sub, where + "/" + name, depth + 1));
    if (unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) < 0 && errno != ENOENT) {
      return Status::FromErrno(errno, "cannot remove '" + where + "/" + name + "'");
    }
  }
  return Status::Ok();
}

}  // namespace

Status RemoveTreeNoFollow(const std::string& root) {
  int fd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::Ok();
    if (errno == ELOOP || errno == ENOTDIR) {
      if (unlink(root.c_str()) == 0) return Status::Ok();
    }
    return Status::FromErrno(errno, "cannot open '" + root + "'");
  }
  UniqueFd dir(fd);
  LOOM_RETURN_IF_ERROR(RemoveChildren(fd, root, 0));
  if (rmdir(root.c_str()) < 0 && errno != ENOENT) {
    return Status::FromErrno(errno, "cannot remove '" + root + "'");
  }
  return Status::Ok();
}

}  // namespace loom::repos::internal
