// The tokenizer of loom-infer: HF `tokenizer.json` byte-level BPE.
//
// Supported: model BPE (vocab, merges as "a b" or ["a", "b"], ignore_merges,
// unk_token); added tokens, matched literally before pre-tokenization, longest
// first (special ones only when asked); pre-tokenizers ByteLevel (add_prefix_space,
// use_regex with the GPT-2 pattern), Split with the GPT-2, Llama-3 or Qwen2 regex
// (behavior Isolated) and Sequence of those; normalizer none or NFC (Qwen2);
// decoder ByteLevel.
// Anything else fails Load() with a message naming the file and the field.
//
// Thread-safe after Load(): Encode() may be called from many threads (the per-word
// BPE cache is guarded by a mutex).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace loom::inference {

// Whether Encode() turns the text of special added tokens into their ids.
enum class SpecialTokens {
  kParse,  // "<|im_start|>" in the text becomes its id (prompts built by a chat format)
  kAsText  // special tokens are ordinary text (user-supplied raw text)
};

// Whether Decode() writes special added tokens.
enum class DecodeSpecial { kKeep, kSkip };

class Tokenizer {
 public:
  // Loads `path`: a tokenizer.json file, or a model directory that holds one.
  static Result<std::unique_ptr<Tokenizer>> Load(const std::string& path);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Token ids of `text`; no BOS or other post-processing is added (chat formats
  // write <|begin_of_text|> themselves). Non-special added tokens are always matched.
  std::vector<int32_t> Encode(std::string_view text,
                              SpecialTokens special = SpecialTokens::kParse) const;

  // The bytes of `ids` (byte-level: the concatenation of each id's bytes, so it may
  // end, or even contain, partial UTF-8). Ids outside the vocabulary decode to "".
  std::string Decode(std::span<const int32_t> ids,
                     DecodeSpecial special = DecodeSpecial::kKeep) const;

  // The id of the token spelled `token` (vocabulary spelling, e.g. "Ġthe", or an
  // added token's content such as "<|im_end|>").
  std::optional<int32_t> TokenId(std::string_view token) const;
  // The vocabulary spelling of `id` ("" when unknown).
  std::string TokenText(int32_t id) const;

  // One more than the largest id (the logits' width must be at least this).
  int32_t vocab_size() const;
  // True for added tokens marked "special" in tokenizer.json.
  bool IsSpecial(int32_t id) const;

  // The ids a TemplateProcessing post-processor puts before / after a single
  // sequence (Llama 3: {<|begin_of_text|>} before); empty when there is none. Encode()
  // never adds them: a raw-text completion prepends template_prefix() itself.
  const std::vector<int32_t>& template_prefix() const;
  const std::vector<int32_t>& template_suffix() const;

  // Number of distinct words whose BPE result is cached (for tests and metrics).
  size_t cached_words() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Streaming helper: the length of the longest prefix of `bytes` that does not end
// inside an incomplete UTF-8 sequence. Emit bytes[0, n) now, keep the rest for later.
size_t CompleteUtf8Prefix(std::string_view bytes);

}  // namespace loom::inference
