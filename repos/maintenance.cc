// Repository upkeep: see maintenance.h.
//
// Packing. The loose objects are found by listing objects/xx/ (libgit2 has no
// call that lists only loose ones), inserted one by one into a packbuilder (each
// object alone, no walk: unreachable objects are kept, never pruned, since a
// writer may have made an object that no ref points to yet), and written as one
// pack + index into objects/pack. Before a loose file is removed, the pack and
// index are fsynced (as is the directory) and every packed object is read back
// through an object database that holds only the new pack, with libgit2's hash
// check on. The fan-out directories stay: a writer may be about to create a
// file in one.
//
// Export. One pre-order walk of the tree creates directories and writes each
// blob through the to-worktree filters, like internal/fast_checkout.cc but on
// one thread and without an index (the result is no repository).
#include "repos/maintenance.h"

#include <fcntl.h>
#include <git2.h>
#include <git2/odb_backend.h>
#include <git2/sys/odb_backend.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <memory>
#include <set>

#include "repos/internal/confined_fs.h"
#include "repos/internal/git_util.h"

namespace loom::repos {
namespace {

namespace fs = std::filesystem;
using internal::GitError;
using internal::GitPtr;

struct PackDeleter {
  void operator()(git_packbuilder* p) const { git_packbuilder_free(p); }
  void operator()(git_odb* p) const { git_odb_free(p); }
  void operator()(git_odb_object* p) const { git_odb_object_free(p); }
  void operator()(git_refdb* p) const { git_refdb_free(p); }
};
template <typename T>
using Owned = std::unique_ptr<T, PackDeleter>;

bool IsHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

struct LooseObject {
  git_oid id;
  std::string path;
  uint64_t bytes = 0;
};

Result<std::vector<LooseObject>> ListLoose(const std::string& objects_dir) {
  std::vector<LooseObject> out;
  std::error_code ec;
  for (const auto& fan : fs::directory_iterator(objects_dir, ec)) {
    std::string dir = fan.path().filename().string();
    if (dir.size() != 2 || !IsHex(dir) || !fan.is_directory(ec)) continue;
    std::error_code ec2;
    for (const auto& f : fs::directory_iterator(fan.path(), ec2)) {
      std::string rest = f.path().filename().string();
      if (rest.size() != GIT_OID_HEXSZ - 2 || !IsHex(rest)) continue;  // tmp_obj_* and the like
      LooseObject o;
      if (git_oid_fromstr(&o.id, (dir + rest).c_str()) < 0) continue;
      o.path = f.path().string();
      std::error_code ec3;
      o.bytes = f.file_size(ec3);
      if (ec3) continue;  // gone meanwhile
      out.push_back(std::move(o));
    }
    if (ec2) return Status::IoError("cannot list " + fan.path().string() + ": " + ec2.message());
  }
  if (ec) return Status::IoError("cannot list " + objects_dir + ": " + ec.message());
  return out;
}

Status SyncPath(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "cannot open '" + path + "' to sync it");
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc < 0) return Status::FromErrno(err, "cannot sync '" + path + "'");
  return Status::Ok();
}

int64_t CountFiles(const std::string& dir) {
  int64_t n = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec) && !it->path().string().ends_with(".lock")) ++n;
  }
  return n;
}

std::string CommonDir(git_repository* repo) { return git_repository_commondir(repo); }

Status WriteFile(const std::string& path, const std::string& content, bool executable) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  executable ? 0777 : 0666);
  if (fd < 0) return Status::FromErrno(errno, "cannot create '" + path + "'");
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return Status::FromErrno(err, "cannot write '" + path + "'");
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) < 0) return Status::FromErrno(errno, "cannot write '" + path + "'");
  return Status::Ok();
}

// An object database of the one pack `base` (its path without the extension).
Result<Owned<git_odb>> OpenOnePack(const std::string& base, const std::string& what) {
  git_odb* raw = nullptr;
  LOOM_GIT(git_odb_new(&raw), "cannot open an object database");
  Owned<git_odb> odb(raw);
  git_odb_backend* backend = nullptr;
  LOOM_GIT(git_odb_backend_one_pack(&backend, (base + ".idx").c_str()),
           "cannot open " + what + " " + base + ".idx");
  if (int rc = git_odb_add_backend(odb.get(), backend, 1); rc < 0) {
    backend->free(backend);
    return GitError(rc, "cannot open " + what + " " + base + ".idx");
  }
  return odb;
}

// Writes `pb`'s pack into `pack_dir` and syncs it (and the directory) to disk.
// Returns the new pack's path without the extension; adds its size to `*bytes`.
Result<std::string> WritePack(git_packbuilder* pb, const std::string& pack_dir, uint64_t* bytes) {
  LOOM_GIT(git_packbuilder_write(pb, pack_dir.c_str(), 0, nullptr, nullptr),
           "cannot write the pack");
  const std::string base = pack_dir + "/pack-" + git_packbuilder_name(pb);
  std::error_code ec;
  for (const char* ext : {".pack", ".idx"}) {
    LOOM_RETURN_IF_ERROR(SyncPath(base + ext, false));
    *bytes += fs::file_size(base + ext, ec);
  }
  LOOM_RETURN_IF_ERROR(SyncPath(pack_dir, true));
  return base;
}

}  // namespace

Status ExportTree(const std::string& repo_path, const std::string& commit_hex,
                  const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec)) return Status::AlreadyExists(dir + " exists");
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_repository> repo, internal::OpenRepo(repo_path));
  git_oid oid;
  if (git_oid_fromstr(&oid, commit_hex.c_str()) < 0) {
    return Status::InvalidArgument("'" + commit_hex + "' is not a commit id");
  }
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_commit> commit, internal::LookupCommit(repo.get(), oid));
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_tree> tree, internal::CommitTree(commit.get()));
  const std::string tmp = dir + ".partial";
  LOOM_RETURN_IF_ERROR(internal::RemoveTreeNoFollow(tmp));
  if (::mkdir(tmp.c_str(), 0777) < 0) return Status::FromErrno(errno, "cannot create " + tmp);

  struct Walk {
    git_repository* repo;
    std::string root;
    Status status;
  } walk{repo.get(), tmp, Status::Ok()};
  auto cb = [](const char* parent, const git_tree_entry* te, void* payload) -> int {
    auto* w = static_cast<Walk*>(payload);
    const std::string rel = std::string(parent) + git_tree_entry_name(te);
    const std::string full = w->root + "/" + rel;
    const git_filemode_t mode = git_tree_entry_filemode(te);
    if (mode == GIT_FILEMODE_TREE || mode == GIT_FILEMODE_COMMIT) {
      if (::mkdir(full.c_str(), 0777) < 0) {
        w->status = Status::FromErrno(errno, "cannot create directory '" + rel + "'");
        return -1;
      }
      return 0;
    }
    git_blob* raw = nullptr;
    if (int rc = git_blob_lookup(&raw, w->repo, git_tree_entry_id(te)); rc < 0) {
      w->status = GitError(rc, "cannot read '" + rel + "'");
      return -1;
    }
    GitPtr<git_blob> blob(raw);
    if (mode == GIT_FILEMODE_LINK) {
      std::string target(static_cast<const char*>(git_blob_rawcontent(raw)),
                         static_cast<size_t>(git_blob_rawsize(raw)));
      if (::symlink(target.c_str(), full.c_str()) < 0) {
        w->status = Status::FromErrno(errno, "cannot create symlink '" + rel + "'");
        return -1;
      }
      return 0;
    }
    Result<std::string> content = internal::BlobForWorktree(raw, rel);
    w->status = content.ok() ? WriteFile(full, *content, mode == GIT_FILEMODE_BLOB_EXECUTABLE)
                             : content.status();
    return w->status.ok() ? 0 : -1;
  };
  int rc = git_tree_walk(tree.get(), GIT_TREEWALK_PRE, cb, &walk);
  if (!walk.status.ok()) return walk.status.WithContext("exporting " + commit_hex);
  LOOM_GIT(rc, "cannot walk the tree of " + commit_hex);
  fs::rename(tmp, dir, ec);
  if (ec) return Status::IoError("cannot rename " + tmp + " to " + dir + ": " + ec.message());
  return Status::Ok();
}

Result<int64_t> CountLooseObjects(const std::string& repo_path) {
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_repository> repo, internal::OpenRepo(repo_path));
  LOOM_ASSIGN_OR_RETURN(std::vector<LooseObject> loose,
                        ListLoose(CommonDir(repo.get()) + "objects"));
  return static_cast<int64_t>(loose.size());
}

Result<ObjectPackReport> PackLooseObjects(const std::string& repo_path) {
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_repository> repo, internal::OpenRepo(repo_path));
  const std::string objects = CommonDir(repo.get()) + "objects";
  LOOM_ASSIGN_OR_RETURN(std::vector<LooseObject> loose, ListLoose(objects));
  ObjectPackReport report;
  report.loose_before = static_cast<int64_t>(loose.size());
  if (loose.empty()) return report;

  git_packbuilder* pb_raw = nullptr;
  LOOM_GIT(git_packbuilder_new(&pb_raw, repo.get()), "cannot start a pack");
  Owned<git_packbuilder> pb(pb_raw);
  std::vector<const LooseObject*> inserted;
  for (const LooseObject& o : loose) {
    int rc = git_packbuilder_insert(pb.get(), &o.id, nullptr);
    if (rc == GIT_ENOTFOUND) continue;  // removed meanwhile (another packer)
    LOOM_GIT(rc, "cannot pack object " + internal::OidHex(o.id));
    inserted.push_back(&o);
  }
  if (inserted.empty()) return report;
  const std::string pack_dir = objects + "/pack";
  std::error_code ec;
  fs::create_directories(pack_dir, ec);
  LOOM_ASSIGN_OR_RETURN(std::string base, WritePack(pb.get(), pack_dir, &report.pack_bytes));
  report.pack = base + ".pack";

  // Read every object back from the new pack alone: what is removed below must
  // be readable from it.
  LOOM_ASSIGN_OR_RETURN(Owned<git_odb> odb, OpenOnePack(base, "the new pack"));
  for (const LooseObject* o : inserted) {
    git_odb_object* obj = nullptr;
    int rc = git_odb_read(&obj, odb.get(), &o->id);
    Owned<git_odb_object> owned(obj);
    if (rc < 0) {
      return GitError(rc, "the new pack " + base + ".pack does not give back object " +
                              internal::OidHex(o->id) + "; no loose object was removed");
    }
  }
  for (const LooseObject* o : inserted) {
    if (::unlink(o->path.c_str()) == 0) {
      ++report.packed;
      report.loose_bytes += o->bytes;
    } else if (errno != ENOENT) {
      return Status::FromErrno(errno, "cannot remove the packed loose object " + o->path);
    }
  }
  return report;
}

Result<PackMergeReport> MergePacks(const std::string& repo_path, int max_packs) {
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_repository> repo, internal::OpenRepo(repo_path));
  const std::string pack_dir = CommonDir(repo.get()) + "objects/pack";
  std::vector<std::string> packs;  // paths without the extension
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(pack_dir, ec)) {
    std::string path = entry.path().string();
    if (!path.ends_with(".idx")) continue;
    std::string base = path.substr(0, path.size() - 4);
    if (fs::exists(base + ".pack", ec) && !fs::exists(base + ".keep", ec)) packs.push_back(base);
  }
  PackMergeReport report;
  if (static_cast<int>(packs.size()) <= max_packs) return report;
  report.packs_before = static_cast<int64_t>(packs.size());

  git_packbuilder* pb_raw = nullptr;
  LOOM_GIT(git_packbuilder_new(&pb_raw, repo.get()), "cannot start a pack");
  Owned<git_packbuilder> pb(pb_raw);
  std::vector<git_oid> ids;
  for (const std::string& base : packs) {
    report.bytes_before += fs::file_size(base + ".pack", ec) + fs::file_size(base + ".idx", ec);
    LOOM_ASSIGN_OR_RETURN(Owned<git_odb> one, OpenOnePack(base, "the pack"));
    LOOM_GIT(git_odb_foreach(
                 one.get(),
                 [](const git_oid* id, void* payload) {
                   static_cast<std::vector<git_oid>*>(payload)->push_back(*id);
                   return 0;
                 },
                 &ids),
             "cannot list the pack " + base + ".idx");
  }
  std::sort(ids.begin(), ids.end(),
            [](const git_oid& a, const git_oid& b) { return git_oid_cmp(&a, &b) < 0; });
  ids.erase(std::unique(ids.begin(), ids.end(),
                        [](const git_oid& a, const git_oid& b) { return git_oid_equal(&a, &b); }),
            ids.end());
  for (const git_oid& id : ids) {
    LOOM_GIT(git_packbuilder_insert(pb.get(), &id, nullptr),
             "cannot pack object " + internal::OidHex(id));
  }
  LOOM_ASSIGN_OR_RETURN(std::string merged, WritePack(pb.get(), pack_dir, &report.bytes_after));
  report.pack = merged + ".pack";
  report.objects = static_cast<int64_t>(ids.size());

  LOOM_ASSIGN_OR_RETURN(Owned<git_odb> odb, OpenOnePack(merged, "the merged pack"));
  for (const git_oid& id : ids) {
    git_odb_object* obj = nullptr;
    int rc = git_odb_read(&obj, odb.get(), &id);
    Owned<git_odb_object> owned(obj);
    if (rc < 0) {
      return GitError(rc, "the merged pack " + merged + ".pack does not give back object " +
                              internal::OidHex(id) + "; no pack was removed");
    }
  }
  for (const std::string& base : packs) {
    if (base == merged) continue;  // the same objects packed the same way
    for (const char* ext : {".idx", ".pack", ".rev"}) {
      if (::unlink((base + ext).c_str()) < 0 && errno != ENOENT) {
        return Status::FromErrno(errno, "cannot remove the merged pack " + base + ext);
      }
    }
  }
  return report;
}

Result<RefPackReport> PackRefs(const std::string& repo_path) {
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_repository> repo, internal::OpenRepo(repo_path));
  const std::string refs = CommonDir(repo.get()) + "refs";
  RefPackReport report;
  report.loose_before = CountFiles(refs);
  git_refdb* raw = nullptr;
  LOOM_GIT(git_repository_refdb(&raw, repo.get()), "cannot open the reference database");
  Owned<git_refdb> refdb(raw);
  LOOM_GIT(git_refdb_compress(refdb.get()), "cannot pack the references");
  report.loose_after = CountFiles(refs);
  return report;
}

Result<std::vector<std::string>> TaskIdsWithGitState(const std::string& repo_path) {
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_repository> repo, internal::OpenRepo(repo_path));
  std::set<std::string> ids;
  git_reference_iterator* it_raw = nullptr;
  LOOM_GIT(git_reference_iterator_glob_new(&it_raw, repo.get(), "refs/loom/snapshots/*"),
           "cannot list the snapshot refs");
  GitPtr<git_reference_iterator> it(it_raw);
  const char* name = nullptr;
  while (git_reference_next_name(&name, it.get()) == 0) {
    ids.insert(std::string(name + std::string_view("refs/loom/snapshots/").size()));
  }
  git_strarray names{};
  LOOM_GIT(git_worktree_list(&names, repo.get()), "cannot list worktrees");
  for (size_t i = 0; i < names.count; ++i) {
    std::string_view n = names.strings[i];
    if (n.starts_with("loom-") && n.size() > 5) ids.insert(std::string(n.substr(5)));
  }
  git_strarray_dispose(&names);
  return std::vector<std::string>(ids.begin(), ids.end());
}

}  // namespace loom::repos
