// Byte-level BPE (llama4.md 7.4): pre-tokenize with the split expression, then per word either emit it whole
// (tiktoken's rule, HF ignore_merges) or start from single bytes and merge the best adjacent pair until none is
// left. tiktoken ranks a pair by the rank of its concatenation; GGUF gpt2 vocabularies by the merge list order
// (llama.cpp's llm_tokenizer_bpe). Must match tiktoken and HF tokenizers id for id.
#include <array>

#include "tokenizer/vocab.h"

namespace herd::tokenizer::internal {
namespace {

bool IsMergeableType(TokenType t) {
  return t == TokenType::kNormal || t == TokenType::kByte || t == TokenType::kUndefined;
}

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

class BpeTokenizer final : public VocabTokenizer {
 public:
  BpeTokenizer(VocabData vocab, SpecialIds ids, BpeOptions options)
      : VocabTokenizer(std::move(vocab), std::move(ids)), options_(std::move(options)) {}

  Status Init(const std::string& name);

  std::vector<int32_t> Encode(std::string_view text, bool add_bos, bool parse_special) const override;
  std::string TokenPiece(int32_t id) const override;
  std::optional<int32_t> TokenId(std::string_view piece) const override;
  std::string_view kind() const override { return options_.kind; }

 protected:
  void AppendBytes(int32_t id, std::string* out) const override {
    if (IsMergeableType(vocab_.types[id])) out->append(vocab_.Text(id));
  }
  bool StripsFirstSpace() const override { return false; }

 private:
  void EncodeWord(std::string_view word, MergeScratch<uint32_t>* scratch, std::vector<int32_t>* out) const;

  const BpeOptions options_;
  std::unordered_map<std::string_view, int32_t> mergeable_;  // raw bytes of every normal token -> id
  std::array<int32_t, 256> byte_ids_{};                      // single-byte tokens, -1 when absent
  // (left id, right id) -> (merge rank, merged id); only with !rank_by_concatenation.
  std::unordered_map<uint64_t, std::pair<uint32_t, int32_t>> merges_;
};

Status BpeTokenizer::Init(const std::string& name) {
  mergeable_.reserve(static_cast<size_t>(vocab_.size()));
  for (int32_t id = 0; id < vocab_.size(); ++id) {
    if (!IsMergeableType(vocab_.types[id])) continue;
    const std::string_view bytes = vocab_.Text(id);
    if (bytes.empty()) return Corruption(name + ": token " + std::to_string(id) + " is empty");
    auto [it, fresh] = mergeable_.emplace(bytes, id);
    if (!fresh) {
      return Corruption(name + ": tokens " + std::to_string(it->second) + " and " + std::to_string(id) +
                        " have the same bytes '" + ByteLevelEncode(bytes) + "'");
    }
  }
  byte_ids_.fill(-1);
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    auto it = mergeable_.find(std::string_view(&c, 1));
    if (it != mergeable_.end()) byte_ids_[b] = it->second;
  }
  if (options_.rank_by_concatenation) {
    // Every byte must be a token, or some input would have no encoding at all (tiktoken would fail on it).
    for (int b = 0; b < 256; ++b) {
      if (byte_ids_[b] < 0) {
        return Corruption(name + ": byte 0x" + std::string(1, "0123456789ABCDEF"[b >> 4]) +
                          std::string(1, "0123456789ABCDEF"[b & 15]) + " has no rank; a byte-level BPE needs all 256");
      }
    }
    return Status::Ok();
  }
  merges_.reserve(options_.merges.size());
  std::string joined;
  for (size_t i = 0; i < options_.merges.size(); ++i) {
    const auto [a, b] = options_.merges[i];
    if (!InRange(a) || !InRange(b) || !IsMergeableType(vocab_.types[a]) || !IsMergeableType(vocab_.types[b])) {
      return Corruption(name + ": merge " + std::to_string(i) + " names a token that is not a normal token");
    }
    joined.assign(vocab_.Text(a));
    joined.append(vocab_.Text(b));
    auto it = mergeable_.find(joined);
    if (it == mergeable_.end()) {
      return Corruption(name + ": merge " + std::to_string(i) + " ('" + ByteLevelEncode(vocab_.Text(a)) + " " +
                        ByteLevelEncode(vocab_.Text(b)) + "') makes a string that is not a token");
    }
    merges_.emplace(PairKey(a, b), std::make_pair(static_cast<uint32_t>(i), it->second));
  }
  return Status::Ok();
}

std::vector<int32_t> BpeTokenizer::Encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && ids_.bos) out.push_back(*ids_.bos);
  std::string repaired;
  if (!IsValidUtf8(text)) {
    repaired = SanitizeUtf8(text);
    text = repaired;
  }
  const PreTokenizer& pre = GetPreTokenizer(options_.pre);
  std::vector<std::string_view> words;
  MergeScratch<uint32_t> scratch;
  auto encode_text = [&](std::string_view segment) {
    words.clear();
    pre.Split(segment, &words);
    for (std::string_view w : words) EncodeWord(w, &scratch, &out);
  };
  if (parse_special) {
    specials_.Split(text, encode_text, [&](int32_t id) { out.push_back(id); });
  } else {
    encode_text(text);
  }
  return out;
}

void BpeTokenizer::EncodeWord(std::string_view word, MergeScratch<uint32_t>* scratch, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (options_.ignore_merges || word.size() == 1) {
    auto it = mergeable_.find(word);
    if (it != mergeable_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  std::vector<MergePart>& parts = scratch->parts;
  parts.assign(word.size(), MergePart{});
  for (size_t i = 0; i < word.size(); ++i) {
    parts[i] = {1, i > 0 ? i - 1 : 0, byte_ids_[static_cast<uint8_t>(word[i])]};
  }
  if (options_.rank_by_concatenation) {
    RunMerges(scratch,
              [&](size_t l, const MergePart& left, size_t, const MergePart& right, uint32_t* key, int32_t* result) {
                auto it = mergeable_.find(word.substr(l, left.len + right.len));
                if (it == mergeable_.end()) return false;
                *key = static_cast<uint32_t>(it->second);  // the rank is the id
                *result = it->second;
                return true;
              });
  } else {
    RunMerges(scratch,
              [&](size_t, const MergePart& left, size_t, const MergePart& right, uint32_t* key, int32_t* result) {
                if (left.id < 0 || right.id < 0) return false;
                auto it = merges_.find(PairKey(left.id, right.id));
                if (it == merges_.end()) return false;
                *key = it->second.first;
                *result = it->second.second;
                return true;
              });
  }
  // A part without a token is a single byte missing from a gpt2 vocabulary; llama.cpp drops it too.
  for (size_t i = 0; i < parts.size(); i += parts[i].len) {
    if (parts[i].id >= 0) out->push_back(parts[i].id);
  }
}

std::string BpeTokenizer::TokenPiece(int32_t id) const {
  if (!InRange(id)) return {};
  if (!IsMergeableType(vocab_.types[id])) return std::string(vocab_.Text(id));
  return ByteLevelEncode(vocab_.Text(id));
}

std::optional<int32_t> BpeTokenizer::TokenId(std::string_view piece) const {
  // Specials by text; then the byte-level spelling that TokenPiece prints and GGUF stores ("Ġhello"), so that
  // TokenId(TokenPiece(id)) == id; then raw bytes (" hello"), for pieces outside that alphabet.
  if (auto id = specials_.Find(piece)) return id;
  std::string raw;
  if (ByteLevelDecode(piece, &raw)) {
    auto it = mergeable_.find(raw);
    if (it != mergeable_.end()) return it->second;
  }
  return VocabTokenizer::TokenId(piece);
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> MakeBpeTokenizer(VocabData vocab, SpecialIds ids, BpeOptions options,
                                                    const std::string& name) {
  auto tok = std::make_unique<BpeTokenizer>(std::move(vocab), std::move(ids), std::move(options));
  HERD_RETURN_IF_ERROR(tok->Init(name));
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

}  // namespace herd::tokenizer::internal
