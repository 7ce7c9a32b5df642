// A repos::Workspace held in memory: files in a map, each edit a snapshot step,
// the branch a copy of the files at the last commit. Paths are taken as given
// (no confinement beyond refusing absolute paths and `..`). `path` is where the
// worktree would be (the agent stats files there; nothing is written).
// Thread-compatible.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "repos/workspace.h"

namespace loom {

class FakeWorkspace : public repos::Workspace {
 public:
  using Files = std::map<std::string, std::string>;

  FakeWorkspace(std::string path, Files files) : base_(std::move(files)) {
    info_ = {"1", "loom/1-fake", std::move(path), "base-commit"};
    steps_.push_back(base_);
    committed_ = base_;
  }

  const Files& files() const { return steps_.back(); }
  int commits() const { return commits_; }

  const repos::WorkspaceInfo& info() const override { return info_; }
  const repos::ResumeReport& resume_report() const override { return report_; }

  Result<std::string> ReadFile(std::string_view path, int start_line = 0,
                               int end_line = 0) override {
    auto it = files().find(std::string(path));
    if (it == files().end()) return Status::NotFound(std::string(path) + ": no such file");
    if (start_line == 0 && end_line == 0) return it->second;
    std::string out, line;
    int n = 0;
    for (char c : it->second) {
      line += c;
      if (c != '\n') continue;
      ++n;
      if (n >= start_line && (end_line == 0 || n <= end_line)) out += line;
      line.clear();
    }
    return out;
  }

  Result<std::vector<repos::FileEntry>> ListFiles(std::string_view path) override {
    std::string dir = path == "." ? "" : std::string(path);
    if (!dir.empty() && dir.back() != '/') dir += '/';
    std::map<std::string, repos::FileEntry::Kind> entries;
    for (const auto& [name, content] : files()) {
      if (name.compare(0, dir.size(), dir) != 0) continue;
      std::string rest = name.substr(dir.size());
      size_t slash = rest.find('/');
      if (slash == std::string::npos) {
        entries[dir + rest] = repos::FileEntry::Kind::kFile;
      } else {
        entries[dir + rest.substr(0, slash)] = repos::FileEntry::Kind::kDirectory;
      }
    }
    if (entries.empty() && !dir.empty())
      return Status::NotFound(std::string(path) + ": no such directory");
    std::vector<repos::FileEntry> out;
    for (const auto& [name, kind] : entries) out.push_back({name, kind, 0});
    return out;
  }

  Result<std::vector<repos::SearchMatch>> Search(std::string_view pattern, std::string_view path,
                                                 repos::SearchOptions = {}) override {
    std::vector<repos::SearchMatch> out;
    for (const auto& [name, content] : files()) {
      if (name.compare(0, path.size(), path) != 0) continue;
      int n = 0;
      size_t start = 0;
      while (start < content.size()) {
        size_t end = content.find('\n', start);
        if (end == std::string::npos) end = content.size();
        std::string line = content.substr(start, end - start);
        ++n;
        if (line.find(pattern) != std::string::npos) out.push_back({name, n, line});
        start = end + 1;
      }
    }
    return out;
  }

  Result<repos::SnapshotInfo> WriteFile(std::string_view path, std::string_view content) override {
    if (Status s = Check(path); !s.ok()) return s;
    Files next = files();
    next[std::string(path)] = std::string(content);
    return Step(std::move(next), "write " + std::string(path));
  }

  Result<repos::SnapshotInfo> ReplaceInFile(std::string_view path, std::string_view old_text,
                                            std::string_view new_text) override {
    if (Status s = Check(path); !s.ok()) return s;
    auto it = files().find(std::string(path));
    if (it == files().end()) return Status::NotFound(std::string(path) + ": no such file");
    size_t at = it->second.find(old_text);
    if (at == std::string::npos || it->second.find(old_text, at + 1) != std::string::npos) {
      return Status::InvalidArgument("the old text must occur exactly once in " +
                                     std::string(path));
    }
    Files next = files();
    next[std::string(path)].replace(at, old_text.size(), new_text);
    return Step(std::move(next), "replace in " + std::string(path));
  }

  Result<repos::SnapshotInfo> DeleteFile(std::string_view path) override {
    Files next = files();
    if (next.erase(std::string(path)) == 0) return Status::NotFound(std::string(path));
    return Step(std::move(next), "delete " + std::string(path));
  }

  Result<repos::SnapshotInfo> RenameFile(std::string_view from, std::string_view to) override {
    Files next = files();
    auto it = next.find(std::string(from));
    if (it == next.end()) return Status::NotFound(std::string(from));
    if (next.count(std::string(to))) return Status::AlreadyExists(std::string(to));
    next[std::string(to)] = it->second;
    next.erase(std::string(from));
    return Step(std::move(next), "rename " + std::string(from));
  }

  Result<std::vector<repos::SnapshotInfo>> ListSnapshots() override {
    std::vector<repos::SnapshotInfo> out;
    for (size_t i = 0; i < steps_.size(); ++i) {
      out.push_back({static_cast<int>(i), "snap-" + std::to_string(i), ""});
    }
    return out;
  }

  Result<repos::SnapshotDetail> InspectSnapshot(int step) override {
    if (step < 0 || static_cast<size_t>(step) >= steps_.size()) return Status::NotFound("step");
    repos::SnapshotDetail d;
    d.info = {step, "snap-" + std::to_string(step), ""};
    return d;
  }

  Result<repos::SnapshotInfo> RollbackTo(int step) override {
    if (step < 0 || static_cast<size_t>(step) >= steps_.size()) return Status::NotFound("step");
    return Step(steps_[step], "rollback to " + std::to_string(step));
  }

  Result<std::string> CommitToBranch(const repos::CommitRequest& request) override {
    if (files() == committed_) return Status::FailedPrecondition("nothing changed");
    committed_ = files();
    last_message_ = request.summary;
    return "commit-" + std::to_string(++commits_);
  }

  Result<repos::DiffReport> Diff() override {
    repos::DiffReport d;
    d.base_commit = info_.base_commit;
    for (const auto& [name, content] : files()) {
      auto it = base_.find(name);
      if (it == base_.end()) {
        d.files.push_back({name, name, repos::FileStat::Change::kAdded, 0, 0, false});
      } else if (it->second != content) {
        d.files.push_back({name, name, repos::FileStat::Change::kModified, 0, 0, false});
      }
    }
    for (const auto& [name, content] : base_) {
      if (!files().count(name)) {
        d.files.push_back({name, name, repos::FileStat::Change::kDeleted, 0, 0, false});
      }
    }
    return d;
  }

 private:
  static Status Check(std::string_view path) {
    if (path.empty() || path[0] == '/' || path.find("..") != std::string_view::npos) {
      return Status::PermissionDenied(std::string(path) + " is outside the worktree");
    }
    return Status::Ok();
  }

  Result<repos::SnapshotInfo> Step(Files next, std::string summary) {
    steps_.push_back(std::move(next));
    int step = static_cast<int>(steps_.size()) - 1;
    return repos::SnapshotInfo{step, "snap-" + std::to_string(step), std::move(summary)};
  }

  repos::WorkspaceInfo info_;
  repos::ResumeReport report_;
  Files base_;
  std::vector<Files> steps_;  // step 0: base_
  Files committed_;
  int commits_ = 0;
  std::string last_message_;
};

}  // namespace loom
