// OutputText: pending tokens are decoded as a group once their bytes end on a
// character boundary (or after 4 tokens, in case the model emits invalid
// UTF-8). After each append the new tail of the text is searched for every stop
// string, starting far enough back to see one that straddles the old end; the
// longest suffix that is a proper prefix of a stop string is held back.
#include "inference/engine/output_text.h"

#include <algorithm>

namespace loom::inference {
namespace {

// Length of the longest prefix of `s` that ends on a complete UTF-8 character
// (an incomplete trailing sequence of up to 3 bytes is excluded).
size_t CompleteUtf8Prefix(std::string_view s) {
  size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

}  // namespace

OutputText::OutputText(Detokenizer detokenize, std::vector<std::string> stop)
    : detokenize_(std::move(detokenize)) {
  for (auto& s : stop) {
    if (s.empty()) continue;
    stop_.push_back(std::move(s));
  }
}

bool OutputText::Append(int32_t token) {
  if (stopped_ || !detokenize_) return stopped_;
  pending_.push_back(token);
  std::string bytes = detokenize_(pending_);
  // A decoder that replaces invalid bytes ends a split character with U+FFFD.
  bool replaced_tail = bytes.ends_with("\xEF\xBF\xBD");
  if ((CompleteUtf8Prefix(bytes) < bytes.size() || replaced_tail) && pending_.size() < 4) {
    return false;
  }
  pending_.clear();
  size_t old_size = text_.size();
  text_ += bytes;

  size_t match = std::string::npos;
  for (const auto& s : stop_) {
    size_t from = old_size >= s.size() - 1 ? old_size - (s.size() - 1) : 0;
    size_t pos = text_.find(s, from);
    if (pos < match) match = pos;
  }
  if (match != std::string::npos) {
    text_.resize(match);
    released_ = match;
    stopped_ = true;
    return true;
  }
  size_t hold = 0;
  for (const auto& s : stop_) {
    for (size_t k = std::min(s.size() - 1, text_.size()); k > hold; --k) {
      if (std::string_view(text_).substr(text_.size() - k) == std::string_view(s).substr(0, k)) {
        hold = k;
        break;
      }
    }
  }
  released_ = std::max(released_, text_.size() - hold);
  return false;
}

void OutputText::Flush() {
  if (!stopped_ && !pending_.empty() && detokenize_) {
    text_ += detokenize_(pending_);
    pending_.clear();
  }
  released_ = text_.size();
}

std::string OutputText::TakeDelta() {
  std::string out = text_.substr(taken_, released_ - taken_);
  taken_ = released_;
  return out;
}

}  // namespace loom::inference
