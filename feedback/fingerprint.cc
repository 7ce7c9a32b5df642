// Fingerprints for deduplication. Two reports are "the same" when they are of
// the same kind, their titles match once volatile parts (numbers, hex ids,
// punctuation, case, spacing) are removed, and their top stack frames match once
// line numbers and addresses are removed. Crash reporters (Sentry, Crashpad)
// group the same way: the first frames identify a crash site.
#include <cctype>
#include <sstream>

#include "common/crypto.h"
#include "feedback/intake.h"

namespace loom::feedback {
namespace {

// Lower-cases, turns runs of digits (and hex-looking words) into '#', drops
// punctuation other than '_', and collapses whitespace.
std::string Normalise(std::string_view s) {
  std::string out;
  bool space = false;
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (std::isdigit(c) || (c == '0' && i + 1 < s.size() && (s[i + 1] == 'x' || s[i + 1] == 'X'))) {
      // A number or a hex literal: consume the whole alnum run.
      while (i < s.size() && std::isalnum(static_cast<unsigned char>(s[i]))) ++i;
      if (space && !out.empty()) out += ' ';
      space = false;
      out += '#';
      continue;
    }
    if (std::isspace(c)) {
      space = true;
      ++i;
      continue;
    }
    if (std::isalpha(c) || c == '_' || c >= 0x80) {
      if (space && !out.empty()) out += ' ';
      space = false;
      out += static_cast<char>(std::tolower(c));
    } else {
      space = true;  // punctuation separates words
    }
    ++i;
  }
  return out;
}

bool LooksLikeFrame(std::string_view line) {
  size_t p = line.find_first_not_of(" \t");
  if (p == std::string_view::npos) return false;
  line = line.substr(p);
  return line.rfind("at ", 0) == 0 || line.rfind("File \"", 0) == 0 || line.rfind("#", 0) == 0 ||
         line.find(".go:") != std::string_view::npos || line.find(".rs:") != std::string_view::npos;
}

}  // namespace

std::string Fingerprint(const Item& item) {
  std::string key = item.kind + "\n" + Normalise(item.title) + "\n";
  if (item.stack_trace) {
    std::istringstream in(*item.stack_trace);
    std::string line;
    int frames = 0;
    while (frames < 3 && std::getline(in, line)) {
      if (!LooksLikeFrame(line)) continue;
      key += Normalise(line) + "\n";
      ++frames;
    }
  }
  return Sha256Hex(key).substr(0, 32);
}

}  // namespace loom::feedback
