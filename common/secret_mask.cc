// SecretMasker. Each value is expanded once, when added, into the forms a
// payload may print (see SecretEncodings); masking is then a plain search for
// each form, longest first, followed by one pass for pieces cut from the start
// or the end of a value. Encoded forms shorter than kMinFragment are left out:
// they would mask ordinary text and say little about the value.
#include "common/secret_mask.h"

#include <algorithm>
#include <mutex>

namespace loom {
namespace {

std::string Hex(std::string_view s, const char* digits) {
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

// Base64 of `s` without '=' padding.
std::string Base64(std::string_view s, const char* alphabet) {
  std::string out;
  size_t i = 0;
  for (; i + 3 <= s.size(); i += 3) {
    uint32_t v = (uint8_t(s[i]) << 16) | (uint8_t(s[i + 1]) << 8) | uint8_t(s[i + 2]);
    for (int shift : {18, 12, 6, 0}) out += alphabet[(v >> shift) & 63];
  }
  size_t rest = s.size() - i;
  if (rest > 0) {
    uint32_t v = uint8_t(s[i]) << 16;
    if (rest == 2) v |= uint8_t(s[i + 1]) << 8;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    if (rest == 2) out += alphabet[(v >> 6) & 63];
  }
  return out;
}

// The characters of base64(<k bytes> + value + <more bytes>) that depend on
// `value` alone, whatever the bytes around it are: how the value reads inside
// any base64 text where it starts k bytes after a 3-byte boundary.
std::string Base64Core(const std::string& value, size_t k, const char* alphabet) {
  std::string enc = Base64(std::string(k, '\0') + value, alphabet);
  size_t total = k + value.size();
  size_t skip = (4 * k + 2) / 3;  // characters that hold bits of the k bytes
  size_t full = total * 4 / 3;    // characters with no bits of what follows
  if (full <= skip) return "";
  return enc.substr(skip, full - skip);
}

std::string PercentEncode(std::string_view s, const char* digits) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 15];
    }
  }
  return out;
}

constexpr const char* kLowerHex = "0123456789abcdef";
constexpr const char* kUpperHex = "0123456789ABCDEF";
constexpr const char* kBase64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr const char* kBase64Url =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

struct Range {
  size_t begin, end;
  const std::string* name;
};

}  // namespace

std::vector<std::string> SecretEncodings(const std::string& value) {
  std::vector<std::string> forms = {value};
  auto add = [&](std::string form) {
    if (form.size() < SecretMasker::kMinFragment) return;
    if (std::find(forms.begin(), forms.end(), form) == forms.end())
      forms.push_back(std::move(form));
  };
  add(Hex(value, kLowerHex));
  add(Hex(value, kUpperHex));
  for (size_t k = 0; k < 3; ++k) {
    add(Base64Core(value, k, kBase64));
    add(Base64Core(value, k, kBase64Url));
  }
  add(PercentEncode(value, kUpperHex));
  add(PercentEncode(value, kLowerHex));
  std::string escaped = DumpJson(Json(value));
  add(escaped.substr(1, escaped.size() - 2));
  return forms;
}

void SecretMasker::Add(const std::string& name, const std::string& value) {
  if (value.empty()) return;
  std::unique_lock lock(mu_);
  for (const auto& v : values_) {
    if (v.name == name && v.value == value) return;
  }
  values_.push_back({name, value});
  for (auto& form : SecretEncodings(value)) needles_.push_back({std::move(form), name});
  std::stable_sort(needles_.begin(), needles_.end(),
                   [](const Needle& a, const Needle& b) { return a.text.size() > b.text.size(); });
}

bool SecretMasker::empty() const {
  std::shared_lock lock(mu_);
  return values_.empty();
}

std::string SecretMasker::Mask(std::string_view text) const {
  std::shared_lock lock(mu_);
  return MaskLocked(text);
}

std::string SecretMasker::MaskLocked(std::string_view in) const {
  std::string text(in);
  if (values_.empty()) return text;
  for (const auto& n : needles_) {
    std::string mask = "[secret " + n.name + "]";
    for (size_t at = text.find(n.text); at != std::string::npos;
         at = text.find(n.text, at + mask.size())) {
      text.replace(at, n.text.size(), mask);
    }
  }
  // Pieces of a value cut at its end (a head kept) or at its start (a tail kept).
  std::vector<Range> cut;
  for (const auto& v : values_) {
    const std::string& s = v.value;
    if (s.size() <= kMinFragment) continue;
    std::string_view head(s.data(), kMinFragment),
        tail(s.data() + s.size() - kMinFragment, kMinFragment);
    for (size_t at = text.find(head); at != std::string::npos; at = text.find(head, at + 1)) {
      size_t n = kMinFragment;
      while (n < s.size() && at + n < text.size() && text[at + n] == s[n]) ++n;
      cut.push_back({at, at + n, &v.name});
    }
    for (size_t at = text.find(tail); at != std::string::npos; at = text.find(tail, at + 1)) {
      size_t end = at + kMinFragment, n = kMinFragment;
      while (n < s.size() && end > n && text[end - n - 1] == s[s.size() - n - 1]) ++n;
      cut.push_back({end - n, end, &v.name});
    }
  }
  if (cut.empty()) return text;
  std::sort(cut.begin(), cut.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  std::string out;
  size_t pos = 0;
  for (size_t i = 0; i < cut.size();) {
    size_t begin = cut[i].begin, end = cut[i].end;
    const std::string* name = cut[i].name;
    for (++i; i < cut.size() && cut[i].begin <= end; ++i) end = std::max(end, cut[i].end);
    out.append(text, pos, begin - pos);
    out += "[secret " + *name + "]";
    pos = end;
  }
  out.append(text, pos, std::string::npos);
  return out;
}

Json SecretMasker::MaskJson(const Json& j, int max_depth) const {
  std::shared_lock lock(mu_);
  if (values_.empty()) return j;
  return MaskJsonLocked(j, max_depth);
}

Json SecretMasker::MaskJsonLocked(const Json& j, int depth_left) const {
  if (j.is_string()) return MaskLocked(j.get_ref<const std::string&>());
  if (!j.is_structured()) return j;
  if (depth_left <= 0) return "[nested too deep to show]";
  if (j.is_array()) {
    Json out = Json::array();
    for (const auto& e : j) out.push_back(MaskJsonLocked(e, depth_left - 1));
    return out;
  }
  Json out = Json::object();
  for (auto it = j.begin(); it != j.end(); ++it) {
    out[MaskLocked(it.key())] = MaskJsonLocked(it.value(), depth_left - 1);
  }
  return out;
}

}  // namespace loom
