// InitRepository: a new repository whose first commit holds a directory's files
// (for `loom demo` and tests). Everything through libgit2: init, add all to the
// index (honouring .gitignore), write the tree, commit on `branch`.
#include <git2.h>

#include "repos/internal/git_util.h"
#include "repos/workspace.h"

namespace loom::repos {

using internal::GitError;
using internal::GitPtr;

Result<std::string> InitRepository(const std::string& dir, const std::string& branch,
                                   const std::string& message, const RepoSettings& author) {
  internal::EnsureLibgit2();
  git_repository_init_options opts = GIT_REPOSITORY_INIT_OPTIONS_INIT;
  opts.flags = GIT_REPOSITORY_INIT_MKPATH | GIT_REPOSITORY_INIT_NO_REINIT;
  std::string head = "refs/heads/" + branch;
  opts.initial_head = head.c_str();
  git_repository* raw = nullptr;
  if (int rc = git_repository_init_ext(&raw, dir.c_str(), &opts); rc != 0) {
    return GitError(rc, "creating a repository in " + dir);
  }
  GitPtr<git_repository> repo(raw);
  git_index* raw_index = nullptr;
  if (int rc = git_repository_index(&raw_index, repo.get()); rc != 0) {
    return GitError(rc, "opening the index of " + dir);
  }
  GitPtr<git_index> index(raw_index);
  char everything[] = "*";
  char* patterns[] = {everything};
  git_strarray paths = {patterns, 1};
  if (int rc = git_index_add_all(index.get(), &paths, GIT_INDEX_ADD_DEFAULT, nullptr, nullptr);
      rc != 0) {
    return GitError(rc, "adding the files of " + dir);
  }
  if (int rc = git_index_write(index.get()); rc != 0) return GitError(rc, "writing the index");
  git_oid tree_id, commit_id;
  if (int rc = git_index_write_tree(&tree_id, index.get()); rc != 0) {
    return GitError(rc, "writing the tree of " + dir);
  }
  git_tree* raw_tree = nullptr;
  if (int rc = git_tree_lookup(&raw_tree, repo.get(), &tree_id); rc != 0) {
    return GitError(rc, "reading the new tree");
  }
  GitPtr<git_tree> tree(raw_tree);
  git_signature* raw_sig = nullptr;
  if (int rc = git_signature_now(&raw_sig, author.author_name.c_str(), author.author_email.c_str());
      rc != 0) {
    return GitError(rc, "making the author signature");
  }
  GitPtr<git_signature> sig(raw_sig);
  if (int rc = git_commit_create(&commit_id, repo.get(), "HEAD", sig.get(), sig.get(), nullptr,
                                 message.c_str(), tree.get(), 0, nullptr);
      rc != 0) {
    return GitError(rc, "committing the files of " + dir);
  }
  return internal::OidHex(commit_id);
}

}  // namespace loom::repos
