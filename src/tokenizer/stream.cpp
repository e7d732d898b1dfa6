// StreamDecoder: token-by-token detokenization that never splits a UTF-8 character (llama4.md 7.4 decodes with
// replacement; a stream must additionally hold back a character whose bytes span several tokens, e.g. byte
// tokens <0xF0><0x9F><0xA6><0x99> or tiktoken's partial-emoji tokens).
//
// The first piece follows Tokenizer::Decode: for SentencePiece kinds ("spm", "llama2c") the leading space of the
// first non-special piece (BOS aside) is dropped, so a stream of all the ids of a sequence yields Decode's text.
#include "tokenizer/internal.h"
#include "tokenizer/tokenizer.h"

namespace herd::tokenizer {

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special) : tok_(tok), skip_special_(skip_special) {}

std::string StreamDecoder::Push(int32_t id) {
  if (id < 0 || id >= tok_.vocab_size()) return {};
  std::string bytes;
  if (tok_.IsSpecial(id)) {
    const std::optional<int32_t> bos = tok_.bos_id();
    if (!(bos && id == *bos)) first_ = false;
    if (skip_special_) return {};
    bytes = tok_.TokenBytes(id);
  } else {
    bytes = tok_.TokenBytes(id);
    if (bytes.empty()) return {};
    const std::string_view kind = tok_.kind();
    if (first_ && (kind == "spm" || kind == "llama2c") && bytes[0] == ' ') bytes.erase(0, 1);
    first_ = false;
  }
  pending_ += bytes;
  const size_t n = internal::Utf8EmittablePrefix(pending_);
  if (n == 0) return {};
  std::string out = internal::SanitizeUtf8(std::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return out;
}

std::string StreamDecoder::Flush() {
  std::string out = internal::SanitizeUtf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace herd::tokenizer
