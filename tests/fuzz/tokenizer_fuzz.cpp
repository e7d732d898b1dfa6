// libFuzzer target for the tokenizer module: the input is (1) text for Encode on the Llama 3 / Llama 4 tiktoken
// and the Llama 2 SentencePiece tokenizers (tokenizer.bin and GGUF), with and without special-token parsing,
// (2) token ids for Decode and StreamDecoder, and (3) the bytes of a llama2.c tokenizer.bin, a tiktoken file and
// a GGUF vocabulary. Properties: no crash, leak or UB; Decode(Encode(valid UTF-8)) == text; a stream of ids
// yields Decode's text with invalid UTF-8 repaired.
//
// The tokenizers come from $HERD_SHARED (default ../shared relative to the working directory).
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "tokenizer/internal.h"
#include "tokenizer/tokenizer.h"

namespace {

using herd::tokenizer::StreamDecoder;
using herd::tokenizer::Tokenizer;

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "tokenizer_fuzz: FATAL: %s\n", msg.c_str());
  std::abort();
}

std::unique_ptr<Tokenizer> Must(herd::Result<std::unique_ptr<Tokenizer>> r) {
  if (!r.ok()) Die(r.status().ToString());
  return std::move(r).value();
}

struct Tokenizers {
  std::unique_ptr<Tokenizer> llama3, llama4, llama2c, llama2_gguf;
};

const Tokenizers& Get() {
  static const Tokenizers t = [] {
    const char* env = std::getenv("HERD_SHARED");
    const std::string shared = (env != nullptr && env[0] != '\0') ? env : "../shared";
    struct stat st;
    if (::stat((shared + "/models").c_str(), &st) != 0) {
      Die("shared test data not found at '" + shared + "' (set HERD_SHARED or run from beside ../shared)");
    }
    const std::string m = shared + "/models/";
    Tokenizers r;
    r.llama3 = Must(herd::tokenizer::LoadTiktoken(m + "llama3-tokenizer/tokenizer.model"));
    r.llama4 = Must(herd::tokenizer::LoadTiktoken(m + "llama4-tokenizer/tokenizer.model"));
    r.llama2c = Must(herd::tokenizer::LoadLlama2cTokenizer(m + "llama2-tokenizer/tokenizer.bin", 32000));
    r.llama2_gguf = Must(herd::tokenizer::LoadTokenizer(m + "llama2-tokenizer/ggml-vocab-llama-spm.gguf"));
    return r;
  }();
  return t;
}

void Check(bool ok, const char* what, const Tokenizer& t, std::string_view text) {
  if (ok) return;
  std::fprintf(stderr, "tokenizer_fuzz: property '%s' failed for %s on %zu bytes\n", what,
               std::string(t.kind()).c_str(), text.size());
  std::abort();
}

// Streams ids one by one; the result must be Decode's text with invalid sequences repaired.
void CheckStream(const Tokenizer& t, const std::vector<int32_t>& ids, bool skip_special) {
  StreamDecoder d(t, skip_special);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string piece = d.Push(id);
    Check(herd::tokenizer::internal::IsValidUtf8(piece), "stream piece is valid UTF-8", t, piece);
    streamed += piece;
  }
  streamed += d.Flush();
  const std::string decoded = herd::tokenizer::internal::SanitizeUtf8(t.Decode(ids, skip_special));
  Check(streamed == decoded, "stream == Decode", t, decoded);
}

void FuzzText(const Tokenizer& t, std::string_view text, bool byte_level) {
  // A literal U+2581 reads as a space in a GGUF SentencePiece vocabulary (as in SentencePiece itself): lossy.
  const bool lossless = byte_level || t.kind() != "spm" || text.find("\xE2\x96\x81") == std::string_view::npos;
  const bool valid = lossless && herd::tokenizer::internal::IsValidUtf8(text);
  for (bool parse_special : {false, true}) {
    const std::vector<int32_t> ids = t.Encode(text, /*add_bos=*/parse_special, parse_special);
    for (int32_t id : ids) Check(id >= 0 && id < t.vocab_size(), "ids in range", t, text);
    // Round trip. SentencePiece adds a dummy-prefix space after each parsed special, which decoding keeps, so
    // the SPM check is for plain text only.
    if (valid && (byte_level || !parse_special)) {
      Check(t.Decode(ids, /*skip_special=*/false) == (parse_special && t.bos_id() && byte_level
                                                          ? t.TokenBytes(*t.bos_id()) + std::string(text)
                                                          : std::string(text)),
            "Decode(Encode(text)) == text", t, text);
    }
    CheckStream(t, ids, /*skip_special=*/true);
  }
}

void FuzzIds(const Tokenizer& t, const uint8_t* data, size_t size) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 4 <= size && ids.size() < 256; i += 4) {
    uint32_t v;
    std::memcpy(&v, data + i, 4);
    // Mostly in-range ids (so decoding does real work), sometimes anything at all.
    ids.push_back((v & 0x80000000u) ? static_cast<int32_t>(v) : static_cast<int32_t>(v % (t.vocab_size() + 8)));
  }
  (void)t.Decode(ids, false);
  CheckStream(t, ids, true);
  CheckStream(t, ids, false);
  for (int32_t id : ids) {
    (void)t.TokenPiece(id);
    (void)t.IsSpecial(id);
  }
}

void UseLoaded(const Tokenizer& t, std::string_view text) {
  for (bool parse_special : {false, true}) {
    const std::vector<int32_t> ids = t.Encode(text, true, parse_special);
    for (int32_t id : ids) Check(id >= 0 && id < t.vocab_size(), "ids in range (loaded)", t, text);
    CheckStream(t, ids, true);
  }
  (void)t.stop_ids();
  (void)t.TokenId(text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Tokenizers& tk = Get();
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  FuzzText(*tk.llama3, text, true);
  FuzzText(*tk.llama4, text, true);
  FuzzText(*tk.llama2c, text, false);
  FuzzText(*tk.llama2_gguf, text, false);
  FuzzIds(*tk.llama3, data, size);
  FuzzIds(*tk.llama2_gguf, data, size);

  // The same bytes as tokenizer files.
  for (std::optional<int32_t> vocab : {std::optional<int32_t>(), std::optional<int32_t>(8)}) {
    auto r = herd::tokenizer::internal::ParseLlama2cTokenizer(text, vocab, "fuzz.bin");
    if (r.ok()) UseLoaded(**r, text.substr(0, 64));
  }
  if (auto r = herd::tokenizer::internal::ParseTiktoken(text, "fuzz.tiktoken"); r.ok()) UseLoaded(**r, text);
  auto g = herd::formats::GgufFile::Parse(data, size, "fuzz.gguf");
  if (g.ok()) {
    auto r = herd::tokenizer::LoadTokenizerFromGguf(**g);
    if (r.ok()) UseLoaded(**r, "Hello world <s> \xF0\x9F\xA6\x99 abc");
  }
  return 0;
}
