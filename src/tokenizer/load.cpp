// Tokenizer loaders: tiktoken rank files with Meta's Llama 3 / Llama 4 special-token layouts (llama4.md 7.1-7.2,
// 7.5, 10.3), llama2.c tokenizer.bin (llama4.md 10.4), GGUF `llama` and `gpt2` vocabularies (llama.cpp's
// llama-vocab.cpp key names), and detection by content. Every count and length is checked against the bytes
// that are there before it is used; errors name the file and the offending line, token, key or offset.
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "core/base64.h"
#include "core/file.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "tokenizer/vocab.h"

namespace herd::tokenizer {
namespace internal {
namespace {

constexpr int32_t kLlama3Ranks = 128000;
constexpr int32_t kLlama4Ranks = 200000;

std::string Reserved(const char* family, int i) {
  return std::string("<|") + family + "reserved_special_token_" + std::to_string(i) + "|>";
}

// Meta llama-models models/llama3/tokenizer.py: 256 specials from id 128000 (llama4.md 10.3).
std::vector<std::string> Llama3Specials() {
  std::vector<std::string> s = {"<|begin_of_text|>",
                                "<|end_of_text|>",
                                "<|reserved_special_token_0|>",
                                "<|reserved_special_token_1|>",
                                "<|finetune_right_pad_id|>",
                                "<|step_id|>",
                                "<|start_header_id|>",
                                "<|end_header_id|>",
                                "<|eom_id|>",
                                "<|eot_id|>",
                                "<|python_tag|>",
                                "<|image|>"};
  for (int i = 2; s.size() < 256; ++i) s.push_back(Reserved("", i));
  return s;
}

// Meta llama-models models/llama4/tokenizer.py: 2048 specials from id 200000 (llama4.md 7.2).
std::vector<std::string> Llama4Specials() {
  std::vector<std::string> s = {"<|begin_of_text|>", "<|end_of_text|>",  "<|fim_prefix|>", "<|fim_middle|>",
                                "<|fim_suffix|>",    "<|header_start|>", "<|header_end|>", "<|eom|>",
                                "<|eot|>",           "<|step|>"};
  for (int i = 0; i < 6; ++i) s.push_back(Reserved("text_post_train_", i));
  for (const char* t : {"<|python_start|>", "<|python_end|>", "<|finetune_right_pad|>"}) s.push_back(t);
  for (int i = 8; i < 8 + 61; ++i) s.push_back(Reserved("text_post_train_", i));
  for (const char* t : {"<|image_start|>", "<|image_end|>", "<|vision_reserved_special_token_0|>",
                        "<|vision_reserved_special_token_1|>", "<|tile_x_separator|>", "<|tile_y_separator|>"}) {
    s.push_back(t);
  }
  for (int i = 2; i < 6; ++i) s.push_back(Reserved("vision_", i));
  for (const char* t : {"<|image|>", "<|vision_reserved_special_token_6|>", "<|patch|>"}) s.push_back(t);
  for (int i = 7; i < 7 + 1041; ++i) s.push_back(Reserved("vision_", i));
  for (int i = 0; i < 8; ++i) s.push_back(Reserved("reasoning_", i));
  s.push_back("<|reasoning_thinking_start|>");
  s.push_back("<|reasoning_thinking_end|>");
  for (int i = 0; s.size() < 2048; ++i) s.push_back(Reserved("", i));
  return s;
}

bool ParseDecimal(std::string_view s, int64_t* v) {
  if (s.empty() || s.size() > 10) return false;
  int64_t x = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    x = x * 10 + (c - '0');
  }
  *v = x;
  return true;
}

// "<0xXX>": SentencePiece's spelling of byte-fallback pieces.
bool IsBytePiece(std::string_view p) {
  return p.size() == 6 && p.substr(0, 3) == "<0x" && p[5] == '>' && std::isxdigit(static_cast<unsigned char>(p[3])) &&
         std::isxdigit(static_cast<unsigned char>(p[4]));
}

// A line of a tiktoken file: base64, one space, decimal rank.
bool LooksLikeTiktokenLine(std::string_view line) {
  const size_t sp = line.find(' ');
  if (sp == std::string_view::npos || sp == 0) return false;
  std::string bytes;
  int64_t rank = 0;
  std::string_view r = line.substr(sp + 1);
  if (!r.empty() && r.back() == '\r') r.remove_suffix(1);
  return DecodeBase64(line.substr(0, sp), &bytes) && ParseDecimal(r, &rank);
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> ParseTiktoken(std::string_view data, const std::string& name) {
  // First pass: decode every line into a temporary arena, remembering each line's rank.
  std::string arena;
  std::vector<size_t> offsets{0};
  std::vector<int64_t> ranks;
  std::string bytes;
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < data.size()) {
    size_t eol = data.find('\n', pos);
    if (eol == std::string_view::npos) eol = data.size();
    std::string_view line = data.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      if (data.find_first_not_of("\r\n", pos > data.size() ? data.size() : pos) == std::string_view::npos) break;
      return Corruption(name + ": line " + std::to_string(line_no) + " is empty");
    }
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos) {
      return Corruption(name + ": line " + std::to_string(line_no) + " has no space between token and rank");
    }
    if (!DecodeBase64(line.substr(0, sp), &bytes)) {
      return Corruption(name + ": line " + std::to_string(line_no) + ": bad base64 '" +
                        std::string(line.substr(0, std::min<size_t>(sp, 64))) + "'");
    }
    int64_t rank = 0;
    if (!ParseDecimal(line.substr(sp + 1), &rank)) {
      return Corruption(name + ": line " + std::to_string(line_no) + ": bad rank '" +
                        std::string(line.substr(sp + 1, 32)) + "'");
    }
    arena.append(bytes);
    offsets.push_back(arena.size());
    ranks.push_back(rank);
  }
  const int64_t n = static_cast<int64_t>(ranks.size());
  if (n != kLlama3Ranks && n != kLlama4Ranks) {
    return NotSupported(name + ": tiktoken file with " + std::to_string(n) + " ranks; expected " +
                        std::to_string(kLlama3Ranks) + " (Llama 3) or " + std::to_string(kLlama4Ranks) + " (Llama 4)");
  }
  // Ranks are the ids: they must be a permutation of 0..n-1.
  std::vector<int32_t> line_of_rank(static_cast<size_t>(n), -1);
  for (int64_t i = 0; i < n; ++i) {
    if (ranks[i] >= n) {
      return Corruption(name + ": line " + std::to_string(i + 1) + ": rank " + std::to_string(ranks[i]) +
                        " is not below the number of ranks " + std::to_string(n));
    }
    if (line_of_rank[ranks[i]] >= 0) {
      return Corruption(name + ": rank " + std::to_string(ranks[i]) + " appears on lines " +
                        std::to_string(line_of_rank[ranks[i]] + 1) + " and " + std::to_string(i + 1));
    }
    line_of_rank[ranks[i]] = static_cast<int32_t>(i);
  }
  const bool llama4 = n == kLlama4Ranks;
  VocabData vocab;
  vocab.arena.reserve(arena.size() + (llama4 ? 2048 * 40 : 256 * 32));
  vocab.offsets.reserve(static_cast<size_t>(n) + 2049);
  vocab.types.reserve(static_cast<size_t>(n) + 2048);
  for (int64_t r = 0; r < n; ++r) {
    const int32_t l = line_of_rank[r];
    vocab.Add(std::string_view(arena).substr(offsets[l], offsets[l + 1] - offsets[l]), TokenType::kNormal);
  }
  for (const std::string& s : llama4 ? Llama4Specials() : Llama3Specials()) vocab.Add(s, TokenType::kControl);
  SpecialIds ids;
  ids.bos = static_cast<int32_t>(n);
  ids.eos = static_cast<int32_t>(n + 1);
  BpeOptions options;
  options.kind = "tiktoken";
  options.pre = llama4 ? PreTokenizerKind::kO200k : PreTokenizerKind::kCl100k;
  options.ignore_merges = true;
  options.rank_by_concatenation = true;
  return MakeBpeTokenizer(std::move(vocab), std::move(ids), std::move(options), name);
}

Result<std::unique_ptr<Tokenizer>> ParseLlama2cTokenizer(std::string_view data, std::optional<int32_t> vocab_size,
                                                         const std::string& name) {
  if (vocab_size && *vocab_size <= 0) {
    return InvalidArgument(name + ": vocab_size " + std::to_string(*vocab_size) + " must be positive");
  }
  auto read_i32 = [&](size_t off) {
    int32_t v;
    std::memcpy(&v, data.data() + off, 4);
    return v;
  };
  if (data.size() < 4) {
    return Corruption(name + ": " + std::to_string(data.size()) + " bytes is too short for a llama2.c tokenizer");
  }
  const int32_t max_len = read_i32(0);
  // run.c reads tokens into a buffer of max_token_length bytes; real files say 27 (Llama 2) or less. A value far
  // beyond any token means this is not a llama2.c tokenizer at all.
  if (max_len <= 0 || max_len > (1 << 16)) {
    return Corruption(name + ": max_token_length " + std::to_string(max_len) +
                      " is not in [1, 65536]: not a llama2.c tokenizer.bin");
  }
  VocabData vocab;
  std::vector<float> scores;
  // Each record takes at least 8 bytes, which bounds what may be reserved from an untrusted count.
  const size_t cap = (data.size() - 4) / 8;
  const size_t want = vocab_size ? std::min<size_t>(static_cast<size_t>(*vocab_size), cap) : cap;
  vocab.offsets.reserve(want + 1);
  vocab.types.reserve(want);
  scores.reserve(want);
  size_t off = 4;
  int64_t id = 0;
  while (vocab_size ? id < *vocab_size : off < data.size()) {
    const std::string where = name + ": token " + std::to_string(id) + " at byte offset " + std::to_string(off);
    if (data.size() - off < 8) {
      return Corruption(where + ": truncated (needs 8 bytes for score and length, " +
                        std::to_string(data.size() - off) + " left)" +
                        (vocab_size ? "; expected " + std::to_string(*vocab_size) + " tokens" : std::string()));
    }
    float score;
    std::memcpy(&score, data.data() + off, 4);
    const int32_t len = read_i32(off + 4);
    off += 8;
    if (!std::isfinite(score)) return Corruption(where + ": score is not a finite number");
    if (len < 0 || len > max_len) {
      return Corruption(where + ": length " + std::to_string(len) + " outside [0, max_token_length " +
                        std::to_string(max_len) + "]");
    }
    if (static_cast<size_t>(len) > data.size() - off) {
      return Corruption(where + ": length " + std::to_string(len) + " runs past the end of the file (" +
                        std::to_string(data.size() - off) + " bytes left)");
    }
    std::string_view text = data.substr(off, static_cast<size_t>(len));
    off += static_cast<size_t>(len);
    // run.c hard-codes <unk> = 0, BOS = 1 and EOS = 2 (stored as "\n<s>\n", "\n</s>\n"); give them the
    // SentencePiece names so that they print and parse like the other kinds' specials.
    TokenType type = TokenType::kNormal;
    if (id == 0) {
      text = "<unk>";
      type = TokenType::kUnknown;
    } else if (id == 1 || id == 2) {
      text = id == 1 ? "<s>" : "</s>";
      type = TokenType::kControl;
    } else if (IsBytePiece(text)) {
      type = TokenType::kByte;
    }
    vocab.Add(text, type);
    scores.push_back(score);
    ++id;
  }
  if (off != data.size()) {
    // A tokenizer for another vocabulary would otherwise load "fine" and encode to ids the model does not have.
    return Corruption(name + ": " + std::to_string(data.size() - off) + " bytes left after the " + std::to_string(id) +
                      " tokens of vocab_size; the tokenizer does not match the model");
  }
  if (vocab.size() < 3) {
    return Corruption(name + ": " + std::to_string(vocab.size()) +
                      " tokens; a llama2.c tokenizer has at least "
                      "<unk>, BOS and EOS");
  }
  SpecialIds ids;
  ids.unk = 0;
  ids.bos = 1;
  ids.eos = 2;
  ids.extra_stops = {1};  // run.c ends a story when the model emits BOS (llama2.c's sequence delimiter)
  SpmOptions options;
  options.kind = "llama2c";
  options.meta_space = false;
  options.add_space_prefix = true;
  options.scores = std::move(scores);
  return MakeSpmTokenizer(std::move(vocab), std::move(ids), std::move(options), name);
}

namespace {

// An optional token id key: absent, or the "none" values -1 / 0xFFFFFFFF, give nullopt.
Result<std::optional<int32_t>> OptionalId(const formats::GgufFile& g, std::string_view key, int32_t n) {
  HERD_ASSIGN_OR_RETURN(std::optional<int64_t> v, g.GetIntOpt(key));
  if (!v || *v == -1 || *v == 0xFFFFFFFFLL) return std::optional<int32_t>();
  if (*v < 0 || *v >= n) {
    return Corruption(g.path() + ": metadata key '" + std::string(key) + "' is " + std::to_string(*v) +
                      ", outside the vocabulary of " + std::to_string(n) + " tokens");
  }
  return std::optional<int32_t>(static_cast<int32_t>(*v));
}

Result<std::unique_ptr<Tokenizer>> LoadGgufVocab(const formats::GgufFile& g) {
  const std::string& name = g.path();
  HERD_ASSIGN_OR_RETURN(std::string_view model, g.GetString("tokenizer.ggml.model"));
  const bool spm = model == "llama";
  if (!spm && model != "gpt2") {
    return NotSupported(name + ": tokenizer.ggml.model '" + std::string(model) +
                        "' is not supported (only 'llama' and 'gpt2')");
  }
  HERD_ASSIGN_OR_RETURN(std::vector<std::string_view> tokens, g.GetStringArray("tokenizer.ggml.tokens"));
  if (tokens.empty() || tokens.size() > static_cast<size_t>(INT32_MAX)) {
    return Corruption(name + ": tokenizer.ggml.tokens has " + std::to_string(tokens.size()) + " entries");
  }
  const int32_t n = static_cast<int32_t>(tokens.size());
  std::vector<TokenType> types(tokens.size(), TokenType::kNormal);
  const bool have_types = g.Find("tokenizer.ggml.token_type") != nullptr;
  if (have_types) {
    HERD_ASSIGN_OR_RETURN(std::vector<int64_t> t, g.GetIntArray("tokenizer.ggml.token_type"));
    if (t.size() != tokens.size()) {
      return Corruption(name + ": tokenizer.ggml.token_type has " + std::to_string(t.size()) + " entries for " +
                        std::to_string(n) + " tokens");
    }
    for (size_t i = 0; i < t.size(); ++i) {
      if (t[i] < 0 || t[i] > static_cast<int64_t>(TokenType::kByte)) {
        return Corruption(name + ": tokenizer.ggml.token_type[" + std::to_string(i) + "] is " + std::to_string(t[i]) +
                          " (expected 0..6)");
      }
      types[i] = static_cast<TokenType>(t[i]);
    }
  }
  SpecialIds ids;
  HERD_ASSIGN_OR_RETURN(ids.bos, OptionalId(g, "tokenizer.ggml.bos_token_id", n));
  HERD_ASSIGN_OR_RETURN(ids.eos, OptionalId(g, "tokenizer.ggml.eos_token_id", n));
  HERD_ASSIGN_OR_RETURN(ids.unk, OptionalId(g, "tokenizer.ggml.unknown_token_id", n));
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    HERD_ASSIGN_OR_RETURN(std::optional<int32_t> id, OptionalId(g, key, n));
    if (id) ids.extra_stops.push_back(*id);
  }
  if (!have_types) {
    // Without types, BOS/EOS/UNK are still specials (llama.cpp marks them so as well).
    for (auto id : {ids.bos, ids.eos}) {
      if (id) types[*id] = TokenType::kControl;
    }
    if (ids.unk) types[*ids.unk] = TokenType::kUnknown;
  }

  VocabData vocab;
  vocab.offsets.reserve(tokens.size() + 1);
  vocab.types.reserve(tokens.size());
  if (spm) {
    std::vector<float> scores(tokens.size(), 0.0f);
    if (g.Find("tokenizer.ggml.scores") != nullptr) {
      HERD_ASSIGN_OR_RETURN(scores, g.GetFloatArray("tokenizer.ggml.scores"));
      if (scores.size() != tokens.size()) {
        return Corruption(name + ": tokenizer.ggml.scores has " + std::to_string(scores.size()) + " entries for " +
                          std::to_string(n) + " tokens");
      }
    }
    for (size_t i = 0; i < tokens.size(); ++i) {
      TokenType t = types[i];
      if (!have_types && IsBytePiece(tokens[i])) t = TokenType::kByte;
      vocab.Add(tokens[i], t);
    }
    SpmOptions options;
    options.kind = "spm";
    options.meta_space = true;
    HERD_ASSIGN_OR_RETURN(std::optional<bool> prefix, g.GetBoolOpt("tokenizer.ggml.add_space_prefix"));
    options.add_space_prefix = prefix.value_or(true);
    options.scores = std::move(scores);
    return MakeSpmTokenizer(std::move(vocab), std::move(ids), std::move(options), name);
  }

  // gpt2: normal tokens are spelled in the byte-level alphabet; specials are literal text.
  HERD_ASSIGN_OR_RETURN(std::optional<std::string_view> pre, g.GetStringOpt("tokenizer.ggml.pre"));
  BpeOptions options;
  options.kind = "gpt2";
  const std::string_view p = pre.value_or("default");
  if (p == "llama-bpe" || p == "llama3" || p == "llama-v3") {
    options.pre = PreTokenizerKind::kCl100k;
    options.ignore_merges = true;
  } else if (p == "llama4") {
    options.pre = PreTokenizerKind::kO200k;
    options.ignore_merges = true;
  } else if (p == "default" || p == "gpt2" || p == "gpt-2") {
    options.pre = PreTokenizerKind::kGpt2;
  } else {
    return NotSupported(name + ": tokenizer.ggml.pre '" + std::string(p) +
                        "' is not supported (llama-bpe, llama3, llama4, gpt2, default)");
  }
  std::string raw;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const TokenType t = types[i];
    const bool byte_level = t == TokenType::kNormal || t == TokenType::kByte || t == TokenType::kUndefined;
    if (byte_level && !ByteLevelDecode(tokens[i], &raw)) {
      return Corruption(name + ": token " + std::to_string(i) + " '" + std::string(tokens[i].substr(0, 64)) +
                        "' has a character outside the GPT-2 byte-level alphabet");
    }
    vocab.Add(byte_level ? std::string_view(raw) : tokens[i], t);
  }
  HERD_ASSIGN_OR_RETURN(std::vector<std::string_view> merges, g.GetStringArray("tokenizer.ggml.merges"));
  std::unordered_map<std::string_view, int32_t> by_piece;
  by_piece.reserve(tokens.size());
  for (int32_t i = 0; i < n; ++i) by_piece.emplace(tokens[i], i);
  options.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string_view m = merges[i];
    // The separator is the first space after the first character (a left part cannot be empty).
    const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string_view::npos;
    if (sp == std::string_view::npos) {
      return Corruption(name + ": tokenizer.ggml.merges[" + std::to_string(i) + "] '" + std::string(m.substr(0, 64)) +
                        "' is not 'left right'");
    }
    auto a = by_piece.find(m.substr(0, sp));
    auto b = by_piece.find(m.substr(sp + 1));
    if (a == by_piece.end() || b == by_piece.end()) {
      return Corruption(name + ": tokenizer.ggml.merges[" + std::to_string(i) + "] '" + std::string(m.substr(0, 64)) +
                        "' names a string that is not a token");
    }
    options.merges.emplace_back(a->second, b->second);
  }
  return MakeBpeTokenizer(std::move(vocab), std::move(ids), std::move(options), name);
}

}  // namespace
}  // namespace internal

Result<std::unique_ptr<Tokenizer>> LoadTiktoken(const std::string& path) {
  HERD_ASSIGN_OR_RETURN(std::string data, ReadFileToString(path, uint64_t{1} << 28));
  return internal::ParseTiktoken(data, path);
}

Result<std::unique_ptr<Tokenizer>> LoadLlama2cTokenizer(const std::string& path, int32_t vocab_size) {
  if (vocab_size <= 0) {
    return InvalidArgument(path + ": vocab_size " + std::to_string(vocab_size) + " must be positive");
  }
  HERD_ASSIGN_OR_RETURN(std::string data, ReadFileToString(path, uint64_t{1} << 28));
  return internal::ParseLlama2cTokenizer(data, vocab_size, path);
}

Result<std::unique_ptr<Tokenizer>> LoadTokenizerFromGguf(const formats::GgufFile& gguf) {
  return internal::LoadGgufVocab(gguf);
}

Result<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path, std::optional<int32_t> llama2c_vocab) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return IOError(path + ": " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) {
    // Meta's Hugging Face repositories keep the tiktoken file in original/ beside tokenizer.json.
    for (const char* rel : {"/tokenizer.model", "/original/tokenizer.model"}) {
      const std::string model = path + rel;
      if (::stat(model.c_str(), &st) == 0 && S_ISREG(st.st_mode)) return LoadTokenizer(model, llama2c_vocab);
    }
    return InvalidArgument(path +
                           ": directory has no tokenizer.model or original/tokenizer.model (a tiktoken or "
                           "llama2.c tokenizer file)");
  }
  HERD_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::Open(path));
  const std::string_view data(reinterpret_cast<const char*>(file->data()), file->size());
  if (data.substr(0, 4) == "GGUF") {
    HERD_ASSIGN_OR_RETURN(std::shared_ptr<const formats::GgufFile> gguf, formats::GgufFile::Open(path));
    return LoadTokenizerFromGguf(*gguf);
  }
  const size_t first = data.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && (data[first] == '{' || data[first] == '[')) {
    return NotSupported(path +
                        " is JSON (config.json or a Hugging Face tokenizer.json?), not a tokenizer herd reads: give "
                        "a tiktoken tokenizer.model, a llama2.c tokenizer.bin or a GGUF file with a vocabulary");
  }
  const size_t eol = data.find('\n');
  if (internal::LooksLikeTiktokenLine(data.substr(0, eol == std::string_view::npos ? data.size() : eol))) {
    return internal::ParseTiktoken(data, path);
  }
  auto r = internal::ParseLlama2cTokenizer(data, llama2c_vocab, path);
  if (!r.ok() && !data.empty() && data[0] == '\x0A') {
    // A SentencePiece model is a protobuf whose first field (pieces, tag 0x0A) repeats per piece.
    return NotSupported(path +
                        ": looks like a SentencePiece protobuf (tokenizer.model), which is not supported; "
                        "use its llama2.c export (tokenizer.bin) or a GGUF vocabulary (" +
                        r.status().message() + ")");
  }
  return r;
}

}  // namespace herd::tokenizer
