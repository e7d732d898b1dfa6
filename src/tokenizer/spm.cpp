// SentencePiece-style BPE with byte fallback: GGUF `llama` vocabularies (llama.cpp's llm_tokenizer_spm) and
// llama2.c tokenizer.bin (run.c encode; llama4.md 10.4). Start from UTF-8 characters (with the dummy-prefix
// space), repeatedly merge the adjacent pair whose concatenation is the piece with the highest score (leftmost on
// ties), then spell characters that are not pieces as <0xXX> byte tokens. Must match SentencePiece id for id.
#include <array>
#include <cmath>

#include "tokenizer/vocab.h"

namespace herd::tokenizer::internal {
namespace {

constexpr std::string_view kMetaSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

// Pieces that text can merge into: SentencePiece never produces control, unknown, unused or byte pieces by merging.
bool IsMergeableType(TokenType t) {
  return t == TokenType::kNormal || t == TokenType::kUserDefined || t == TokenType::kUndefined;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The byte of a "<0xXX>" piece, or -1.
int ByteOfPiece(std::string_view p) {
  if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return -1;
  const int hi = HexDigit(p[3]), lo = HexDigit(p[4]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

class SpmTokenizer final : public VocabTokenizer {
 public:
  SpmTokenizer(VocabData vocab, SpecialIds ids, SpmOptions options)
      : VocabTokenizer(std::move(vocab), std::move(ids)), options_(std::move(options)) {}

  Status Init(const std::string& name);

  std::vector<int32_t> Encode(std::string_view text, bool add_bos, bool parse_special) const override;
  std::string TokenPiece(int32_t id) const override {
    return InRange(id) ? std::string(vocab_.Text(id)) : std::string();
  }
  std::string_view kind() const override { return options_.kind; }

 protected:
  void AppendBytes(int32_t id, std::string* out) const override;
  bool StripsFirstSpace() const override { return true; }

 private:
  void EncodeText(std::string_view text, bool add_prefix, std::string* buf, MergeScratch<float>* scratch,
                  std::vector<int32_t>* out) const;

  const SpmOptions options_;
  std::unordered_map<std::string_view, int32_t> mergeable_;  // piece (as stored) -> lowest id
  std::array<int32_t, 256> byte_ids_{};                      // <0xXX> tokens, -1 when absent
};

Status SpmTokenizer::Init(const std::string& name) {
  if (options_.scores.size() != static_cast<size_t>(vocab_.size())) {
    return Corruption(name + ": " + std::to_string(options_.scores.size()) + " scores for " +
                      std::to_string(vocab_.size()) + " tokens");
  }
  byte_ids_.fill(-1);
  mergeable_.reserve(static_cast<size_t>(vocab_.size()));
  for (int32_t id = 0; id < vocab_.size(); ++id) {
    const TokenType t = vocab_.types[id];
    const std::string_view p = vocab_.Text(id);
    if (t == TokenType::kByte) {
      const int b = ByteOfPiece(p);
      if (b < 0) return Corruption(name + ": byte token " + std::to_string(id) + " is not spelled <0xXX>");
      if (byte_ids_[b] < 0) byte_ids_[b] = id;
    } else if (IsMergeableType(t) && !p.empty()) {
      mergeable_.emplace(p, id);
    }
  }
  return Status::Ok();
}

std::vector<int32_t> SpmTokenizer::Encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 2 + 2);
  if (add_bos && ids_.bos) out.push_back(*ids_.bos);
  std::string repaired;
  if (!IsValidUtf8(text)) {
    repaired = SanitizeUtf8(text);
    text = repaired;
  }
  std::string buf;
  MergeScratch<float> scratch;
  // llama.cpp gives the dummy prefix to the first text and to each text that follows a special token.
  bool after_special = true;
  auto encode_text = [&](std::string_view segment) {
    EncodeText(segment, options_.add_space_prefix && after_special, &buf, &scratch, &out);
    after_special = false;
  };
  if (parse_special) {
    specials_.Split(text, encode_text, [&](int32_t id) {
      out.push_back(id);
      after_special = true;
    });
  } else if (!text.empty()) {
    encode_text(text);
  }
  return out;
}

void SpmTokenizer::EncodeText(std::string_view text, bool add_prefix, std::string* buf, MergeScratch<float>* scratch,
                              std::vector<int32_t>* out) const {
  const std::string_view space = options_.meta_space ? kMetaSpace : std::string_view(" ");
  buf->clear();
  if (add_prefix) buf->append(space);
  for (char c : text) {
    if (c == ' ') {
      buf->append(space);
    } else {
      buf->push_back(c);
    }
  }
  const std::string_view s = *buf;
  std::vector<MergePart>& parts = scratch->parts;
  parts.assign(s.size(), MergePart{});
  size_t prev = 0;
  for (size_t i = 0; i < s.size();) {
    const size_t len = NextUtf8(s.substr(i)).len;  // s is valid UTF-8
    auto it = mergeable_.find(s.substr(i, len));
    parts[i] = {len, prev, it == mergeable_.end() ? -1 : it->second};
    prev = i;
    i += len;
  }
  RunMerges(scratch, [&](size_t l, const MergePart& left, size_t, const MergePart& right, float* key, int32_t* result) {
    auto it = mergeable_.find(s.substr(l, left.len + right.len));
    if (it == mergeable_.end()) return false;
    *key = -options_.scores[it->second];  // the highest score merges first
    *result = it->second;
    return true;
  });
  for (size_t i = 0; i < parts.size(); i += parts[i].len) {
    if (parts[i].id >= 0) {
      out->push_back(parts[i].id);
      continue;
    }
    // Byte fallback; without byte tokens for every byte, the whole character is <unk> as in SentencePiece.
    const std::string_view ch = s.substr(i, parts[i].len);
    bool all_bytes = true;
    for (char c : ch) all_bytes = all_bytes && byte_ids_[static_cast<uint8_t>(c)] >= 0;
    if (all_bytes) {
      for (char c : ch) out->push_back(byte_ids_[static_cast<uint8_t>(c)]);
    } else if (ids_.unk) {
      out->push_back(*ids_.unk);
    }
  }
}

void SpmTokenizer::AppendBytes(int32_t id, std::string* out) const {
  const TokenType t = vocab_.types[id];
  const std::string_view p = vocab_.Text(id);
  if (t == TokenType::kByte) {
    out->push_back(static_cast<char>(ByteOfPiece(p)));
    return;
  }
  if (t == TokenType::kUnused) return;
  if (!options_.meta_space) {
    out->append(p);
    return;
  }
  size_t i = 0;
  while (i < p.size()) {
    const size_t at = p.find(kMetaSpace, i);
    if (at == std::string_view::npos) {
      out->append(p.substr(i));
      break;
    }
    out->append(p.substr(i, at - i));
    out->push_back(' ');
    i = at + kMetaSpace.size();
  }
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> MakeSpmTokenizer(VocabData vocab, SpecialIds ids, SpmOptions options,
                                                    const std::string& name) {
  for (size_t i = 0; i < options.scores.size(); ++i) {
    // A NaN would break the strict weak ordering of the merge queue.
    if (!std::isfinite(options.scores[i])) {
      return Corruption(name + ": score of token " + std::to_string(i) + " is not a finite number");
    }
  }
  auto tok = std::make_unique<SpmTokenizer>(std::move(vocab), std::move(ids), std::move(options));
  HERD_RETURN_IF_ERROR(tok->Init(name));
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

}  // namespace herd::tokenizer::internal
