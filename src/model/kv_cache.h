// The KV cache as a component of its own: a pool of fixed-size pages (blocks of positions) shared by every
// sequence, per-sequence block tables, and a prefix cache over full pages (vLLM's automatic prefix caching is the
// anchor).
//
// Layers are split into groups by their attention span (llama4.md 2.7): the global layers (causal over the whole
// context; every position kept) form one group, chunked-attention layers of chunk C another. Each group has its
// own pool of pages of page_tokens positions (global: the cache's page size P; chunked: gcd(P, C), so that a page
// never straddles a chunk) holding, for every layer of the group, K and V rows of every KV head. A chunked group
// keeps only the pages of the current chunk of each sequence: pages wholly before it are released as soon as the
// sequence has passed them.
//
// Prefix cache: when a block of P positions of a sequence is complete, its pages (the global page and the chunked
// pages of that block still held) are registered under hash(parent block, its P tokens); the entry keeps the
// tokens and the parent, so a hash collision can never return another prefix. A page has a reference count (one
// per sequence table that holds it); a registered page whose count falls to zero stays cached, evictable in LRU
// order when a pool runs short. A new sequence attaches the longest cached prefix whose pages the tokens after it
// can attend to: every global page of the prefix, and on chunked layers the pages of the chunk the first new token
// falls in (llama4.md 2.7: that token attends to [chunk start, itself]).
//
// Row types (DType): F32, F16, BF16, Q8_0 (head_dim a multiple of 32). Not thread-safe: one owner (the engine
// thread, or a ModelState) drives it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"
#include "core/status.h"
#include "kernels/attention.h"
#include "model/config.h"

namespace herd::model {

// "f32", "f16", "bf16", "q8_0" -> the row type; InvalidArgument naming the accepted names otherwise.
Result<DType> ParseKvType(std::string_view name);
// InvalidArgument when rows of `type` cannot hold head_dim elements (q8_0 needs a multiple of 32) or the type is
// not a KV type.
Status CheckKvType(DType type, int64_t head_dim);

// Bytes of K and V that one cached position costs over all layers of `config` with rows of `type`.
int64_t KvRowBytesPerToken(const ModelConfig& config, DType type);

// One sequence's view of the cache: its length and, per group, its block table (logical page -> physical page,
// -1 where the page is not held). Owned by the caller, bound to one KvCache (Release it there before dropping it).
class KvSequence {
 public:
  int64_t n_past() const { return n_past_; }
  // The tokens at positions [0, n_past) (the prefix cache hashes them).
  std::span<const int32_t> tokens() const { return tokens_; }

 private:
  friend class KvCache;
  int64_t n_past_ = 0;
  std::vector<int32_t> tokens_;
  std::vector<std::vector<int32_t>> tables_;  // [group][logical page]
  std::vector<uint64_t> block_hash_;          // hash of each complete block [0, n_past / P) seen so far
};

class KvCache {
 public:
  struct Options {
    DType type = DType::kF32;
    int64_t page_tokens = 16;  // P: a power of two
    bool prefix_cache = true;
  };
  // Layout of one group of layers.
  struct Group {
    int64_t chunk = 0;        // 0: global layers
    int64_t page_tokens = 0;  // a power of two dividing P (and the chunk)
    int page_shift = 0;
    std::vector<int> layers;  // model layer indices
    int64_t page_bytes = 0;
    int64_t n_pages = 0;
  };

  // The groups of `config`'s layers with page size options.page_tokens (n_pages left 0).
  static Result<std::vector<Group>> Layout(const ModelConfig& config, const Options& options);
  // Pages each group needs so that `n_seqs` sequences of up to n_ctx positions fit: global n_ctx, chunked one
  // chunk (a step never crosses a chunk boundary: TokensToChunkEnd), each rounded up to whole pages.
  static std::vector<int64_t> PagesFor(const std::vector<Group>& groups, int64_t n_ctx, int64_t n_seqs);
  // Splits `bytes` over the groups in proportion to what one sequence of n_ctx positions needs in each.
  static std::vector<int64_t> PagesForBytes(const std::vector<Group>& groups, int64_t bytes, int64_t n_ctx);

  // A cache with n_pages[g] pages in group g. InvalidArgument for a bad type or page size; ResourceExhausted
  // (naming the size) when the memory cannot be had.
  static Result<std::unique_ptr<KvCache>> Create(const ModelConfig& config, const Options& options,
                                                 const std::vector<int64_t>& n_pages);

  DType type() const { return options_.type; }
  int64_t page_tokens() const { return options_.page_tokens; }
  const std::vector<Group>& groups() const { return groups_; }
  int64_t total_bytes() const { return total_bytes_; }
  int64_t total_pages() const;
  int64_t used_pages() const;    // held by some sequence (cached-but-free pages are not counted)
  int64_t cached_pages() const;  // registered in the prefix cache

  // New pages positions [seq.n_past, new_len) need in each group (0 when they are held already); and whether the
  // pool can give them now (free or evictable pages).
  std::vector<int64_t> PagesNeeded(const KvSequence& seq, int64_t new_len) const;
  bool CanReserve(const KvSequence& seq, int64_t new_len) const;
  // Whether seq holds pages for every position [n_past, new_len) (allocates nothing).
  bool Holds(const KvSequence& seq, int64_t new_len) const;
  // Whether a lone sequence of `len` positions could ever be held by the pool (every page free).
  bool Fits(int64_t len) const;
  // Positions from `pos` to the end of its chunk on the chunked layer with the smallest chunk (a huge number
  // without chunked layers): one step of a sequence covers at most this many tokens, so that a chunked group
  // holds only one chunk's pages.
  int64_t TokensToChunkEnd(int64_t pos) const;
  // seq (empty) gets pages for the positions a sequence of length n_past holds (see ReleaseChunked), to be filled
  // by the caller (a saved session). ResourceExhausted when the pool is short.
  Status Restore(KvSequence& seq, int64_t n_past);
  // Makes positions [seq.n_past, new_len) writable (new_len - n_past <= TokensToChunkEnd(n_past)).
  // ResourceExhausted (nothing changed) when a pool is short.
  Status Reserve(KvSequence& seq, int64_t new_len);
  // After the model has written positions [n_past, n_past + tokens.size()): advances the sequence, registers
  // its newly complete blocks in the prefix cache, and releases chunked pages it can no longer attend to.
  void Commit(KvSequence& seq, std::span<const int32_t> tokens);
  // Forgets positions >= n. OutOfRange (nothing changed) when a chunked group no longer holds the pages of the
  // chunk position n falls in; ResourceExhausted when a shared partial page cannot be copied.
  Status Truncate(KvSequence& seq, int64_t n);
  // Releases every page of seq; it becomes empty.
  void Release(KvSequence& seq);
  // seq (empty) attaches the longest usable cached prefix of prompt, leaving at least one token to compute;
  // returns the positions attached.
  int64_t AttachPrefix(KvSequence& seq, std::span<const int32_t> prompt);
  // dst (empty) shares src's full pages and gets copies of its partial ones (n > 1 choices of one prompt).
  // ResourceExhausted (dst left empty) when no page is free for a copy.
  Status Fork(const KvSequence& src, KvSequence& dst);

  // Row access for the model: the K/V rows of (layer, kv head) of seq as an attention view, and the row of one
  // position (held by seq) to write.
  kernels::KvView View(const KvSequence& seq, int layer, int64_t kv_head) const;
  uint8_t* KeyRow(const KvSequence& seq, int layer, int64_t kv_head, int64_t pos) const;
  uint8_t* ValueRow(const KvSequence& seq, int layer, int64_t kv_head, int64_t pos) const;
  int64_t row_bytes() const { return row_bytes_; }
  int64_t n_layers() const { return static_cast<int64_t>(layer_group_.size()); }
  int64_t n_kv_heads() const { return n_kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  // The chunk start of `pos` on `layer` (0 on global layers).
  int64_t FirstKey(int layer, int64_t pos) const;

 private:
  KvCache() = default;
  struct Pool {
    std::vector<int32_t> refs;
    std::vector<uint64_t> entry;     // hash of the prefix-cache entry holding the page (0: none)
    std::vector<int32_t> free_list;  // pages with refs 0 and no entry
    // Evictable (refs 0, registered) pages in LRU order: a doubly linked list through prev/next, head oldest.
    std::vector<int32_t> prev, next;
    int32_t lru_head = -1, lru_tail = -1;
    int64_t lru_size = 0;
  };
  struct Entry {
    uint64_t parent = 0;
    std::vector<int32_t> tokens;
    std::vector<std::vector<int32_t>> pages;  // [group][page of the block] (-1: not cached)
  };

  int32_t Allocate(int g);  // -1 when none
  void Ref(int g, int32_t page);
  void Unref(int g, int32_t page);
  void LruRemove(int g, int32_t page);
  void LruPush(int g, int32_t page);
  void Evict(int g, int32_t page);
  void DropEntry(uint64_t hash);
  uint64_t BlockHash(uint64_t parent, std::span<const int32_t> tokens) const;
  void Publish(KvSequence& seq);
  void ReleaseChunked(KvSequence& seq);
  void EnsureTables(KvSequence& seq) const;
  uint8_t* Row(const KvSequence& seq, int layer, int kv, int64_t kv_head, int64_t pos) const;
  int64_t Available(int g) const { return static_cast<int64_t>(pools_[g].free_list.size()) + pools_[g].lru_size; }

  Options options_;
  int64_t n_kv_heads_ = 0, head_dim_ = 0, row_bytes_ = 0, total_bytes_ = 0;
  int page_shift_ = 0;  // of P
  std::vector<Group> groups_;
  std::vector<int> layer_group_, layer_index_;  // per model layer
  std::vector<std::unique_ptr<AnonymousMemory>> storage_;
  std::vector<Pool> pools_;
  std::unordered_map<uint64_t, Entry> entries_;
};

// Prefix-cache keys for n positions filled from content with the 64-bit hash `content` (e.g. of an image's
// pixels; StepInput::cache_keys): numbers below -1, so never a token id (nor -1, KvCache::Restore's unknown
// token), that differ by position and by content.
void ImageCacheKeys(uint64_t content, int64_t n, int32_t* keys);

}  // namespace herd::model
