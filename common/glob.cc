// Glob patterns over worktree-relative paths (rules in glob.h). Matching works on
// '/'-separated segments: a `**` segment stands for any run of segments, and within a segment
// `*` and `?` match characters. Both levels use the classic iterative wildcard
// algorithm (remember the last star, retry one element further on a mismatch),
// which is linear in practice and never recurses, so a hostile pattern cannot
// blow the stack.
#include "common/glob.h"

#include <string>
#include <vector>

namespace loom {
namespace {

std::vector<std::string_view> Split(std::string_view s) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t slash = s.find('/', start);
    if (slash == std::string_view::npos) {
      parts.push_back(s.substr(start));
      return parts;
    }
    parts.push_back(s.substr(start, slash - start));
    start = slash + 1;
  }
}

// `*` and `?` within one segment (neither ever sees a '/').
bool MatchSegment(std::string_view pattern, std::string_view text) {
  size_t p = 0, t = 0;
  size_t star_p = std::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star_p = p++;
      star_t = t;
    } else if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (star_p != std::string_view::npos) {
      p = star_p + 1;
      t = ++star_t;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

// The pattern's segments, `dir/` expanded to `dir/**`.
std::vector<std::string_view> PatternSegments(std::string_view pattern) {
  bool under = !pattern.empty() && pattern.back() == '/';
  if (under) pattern.remove_suffix(1);
  std::vector<std::string_view> segments = Split(pattern);
  if (under) segments.push_back("**");
  return segments;
}

}  // namespace

Status ValidateGlob(std::string_view pattern) {
  auto bad = [&](std::string_view why) {
    return Status::InvalidArgument("bad glob \"" + std::string(pattern) +
                                   "\": " + std::string(why));
  };
  if (pattern.empty()) return bad("empty pattern");
  if (pattern.size() > 4096) return bad("longer than 4096 characters");
  if (pattern.front() == '/') return bad("absolute; patterns are relative to the worktree root");
  for (char c : pattern) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return bad("control character");
    if (c == '[' || c == ']' || c == '{' || c == '}')
      return bad("character classes and braces are not supported; use * and ?");
    if (c == '\\') return bad("backslash; separate segments with /");
  }
  std::string_view body = pattern;
  if (body.back() == '/') body.remove_suffix(1);
  for (std::string_view segment : Split(body)) {
    if (segment.empty()) return bad("empty segment (//)");
    if (segment == "." || segment == "..") return bad("'.' and '..' segments are not allowed");
    if (segment != "**" && segment.find("**") != std::string_view::npos)
      return bad("** must be a whole segment (a/**/b); use * within a segment");
  }
  return Status::Ok();
}

bool GlobMatch(std::string_view pattern, std::string_view path) {
  if (!ValidateGlob(pattern).ok()) return false;
  std::vector<std::string_view> pat = PatternSegments(pattern);
  std::vector<std::string_view> segs = Split(path);
  size_t p = 0, s = 0;
  size_t star_p = std::string_view::npos, star_s = 0;
  while (s < segs.size()) {
    if (p < pat.size() && pat[p] == "**") {
      star_p = p++;
      star_s = s;
    } else if (p < pat.size() && MatchSegment(pat[p], segs[s])) {
      ++p;
      ++s;
    } else if (star_p != std::string_view::npos) {
      p = star_p + 1;
      s = ++star_s;
    } else {
      return false;
    }
  }
  while (p < pat.size() && pat[p] == "**") ++p;
  return p == pat.size();
}

}  // namespace loom
