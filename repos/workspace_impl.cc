// Workspace: one task's worktree, its confined edits, and its snapshot chain.
//
// Design. An edit is applied to the disk first (through ConfinedDir, which never
// follows a symlink), then recorded: the new blob is written to the object
// database and the previous snapshot tree is patched with git_tree_create_updated,
// so the cost of a snapshot depends on the depth of the path, not on the size of
// the repository (the worktree is never scanned). The snapshot commit is appended
// to refs/loom/snapshots/<task> with a compare-and-swap on the old head. A crash
// between the disk write and the ref update leaves the worktree one edit ahead of
// its snapshot; reopening (OpenMode::kResume) diffs the snapshot tree against the
// worktree and restores the difference, so the task resumes exactly at its last
// recorded step. Before that it takes back a worktree still lent to a sandbox uid
// (the process died during a sandboxed run): libgit2 refuses to open a repository
// owned by another user, and would report it as missing. The worktree's index keeps describing the
// branch head: edits are "unstaged" until CommitToBranch, which moves both the branch and the
// index.
#include "repos/internal/workspace_impl.h"

#include <git2.h>

#include <algorithm>
#include <sstream>

#include "common/glob.h"
#include "repos/internal/confined_fs.h"
#include "repos/internal/git_util.h"

namespace loom::repos::internal {
namespace {

constexpr std::string_view kStepTrailer = "Loom-Step: ";
constexpr uint64_t kMaxSearchFileBytes = 8ull << 20;
constexpr size_t kMaxSearchLineChars = 300;

Result<GitPtr<git_tree>> LookupTree(git_repository* repo, const git_oid& oid) {
  git_tree* raw = nullptr;
  LOOM_GIT(git_tree_lookup(&raw, repo, &oid), "cannot read tree " + OidHex(oid));
  return GitPtr<git_tree>(raw);
}

// The step recorded in a snapshot commit's message, or -1 for a commit that is not
// a snapshot (the base the chain starts from).
int StepOf(git_commit* commit) {
  const char* msg = git_commit_message(commit);
  if (!msg) return -1;
  std::string_view m(msg);
  size_t at = m.find(kStepTrailer);
  if (at == std::string_view::npos) return -1;
  return std::atoi(std::string(m.substr(at + kStepTrailer.size(), 12)).c_str());
}

std::string FirstLine(const char* msg) {
  std::string_view m(msg ? msg : "");
  return std::string(m.substr(0, m.find('\n')));
}

bool LooksBinary(std::string_view data) {
  return data.substr(0, 8000).find('\0') != std::string_view::npos;
}

std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::vector<size_t> FindAll(std::string_view hay, std::string_view needle) {
  std::vector<size_t> at;
  if (needle.empty()) return at;
  for (size_t p = hay.find(needle); p != std::string_view::npos; p = hay.find(needle, p + 1)) {
    at.push_back(p);
  }
  return at;
}

int LineOf(std::string_view text, size_t offset) {
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + offset, '\n'));
}

std::string ToCrlf(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 16);
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) out += '\r';
    out += s[i];
  }
  return out;
}

// "nearest candidates" for a replace whose old text was not found: the lines of the
// file closest (by edit distance) to the first non-blank line of the old text.
std::string NearestCandidates(std::string_view content, std::string_view old_text) {
  std::string_view probe;
  for (std::string_view line : SplitLines(old_text)) {
    if (!Trim(line).empty()) {
      probe = Trim(line);
      break;
    }
  }
  if (probe.empty()) return "";
  probe = probe.substr(0, 200);
  struct Cand {
    double score;
    int line;
    std::string_view text;
  };
  std::vector<Cand> cands;
  std::vector<std::string_view> lines = SplitLines(content);
  for (size_t i = 0; i < lines.size() && i < 20000; ++i) {
    std::string_view t = Trim(lines[i]).substr(0, 200);
    if (t.empty()) continue;
    double d = static_cast<double>(EditDistance(probe, t)) /
               static_cast<double>(std::max(probe.size(), t.size()));
    cands.push_back({d, static_cast<int>(i + 1), lines[i]});
  }
  std::stable_sort(cands.begin(), cands.end(),
                   [](const Cand& a, const Cand& b) { return a.score < b.score; });
  std::ostringstream out;
  out << " Nearest lines to '" << probe << "':";
  for (size_t i = 0; i < cands.size() && i < 3 && cands[i].score < 0.6; ++i) {
    out << "\n  line " << cands[i].line << ": " << cands[i].text.substr(0, 200);
  }
  if (cands.empty() || cands[0].score >= 0.6) out << " none is close.";
  return out.str();
}

class WorkspaceImpl final : public Workspace {
 public:
  WorkspaceImpl(WorkspaceParams params, GitPtr<git_repository> repo, ConfinedDir fs)
      : params_(std::move(params)), repo_(std::move(repo)), fs_(std::move(fs)) {
    info_.task_id = params_.task_id;
    info_.branch = params_.branch;
    info_.path = params_.worktree_path;
    ref_name_ = SnapshotRefName(params_.task_id);
  }

  // Loads the snapshot chain (creating the ref at the branch head when missing).
  Status Load() {
    git_oid head;
    int rc = git_reference_name_to_id(&head, repo_.get(), ref_name_.c_str());
    if (rc == GIT_ENOTFOUND) {
      LOOM_ASSIGN_OR_RETURN(head, BranchHead(repo_.get(), params_.branch));
      GitPtr<git_reference> ref;
      LOOM_GIT(git_reference_create(Out(ref), repo_.get(), ref_name_.c_str(), &head, 0,
                                    "loom: start snapshots"),
               "cannot create snapshot ref " + ref_name_);
    } else if (rc < 0) {
      return GitError(rc, "cannot read snapshot ref " + ref_name_);
    }
    LOOM_ASSIGN_OR_RETURN(GitPtr<git_commit> commit, LookupCommit(repo_.get(), head));
    LOOM_ASSIGN_OR_RETURN(head_tree_, CommitTree(commit.get()));
    head_ = head;
    step_ = std::max(0, StepOf(commit.get()));
    LOOM_ASSIGN_OR_RETURN(std::vector<SnapshotInfo> chain, ListSnapshots());
    info_.base_commit = chain.front().commit;
    return Status::Ok();
  }

  // Makes the worktree equal to the snapshot tree: modified or deleted tracked
  // files are rewritten, files the snapshot lacks (not ignored) are removed.
  Status Resume() {
    resume_.step = step_;
    git_diff_options opts = GIT_DIFF_OPTIONS_INIT;
    opts.flags =
        GIT_DIFF_INCLUDE_UNTRACKED | GIT_DIFF_RECURSE_UNTRACKED_DIRS | GIT_DIFF_INCLUDE_TYPECHANGE;
    opts.ignore_submodules = GIT_SUBMODULE_IGNORE_ALL;
    git_diff* raw = nullptr;
    LOOM_GIT(git_diff_tree_to_workdir_with_index(&raw, repo_.get(), head_tree_.get(), &opts),
             "cannot compare the worktree with its snapshot");
    GitPtr<git_diff> diff(raw);
    size_t n = git_diff_num_deltas(diff.get());
    for (size_t i = 0; i < n; ++i) {
      const git_diff_delta* d = git_diff_get_delta(diff.get(), i);
      std::string path = d->old_file.path ? d->old_file.path : d->new_file.path;
      if (d->status == GIT_DELTA_UNMODIFIED || d->status == GIT_DELTA_IGNORED) continue;
      LOOM_RETURN_IF_ERROR(RestorePath(path));
      resume_.restored_paths.push_back(path);
    }
    return Status::Ok();
  }

  const WorkspaceInfo& info() const override { return info_; }
  const ResumeReport& resume_report() const override { return resume_; }

  Result<std::string> ReadFile(std::string_view path, int start_line, int end_line) override {
    LOOM_ASSIGN_OR_RETURN(RelPath rel, ParseRelPath(path, RootUse::kRefused));
    LOOM_ASSIGN_OR_RETURN(std::string content, fs_.ReadFile(rel));
    if (start_line <= 0 && end_line <= 0) return content;
    if (start_line < 0 || end_line < 0 || (end_line > 0 && end_line < start_line)) {
      return Status::InvalidArgument("bad line range " + std::to_string(start_line) + ".." +
                                     std::to_string(end_line));
    }
    int first = std::max(1, start_line);
    std::string out;
    int line = 1;
    size_t pos = 0;
    while (pos < content.size() && (end_line == 0 || line <= end_line)) {
      size_t end = content.find('\n', pos);
      size_t next = end == std::string::npos ? content.size() : end + 1;
      if (line >= first) out.append(content, pos, next - pos);
      pos = next;
      ++line;
    }
    return out;
  }

  Result<std::vector<FileEntry>> ListFiles(std::string_view path) override {
    LOOM_ASSIGN_OR_RETURN(RelPath rel, ParseRelPath(path, RootUse::kAllowed));
    return fs_.List(rel);
  }

  Result<std::vector<SearchMatch>> Search(std::string_view pattern, std::string_view path,
                                          SearchOptions options) override {
    if (pattern.empty()) return Status::InvalidArgument("search pattern is empty");
    LOOM_ASSIGN_OR_RETURN(RelPath rel, ParseRelPath(path, RootUse::kAllowed));
    LOOM_ASSIGN_OR_RETURN(FileMeta meta, fs_.Stat(rel));
    std::vector<std::string> files;
    if (meta.kind == FileMeta::Kind::kFile) {
      files.push_back(rel.text);
    } else if (meta.kind == FileMeta::Kind::kDirectory) {
      LOOM_ASSIGN_OR_RETURN(files, fs_.Walk(rel));
    } else if (meta.kind == FileMeta::Kind::kMissing) {
      return Status::NotFound("path '" + rel.text + "' does not exist");
    } else {
      return Status::PermissionDenied("path '" + rel.text + "' is refused: not a regular file");
    }
    std::vector<SearchMatch> out;
    for (const std::string& file : files) {
      LOOM_ASSIGN_OR_RETURN(RelPath frel, ParseRelPath(file, RootUse::kRefused));
      LOOM_ASSIGN_OR_RETURN(FileMeta fm, fs_.Stat(frel));
      if (fm.size > kMaxSearchFileBytes) continue;
      Result<std::string> content = fs_.ReadFile(frel);
      if (!content.ok() || LooksBinary(*content)) continue;
      std::vector<std::string_view> lines = SplitLines(*content);
      for (size_t i = 0; i < lines.size(); ++i) {
        if (lines[i].find(pattern) == std::string_view::npos) continue;
        out.push_back(
            {file, static_cast<int>(i + 1), std::string(lines[i].substr(0, kMaxSearchLineChars))});
        if (out.size() >= options.max_matches) return out;
      }
    }
    return out;
  }

  Result<SnapshotInfo> WriteFile(std::string_view path, std::string_view content) override {
    LOOM_ASSIGN_OR_RETURN(RelPath rel, ParseEditable(path));
    LOOM_RETURN_IF_ERROR(fs_.WriteFile(rel, content, 0644));
    LOOM_ASSIGN_OR_RETURN(FileMeta meta, fs_.Stat(rel));
    LOOM_ASSIGN_OR_RETURN(git_oid blob, CreateBlob(rel.text, content));
    std::vector<Update> updates{{rel.text, blob, ModeOf(meta), false}};
    return Record(updates, "write " + rel.text);
  }

  Result<SnapshotInfo> ReplaceInFile(std::string_view path, std::string_view old_text,
                                     std::string_view new_text) override {
    LOOM_ASSIGN_OR_RETURN(RelPath rel, ParseEditable(path));
    if (old_text.empty()) return Status::InvalidArgument("replace_in_file: old text is empty");
    LOOM_ASSIGN_OR_RETURN(std::string content, fs_.ReadFile(rel));
    std::string old_s(old_text), new_s(new_text);
    std::vector<size_t> at = FindAll(content, old_s);
    if (at.empty() && content.find("\r\n") != std::string::npos &&
        old_s.find('\n') != std::string::npos && old_s.find("\r\n") == std::string::npos) {
      // A CRLF file edited with LF text: match (and write) with the file's endings.
      old_s = ToCrlf(old_s);
      new_s = ToCrlf(new_s);
      at = FindAll(content, old_s);
    }
    if (at.empty()) {
      return Status::InvalidArgument("replace_in_file '" + rel.text +
                                     "': the old text was not found (it must match exactly, "
                                     "including whitespace)." +
                                     NearestCandidates(content, old_text));
    }
    if (at.size() > 1) {
      std::string lines;
      for (size_t i = 0; i < at.size() && i < 20; ++i) {
        lines += (i ? ", " : "") + std::to_string(LineOf(content, at[i]));
      }
      return Status::InvalidArgument("replace_in_file '" + rel.text + "': the old text occurs " +
                                     std::to_string(at.size()) + " times (at lines " + lines +
                                     "); include more surrounding text so it matches once");
    }
    content.replace(at[0], old_s.size(), new_s);
    LOOM_RETURN_IF_ERROR(fs_.WriteFile(rel, content, 0644));
    LOOM_ASSIGN_OR_RETURN(FileMeta meta, fs_.Stat(rel));
    LOOM_ASSIGN_OR_RETURN(git_oid blob, CreateBlob(rel.text, content));
    std::vector<Update> updates{{rel.text, blob, ModeOf(meta), false}};
    return Record(updates, "replace in " + rel.text);
  }

  Result<SnapshotInfo> DeleteFile(std::string_view path) override {
    LOOM_ASSIGN_OR_RETURN(RelPath rel, ParseEditable(path));
    LOOM_RETURN_IF_ERROR(fs_.Unlink(rel));
    fs_.PruneEmptyParents(rel);
    std::vector<Update> updates;
    if (InTree(rel.text)) updates.push_back({rel.text, {}, GIT_FILEMODE_BLOB, true});
    return Record(updates, "delete " + rel.text);
  }

  Result<SnapshotInfo> RenameFile(std::string_view from, std::string_view to) override {
    LOOM_ASSIGN_OR_RETURN(RelPath src, ParseEditable(from));
    LOOM_ASSIGN_OR_RETURN(RelPath dst, ParseEditable(to));
    if (src.text == dst.text) return Status::InvalidArgument("rename: source equals destination");
    LOOM_RETURN_IF_ERROR(fs_.Rename(src, dst));
    fs_.PruneEmptyParents(src);
    LOOM_ASSIGN_OR_RETURN(std::string content, fs_.ReadFile(dst));
    LOOM_ASSIGN_OR_RETURN(FileMeta meta, fs_.Stat(dst));
    LOOM_ASSIGN_OR_RETURN(git_oid blob, CreateBlob(dst.text, content));
    std::vector<Update> updates;
    if (InTree(src.text)) updates.push_back({src.text, {}, GIT_FILEMODE_BLOB, true});
    updates.push_back({dst.text, blob, ModeOf(meta), false});
    return Record(updates, "rename " + src.text + " -> " + dst.text);
  }

  Result<std::vector<SnapshotInfo>> ListSnapshots() override {
    std::vector<SnapshotInfo> chain;
    git_oid cur = head_;
    while (true) {
      LOOM_ASSIGN_OR_RETURN(GitPtr<git_commit> c, LookupCommit(repo_.get(), cur));
      int step = StepOf(c.get());
      SnapshotInfo s;
      s.step = std::max(0, step);
      s.commit = OidHex(cur);
      s.summary = step < 0 ? "base" : FirstLine(git_commit_message(c.get()));
      chain.push_back(std::move(s));
      if (step <= 0 || git_commit_parentcount(c.get()) == 0) break;
      cur = *git_commit_parent_id(c.get(), 0);
    }
    std::reverse(chain.begin(), chain.end());
    return chain;
  }

  Result<SnapshotDetail> InspectSnapshot(int step) override {
    LOOM_ASSIGN_OR_RETURN(std::vector<SnapshotInfo> chain, ListSnapshots());
    LOOM_ASSIGN_OR_RETURN(size_t i, IndexOfStep(chain, step));
    SnapshotDetail d;
    d.info = chain[i];
    git_oid head, base;
    git_oid_fromstr(&head, chain[i].commit.c_str());
    git_oid_fromstr(&base, chain[i == 0 ? 0 : i - 1].commit.c_str());
    LOOM_ASSIGN_OR_RETURN(d.diff, DiffCommits(repo_.get(), base, head));
    return d;
  }

  Result<SnapshotInfo> RollbackTo(int step) override {
    LOOM_ASSIGN_OR_RETURN(std::vector<SnapshotInfo> chain, ListSnapshots());
    LOOM_ASSIGN_OR_RETURN(size_t i, IndexOfStep(chain, step));
    git_oid target;
    git_oid_fromstr(&target, chain[i].commit.c_str());
    LOOM_ASSIGN_OR_RETURN(GitPtr<git_commit> tc, LookupCommit(repo_.get(), target));
    LOOM_ASSIGN_OR_RETURN(GitPtr<git_tree> tree, CommitTree(tc.get()));
    git_diff* raw = nullptr;
    LOOM_GIT(git_diff_tree_to_tree(&raw, repo_.get(), head_tree_.get(), tree.get(), nullptr),
             "cannot compare snapshots");
    GitPtr<git_diff> diff(raw);
    // Restore against the target tree: swap it in first so RestorePath reads from it.
    GitPtr<git_tree> previous = std::move(head_tree_);
    head_tree_ = std::move(tree);
    for (size_t k = 0; k < git_diff_num_deltas(diff.get()); ++k) {
      const git_diff_delta* d = git_diff_get_delta(diff.get(), k);
      Status s = RestorePath(d->new_file.path);
      if (!s.ok()) {
        head_tree_ = std::move(previous);
        return s.WithContext("rollback to step " + std::to_string(step));
      }
    }
    head_tree_ = std::move(previous);
    return RecordTree("rollback to step " + std::to_string(step), tc.get());
  }

  Result<std::string> CommitToBranch(const CommitRequest& request) override {
    std::string summary(request.summary);
    summary.erase(0, summary.find_first_not_of(" \t\r\n"));
    summary.erase(summary.find_last_not_of(" \t\r\n") + 1);
    if (summary.empty()) return Status::InvalidArgument("commit summary is empty");
    LOOM_ASSIGN_OR_RETURN(git_oid branch_head, BranchHead(repo_.get(), params_.branch));
    LOOM_ASSIGN_OR_RETURN(GitPtr<git_commit> parent, LookupCommit(repo_.get(), branch_head));
    if (git_oid_equal(git_commit_tree_id(parent.get()), git_tree_id(head_tree_.get()))) {
      return Status::FailedPrecondition("nothing to commit: branch '" + params_.branch +
                                        "' already has the latest snapshot's content");
    }
    std::string message = summary + "\n\nLoom-Task: " + params_.task_id + "\n";
    if (!request.feedback_ids.empty()) {
      message += "Loom-Feedback: ";
      for (size_t i = 0; i < request.feedback_ids.size(); ++i) {
        message += (i ? ", " : "") + request.feedback_ids[i];
      }
      message += "\n";
    }
    LOOM_ASSIGN_OR_RETURN(GitPtr<git_signature> sig, MakeSignature(params_.settings));
    git_oid id;
    const git_commit* parents[] = {parent.get()};
    LOOM_GIT(git_commit_create(&id, repo_.get(), nullptr, sig.get(), sig.get(), "UTF-8",
                               message.c_str(), head_tree_.get(), 1, parents),
             "cannot create the branch commit");
    GitPtr<git_reference> ref;
    LOOM_GIT(git_reference_create_matching(Out(ref), repo_.get(),
                                           ("refs/heads/" + params_.branch).c_str(), &id, 1,
                                           &branch_head, "loom: commit"),
             "cannot move branch '" + params_.branch + "' (did it move meanwhile?)");
    LOOM_ASSIGN_OR_RETURN(GitPtr<git_tree> old_tree, CommitTree(parent.get()));
    LOOM_RETURN_IF_ERROR(SyncIndex(old_tree.get(), head_tree_.get()));
    return OidHex(id);
  }

  Result<DiffReport> Diff() override {
    LOOM_ASSIGN_OR_RETURN(git_oid target, BranchHead(repo_.get(), params_.settings.target_branch));
    LOOM_ASSIGN_OR_RETURN(git_oid base, MergeBase(repo_.get(), head_, target));
    return DiffCommits(repo_.get(), base, head_);
  }

 private:
  struct Update {
    std::string path;
    git_oid blob;
    git_filemode_t mode;
    bool remove;
  };

  static git_filemode_t ModeOf(const FileMeta& m) {
    return (m.mode & 0111) ? GIT_FILEMODE_BLOB_EXECUTABLE : GIT_FILEMODE_BLOB;
  }

  static Result<size_t> IndexOfStep(const std::vector<SnapshotInfo>& chain, int step) {
    for (size_t i = 0; i < chain.size(); ++i) {
      if (chain[i].step == step) return i;
    }
    return Status::NotFound("no snapshot step " + std::to_string(step) + " (steps 0.." +
                            std::to_string(chain.back().step) + ")");
  }

  // Lexical confinement, then the allowed/protected globs, then submodules.
  Result<RelPath> ParseEditable(std::string_view path) {
    LOOM_ASSIGN_OR_RETURN(RelPath rel, ParseRelPath(path, RootUse::kRefused));
    const RepoSettings& s = params_.settings;
    bool ok = std::any_of(s.allowed_globs.begin(), s.allowed_globs.end(),
                          [&](const std::string& g) { return GlobMatch(g, rel.text); });
    if (!ok) {
      std::string allowed;
      for (const std::string& g : s.allowed_globs) allowed += (allowed.empty() ? "" : ", ") + g;
      return Status::PermissionDenied("path '" + rel.text +
                                      "' is refused: it is outside the allowed paths (" +
                                      (allowed.empty() ? "none" : allowed) + ")");
    }
    for (const std::string& g : s.protected_globs) {
      if (GlobMatch(g, rel.text)) {
        return Status::PermissionDenied("path '" + rel.text +
                                        "' is refused: it is protected (pattern '" + g + "')");
      }
    }
    std::string prefix;
    for (const std::string& part : rel.parts) {
      prefix += prefix.empty() ? part : "/" + part;
      git_tree_entry* e = nullptr;
      if (git_tree_entry_bypath(&e, head_tree_.get(), prefix.c_str()) != 0) break;
      GitPtr<git_tree_entry> entry(e);
      if (git_tree_entry_filemode(e) == GIT_FILEMODE_COMMIT) {
        return Status::PermissionDenied("path '" + rel.text + "' is refused: '" + prefix +
                                        "' is a submodule, and submodules are left alone");
      }
      if (git_tree_entry_type(e) != GIT_OBJECT_TREE) break;
    }
    return rel;
  }

  bool InTree(const std::string& path) const {
    GitPtr<git_tree_entry> entry;
    return git_tree_entry_bypath(Out(entry), head_tree_.get(), path.c_str()) == 0;
  }

  // Writes `content` as a blob, applying the repository's to-odb filters (CRLF
  // normalisation, ...) for `path` when attributes ask for them.
  Result<git_oid> CreateBlob(const std::string& path, std::string_view content) {
    git_filter_list* raw = nullptr;
    LOOM_GIT(git_filter_list_load(&raw, repo_.get(), nullptr, path.c_str(), GIT_FILTER_TO_ODB,
                                  GIT_FILTER_DEFAULT),
             "cannot load filters for '" + path + "'");
    GitPtr<git_filter_list> filters(raw);
    git_oid oid;
    if (filters) {
      GitBuf out;
      LOOM_GIT(
          git_filter_list_apply_to_buffer(out.get(), filters.get(), content.data(), content.size()),
          "cannot filter '" + path + "'");
      LOOM_GIT(git_blob_create_from_buffer(&oid, repo_.get(), out.view().data(), out.view().size()),
               "cannot store '" + path + "'");
    } else {
      LOOM_GIT(git_blob_create_from_buffer(&oid, repo_.get(), content.data(), content.size()),
               "cannot store '" + path + "'");
    }
    return oid;
  }

  Result<SnapshotInfo> Record(const std::vector<Update>& updates, const std::string& summary) {
    std::vector<git_tree_update> raw(updates.size());
    for (size_t i = 0; i < updates.size(); ++i) {
      raw[i].action = updates[i].remove ? GIT_TREE_UPDATE_REMOVE : GIT_TREE_UPDATE_UPSERT;
      raw[i].id = updates[i].blob;
      raw[i].filemode = updates[i].mode;
      raw[i].path = updates[i].path.c_str();
    }
    git_oid tree_id;
    LOOM_GIT(
        git_tree_create_updated(&tree_id, repo_.get(), head_tree_.get(), raw.size(), raw.data()),
        "cannot build the snapshot tree");
    LOOM_ASSIGN_OR_RETURN(GitPtr<git_tree> tree, LookupTree(repo_.get(), tree_id));
    return CommitSnapshot(std::move(tree), summary);
  }

  Result<SnapshotInfo> RecordTree(const std::string& summary, git_commit* source) {
    LOOM_ASSIGN_OR_RETURN(GitPtr<git_tree> tree, CommitTree(source));
    return CommitSnapshot(std::move(tree), summary);
  }

  Result<SnapshotInfo> CommitSnapshot(GitPtr<git_tree> tree, const std::string& summary) {
    LOOM_ASSIGN_OR_RETURN(GitPtr<git_commit> parent, LookupCommit(repo_.get(), head_));
    LOOM_ASSIGN_OR_RETURN(GitPtr<git_signature> sig, MakeSignature(params_.settings));
    int step = step_ + 1;
    std::string message = summary + "\n\n" + std::string(kStepTrailer) + std::to_string(step) +
                          "\nLoom-Task: " + params_.task_id + "\n";
    git_oid id;
    const git_commit* parents[] = {parent.get()};
    LOOM_GIT(git_commit_create(&id, repo_.get(), nullptr, sig.get(), sig.get(), "UTF-8",
                               message.c_str(), tree.get(), 1, parents),
             "cannot create snapshot commit");
    GitPtr<git_reference> ref;
    LOOM_GIT(git_reference_create_matching(Out(ref), repo_.get(), ref_name_.c_str(), &id, 1, &head_,
                                           nullptr),
             "cannot advance " + ref_name_ + " (is another process driving this task?)");
    head_ = id;
    head_tree_ = std::move(tree);
    step_ = step;
    return SnapshotInfo{step, OidHex(id), summary};
  }

  // Makes `path` in the worktree match head_tree_ (absent there: removed).
  Status RestorePath(const std::string& path) {
    LOOM_ASSIGN_OR_RETURN(RelPath rel, ParseRelPath(path, RootUse::kRefused));
    LOOM_ASSIGN_OR_RETURN(FileMeta meta, fs_.Stat(rel));
    git_tree_entry* e = nullptr;
    int rc = git_tree_entry_bypath(&e, head_tree_.get(), rel.text.c_str());
    if (rc == GIT_ENOTFOUND) {
      if (meta.kind == FileMeta::Kind::kDirectory || meta.kind == FileMeta::Kind::kMissing) {
        return Status::Ok();
      }
      LOOM_RETURN_IF_ERROR(fs_.Unlink(rel));
      fs_.PruneEmptyParents(rel);
      return Status::Ok();
    }
    LOOM_GIT(rc, "cannot look up '" + rel.text + "' in the snapshot");
    GitPtr<git_tree_entry> entry(e);
    git_filemode_t mode = git_tree_entry_filemode(e);
    if (mode == GIT_FILEMODE_COMMIT || mode == GIT_FILEMODE_TREE) return Status::Ok();
    git_blob* braw = nullptr;
    LOOM_GIT(git_blob_lookup(&braw, repo_.get(), git_tree_entry_id(e)),
             "cannot read blob of '" + rel.text + "'");
    GitPtr<git_blob> blob(braw);
    if (meta.kind == FileMeta::Kind::kSymlink) LOOM_RETURN_IF_ERROR(fs_.Unlink(rel));
    if (mode == GIT_FILEMODE_LINK) {
      std::string target(static_cast<const char*>(git_blob_rawcontent(braw)),
                         static_cast<size_t>(git_blob_rawsize(braw)));
      return fs_.WriteSymlink(rel, target);
    }
    LOOM_ASSIGN_OR_RETURN(std::string content, BlobForWorktree(braw, rel.text));
    return fs_.WriteFile(rel, content, mode == GIT_FILEMODE_BLOB_EXECUTABLE ? 0755 : 0644,
                         ModePolicy::kForce);
  }

  // Moves the worktree's index from `from` to `to` for the paths that differ. New
  // entries carry no stat data, so git status re-hashes just those files.
  Status SyncIndex(git_tree* from, git_tree* to) {
    git_index* iraw = nullptr;
    LOOM_GIT(git_repository_index(&iraw, repo_.get()), "cannot open the worktree index");
    GitPtr<git_index> index(iraw);
    git_diff* raw = nullptr;
    LOOM_GIT(git_diff_tree_to_tree(&raw, repo_.get(), from, to, nullptr), "cannot diff trees");
    GitPtr<git_diff> diff(raw);
    for (size_t i = 0; i < git_diff_num_deltas(diff.get()); ++i) {
      const git_diff_delta* d = git_diff_get_delta(diff.get(), i);
      if (d->status == GIT_DELTA_DELETED) {
        git_index_remove(index.get(), d->old_file.path, 0);
        continue;
      }
      git_index_entry entry{};
      entry.mode = d->new_file.mode;
      entry.id = d->new_file.id;
      entry.path = d->new_file.path;
      entry.file_size = static_cast<uint32_t>(d->new_file.size);
      LOOM_GIT(git_index_add(index.get(), &entry), "cannot update the index");
    }
    LOOM_GIT(git_index_write(index.get()), "cannot write the worktree index");
    return Status::Ok();
  }

  WorkspaceParams params_;
  GitPtr<git_repository> repo_;
  ConfinedDir fs_;
  WorkspaceInfo info_;
  ResumeReport resume_;
  std::string ref_name_;
  git_oid head_{};
  GitPtr<git_tree> head_tree_;
  int step_ = 0;
};

}  // namespace

Status ValidateTaskId(std::string_view id) {
  bool ok = !id.empty() && id.size() <= 64 && id.front() != '.' && id.front() != '-';
  for (char c : id) {
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-');
  }
  if (!ok || id.find("..") != std::string_view::npos || id.ends_with(".lock")) {
    return Status::InvalidArgument("bad task id '" + std::string(id) +
                                   "': use 1-64 of [A-Za-z0-9_.-], not starting with '.' or '-'");
  }
  return Status::Ok();
}

std::string NormalizeSlug(std::string_view slug) {
  std::string out;
  for (char c : slug) {
    if (std::isalnum(static_cast<unsigned char>(c)) && static_cast<unsigned char>(c) < 0x80) {
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
    if (out.size() >= 48) break;
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? "task" : out;
}

Result<GitPtr<git_signature>> MakeSignature(const RepoSettings& settings) {
  git_signature* raw = nullptr;
  LOOM_GIT(git_signature_now(&raw, settings.author_name.c_str(), settings.author_email.c_str()),
           "bad author '" + settings.author_name + " <" + settings.author_email + ">'");
  return GitPtr<git_signature>(raw);
}

Result<git_oid> MergeBase(git_repository* repo, const git_oid& a, const git_oid& b) {
  git_oid base;
  int rc = git_merge_base(&base, repo, &a, &b);
  if (rc == GIT_ENOTFOUND) {
    return Status::FailedPrecondition("commits " + OidHex(a) + " and " + OidHex(b) +
                                      " have no common ancestor");
  }
  LOOM_GIT(rc, "cannot find the merge base");
  return base;
}

Result<DiffReport> DiffCommits(git_repository* repo, const git_oid& base, const git_oid& head) {
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_commit> bc, LookupCommit(repo, base));
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_commit> hc, LookupCommit(repo, head));
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_tree> bt, CommitTree(bc.get()));
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_tree> ht, CommitTree(hc.get()));
  git_diff* raw = nullptr;
  git_diff_options opts = GIT_DIFF_OPTIONS_INIT;
  LOOM_GIT(git_diff_tree_to_tree(&raw, repo, bt.get(), ht.get(), &opts), "cannot diff");
  GitPtr<git_diff> diff(raw);
  git_diff_find_options fopts = GIT_DIFF_FIND_OPTIONS_INIT;
  fopts.flags = GIT_DIFF_FIND_RENAMES;
  LOOM_GIT(git_diff_find_similar(diff.get(), &fopts), "cannot detect renames");
  DiffReport report;
  report.base_commit = OidHex(base);
  report.head_commit = OidHex(head);
  size_t n = git_diff_num_deltas(diff.get());
  for (size_t i = 0; i < n; ++i) {
    git_patch* praw = nullptr;
    LOOM_GIT(git_patch_from_diff(&praw, diff.get(), i), "cannot build patch");
    GitPtr<git_patch> patch(praw);
    const git_diff_delta* d = git_diff_get_delta(diff.get(), i);
    FileStat fs;
    fs.path = d->new_file.path ? d->new_file.path : "";
    fs.old_path = d->old_file.path ? d->old_file.path : fs.path;
    switch (d->status) {
      case GIT_DELTA_ADDED:
        fs.change = FileStat::Change::kAdded;
        break;
      case GIT_DELTA_DELETED:
        fs.change = FileStat::Change::kDeleted;
        break;
      case GIT_DELTA_MODIFIED:
        fs.change = FileStat::Change::kModified;
        break;
      case GIT_DELTA_RENAMED:
        fs.change = FileStat::Change::kRenamed;
        break;
      case GIT_DELTA_TYPECHANGE:
        fs.change = FileStat::Change::kTypeChanged;
        break;
      default:
        fs.change = FileStat::Change::kOther;
        break;
    }
    fs.binary = (d->flags & GIT_DIFF_FLAG_BINARY) != 0;
    size_t adds = 0, dels = 0;
    if (praw) git_patch_line_stats(nullptr, &adds, &dels, praw);
    fs.additions = static_cast<int>(adds);
    fs.deletions = static_cast<int>(dels);
    report.files.push_back(std::move(fs));
  }
  GitBuf buf;
  LOOM_GIT(git_diff_to_buf(buf.get(), diff.get(), GIT_DIFF_FORMAT_PATCH), "cannot format diff");
  report.unified = std::string(buf.view());
  return report;
}

Result<std::unique_ptr<Workspace>> OpenWorkspaceAt(WorkspaceParams params, OpenMode mode) {
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_repository> repo, OpenRepo(params.worktree_path));
  LOOM_ASSIGN_OR_RETURN(ConfinedDir fs, ConfinedDir::Open(params.worktree_path));
  auto ws = std::make_unique<WorkspaceImpl>(std::move(params), std::move(repo), std::move(fs));
  LOOM_RETURN_IF_ERROR(ws->Load());
  if (mode == OpenMode::kResume) LOOM_RETURN_IF_ERROR(ws->Resume());
  return std::unique_ptr<Workspace>(std::move(ws));
}

}  // namespace loom::repos::internal
