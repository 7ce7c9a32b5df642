// Ownership of libgit2 handles: every C handle the module holds lives in a
// GitPtr<T>, a std::unique_ptr whose deleter calls the matching git_*_free.
// Private to repos/; public headers never include libgit2.
#pragma once

#include <git2.h>

#include <memory>
#include <string_view>

namespace loom::repos::internal {

struct GitDeleter {
  void operator()(git_repository* p) const { git_repository_free(p); }
  void operator()(git_reference* p) const { git_reference_free(p); }
  void operator()(git_commit* p) const { git_commit_free(p); }
  void operator()(git_tree* p) const { git_tree_free(p); }
  void operator()(git_tree_entry* p) const { git_tree_entry_free(p); }
  void operator()(git_blob* p) const { git_blob_free(p); }
  void operator()(git_object* p) const { git_object_free(p); }
  void operator()(git_signature* p) const { git_signature_free(p); }
  void operator()(git_index* p) const { git_index_free(p); }
  void operator()(git_index_conflict_iterator* p) const { git_index_conflict_iterator_free(p); }
  void operator()(git_diff* p) const { git_diff_free(p); }
  void operator()(git_patch* p) const { git_patch_free(p); }
  void operator()(git_worktree* p) const { git_worktree_free(p); }
  void operator()(git_reference_iterator* p) const { git_reference_iterator_free(p); }
  void operator()(git_filter_list* p) const { git_filter_list_free(p); }
  void operator()(git_revwalk* p) const { git_revwalk_free(p); }
  void operator()(git_remote* p) const { git_remote_free(p); }
};

template <typename T>
using GitPtr = std::unique_ptr<T, GitDeleter>;

// Hands a GitPtr to a libgit2 out-parameter and lets it own what comes back, so no
// handle is ever held raw: `LOOM_GIT(git_reference_lookup(Out(ref), repo, name), ...)`.
// The GitPtr takes the handle when the full expression ends (like C++23 out_ptr);
// it stays empty when the call fails.
template <typename T>
class GitOut {
 public:
  explicit GitOut(GitPtr<T>& owner) : owner_(owner) {}
  ~GitOut() { owner_.reset(raw_); }
  GitOut(const GitOut&) = delete;
  GitOut& operator=(const GitOut&) = delete;
  operator T**() { return &raw_; }

 private:
  GitPtr<T>& owner_;
  T* raw_ = nullptr;
};

template <typename T>
GitOut<T> Out(GitPtr<T>& owner) {
  return GitOut<T>(owner);
}

// A git_buf on the stack that is disposed when it goes out of scope.
class GitBuf {
 public:
  GitBuf() = default;
  ~GitBuf() { git_buf_dispose(&buf_); }
  GitBuf(const GitBuf&) = delete;
  GitBuf& operator=(const GitBuf&) = delete;
  git_buf* get() { return &buf_; }
  std::string_view view() const { return {buf_.ptr ? buf_.ptr : "", buf_.size}; }

 private:
  git_buf buf_ = GIT_BUF_INIT;
};

}  // namespace loom::repos::internal
