// Repository: task workspaces (branch + linked worktree), branch diffs and merges.
//
// Design. The object is immutable after Open except for a small pool of open
// git_repository handles: a libgit2 handle must not be used by two threads at
// once, so each call borrows one for its length and gives it back, and the next
// call finds the configuration, refs and object caches already loaded instead of
// reading the repository's config, /etc/gitconfig and ~/.gitconfig again. That
// keeps Repository thread-safe and lets many workspaces be created on one
// repository at once (their branches, worktree admin dirs and refs are disjoint).
//
// No call on a task's workspace reads another task's worktree: the cost of an
// operation does not grow with the number of worktrees (issue 25). A worktree is
// registered by writing its admin files here (RegisterWorktree), because
// git_worktree_add asks git_branch_is_checked_out, which opens every worktree of
// the repository as a repository of its own; the task branch's worktree is found
// from its one admin HEAD file. internal/fast_checkout.cc then writes the files in
// parallel and the index once. Removal deletes
// the working tree with a walk that never follows symlinks (a test run may plant one) before
// pruning the admin files. Merges compare-and-swap the target ref, so a target that
// moved meanwhile is never overwritten.
//
// Crashes. Creation ends with the snapshot ref, so a registered worktree without
// one was cut short before any edit and is made again; one with a snapshot ref is
// only ever reopened, never silently replaced. Opening and creating remove lock
// files of the task's own refs left by a killed process. A merge into a target
// that is checked out (a repository registered in place) writes the merge commit,
// then a journal (old and new target commit, in .git/LOOM_MERGE), then moves the
// ref, then updates the checkout, then removes the journal: the ref move is the
// commit point, and a journal found later (FinishInterruptedMerge, and the start
// of every merge) finishes the checkout when the ref had moved and is dropped
// when it had not, so the checkout is never left half-merged.
#include <fcntl.h>
#include <git2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>

#include "common/crash_point.h"
#include "common/log.h"
#include "common/mutex.h"
#include "repos/internal/confined_fs.h"
#include "repos/internal/fast_checkout.h"
#include "repos/internal/git_util.h"
#include "repos/internal/workspace_impl.h"
#include "repos/workspace.h"

namespace loom::repos {
namespace {

using internal::GitError;
using internal::GitPtr;
using internal::OidHex;

// Held while this process adds or removes worktree admin files (.git/worktrees/*),
// so that ListWorkspaces, which lists them all, never meets a half-written one. One
// lock for the process: Repository objects come and go.
// Constant-initialized (std::mutex's constructor is constexpr), so usable from
// any static initializer.
Mutex registration_mu;

// Held for a whole merge, and while an interrupted one is finished: one merge
// journal per repository, and a merge reads the journal a previous one may be
// writing.
Mutex merge_mu;

// When this process started, near enough: a lock file older than this was left
// by a process that is gone.
std::filesystem::file_time_type ProcessStart() {
  static const std::filesystem::file_time_type start =
      std::filesystem::file_time_type::clock::now();
  return start;
}
[[maybe_unused]] const auto kProcessStartAtLoad = ProcessStart();

// Open handles on one repository, lent to one call at a time and kept after it.
// Thread-safe. At most kMaxIdle are kept; a burst of more concurrent calls opens
// more, which are closed when given back.
class HandlePool {
 public:
  static constexpr size_t kMaxIdle = 8;

  // One borrowed handle; goes back to the pool when destroyed.
  class Lease {
   public:
    Lease(HandlePool* pool, GitPtr<git_repository> repo) : pool_(pool), repo_(std::move(repo)) {}
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    ~Lease() {
      if (repo_) pool_->Return(std::move(repo_));
    }
    git_repository* get() const { return repo_.get(); }

   private:
    HandlePool* pool_;
    GitPtr<git_repository> repo_;
  };

  explicit HandlePool(std::string path) : path_(std::move(path)) {}

  Result<Lease> Acquire() EXCLUDES(mu_) {
    {
      MutexLock lock(&mu_);
      if (!idle_.empty()) {
        GitPtr<git_repository> repo = std::move(idle_.back());
        idle_.pop_back();
        return Lease(this, std::move(repo));
      }
    }
    LOOM_ASSIGN_OR_RETURN(GitPtr<git_repository> repo, internal::OpenRepo(path_));
    return Lease(this, std::move(repo));
  }

 private:
  void Return(GitPtr<git_repository> repo) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    if (idle_.size() < kMaxIdle) idle_.push_back(std::move(repo));
  }

  const std::string path_;
  Mutex mu_;
  std::vector<GitPtr<git_repository>> idle_ GUARDED_BY(mu_);
};

class RepositoryImpl final : public Repository {
 public:
  RepositoryImpl(RepoRecord record, std::string worktrees_dir)
      : record_(std::move(record)),
        worktrees_dir_(std::move(worktrees_dir)),
        handles_(record_.path) {}

  const RepoRecord& record() const override { return record_; }

  Result<std::unique_ptr<Workspace>> CreateWorkspace(std::string_view task_id,
                                                     std::string_view slug) override {
    LOOM_RETURN_IF_ERROR(internal::ValidateTaskId(task_id));
    LOOM_ASSIGN_OR_RETURN(HandlePool::Lease repo, handles_.Acquire());
    const std::string name = internal::WorktreeName(task_id);
    std::string path = worktrees_dir_ + "/" + name;
    const std::string ref_name = internal::SnapshotRefName(task_id);
    const std::string branch = internal::BranchName(task_id, slug);
    LOOM_RETURN_IF_ERROR(CheckOwnWorktree(repo.get(), std::string(task_id)));
    LOOM_RETURN_IF_ERROR(RemoveStaleLocks(repo.get(), task_id, branch));
    if (GitPtr<git_worktree> existing;
        git_worktree_lookup(Out(existing), repo.get(), name.c_str()) == 0) {
      LOOM_ASSIGN_OR_RETURN(bool complete, HasRef(repo.get(), ref_name));
      if (complete) {
        return Status::AlreadyExists("task " + std::string(task_id) +
                                     " already has a workspace; reopen it with OpenWorkspace");
      }
      // Registered but never finished (the snapshot ref comes last): nothing was
      // recorded in it, so it is made again.
      LOOM_LOG(kWarning) << "task " << task_id << ": remaking a workspace whose creation was cut "
                         << "short";
    }
    // Whatever a crash during creation left: a directory not yet registered, admin
    // files without HEAD (which libgit2 does not take for a worktree, but which make
    // git_worktree_add fail), or a registered worktree without its snapshot ref.
    CleanUpWorktree(repo.get(), name, path);
    // A snapshot ref without a worktree belongs to a removed workspace; it goes
    // first, so that a registered worktree with a snapshot ref is always complete.
    if (GitPtr<git_reference> stale;
        git_reference_lookup(Out(stale), repo.get(), ref_name.c_str()) == 0) {
      int rc = git_reference_delete(stale.get());
      if (rc < 0) return GitError(rc, "cannot delete the stale " + ref_name);
    }
    git_reference* bref = nullptr;
    int rc = git_reference_lookup(&bref, repo.get(), ("refs/heads/" + branch).c_str());
    if (rc == GIT_ENOTFOUND) {
      LOOM_ASSIGN_OR_RETURN(git_oid head,
                            internal::BranchHead(repo.get(), record_.settings.target_branch));
      LOOM_ASSIGN_OR_RETURN(GitPtr<git_commit> commit, internal::LookupCommit(repo.get(), head));
      rc = git_branch_create(&bref, repo.get(), branch.c_str(), commit.get(), 0);
      if (rc < 0) return GitError(rc, "cannot create branch '" + branch + "'");
    } else if (rc < 0) {
      return GitError(rc, "cannot read branch '" + branch + "'");
    }
    GitPtr<git_reference> branch_ref(bref);

    Status added = AddWorktree(repo.get(), branch_ref.get(), name, path);
    if (!added.ok()) {
      CleanUpWorktree(repo.get(), name, path);
      return added.WithContext("cannot create the worktree for task " + std::string(task_id));
    }

    // Start the snapshot chain at the branch head (a reused branch restarts it). This
    // is the last step: it marks the workspace complete.
    const git_oid* tip = git_reference_target(branch_ref.get());
    GitPtr<git_reference> sref;
    LOOM_GIT(git_reference_create(Out(sref), repo.get(), ref_name.c_str(), tip, 1,
                                  "loom: new workspace"),
             "cannot create " + ref_name);
    return internal::OpenWorkspaceAt({path, std::string(task_id), branch, record_.settings},
                                     internal::OpenMode::kNew);
  }

  Result<std::unique_ptr<Workspace>> OpenWorkspace(std::string_view task_id) override {
    LOOM_RETURN_IF_ERROR(internal::ValidateTaskId(task_id));
    LOOM_ASSIGN_OR_RETURN(HandlePool::Lease repo, handles_.Acquire());
    LOOM_RETURN_IF_ERROR(CheckOwnWorktree(repo.get(), std::string(task_id)));
    LOOM_ASSIGN_OR_RETURN(WorkspaceInfo info, Describe(repo.get(), std::string(task_id)));
    LOOM_RETURN_IF_ERROR(RemoveStaleLocks(repo.get(), task_id, info.branch));
    LOOM_ASSIGN_OR_RETURN(bool complete, HasRef(repo.get(), internal::SnapshotRefName(task_id)));
    if (!complete) {
      return Status::NotFound("the workspace of task " + std::string(task_id) +
                              " was never finished (loomd stopped while creating it); create "
                              "it again");
    }
    return internal::OpenWorkspaceAt({info.path, info.task_id, info.branch, record_.settings},
                                     internal::OpenMode::kResume);
  }

  std::string WorkspacePath(std::string_view task_id) const override {
    return worktrees_dir_ + "/" + internal::WorktreeName(task_id);
  }

  Result<std::vector<WorkspaceInfo>> ListWorkspaces() override {
    LOOM_ASSIGN_OR_RETURN(HandlePool::Lease repo, handles_.Acquire());
    git_strarray names{};
    LOOM_GIT(git_worktree_list(&names, repo.get()), "cannot list worktrees");
    std::vector<WorkspaceInfo> out;
    for (size_t i = 0; i < names.count; ++i) {
      std::string_view n = names.strings[i];
      if (!n.starts_with("loom-")) continue;
      Result<WorkspaceInfo> info = Describe(repo.get(), std::string(n.substr(5)));
      if (info.ok()) out.push_back(std::move(*info));
    }
    git_strarray_dispose(&names);
    return out;
  }

  Status RemoveWorkspace(std::string_view task_id, BranchDisposition disposition) override {
    LOOM_RETURN_IF_ERROR(internal::ValidateTaskId(task_id));
    LOOM_ASSIGN_OR_RETURN(HandlePool::Lease repo, handles_.Acquire());
    const std::string name = internal::WorktreeName(task_id);
    std::string branch;
    Result<std::string> b = FindBranch(repo.get(), std::string(task_id));
    if (b.ok()) branch = *b;
    bool found = false;
    std::string path = worktrees_dir_ + "/" + name;
    if (GitPtr<git_worktree> wt; git_worktree_lookup(Out(wt), repo.get(), name.c_str()) == 0) {
      found = true;
      path = git_worktree_path(wt.get());
    }
    struct stat st;
    found = found || lstat(path.c_str(), &st) == 0;
    CleanUpWorktree(repo.get(), name, path);
    std::string ref_name = internal::SnapshotRefName(task_id);
    if (GitPtr<git_reference> sref;
        git_reference_lookup(Out(sref), repo.get(), ref_name.c_str()) == 0) {
      found = true;
      git_reference_delete(sref.get());
    }
    if (disposition == BranchDisposition::kDelete && !branch.empty()) {
      if (GitPtr<git_reference> bref;
          git_reference_lookup(Out(bref), repo.get(), ("refs/heads/" + branch).c_str()) == 0) {
        found = true;
        int rc = git_reference_delete(bref.get());
        if (rc < 0) return GitError(rc, "cannot delete branch '" + branch + "'");
      }
    }
    if (!found) return Status::NotFound("task " + std::string(task_id) + " has no workspace");
    return Status::Ok();
  }

  Result<DiffReport> DiffBranch(std::string_view task_id) override {
    LOOM_ASSIGN_OR_RETURN(HandlePool::Lease repo, handles_.Acquire());
    LOOM_ASSIGN_OR_RETURN(std::string branch, FindBranch(repo.get(), std::string(task_id)));
    LOOM_ASSIGN_OR_RETURN(git_oid head, internal::BranchHead(repo.get(), branch));
    LOOM_ASSIGN_OR_RETURN(git_oid target,
                          internal::BranchHead(repo.get(), record_.settings.target_branch));
    LOOM_ASSIGN_OR_RETURN(git_oid base, internal::MergeBase(repo.get(), head, target));
    return internal::DiffCommits(repo.get(), base, head);
  }

  Result<MergeOutcome> MergeBranch(std::string_view task_id) override {
    MutexLock lock(&merge_mu);
    LOOM_ASSIGN_OR_RETURN(HandlePool::Lease repo, handles_.Acquire());
    LOOM_RETURN_IF_ERROR(FinishJournaledMerge(repo.get()));
    LOOM_ASSIGN_OR_RETURN(std::string branch, FindBranch(repo.get(), std::string(task_id)));
    const std::string& target_name = record_.settings.target_branch;
    LOOM_ASSIGN_OR_RETURN(git_oid head, internal::BranchHead(repo.get(), branch));
    LOOM_ASSIGN_OR_RETURN(git_oid target, internal::BranchHead(repo.get(), target_name));
    LOOM_ASSIGN_OR_RETURN(git_oid base, internal::MergeBase(repo.get(), head, target));
    MergeOutcome out;
    if (git_oid_equal(&base, &head)) {
      out.kind = MergeOutcome::Kind::kUpToDate;
      out.commit = OidHex(target);
      return out;
    }
    git_oid result = head;
    out.kind = MergeOutcome::Kind::kFastForward;
    if (!git_oid_equal(&base, &target)) {
      LOOM_ASSIGN_OR_RETURN(GitPtr<git_commit> tc, internal::LookupCommit(repo.get(), target));
      LOOM_ASSIGN_OR_RETURN(GitPtr<git_commit> hc, internal::LookupCommit(repo.get(), head));
      git_merge_options mopts = GIT_MERGE_OPTIONS_INIT;
      git_index* iraw = nullptr;
      LOOM_GIT(git_merge_commits(&iraw, repo.get(), tc.get(), hc.get(), &mopts),
               "cannot merge '" + branch + "' into '" + target_name + "'");
      GitPtr<git_index> index(iraw);
      if (git_index_has_conflicts(index.get())) {
        out.kind = MergeOutcome::Kind::kConflict;
        out.conflicting_paths = ConflictPaths(index.get());
        return out;
      }
      git_oid tree_id;
      LOOM_GIT(git_index_write_tree_to(&tree_id, index.get(), repo.get()),
               "cannot write the merged tree");
      git_tree* traw = nullptr;
      LOOM_GIT(git_tree_lookup(&traw, repo.get(), &tree_id), "cannot read the merged tree");
      GitPtr<git_tree> tree(traw);
      LOOM_ASSIGN_OR_RETURN(GitPtr<git_signature> sig, internal::MakeSignature(record_.settings));
      std::string message = "Merge branch '" + branch + "' into " + target_name +
                            "\n\nLoom-Task: " + std::string(task_id) + "\n";
      const git_commit* parents[] = {tc.get(), hc.get()};
      LOOM_GIT(git_commit_create(&result, repo.get(), nullptr, sig.get(), sig.get(), "UTF-8",
                                 message.c_str(), tree.get(), 2, parents),
               "cannot create the merge commit");
      out.kind = MergeOutcome::Kind::kMergeCommit;
    }
    out.commit = OidHex(result);
    LOOM_RETURN_IF_ERROR(MoveTarget(repo.get(), branch, target, result));
    return out;
  }

  Status FinishInterruptedMerge() override {
    MutexLock lock(&merge_mu);
    LOOM_ASSIGN_OR_RETURN(HandlePool::Lease repo, handles_.Acquire());
    return FinishJournaledMerge(repo.get());
  }

 private:
  static std::vector<std::string> ConflictPaths(git_index* index) {
    std::vector<std::string> paths;
    git_index_conflict_iterator* raw = nullptr;
    if (git_index_conflict_iterator_new(&raw, index) < 0) return paths;
    GitPtr<git_index_conflict_iterator> it(raw);
    const git_index_entry *ancestor, *ours, *theirs;
    while (git_index_conflict_next(&ancestor, &ours, &theirs, it.get()) == 0) {
      const git_index_entry* e = ours ? ours : theirs ? theirs : ancestor;
      if (e) paths.emplace_back(e->path);
    }
    return paths;
  }

  // Moves the target ref from `old_commit` to `new_commit` (compare-and-swap), and
  // when the target is checked out, brings that checkout along. The ref move is
  // the commit point: before it the checkout is untouched, after it the checkout
  // is finished from the journal (see FinishJournaledMerge) if this process dies.
  // Local changes the merge would overwrite are refused before anything moves.
  Status MoveTarget(git_repository* repo, const std::string& branch, const git_oid& old_commit,
                    const git_oid& new_commit) REQUIRES(merge_mu) {
    const std::string& target_name = record_.settings.target_branch;
    LOOM_ASSIGN_OR_RETURN(bool checked_out, TargetCheckedOut(repo));
    const std::string journal = JournalPath(repo);
    if (checked_out) {
      LOOM_RETURN_IF_ERROR(CheckoutTarget(repo, old_commit, new_commit, CheckoutRun::kDryRun));
      LOOM_RETURN_IF_ERROR(WriteJournal(journal, OidHex(old_commit), OidHex(new_commit)));
    }
    CrashPoint("merge.journaled");
    GitPtr<git_reference> ref;
    int rc = git_reference_create_matching(Out(ref), repo, ("refs/heads/" + target_name).c_str(),
                                           &new_commit, 1, &old_commit,
                                           ("loom: merge " + branch).c_str());
    if (rc < 0) {
      if (checked_out) ::unlink(journal.c_str());
      if (rc == GIT_EMODIFIED) {
        return Status::FailedPrecondition("'" + target_name +
                                          "' moved while merging; nothing was changed, retry");
      }
      return GitError(rc, "cannot update '" + target_name + "'");
    }
    CrashPoint("merge.ref_moved");
    if (!checked_out) return Status::Ok();
    Status s = CheckoutTarget(repo, old_commit, new_commit, CheckoutRun::kApply);
    if (!s.ok()) {
      return s.WithContext("'" + target_name + "' is merged (" + OidHex(new_commit) +
                           ") but its checkout at '" + record_.path +
                           "' is not updated yet; it is finished at loomd's next start or merge");
    }
    CrashPoint("merge.checked_out");
    if (::unlink(journal.c_str()) < 0 && errno != ENOENT) {
      return Status::FromErrno(errno, "cannot remove the merge journal '" + journal + "'");
    }
    return Status::Ok();
  }

  // The journal of a merge into a checked-out target: "<old> <new>\n", written
  // (through a temporary file and a rename, so it is whole or absent) before the
  // target ref moves, removed once the checkout shows the new commit.
  static std::string JournalPath(git_repository* repo) {
    return std::string(git_repository_path(repo)) + "LOOM_MERGE";
  }

  static Status WriteJournal(const std::string& path, const std::string& old_hex,
                             const std::string& new_hex) {
    const std::string tmp = path + ".tmp";
    const std::string text = old_hex + " " + new_hex + "\n";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return Status::FromErrno(errno, "cannot write the merge journal '" + tmp + "'");
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
              ::fsync(fd) == 0;
    int err = errno;
    ::close(fd);
    if (!ok || ::rename(tmp.c_str(), path.c_str()) < 0) {
      if (ok) err = errno;
      ::unlink(tmp.c_str());
      return Status::FromErrno(err, "cannot write the merge journal '" + path + "'");
    }
    return Status::Ok();
  }

  // Completes what a process killed during a merge into the checked-out target
  // left: when the target ref had moved, the checkout is brought to the new
  // commit (it may hold the old tree, the new one, or a mix: FinishCheckout);
  // when it had not, the checkout was never touched. Either way the journal goes.
  Status FinishJournaledMerge(git_repository* repo) REQUIRES(merge_mu) {
    const std::string journal = JournalPath(repo);
    std::ifstream in(journal);
    if (!in) return Status::Ok();
    std::string old_hex, new_hex;
    in >> old_hex >> new_hex;
    in.close();
    git_oid old_commit, new_commit, current;
    const std::string& target_name = record_.settings.target_branch;
    if (git_oid_fromstr(&old_commit, old_hex.c_str()) < 0 ||
        git_oid_fromstr(&new_commit, new_hex.c_str()) < 0) {
      return Status::Corruption("the merge journal '" + journal +
                                "' is damaged; check that the checkout at '" + record_.path +
                                "' matches '" + target_name + "', then remove the journal");
    }
    // Killed while moving the target ref: its lock stays, and the ref did not move
    // (the lock's rename is the move).
    LOOM_RETURN_IF_ERROR(RemoveStaleLock(std::string(git_repository_commondir(repo)) +
                                         "refs/heads/" + target_name + ".lock"));
    LOOM_ASSIGN_OR_RETURN(current, internal::BranchHead(repo, target_name));
    LOOM_ASSIGN_OR_RETURN(bool checked_out, TargetCheckedOut(repo));
    if (git_oid_equal(&current, &new_commit) && !checked_out) {
      LOOM_LOG(kWarning) << "'" << target_name << "' at " << record_.path
                         << " is no longer checked out; the interrupted merge needs no checkout";
    } else if (git_oid_equal(&current, &new_commit)) {
      LOOM_RETURN_IF_ERROR(RemoveStaleLock(std::string(git_repository_path(repo)) + "index.lock"));
      LOOM_RETURN_IF_ERROR(
          FinishCheckout(repo, old_commit, new_commit)
              .WithContext("finishing the interrupted merge into '" + target_name + "'"));
      LOOM_LOG(kWarning) << "finished the checkout of a merge into '" << target_name << "' at "
                         << record_.path << " that a stop of loomd had interrupted";
    } else if (git_oid_equal(&current, &old_commit)) {
      LOOM_LOG(kWarning) << "a merge into '" << target_name << "' at " << record_.path
                         << " was interrupted before the branch moved; nothing was changed";
    } else {
      LOOM_LOG(kWarning) << "'" << target_name << "' at " << record_.path
                         << " moved since an interrupted merge; its checkout is left as it is";
    }
    if (::unlink(journal.c_str()) < 0 && errno != ENOENT) {
      return Status::FromErrno(errno, "cannot remove the merge journal '" + journal + "'");
    }
    return Status::Ok();
  }

  // libgit2 writes the index through index.lock and moves a ref through
  // refs/heads/<name>.lock; a process killed in that instant leaves the lock, and
  // every later checkout or ref update fails on it. A lock older than this
  // process, found while a merge journal says that a merge of ours was under way,
  // is that one: a git command holds a lock for the length of one command.
  static Status RemoveStaleLock(const std::string& lock) {
    std::error_code ec;
    auto mtime = std::filesystem::last_write_time(lock, ec);
    if (ec || mtime >= ProcessStart()) return Status::Ok();
    if (::unlink(lock.c_str()) < 0 && errno != ENOENT) {
      return Status::FromErrno(errno, "cannot remove the stale '" + lock + "'");
    }
    LOOM_LOG(kWarning) << "removed the stale " << lock << " of an interrupted merge";
    return Status::Ok();
  }

  // Finishes a checkout from `old_commit` to `new_commit` that a killed process
  // may have cut anywhere (files written but not the index, some files but not
  // others). Every path the merge changes must hold its old content or its new
  // one (or be absent where a side lacks it); those paths are then forced to the
  // new commit, files and index. Any other content there is a local change made
  // since: FailedPrecondition, nothing touched.
  Status FinishCheckout(git_repository* repo, const git_oid& old_commit, const git_oid& new_commit)
      REQUIRES(merge_mu) {
    LOOM_ASSIGN_OR_RETURN(GitPtr<git_commit> oc, internal::LookupCommit(repo, old_commit));
    LOOM_ASSIGN_OR_RETURN(GitPtr<git_tree> old_tree, internal::CommitTree(oc.get()));
    LOOM_ASSIGN_OR_RETURN(GitPtr<git_commit> nc, internal::LookupCommit(repo, new_commit));
    LOOM_ASSIGN_OR_RETURN(GitPtr<git_tree> new_tree, internal::CommitTree(nc.get()));
    git_diff* draw = nullptr;
    LOOM_GIT(git_diff_tree_to_tree(&draw, repo, old_tree.get(), new_tree.get(), nullptr),
             "cannot compare the target's old and new trees");
    GitPtr<git_diff> diff(draw);
    const std::string workdir = git_repository_workdir(repo);
    std::vector<std::string> paths;
    for (size_t i = 0; i < git_diff_num_deltas(diff.get()); ++i) {
      const git_diff_delta* d = git_diff_get_delta(diff.get(), i);
      const std::string path = d->new_file.path;
      const bool had = d->status != GIT_DELTA_ADDED, has = d->status != GIT_DELTA_DELETED;
      struct stat st;
      bool as_expected;
      if (lstat((workdir + path).c_str(), &st) < 0) {
        as_expected = !had || !has;
      } else {
        git_oid now;
        as_expected = git_repository_hashfile(&now, repo, (workdir + path).c_str(), GIT_OBJECT_BLOB,
                                              path.c_str()) == 0 &&
                      ((had && git_oid_equal(&now, &d->old_file.id)) ||
                       (has && git_oid_equal(&now, &d->new_file.id)));
      }
      if (!as_expected) {
        return Status::FailedPrecondition(
            "'" + path + "' in the checkout at '" + record_.path +
            "' was changed since the merge began; commit or discard the change, then retry");
      }
      paths.push_back(path);
    }
    if (paths.empty()) return Status::Ok();
    std::vector<char*> raw;
    for (std::string& p : paths) raw.push_back(p.data());
    git_checkout_options co = GIT_CHECKOUT_OPTIONS_INIT;
    co.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_DISABLE_PATHSPEC_MATCH;
    co.paths = {raw.data(), raw.size()};
    co.baseline = old_tree.get();
    LOOM_GIT(git_checkout_tree(repo, reinterpret_cast<const git_object*>(nc.get()), &co),
             "cannot update the checked-out target branch");
    return Status::Ok();
  }

  // Whether the target branch is checked out in the main work tree (a repository
  // registered in place), which a merge then updates too.
  Result<bool> TargetCheckedOut(git_repository* repo) {
    if (git_repository_is_bare(repo)) return false;
    git_reference* head = nullptr;
    if (git_reference_lookup(&head, repo, "HEAD") < 0) return false;
    GitPtr<git_reference> head_ref(head);
    const char* sym = git_reference_symbolic_target(head);
    return sym && std::string_view(sym) == "refs/heads/" + record_.settings.target_branch;
  }

  enum class CheckoutRun { kDryRun, kApply };

  // Brings the checkout from `old_commit`'s tree to `new_commit`'s. Safe: a file
  // that holds neither its old nor its new content is a local change, and the
  // checkout then refuses (before writing anything). A file already at its new
  // content is fine, so this also finishes a checkout that was cut short.
  Status CheckoutTarget(git_repository* repo, const git_oid& old_commit, const git_oid& new_commit,
                        CheckoutRun run) {
    LOOM_ASSIGN_OR_RETURN(GitPtr<git_commit> oc, internal::LookupCommit(repo, old_commit));
    LOOM_ASSIGN_OR_RETURN(GitPtr<git_tree> old_tree, internal::CommitTree(oc.get()));
    LOOM_ASSIGN_OR_RETURN(GitPtr<git_commit> nc, internal::LookupCommit(repo, new_commit));
    git_checkout_options co = GIT_CHECKOUT_OPTIONS_INIT;
    co.checkout_strategy = GIT_CHECKOUT_SAFE;
    co.baseline = old_tree.get();
    if (run == CheckoutRun::kDryRun) {
      // libgit2 1.5 writes the index even on a dry run: a kill then would leave
      // index.lock behind before any journal says whose it is.
      co.checkout_strategy |= GIT_CHECKOUT_DRY_RUN | GIT_CHECKOUT_DONT_WRITE_INDEX;
    } else {
      co.progress_cb = [](const char*, size_t completed, size_t, void*) {
        if (completed > 0) CrashPoint("merge.checkout_started");
      };
    }
    int rc = git_checkout_tree(repo, reinterpret_cast<const git_object*>(nc.get()), &co);
    if (rc == GIT_ECONFLICT) {
      return Status::FailedPrecondition(
          "'" + record_.settings.target_branch + "' is checked out at '" + record_.path +
          "' with local changes the merge would overwrite; commit or discard them, then retry");
    }
    LOOM_GIT(rc, "cannot update the checked-out target branch");
    return Status::Ok();
  }

  // The task branch: from the worktree's HEAD when the worktree exists, else the
  // unique local branch named loom/<task>-*. The HEAD is read from the one admin
  // file, not by opening the worktree as a repository (its config and more).
  Result<std::string> FindBranch(git_repository* repo, const std::string& task_id) {
    LOOM_RETURN_IF_ERROR(internal::ValidateTaskId(task_id));
    if (std::ifstream in(std::string(git_repository_commondir(repo)) + "worktrees/" +
                         internal::WorktreeName(task_id) + "/HEAD");
        in) {
      std::string head;
      std::getline(in, head);
      constexpr std::string_view kPrefix = "ref: refs/heads/";
      if (head.starts_with(kPrefix) && head.size() > kPrefix.size()) {
        return head.substr(kPrefix.size());
      }
    }
    std::vector<std::string> candidates;
    git_reference_iterator* iraw = nullptr;
    std::string glob = "refs/heads/loom/" + task_id + "-*";
    LOOM_GIT(git_reference_iterator_glob_new(&iraw, repo, glob.c_str()), "cannot list branches");
    GitPtr<git_reference_iterator> it(iraw);
    const char* ref_name = nullptr;
    while (git_reference_next_name(&ref_name, it.get()) == 0) {
      candidates.emplace_back(ref_name + 11);
    }
    if (candidates.empty()) {
      return Status::NotFound("task " + task_id + " has no branch (loom/" + task_id + "-...)");
    }
    if (candidates.size() > 1) {
      std::string list;
      for (const std::string& c : candidates) list += (list.empty() ? "" : ", ") + c;
      return Status::FailedPrecondition("task " + task_id + " matches several branches: " + list);
    }
    return candidates.front();
  }

  // A worktree registered under the task's name somewhere other than this
  // repository's worktrees directory was made by another loomd (another data dir)
  // on the same repository, whose task ids overlap ours: it is never written into,
  // pruned or reused with its branch. The error says how to part them.
  Status CheckOwnWorktree(git_repository* repo, const std::string& task_id) {
    const std::string name = internal::WorktreeName(task_id);
    git_worktree* wt = nullptr;
    if (git_worktree_lookup(&wt, repo, name.c_str()) != 0) return Status::Ok();
    GitPtr<git_worktree> owned(wt);
    std::string registered = git_worktree_path(wt);
    std::error_code ec;
    namespace fs = std::filesystem;
    fs::path theirs = fs::weakly_canonical(registered, ec);
    fs::path mine = fs::weakly_canonical(worktrees_dir_ + "/" + name, ec);
    if (theirs == mine) return Status::Ok();
    std::string branch = FindBranch(repo, task_id).value_or("");
    std::string quoted = "'" + record_.path + "'";
    return Status::FailedPrecondition(
        "repository '" + record_.name + "' already has a worktree '" + name + "' at " + registered +
        (fs::exists(registered, ec) ? "" : " (no longer there)") +
        (branch.empty() ? "" : " on branch " + branch) +
        ", made by another loomd data directory; this one does not write into it or reuse its "
        "branch. Give each data directory a repository of its own (a clone), or remove the "
        "leftovers: git -C " +
        quoted + " worktree remove --force " + name +
        (branch.empty() ? "" : "; git -C " + quoted + " branch -D " + branch));
  }

  Result<WorkspaceInfo> Describe(git_repository* repo, const std::string& task_id) {
    git_worktree* wt = nullptr;
    if (git_worktree_lookup(&wt, repo, internal::WorktreeName(task_id).c_str()) < 0) {
      return Status::NotFound("task " + task_id + " has no workspace");
    }
    GitPtr<git_worktree> owned(wt);
    if (git_worktree_validate(wt) < 0) {
      return Status::FailedPrecondition(
          GitError(-1, "the worktree of task " + task_id + " is damaged").message() +
          "; remove it with RemoveWorkspace and create it again");
    }
    WorkspaceInfo info;
    info.task_id = task_id;
    info.path = git_worktree_path(wt);
    LOOM_ASSIGN_OR_RETURN(info.branch, FindBranch(repo, task_id));
    return info;
  }

  // Registers the worktree under the registration lock, then checks it out without
  // the lock; the checkout, the slow part, still runs in parallel.
  Status AddWorktree(git_repository* repo, git_reference* branch, const std::string& name,
                     const std::string& path) {
    {
      MutexLock lock(&registration_mu);
      LOOM_RETURN_IF_ERROR(RegisterWorktree(repo, branch, name, path));
    }
    return internal::CheckoutIntoEmptyWorktree(path, OidHex(*git_reference_target(branch)), 0);
  }

  // Writes what `git worktree add --no-checkout` writes: the admin directory
  // .git/worktrees/<name> with `commondir`, `gitdir` and, last, `HEAD` (admin
  // files without HEAD are no worktree to libgit2 or git, and CreateWorkspace
  // cleans them up), and the worktree's `.git` file. Unlike git_worktree_add it
  // does not open every other worktree to ask whether the branch is checked out
  // there: a task branch is loomd's own, and the only other place it can be
  // checked out is the repository's own work tree, which is checked.
  // REQUIRES: no worktree `name`, and nothing at `path`.
  Status RegisterWorktree(git_repository* repo, git_reference* branch, const std::string& name,
                          const std::string& path) REQUIRES(registration_mu) {
    const char* branch_name = git_reference_name(branch);
    if (!git_repository_is_bare(repo)) {
      GitPtr<git_reference> head;
      if (git_reference_lookup(Out(head), repo, "HEAD") == 0) {
        const char* sym = git_reference_symbolic_target(head.get());
        if (sym && std::string_view(sym) == branch_name) {
          return Status::FailedPrecondition(std::string("branch '") + branch_name +
                                            "' is checked out in the repository at '" +
                                            record_.path + "'; check out another branch there");
        }
      }
    }
    const std::string worktrees = std::string(git_repository_commondir(repo)) + "worktrees";
    const std::string admin = worktrees + "/" + name;
    if (::mkdir(worktrees.c_str(), 0755) < 0 && errno != EEXIST) {
      return Status::FromErrno(errno, "cannot create '" + worktrees + "'");
    }
    if (::mkdir(admin.c_str(), 0755) < 0) {
      return Status::FromErrno(errno, "cannot create '" + admin + "'");
    }
    if (::mkdir(path.c_str(), 0755) < 0) {
      return Status::FromErrno(errno, "cannot create the worktree directory '" + path + "'");
    }
    LOOM_RETURN_IF_ERROR(WriteNewFile(path + "/.git", "gitdir: " + admin + "\n"));
    LOOM_RETURN_IF_ERROR(
        WriteNewFile(admin + "/commondir", std::string(git_repository_commondir(repo)) + "\n"));
    LOOM_RETURN_IF_ERROR(WriteNewFile(admin + "/gitdir", path + "/.git\n"));
    // Whole or absent: written aside, then renamed into place.
    LOOM_RETURN_IF_ERROR(
        WriteNewFile(admin + "/HEAD.lock", std::string("ref: ") + branch_name + "\n"));
    if (::rename((admin + "/HEAD.lock").c_str(), (admin + "/HEAD").c_str()) < 0) {
      return Status::FromErrno(errno, "cannot write '" + admin + "/HEAD'");
    }
    return Status::Ok();
  }

  static Status WriteNewFile(const std::string& path, const std::string& text) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return Status::FromErrno(errno, "cannot create '" + path + "'");
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    int err = errno;
    ::close(fd);
    if (!ok) return Status::FromErrno(err, "cannot write '" + path + "'");
    return Status::Ok();
  }

  static Result<bool> HasRef(git_repository* repo, const std::string& name) {
    git_oid oid;
    int rc = git_reference_name_to_id(&oid, repo, name.c_str());
    if (rc == GIT_ENOTFOUND) return false;
    if (rc < 0) return GitError(rc, "cannot read " + name);
    return true;
  }

  // Removes the lock files of the task's own refs and worktree index that a process
  // killed while holding them left behind: libgit2 never removes a stale lock, so
  // one would fail every later update of that ref. Only the task's driver takes
  // these locks, and there is one driver at a time (the caller, who is opening or
  // creating the workspace), so any that exists now is stale.
  static Status RemoveStaleLocks(git_repository* repo, std::string_view task_id,
                                 const std::string& branch) {
    const std::string common = git_repository_commondir(repo);
    const std::string admin = common + "worktrees/" + internal::WorktreeName(task_id) + "/";
    for (const std::string& lock :
         {common + internal::SnapshotRefName(task_id) + ".lock",
          common + "refs/heads/" + branch + ".lock", admin + "index.lock", admin + "HEAD.lock"}) {
      if (unlink(lock.c_str()) == 0) {
        LOOM_LOG(kWarning) << "task " << task_id << ": removed the stale lock " << lock;
      } else if (errno != ENOENT && errno != ENOTDIR) {
        return Status::FromErrno(errno, "cannot remove the stale lock '" + lock + "'");
      }
    }
    return Status::Ok();
  }

  // Deletes a worktree's files (never following symlinks), then its admin files
  // (pruned, or removed when libgit2 does not see a worktree in them) under the
  // registration lock. Missing pieces are fine.
  static void CleanUpWorktree(git_repository* repo, const std::string& name,
                              const std::string& path) {
    Status s = internal::RemoveTreeNoFollow(path);
    if (!s.ok()) {
      LOOM_LOG(kWarning) << "removing worktree: " << s.ToString();
    }
    MutexLock lock(&registration_mu);
    if (GitPtr<git_worktree> wt; git_worktree_lookup(Out(wt), repo, name.c_str()) == 0) {
      git_worktree_prune_options popts = GIT_WORKTREE_PRUNE_OPTIONS_INIT;
      popts.flags = GIT_WORKTREE_PRUNE_VALID | GIT_WORKTREE_PRUNE_LOCKED;
      if (git_worktree_prune(wt.get(), &popts) < 0) {
        LOOM_LOG(kWarning) << GitError(-1, "pruning worktree " + name).ToString();
      }
    }
    s = internal::RemoveTreeNoFollow(std::string(git_repository_commondir(repo)) + "worktrees/" +
                                     name);
    if (!s.ok()) {
      LOOM_LOG(kWarning) << "removing the admin files of worktree " << name << ": " << s.ToString();
    }
  }

  const RepoRecord record_;
  const std::string worktrees_dir_;
  HandlePool handles_;
};

}  // namespace

Result<std::unique_ptr<Repository>> Repository::Open(RepoRecord record, std::string worktrees_dir) {
  LOOM_RETURN_IF_ERROR(internal::ValidateRepository(record.path, record.settings));
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::absolute(worktrees_dir, ec);
  if (!ec) std::filesystem::create_directories(dir, ec);
  if (ec) {
    return Status::IoError("cannot create worktrees directory '" + worktrees_dir +
                           "': " + ec.message());
  }
  dir = std::filesystem::canonical(dir, ec);
  if (ec) return Status::IoError("cannot resolve '" + worktrees_dir + "': " + ec.message());
  return std::unique_ptr<Repository>(new RepositoryImpl(std::move(record), dir.string()));
}

}  // namespace loom::repos
