// Tokenizers of the Llama family (llama4.md section 7): byte-level BPE from a tiktoken rank file (Llama 3 and
// Llama 4 tokenizer.model) or from a GGUF `gpt2` vocabulary (tokens + merges), and SentencePiece-style BPE with
// byte fallback (GGUF `llama` vocab, llama2.c tokenizer.bin). Special tokens are recognized in the input only
// when asked (parse_special); invalid UTF-8 input is encoded as U+FFFD, never a crash.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace herd::formats {
class GgufFile;
}

namespace herd::tokenizer {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of `text`, with BOS first when add_bos (and the tokenizer has one). With parse_special, the
  // text of a special token ("<|eot|>") becomes its id; otherwise it is encoded as plain text.
  virtual std::vector<int32_t> Encode(std::string_view text, bool add_bos, bool parse_special) const = 0;
  // The raw bytes a token stands for ("<0x0A>" byte tokens -> "\n", SPM "▁" -> " ", special -> its text).
  virtual std::string TokenBytes(int32_t id) const = 0;
  // The vocabulary entry as stored, printable (for `herd tokenize --pieces`).
  virtual std::string TokenPiece(int32_t id) const = 0;
  // Concatenated bytes of `ids`; with skip_special, special/control tokens are left out. SPM tokenizers drop
  // the leading space of the first piece after BOS, as SentencePiece does.
  virtual std::string Decode(std::span<const int32_t> ids, bool skip_special) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
  // Tokens that end generation: EOS and, where present, end-of-turn/-message tokens (<|eot|>, <|eom|>,
  // <|eot_id|>, <|eom_id|>).
  virtual std::vector<int32_t> stop_ids() const = 0;
  // The id of an exact vocabulary entry or special token text; nullopt when absent.
  virtual std::optional<int32_t> TokenId(std::string_view piece) const = 0;
  virtual bool IsSpecial(int32_t id) const = 0;
  // "tiktoken", "gpt2", "spm", "llama2c".
  virtual std::string_view kind() const = 0;
};

// Streaming detokenization: Push returns the text that is complete (never half a UTF-8 sequence); Flush returns
// what is left (incomplete sequences as U+FFFD).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = true);
  std::string Push(int32_t id);
  std::string Flush();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  bool first_ = true;
  std::string pending_;
};

// A tiktoken rank file (base64 token, space, rank per line) with the Llama 3 (128,000 ranks, cl100k pattern,
// 256 specials) or Llama 4 (200,000 ranks, o200k pattern, 2,048 specials) conventions, chosen by rank count.
Result<std::unique_ptr<Tokenizer>> LoadTiktoken(const std::string& path);
// llama2.c tokenizer.bin (max_token_length, then per token: float score, int32 length, bytes).
Result<std::unique_ptr<Tokenizer>> LoadLlama2cTokenizer(const std::string& path, int32_t vocab_size);
// From GGUF metadata: tokenizer.ggml.model "llama" (SPM) or "gpt2" (BPE with merges and tokenizer.ggml.pre).
Result<std::unique_ptr<Tokenizer>> LoadTokenizerFromGguf(const formats::GgufFile& gguf);
// Any of the above by content: a GGUF file, a directory with tokenizer.model, a tiktoken file, or a llama2.c
// tokenizer.bin (vocab size from the file when llama2c_vocab is not given).
Result<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path,
                                                 std::optional<int32_t> llama2c_vocab = std::nullopt);

// GPT-2's byte-level spelling of raw bytes (llama4.md 7.5), as gpt2-type GGUF vocabularies store their tokens:
// printable Latin-1 bytes stand for themselves, the other 68 for U+0100 upward in byte order ("Ġ" for a space).
std::string ByteLevelSpelling(std::string_view raw);

}  // namespace herd::tokenizer
