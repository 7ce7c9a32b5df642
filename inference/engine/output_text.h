// The text of one generation as it is streamed: token ids in, text deltas out.
//
// Tokens are decoded in small groups so that a multi-byte UTF-8 character split
// across tokens is released whole, and text that could be the start of a stop
// string is held back until the next tokens show whether it is one. When a stop
// string appears, the text ends just before it.
// Thread-compatible value type: one per request, used on the engine thread.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace loom::inference {

// Token ids -> bytes. For byte-level BPE, decoding a concatenation equals the
// concatenation of the decodings, which is what OutputText relies on.
using Detokenizer = std::function<std::string(std::span<const int32_t>)>;

class OutputText {
 public:
  // `detokenize` may be empty: no text is produced and no stop string matches.
  OutputText(Detokenizer detokenize, std::vector<std::string> stop);

  // Appends one generated token. Returns true when a stop string was found (the
  // text now ends before it; call nothing but TakeDelta() after that).
  bool Append(int32_t token);
  // Decodes what is pending even if incomplete and releases the held-back text.
  void Flush();
  // The text released since the previous call.
  std::string TakeDelta();

  const std::string& text() const { return text_; }  // decoded so far, incl. held back

 private:
  Detokenizer detokenize_;
  std::vector<std::string> stop_;
  std::vector<int32_t> pending_;  // tokens not yet decoded into text_
  std::string text_;
  size_t released_ = 0;  // text_[0, released_) is safe to show
  size_t taken_ = 0;     // text_[0, taken_) was returned by TakeDelta
  bool stopped_ = false;
};

}  // namespace loom::inference
