#include "orchestrator/crash_source.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <sstream>
#include <vector>

#include "repos/workspace.h"

namespace loom {
namespace {

constexpr int kAround = 3;  // lines shown before and after the frame's

bool IsHexCommit(const std::string& s) {
  if (s.size() < 7 || s.size() > 40) return false;
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// "    at fn (file:12)" or "    at fn (file:12:5)", not a library frame: file, line.
std::optional<std::pair<std::string, int>> InAppFrame(const std::string& line) {
  const std::string at = "    at ";
  if (line.rfind(at, 0) != 0 || line.size() < 2 || line.back() != ')') return std::nullopt;
  size_t open = line.rfind(" (");
  if (open == std::string::npos || open < at.size()) return std::nullopt;
  std::string loc = line.substr(open + 2, line.size() - open - 3);
  // file:line[:col]; the file may hold colons itself (a URL).
  std::vector<size_t> colons;
  for (size_t i = 0; i < loc.size(); ++i) {
    if (loc[i] == ':') colons.push_back(i);
  }
  auto digits = [&](size_t from, size_t to) {
    if (from >= to) return false;
    for (size_t i = from; i < to; ++i) {
      if (!std::isdigit(static_cast<unsigned char>(loc[i]))) return false;
    }
    return true;
  };
  if (colons.empty()) return std::nullopt;
  size_t last = colons.back();
  size_t file_end = last;
  size_t line_from = last + 1, line_to = loc.size();
  if (colons.size() >= 2 && digits(last + 1, loc.size()) &&
      digits(colons[colons.size() - 2] + 1, last)) {
    file_end = colons[colons.size() - 2];  // file:line:col
    line_from = file_end + 1;
    line_to = last;
  }
  if (!digits(line_from, line_to) || line_to - line_from > 7) return std::nullopt;
  return std::pair{loc.substr(0, file_end), std::stoi(loc.substr(line_from, line_to - line_from))};
}

// The paths to try for a frame's file, longest first.
std::vector<std::string> Candidates(std::string file) {
  if (size_t scheme = file.find("://"); scheme != std::string::npos) {
    size_t path = file.find('/', scheme + 3);
    file = path == std::string::npos ? "" : file.substr(path);
  }
  if (size_t q = file.find_first_of("?#"); q != std::string::npos) file.resize(q);
  std::vector<std::string> out;
  while (!file.empty()) {
    while (file.rfind("./", 0) == 0) file.erase(0, 2);
    while (!file.empty() && file[0] == '/') file.erase(0, 1);
    if (file.empty() || file.find("..") != std::string::npos) break;
    out.push_back(file);
    size_t slash = file.find('/');
    if (slash == std::string::npos) break;
    file.erase(0, slash + 1);
  }
  return out;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

}  // namespace

std::string WithSourceAtCommit(const std::string& instructions, const std::string& repo_path) {
  const std::string commit_label = "\nCommit:\n";
  size_t c = instructions.find(commit_label);
  size_t trace = instructions.find("\nStack trace:\n");
  if (c == std::string::npos || trace == std::string::npos) return instructions;
  size_t c_from = c + commit_label.size();
  std::string commit = instructions.substr(c_from, instructions.find('\n', c_from) - c_from);
  if (!IsHexCommit(commit)) return instructions;

  std::vector<std::string> lines = Lines(instructions);
  // The line index where the stack trace starts.
  size_t first = 0;
  for (size_t offset = 0; first < lines.size(); ++first) {
    if (offset > trace) break;
    offset += lines[first].size() + 1;
  }
  std::map<std::string, std::optional<std::vector<std::string>>> files;  // by candidate path
  std::string out;
  bool added = false;
  for (size_t i = 0; i < lines.size(); ++i) {
    out += lines[i] + "\n";
    if (i < first) continue;
    auto frame = InAppFrame(lines[i]);
    if (!frame) continue;
    if (i + 1 < lines.size()) {
      const std::string& next = lines[i + 1];
      bool source = next.rfind("      > ", 0) == 0 ||
                    (next.rfind("        ", 0) == 0 && next.find(" | ") != std::string::npos);
      if (source) continue;  // the SDK sent its lines
    }
    for (const std::string& path : Candidates(frame->first)) {
      auto it = files.find(path);
      if (it == files.end()) {
        auto text = repos::ReadFileAtCommit(repo_path, commit, path);
        std::optional<std::vector<std::string>> read;
        if (text.ok()) read = Lines(*text);
        it = files.emplace(path, std::move(read)).first;
      }
      if (!it->second) continue;
      const std::vector<std::string>& src = *it->second;
      int at = frame->second;
      if (at < 1 || at > static_cast<int>(src.size())) break;
      for (int n = std::max(1, at - kAround); n <= std::min<int>(src.size(), at + kAround); ++n) {
        out += std::string(n == at ? "      > " : "        ") + std::to_string(n) + " | " +
               src[n - 1] + "\n";
      }
      out += "        (" + path + " at " + commit + ", read by Loom)\n";
      added = true;
      break;
    }
  }
  if (instructions.empty() || instructions.back() != '\n') out.pop_back();
  return added ? out : instructions;
}

}  // namespace loom
