// Private pieces of the tokenizer module shared by its .cpp files and its tests/fuzzer: UTF-8 repair, the GPT-2
// byte-level alphabet, the PCRE2 pre-tokenizer (llama4.md sections 7.3, 10.3), special-token matching, and
// parse-from-memory entry points. Not part of the public contract (tokenizer.h); may change freely.
#pragma once

#include <bitset>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "tokenizer/tokenizer.h"

namespace herd::tokenizer::internal {

// ---- UTF-8 (Unicode 15 section 3.9, table 3-7) ----

// The replacement character U+FFFD in UTF-8.
inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// How the bytes at the start of `s` read as UTF-8.
struct Utf8Step {
  size_t len = 0;          // bytes consumed: the whole character, or the maximal ill-formed subpart (>= 1)
  bool valid = false;      // a well-formed character
  bool truncated = false;  // ill-formed only because `s` ends too early (more bytes could complete it)
};
// `s` must not be empty.
Utf8Step NextUtf8(std::string_view s);
bool IsValidUtf8(std::string_view s);
// Each maximal ill-formed subpart becomes one U+FFFD (the "best practice" of Unicode 3.9 that Python's
// errors="replace" and WHATWG follow), so a stray byte costs one replacement character, not several.
std::string SanitizeUtf8(std::string_view s);
// Length of the longest prefix of `s` that may be emitted now: everything except a trailing truncated (but so far
// well-formed) sequence, which more bytes could still complete.
size_t Utf8EmittablePrefix(std::string_view s);

// ---- GPT-2 bytes_to_unicode (llama4.md section 7.5) ----

// UTF-8 of the code point that stands for byte `b` in byte-level vocabularies ("Ġ" for 0x20).
std::string_view ByteToUnicode(uint8_t b);
// Raw bytes of a byte-level string; false when a character is outside the 256-entry alphabet.
bool ByteLevelDecode(std::string_view s, std::string* out);
std::string ByteLevelEncode(std::string_view raw);

// ---- pre-tokenizer ----

enum class PreTokenizerKind {
  kCl100k,  // Llama 3 (llama4.md 10.3), GGUF pre "llama-bpe"/"llama3"
  kO200k,   // Llama 4 (llama4.md 7.3), GGUF pre "llama4"
  kGpt2,    // GPT-2, GGUF pre "default"/"gpt2"
};

// A compiled split expression. Thread-safe: matching allocates its own match data.
class PreTokenizer {
 public:
  explicit PreTokenizer(PreTokenizerKind kind);  // aborts if the built-in pattern does not compile (a bug)
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // Appends the words of `text` to *words. `text` must be valid UTF-8; the words tile it exactly.
  void Split(std::string_view text, std::vector<std::string_view>* words) const;

 private:
  void* code_ = nullptr;     // pcre2_code_8*, kept opaque so that pcre2.h stays inside pretokenizer.cpp
  void* context_ = nullptr;  // pcre2_match_context_8*: the match limits (shared read-only by all threads)
};

// The shared, lazily compiled instance of each kind (compiled once per process).
const PreTokenizer& GetPreTokenizer(PreTokenizerKind kind);

// ---- special tokens ----

// Finds special-token texts in input: at each position the longest special that starts there.
class SpecialMatcher {
 public:
  // `text` must stay alive and unchanged as long as the matcher. Empty texts and texts that are not valid UTF-8
  // are not matchable (splitting text inside a character would hand broken UTF-8 to the pre-tokenizer). For a
  // duplicate text the first id added wins.
  void Add(std::string_view text, int32_t id);
  std::optional<int32_t> Find(std::string_view text) const;

  // Splits valid UTF-8 `text` into plain segments and specials, in order: on_text(std::string_view) for each
  // non-empty run between specials, on_special(int32_t) for each special.
  template <typename OnText, typename OnSpecial>
  void Split(std::string_view text, OnText&& on_text, OnSpecial&& on_special) const {
    size_t seg = 0;
    size_t pos = 0;
    while (pos < text.size()) {
      int32_t id = 0;
      size_t len = 0;
      if (MatchAt(text, pos, &id, &len)) {
        if (pos > seg) on_text(text.substr(seg, pos - seg));
        on_special(id);
        pos += len;
        seg = pos;
      } else {
        ++pos;
      }
    }
    if (seg < text.size()) on_text(text.substr(seg));
  }

 private:
  bool MatchAt(std::string_view text, size_t pos, int32_t* id, size_t* len) const;

  std::unordered_map<std::string_view, int32_t> by_text_;
  std::vector<size_t> lengths_;  // distinct lengths of the matchable texts, longest first
  std::bitset<256> first_byte_;
};

// ---- token types (GGUF tokenizer.ggml.token_type values) ----

enum class TokenType : uint8_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// Specials: recognised by parse_special, reported by IsSpecial, left out by Decode(skip_special).
inline bool IsSpecialType(TokenType t) {
  return t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown;
}

// ---- parse from memory (the file loaders read the file and call these; the fuzzer calls them directly) ----

// `name` names the source in error messages.
Result<std::unique_ptr<Tokenizer>> ParseTiktoken(std::string_view data, const std::string& name);
// vocab_size: the exact number of records (nullopt: read records to the end of the data).
Result<std::unique_ptr<Tokenizer>> ParseLlama2cTokenizer(std::string_view data, std::optional<int32_t> vocab_size,
                                                         const std::string& name);

}  // namespace herd::tokenizer::internal
