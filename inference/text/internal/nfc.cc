// NFC as UAX #15 defines it: full canonical decomposition (tables + algorithmic
// Hangul), canonical ordering of combining marks, then canonical composition of each
// starter with the following unblocked characters (the Unicode sample code's
// internalCompose). The quick check skips all of it for text that is NFC already.
#include "inference/text/internal/nfc.h"

#include <cstdint>
#include <vector>

#include "inference/text/internal/pre_tokenize.h"
#include "inference/text/internal/unicode_tables.h"

namespace loom::inference::internal {
namespace {

constexpr uint32_t kInvalidBase = 0x110000;  // kInvalidBase + byte: an invalid byte

constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr uint32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

std::vector<uint32_t> DecodeUtf8(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    uint32_t cp = 0, min = 0;
    if (b0 < 0x80) {
      len = 1, cp = b0;
    } else if ((b0 & 0xE0) == 0xC0) {
      len = 2, cp = b0 & 0x1F, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3, cp = b0 & 0x0F, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4, cp = b0 & 0x07, min = 0x10000;
    }
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      ok = (b & 0xC0) == 0x80;
      cp = (cp << 6) | (b & 0x3F);
    }
    ok = ok && cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (!ok) {
      out.push_back(kInvalidBase + b0);
      i += 1;
    } else {
      out.push_back(cp);
      i += len;
    }
  }
  return out;
}

void EncodeUtf8(uint32_t cp, std::string* out) {
  if (cp >= kInvalidBase) {
    out->push_back(static_cast<char>(cp - kInvalidBase));
  } else {
    AppendUtf8(cp, out);
  }
}

uint8_t Ccc(uint32_t cp) { return cp >= kInvalidBase ? 0 : unicode::CombiningClass(cp); }

void Decompose(uint32_t cp, std::vector<uint32_t>* out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out->push_back(kLBase + s / kNCount);
    out->push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out->push_back(kTBase + s % kTCount);
    return;
  }
  uint32_t parts[2];
  const int n = cp >= kInvalidBase ? 0 : unicode::CanonicalDecomposition(cp, parts);
  if (n == 0) {
    out->push_back(cp);
    return;
  }
  for (int k = 0; k < n; ++k) Decompose(parts[k], out);
}

uint32_t Compose(uint32_t a, uint32_t b) {
  if (a >= kInvalidBase || b >= kInvalidBase) return 0;
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  return unicode::PrimaryComposite(a, b);
}

}  // namespace

bool IsNfcQuick(std::string_view utf8) {
  uint8_t last_ccc = 0;
  for (uint32_t cp : DecodeUtf8(utf8)) {
    if (cp < 0x300 || cp >= kInvalidBase) {
      last_ccc = 0;
      continue;
    }
    const uint8_t ccc = unicode::CombiningClass(cp);
    if ((ccc != 0 && ccc < last_ccc) || !unicode::NfcQuickCheckYes(cp)) return false;
    last_ccc = ccc;
  }
  return true;
}

std::string ToNfc(std::string_view utf8) {
  if (IsNfcQuick(utf8)) return std::string(utf8);
  std::vector<uint32_t> d;
  for (uint32_t cp : DecodeUtf8(utf8)) Decompose(cp, &d);
  // Canonical ordering: stable-sort each run of non-starters by combining class.
  for (size_t i = 1; i < d.size(); ++i) {
    const uint8_t c = Ccc(d[i]);
    if (c == 0) continue;
    for (size_t j = i; j > 0 && Ccc(d[j - 1]) > c; --j) std::swap(d[j - 1], d[j]);
  }
  // Canonical composition.
  std::vector<uint32_t> out;
  out.reserve(d.size());
  size_t starter = 0;
  bool have_starter = false;
  int last_class = 0;
  for (uint32_t cp : d) {
    const int cls = Ccc(cp);
    if (have_starter && (last_class < cls || last_class == 0)) {
      if (const uint32_t composite = Compose(out[starter], cp); composite != 0) {
        out[starter] = composite;
        continue;
      }
    }
    if (cls == 0) {
      starter = out.size();
      have_starter = true;
    }
    last_class = have_starter ? cls : 256;  // marks before any starter compose with nothing
    out.push_back(cp);
  }
  std::string result;
  result.reserve(utf8.size());
  for (uint32_t cp : out) EncodeUtf8(cp, &result);
  return result;
}

}  // namespace loom::inference::internal
