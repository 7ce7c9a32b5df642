// Parallel checkout into an empty worktree: see fast_checkout.h.
//
// Design. One pass over the tree (git_tree_walk) lists the entries; directories
// are created up front, in order, by the calling thread. The blob entries are then
// split round-robin across worker threads; each worker opens its own
// git_repository on the worktree (handles are never shared across threads), reads
// each blob, applies the to-worktree filters for its path, writes the file with
// O_EXCL (the directory is new, so an existing name means something is wrong), and
// keeps the fstat result. The index is built afterwards on the calling thread from
// those stat results, in tree order, and written once.
#include "repos/internal/fast_checkout.h"

#include <fcntl.h>
#include <git2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <thread>
#include <vector>

#include "repos/internal/git_util.h"

namespace loom::repos::internal {
namespace {

struct Entry {
  std::string path;
  git_oid id;
  git_filemode_t mode;
  struct stat st;
};

Status WriteAll(int fd, const char* data, size_t size, const std::string& path) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = write(fd, data + done, size - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "cannot write '" + path + "'");
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status WriteEntry(git_repository* repo, const std::string& root, Entry* e) {
  std::string full = root + "/" + e->path;
  if (e->mode == GIT_FILEMODE_COMMIT) {
    if (mkdir(full.c_str(), 0777) < 0 && errno != EEXIST) {
      return Status::FromErrno(errno, "cannot create submodule directory '" + e->path + "'");
    }
    if (lstat(full.c_str(), &e->st) < 0) return Status::FromErrno(errno, "lstat " + e->path);
    return Status::Ok();
  }
  git_blob* raw = nullptr;
  LOOM_GIT(git_blob_lookup(&raw, repo, &e->id), "cannot read blob for '" + e->path + "'");
  GitPtr<git_blob> blob(raw);
  if (e->mode == GIT_FILEMODE_LINK) {
    std::string target(static_cast<const char*>(git_blob_rawcontent(raw)),
                       static_cast<size_t>(git_blob_rawsize(raw)));
    if (symlink(target.c_str(), full.c_str()) < 0) {
      return Status::FromErrno(errno, "cannot create symlink '" + e->path + "'");
    }
    if (lstat(full.c_str(), &e->st) < 0) return Status::FromErrno(errno, "lstat " + e->path);
    return Status::Ok();
  }
  LOOM_ASSIGN_OR_RETURN(std::string content, BlobForWorktree(raw, e->path));
  mode_t mode = e->mode == GIT_FILEMODE_BLOB_EXECUTABLE ? 0777 : 0666;
  int fd = open(full.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) return Status::FromErrno(errno, "cannot create '" + e->path + "'");
  Status s = WriteAll(fd, content.data(), content.size(), e->path);
  if (s.ok() && fstat(fd, &e->st) < 0) s = Status::FromErrno(errno, "fstat " + e->path);
  close(fd);
  return s;
}

void FillIndexEntry(const Entry& e, git_index_entry* ie) {
  ie->ctime.seconds = static_cast<int32_t>(e.st.st_ctim.tv_sec);
  ie->ctime.nanoseconds = static_cast<uint32_t>(e.st.st_ctim.tv_nsec);
  ie->mtime.seconds = static_cast<int32_t>(e.st.st_mtim.tv_sec);
  ie->mtime.nanoseconds = static_cast<uint32_t>(e.st.st_mtim.tv_nsec);
  ie->dev = static_cast<uint32_t>(e.st.st_dev);
  ie->ino = static_cast<uint32_t>(e.st.st_ino);
  ie->mode = e.mode;
  ie->uid = e.st.st_uid;
  ie->gid = e.st.st_gid;
  ie->file_size = e.mode == GIT_FILEMODE_COMMIT ? 0 : static_cast<uint32_t>(e.st.st_size);
  ie->id = e.id;
  ie->path = e.path.c_str();
}

}  // namespace

Status CheckoutIntoEmptyWorktree(const std::string& worktree_path, const std::string& commit_hex,
                                 int threads) {
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_repository> repo, OpenRepo(worktree_path));
  git_oid oid;
  LOOM_GIT(git_oid_fromstr(&oid, commit_hex.c_str()), "bad commit id");
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_commit> commit, LookupCommit(repo.get(), oid));
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_tree> tree, CommitTree(commit.get()));

  struct WalkState {
    std::vector<Entry> files;
    std::vector<std::string> dirs;
  } state;
  auto cb = [](const char* root, const git_tree_entry* te, void* payload) -> int {
    auto* st = static_cast<WalkState*>(payload);
    std::string path = std::string(root) + git_tree_entry_name(te);
    git_filemode_t mode = git_tree_entry_filemode(te);
    if (mode == GIT_FILEMODE_TREE) {
      st->dirs.push_back(std::move(path));
    } else {
      st->files.push_back(Entry{std::move(path), *git_tree_entry_id(te), mode, {}});
    }
    return 0;
  };
  LOOM_GIT(git_tree_walk(tree.get(), GIT_TREEWALK_PRE, cb, &state), "cannot walk the tree");
  for (const std::string& d : state.dirs) {  // pre-order: parents come first
    if (mkdir((worktree_path + "/" + d).c_str(), 0777) < 0 && errno != EEXIST) {
      return Status::FromErrno(errno, "cannot create directory '" + d + "'");
    }
  }

  if (threads <= 0) {
    threads = static_cast<int>(std::clamp(std::thread::hardware_concurrency() * 2, 2u, 8u));
  }
  threads = std::max(1, std::min<int>(threads, static_cast<int>(state.files.size() / 64 + 1)));
  std::vector<Status> results(static_cast<size_t>(threads));
  auto work = [&](int t) {
    Result<GitPtr<git_repository>> r =
        t == 0 ? Result<GitPtr<git_repository>>(std::move(repo)) : OpenRepo(worktree_path);
    if (!r.ok()) {
      results[t] = r.status();
      return;
    }
    for (size_t i = static_cast<size_t>(t); i < state.files.size();
         i += static_cast<size_t>(threads)) {
      Status s = WriteEntry(r->get(), worktree_path, &state.files[i]);
      if (!s.ok()) {
        results[t] = s;
        return;
      }
    }
    if (t == 0) repo = std::move(*r);
  };
  {
    std::vector<std::jthread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
    work(0);
  }
  for (const Status& s : results) LOOM_RETURN_IF_ERROR(s);

  if (!repo) {
    LOOM_ASSIGN_OR_RETURN(repo, OpenRepo(worktree_path));
  }
  git_index* iraw = nullptr;
  LOOM_GIT(git_repository_index(&iraw, repo.get()), "cannot open the worktree index");
  GitPtr<git_index> index(iraw);
  LOOM_GIT(git_index_clear(index.get()), "cannot clear the index");
  std::sort(state.files.begin(), state.files.end(),
            [](const Entry& a, const Entry& b) { return a.path < b.path; });
  for (const Entry& e : state.files) {
    git_index_entry ie{};
    FillIndexEntry(e, &ie);
    LOOM_GIT(git_index_add(index.get(), &ie), "cannot add '" + e.path + "' to the index");
  }
  LOOM_GIT(git_index_write(index.get()), "cannot write the worktree index");
  return Status::Ok();
}

}  // namespace loom::repos::internal
