// Private: the storage and public-API plumbing shared by the byte-level BPE (tiktoken, GGUF gpt2) and the
// SentencePiece-style (GGUF llama, llama2.c) tokenizers, and the priority-queue merge loop both use
// (llama4.md 7.4 for BPE; llama2.c run.c / SentencePiece for SPM).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/internal.h"
#include "tokenizer/tokenizer.h"

namespace herd::tokenizer::internal {

// The text of every token in one arena. Token id i is arena[offsets[i], offsets[i+1]).
struct VocabData {
  std::string arena;
  std::vector<size_t> offsets{0};
  std::vector<TokenType> types;

  void Add(std::string_view text, TokenType type) {
    arena.append(text);
    offsets.push_back(arena.size());
    types.push_back(type);
  }
  int32_t size() const { return static_cast<int32_t>(types.size()); }
  std::string_view Text(int32_t id) const {
    return std::string_view(arena).substr(offsets[id], offsets[id + 1] - offsets[id]);
  }
};

// What the loaders tell a tokenizer besides the vocabulary.
struct SpecialIds {
  std::optional<int32_t> bos, eos, unk;
  std::vector<int32_t> extra_stops;  // eot/eom ids from metadata; named eot/eom specials are added automatically
};

// Implements everything of Tokenizer except Encode and kind from a VocabData. Subclasses say how a non-special
// token turns into bytes and whether SPM's leading space is dropped.
//
// Invariants: vocab_ is never modified after construction (the maps hold views into its arena), so the object is
// neither copyable nor movable. All const methods are thread-safe.
class VocabTokenizer : public Tokenizer {
 public:
  VocabTokenizer(VocabData vocab, SpecialIds ids);
  VocabTokenizer(const VocabTokenizer&) = delete;
  VocabTokenizer& operator=(const VocabTokenizer&) = delete;

  std::string TokenBytes(int32_t id) const override;
  std::string Decode(std::span<const int32_t> ids, bool skip_special) const override;
  int32_t vocab_size() const override { return vocab_.size(); }
  std::optional<int32_t> bos_id() const override { return ids_.bos; }
  std::optional<int32_t> eos_id() const override { return ids_.eos; }
  std::vector<int32_t> stop_ids() const override { return stop_ids_; }
  std::optional<int32_t> TokenId(std::string_view piece) const override;
  bool IsSpecial(int32_t id) const override { return id >= 0 && id < vocab_.size() && IsSpecialType(vocab_.types[id]); }

 protected:
  // Appends the bytes of non-special token `id` (in range).
  virtual void AppendBytes(int32_t id, std::string* out) const = 0;
  // Whether Decode drops one leading space of the first piece (SentencePiece's dummy prefix).
  virtual bool StripsFirstSpace() const = 0;

  bool InRange(int32_t id) const { return id >= 0 && id < vocab_.size(); }

  const VocabData vocab_;
  const SpecialIds ids_;
  SpecialMatcher specials_;                                // parseable specials (control, user-defined, unknown)
  std::unordered_map<std::string_view, int32_t> by_text_;  // stored text of every token -> lowest id
  std::vector<int32_t> stop_ids_;
};

// ---- merge loop ----

// A part of a word during merging, indexed by its first byte offset (so the next part starts at index + len).
// len == 0 marks an offset that does not start a part.
struct MergePart {
  size_t len = 0;
  size_t prev = 0;  // start of the previous part (meaningless for the first)
  int32_t id = -1;  // token of the part, -1 when it has none
};

// A candidate merge of the part at `left` with the one after it. Smaller key wins; ties go to the leftmost pair.
// The lengths let a popped candidate be recognised as stale: parts only grow, so equal lengths mean unchanged parts.
template <typename Key>
struct MergeCandidate {
  Key key;
  size_t left;
  size_t left_len;
  size_t right_len;
  int32_t result;
};

template <typename Key>
struct MergeScratch {
  std::vector<MergePart> parts;
  std::vector<MergeCandidate<Key>> heap;
};

// Repeatedly merges the best adjacent pair until none is mergeable. `pair(left_idx, left, right_idx, right,
// &key, &result)` says whether two adjacent parts merge, with what priority and into which token. O(n log n).
template <typename Key, typename PairFn>
void RunMerges(MergeScratch<Key>* s, PairFn&& pair) {
  std::vector<MergePart>& parts = s->parts;
  auto& heap = s->heap;
  const size_t n = parts.size();
  heap.clear();
  auto worse = [](const MergeCandidate<Key>& a, const MergeCandidate<Key>& b) {
    return b.key < a.key || (!(a.key < b.key) && a.left > b.left);
  };
  auto try_push = [&](size_t l) {
    const size_t r = l + parts[l].len;
    if (r >= n) return;
    Key key{};
    int32_t result = -1;
    if (!pair(l, parts[l], r, parts[r], &key, &result)) return;
    heap.push_back({key, l, parts[l].len, parts[r].len, result});
    std::push_heap(heap.begin(), heap.end(), worse);
  };
  for (size_t l = 0; l < n; l += parts[l].len) try_push(l);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    const MergeCandidate<Key> c = heap.back();
    heap.pop_back();
    MergePart& left = parts[c.left];
    if (left.len != c.left_len) continue;
    const size_t r = c.left + left.len;
    if (r >= n || parts[r].len != c.right_len) continue;
    left.len += parts[r].len;
    left.id = c.result;
    parts[r].len = 0;
    const size_t next = c.left + left.len;
    if (next < n) parts[next].prev = c.left;
    if (c.left > 0) try_push(left.prev);
    try_push(c.left);
  }
}

// ---- factories (bpe.cpp, spm.cpp) ----

struct BpeOptions {
  std::string_view kind;  // "tiktoken" or "gpt2"
  PreTokenizerKind pre = PreTokenizerKind::kGpt2;
  // The whole-piece rule (tiktoken; HF ignore_merges): a pre-token that is itself a token is emitted directly.
  bool ignore_merges = false;
  // tiktoken: a pair merges when its concatenation is a token, with that token's id as rank. Otherwise the
  // explicit `merges` (left id, right id) decide, ranked by their order (GGUF gpt2).
  bool rank_by_concatenation = false;
  std::vector<std::pair<int32_t, int32_t>> merges;
};

// Fails (Corruption naming `name`) when two normal tokens have the same bytes or a merge result is not a token.
// Normal tokens hold raw bytes in `vocab`; special tokens hold their text.
Result<std::unique_ptr<Tokenizer>> MakeBpeTokenizer(VocabData vocab, SpecialIds ids, BpeOptions options,
                                                    const std::string& name);

struct SpmOptions {
  std::string_view kind;         // "spm" or "llama2c"
  bool meta_space = true;        // pieces spell spaces as U+2581 (GGUF) rather than ' ' (llama2.c tokenizer.bin)
  bool add_space_prefix = true;  // SentencePiece's dummy prefix
  std::vector<float> scores;     // per id, finite
};

Result<std::unique_ptr<Tokenizer>> MakeSpmTokenizer(VocabData vocab, SpecialIds ids, SpmOptions options,
                                                    const std::string& name);

}  // namespace herd::tokenizer::internal
