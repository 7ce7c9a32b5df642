// Scrubbing is a few linear passes over the text, one per kind of PII, each a
// hand-written scanner rather than a regular expression (std::regex is slow and
// recurses on long inputs; these run on every event). Secrets go first, so that
// a token holding an '@' or digits is masked as a secret whole.
#include "feedback/internal/scrub.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace loom::feedback::internal {
namespace {

bool IsAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsHex(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }
char Lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

bool StartsWithNoCase(std::string_view s, size_t at, std::string_view prefix) {
  if (at + prefix.size() > s.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (Lower(s[at + i]) != Lower(prefix[i])) return false;
  }
  return true;
}

bool TokenChar(char c) {
  return IsAlnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '+' || c == '/' ||
         c == '=';
}

// Secret-looking: 24+ token characters mixing letters and digits (a random key
// or session id), not a path or a dotted name.
bool LooksRandom(std::string_view w) {
  if (w.size() < 24) return false;
  int letters = 0, digits = 0;
  for (char c : w) {
    if (std::isalpha(static_cast<unsigned char>(c))) ++letters;
    if (IsDigit(c)) ++digits;
    if (c == '/' || c == '.') return false;
  }
  return letters >= 4 && digits >= 4;
}

constexpr std::array<std::string_view, 9> kKeyPrefixes = {
    "sk-", "sk_live_", "ghp_", "gho_", "github_pat_", "glpat-", "loom_", "AKIA", "xox"};

std::string ScrubSecrets(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    // "Bearer xyz", "Basic xyz", "Token xyz".
    bool boundary = i == 0 || !IsAlnum(s[i - 1]);
    if (boundary) {
      for (std::string_view scheme : {"bearer ", "basic ", "token "}) {
        if (StartsWithNoCase(s, i, scheme)) {
          size_t j = i + scheme.size();
          size_t k = j;
          while (k < s.size() && TokenChar(s[k])) ++k;
          if (k - j >= 8) {
            out.append(s.substr(i, scheme.size()));
            out += "[secret]";
            i = k;
            goto next;
          }
        }
      }
    }
    if (boundary && IsAlnum(s[i])) {
      // A word: a known key format, a secret-named key=value, or a random token.
      size_t k = i;
      while (k < s.size() && (IsAlnum(s[k]) || s[k] == '_' || s[k] == '-')) ++k;
      std::string_view word = s.substr(i, k - i);
      // key=value / key: value / "key": "value" with a secret-sounding key.
      if (IsSecretFieldName(word)) {
        size_t v = k;
        if (v < s.size() && s[v] == '"') ++v;
        while (v < s.size() && s[v] == ' ') ++v;
        if (v < s.size() && (s[v] == '=' || s[v] == ':')) {
          ++v;
          while (v < s.size() && s[v] == ' ') ++v;
          // "Authorization: Bearer xyz": the scheme and its credential go together.
          size_t scheme_end = v;
          for (std::string_view scheme : {"bearer ", "basic ", "token "}) {
            if (StartsWithNoCase(s, v, scheme)) scheme_end = v + scheme.size();
          }
          bool quoted = v < s.size() && (s[v] == '"' || s[v] == '\'');
          char quote = quoted ? s[v] : 0;
          if (quoted) ++v;
          size_t e = quoted ? v : scheme_end;
          if (quoted) {
            while (e < s.size() && s[e] != quote) ++e;
          } else {
            while (e < s.size() && !std::isspace(static_cast<unsigned char>(s[e])) && s[e] != '&' &&
                   s[e] != ',' && s[e] != ';')
              ++e;
          }
          if (e > v) {
            out.append(s.substr(i, v - i));
            out += "[secret]";
            i = e;
            continue;
          }
        }
      }
      size_t end = i;
      while (end < s.size() && TokenChar(s[end])) ++end;
      std::string_view token = s.substr(i, end - i);
      for (std::string_view p : kKeyPrefixes) {
        if (token.size() >= p.size() + 12 && token.substr(0, p.size()) == p) {
          out += "[secret]";
          i = end;
          goto next;
        }
      }
      if (LooksRandom(token)) {
        out += "[secret]";
        i = end;
        continue;
      }
      out.append(word);
      i = k;
      continue;
    }
    out += s[i++];
  next:;
  }
  return out;
}

bool EmailLocalChar(char c) {
  return IsAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}
bool EmailDomainChar(char c) { return IsAlnum(c) || c == '.' || c == '-'; }

std::string ScrubEmails(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t copied = 0;
  for (size_t at = s.find('@'); at != std::string_view::npos; at = s.find('@', at + 1)) {
    if (at < copied) continue;
    size_t b = at;
    while (b > copied && EmailLocalChar(s[b - 1])) --b;
    size_t e = at + 1;
    while (e < s.size() && EmailDomainChar(s[e])) ++e;
    while (e > at + 1 && s[e - 1] == '.') --e;  // a sentence's full stop
    std::string_view domain = s.substr(at + 1, e - at - 1);
    size_t dot = domain.find('.');
    if (b == at || domain.empty() || dot == std::string_view::npos || dot == 0) continue;
    // The top-level domain is letters ("name@1.2.3" is a version, not an address).
    std::string_view tld = domain.substr(domain.rfind('.') + 1);
    if (tld.size() < 2 || !std::all_of(tld.begin(), tld.end(), [](char c) {
          return std::isalpha(static_cast<unsigned char>(c)) != 0;
        })) {
      continue;
    }
    out.append(s.substr(copied, b - copied));
    out += "[email]";
    copied = e;
    at = e - 1;
  }
  out.append(s.substr(copied));
  return out;
}

// IPv4: four dot-separated decimal numbers <= 255, not part of a longer dotted
// run of numbers (a version like 1.2.3.4.5).
bool MatchIpv4(std::string_view s, size_t i, size_t* end) {
  size_t p = i;
  for (int part = 0; part < 4; ++part) {
    size_t b = p;
    int v = 0;
    while (p < s.size() && IsDigit(s[p]) && p - b < 3) v = v * 10 + (s[p++] - '0');
    if (p == b || v > 255 || (p < s.size() && IsDigit(s[p]))) return false;
    if (part < 3) {
      if (p >= s.size() || s[p] != '.') return false;
      ++p;
    }
  }
  if (p + 1 < s.size() && s[p] == '.' && IsDigit(s[p + 1])) return false;
  *end = p;
  return true;
}

// IPv6: hex groups and colons with "::" or seven colons, at least one digit
// group: "fe80::1", "2001:db8:0:0:0:0:2:1". A clock time (12:30:45) has neither.
bool MatchIpv6(std::string_view s, size_t i, size_t* end) {
  size_t p = i;
  int colons = 0;
  bool double_colon = false;
  int group_len = 0;
  while (p < s.size() && (IsHex(s[p]) || s[p] == ':')) {
    if (s[p] == ':') {
      ++colons;
      if (p + 1 < s.size() && s[p + 1] == ':') double_colon = true;
      group_len = 0;
    } else if (++group_len > 4) {
      return false;
    }
    ++p;
  }
  if (p < s.size() && (IsAlnum(s[p]) || s[p] == '_')) return false;
  if (colons > 7 || colons < 2 || (!double_colon && colons != 7)) return false;
  if (p - i < 3) return false;
  *end = p;
  return true;
}

std::string ScrubIps(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    bool boundary =
        i == 0 || !(IsAlnum(s[i - 1]) || s[i - 1] == '.' || s[i - 1] == ':' || s[i - 1] == '_');
    size_t end = 0;
    if (boundary && (IsHex(s[i]) || s[i] == ':')) {
      if (IsDigit(s[i]) && MatchIpv4(s, i, &end)) {
        out += "[ip]";
        i = end;
        continue;
      }
      if (MatchIpv6(s, i, &end)) {
        out += "[ip]";
        i = end;
        continue;
      }
      // Not an address: copy the whole word so that its tail is not matched.
      size_t k = i;
      while (k < s.size() && (IsAlnum(s[k]) || s[k] == '_')) ++k;
      if (k == i) k = i + 1;
      out.append(s.substr(i, k - i));
      i = k;
      continue;
    }
    out += s[i++];
  }
  return out;
}

bool Luhn(std::string_view digits) {
  int sum = 0;
  bool dbl = false;
  for (size_t i = digits.size(); i-- > 0;) {
    int d = digits[i] - '0';
    if (dbl) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    dbl = !dbl;
  }
  return sum % 10 == 0;
}

std::string ScrubCards(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (IsDigit(s[i]) && (i == 0 || !IsAlnum(s[i - 1]))) {
      // Digits with single spaces or dashes between groups.
      std::string digits;
      size_t p = i, last_digit_end = i;
      while (p < s.size() && digits.size() <= 19) {
        if (IsDigit(s[p])) {
          digits += s[p++];
          last_digit_end = p;
        } else if ((s[p] == ' ' || s[p] == '-') && p + 1 < s.size() && IsDigit(s[p + 1])) {
          ++p;
        } else {
          break;
        }
      }
      bool ends_word = last_digit_end >= s.size() || !IsAlnum(s[last_digit_end]);
      if (digits.size() >= 13 && digits.size() <= 19 && ends_word && Luhn(digits)) {
        out += "[card]";
        i = last_digit_end;
        continue;
      }
      while (i < s.size() && IsAlnum(s[i])) out += s[i++];
      continue;
    }
    out += s[i++];
  }
  return out;
}

}  // namespace

bool IsSecretFieldName(std::string_view name) {
  std::string n;
  for (char c : name) n += Lower(c);
  static constexpr std::array<std::string_view, 14> kWords = {
      "password", "passwd",     "secret", "token",   "api_key", "apikey",     "api-key",
      "auth",     "credential", "cookie", "session", "private", "access_key", "signature"};
  return std::any_of(kWords.begin(), kWords.end(),
                     [&](std::string_view w) { return n.find(w) != std::string::npos; });
}

std::string ScrubText(std::string_view text, const ScrubOptions& options) {
  std::string s(text);
  if (options.secrets) s = ScrubSecrets(s);
  if (options.emails) s = ScrubEmails(s);
  if (options.cards) s = ScrubCards(s);
  if (options.ip_addresses) s = ScrubIps(s);
  return s;
}

}  // namespace loom::feedback::internal
