// The paged KV cache and its prefix cache (model/kv_cache.h).
#include "model/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <numeric>

namespace herd::model {
namespace {

bool IsKvType(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 || t == DType::kQ8_0; }

int Log2(int64_t v) {
  int s = 0;
  while ((int64_t{1} << s) < v) ++s;
  return s;
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

uint64_t Mix(uint64_t x) {  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

Result<DType> ParseKvType(std::string_view name) {
  if (name == "f32") return DType::kF32;
  if (name == "f16") return DType::kF16;
  if (name == "bf16") return DType::kBF16;
  if (name == "q8_0") return DType::kQ8_0;
  return InvalidArgument("unknown KV cache type '" + std::string(name) + "' (expected f32, f16, bf16 or q8_0)");
}

Status CheckKvType(DType type, int64_t head_dim) {
  if (!IsKvType(type)) {
    return InvalidArgument("KV cache type " + std::string(DTypeName(type)) + " is not one of f32, f16, bf16, q8_0");
  }
  if (type == DType::kQ8_0 && head_dim % 32 != 0) {
    return InvalidArgument("KV cache type q8_0 needs a head dimension that is a multiple of 32; this model's is " +
                           std::to_string(head_dim) + " (use f16, bf16 or f32)");
  }
  return Status::Ok();
}

int64_t KvRowBytesPerToken(const ModelConfig& config, DType type) {
  return config.num_hidden_layers * 2 * config.num_key_value_heads * RowBytes(type, config.head_dim);
}

Result<std::vector<KvCache::Group>> KvCache::Layout(const ModelConfig& config, const Options& options) {
  HERD_RETURN_IF_ERROR(CheckKvType(options.type, config.head_dim));
  const int64_t p = options.page_tokens;
  if (p < 1 || p > (int64_t{1} << 20) || (p & (p - 1)) != 0) {
    return InvalidArgument("KV page size must be a power of two between 1 and 2^20 positions, got " +
                           std::to_string(p));
  }
  std::map<int64_t, int> by_chunk;  // chunk -> group (global, chunk 0, first)
  std::vector<Group> groups;
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    const int64_t chunk = config.layers[l].attention_chunk_size;
    by_chunk.emplace(chunk, 0);
  }
  for (auto& [chunk, g] : by_chunk) {
    g = static_cast<int>(groups.size());
    Group group;
    group.chunk = chunk;
    group.page_tokens = chunk > 0 ? std::gcd(p, chunk) : p;
    group.page_shift = Log2(group.page_tokens);
    groups.push_back(group);
  }
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    groups[by_chunk[config.layers[l].attention_chunk_size]].layers.push_back(static_cast<int>(l));
  }
  const int64_t row = RowBytes(options.type, config.head_dim);
  for (Group& g : groups) {
    g.page_bytes = static_cast<int64_t>(g.layers.size()) * 2 * config.num_key_value_heads * g.page_tokens * row;
  }
  return groups;
}

std::vector<int64_t> KvCache::PagesFor(const std::vector<Group>& groups, int64_t n_ctx, int64_t n_seqs) {
  std::vector<int64_t> pages;
  for (const Group& g : groups) {
    const int64_t held = g.chunk > 0 ? std::min(g.chunk, n_ctx) : n_ctx;
    pages.push_back(n_seqs * CeilDiv(held, g.page_tokens));
  }
  return pages;
}

std::vector<int64_t> KvCache::PagesForBytes(const std::vector<Group>& groups, int64_t bytes, int64_t n_ctx) {
  const std::vector<int64_t> one = PagesFor(groups, n_ctx, 1);
  double per_seq = 0;
  for (size_t g = 0; g < groups.size(); ++g) per_seq += static_cast<double>(one[g] * groups[g].page_bytes);
  std::vector<int64_t> pages;
  for (size_t g = 0; g < groups.size(); ++g) {
    const double share = per_seq > 0 ? static_cast<double>(one[g] * groups[g].page_bytes) / per_seq : 0;
    pages.push_back(std::max<int64_t>(
        1, static_cast<int64_t>(static_cast<double>(bytes) * share / static_cast<double>(groups[g].page_bytes))));
  }
  return pages;
}

Result<std::unique_ptr<KvCache>> KvCache::Create(const ModelConfig& config, const Options& options,
                                                 const std::vector<int64_t>& n_pages) {
  HERD_ASSIGN_OR_RETURN(std::vector<Group> groups, Layout(config, options));
  if (n_pages.size() != groups.size()) return Internal("KV cache: page counts do not match the layer groups");
  std::unique_ptr<KvCache> c(new KvCache());
  c->options_ = options;
  c->n_kv_heads_ = config.num_key_value_heads;
  c->head_dim_ = config.head_dim;
  c->row_bytes_ = RowBytes(options.type, config.head_dim);
  c->page_shift_ = Log2(options.page_tokens);
  c->layer_group_.assign(static_cast<size_t>(config.num_hidden_layers), 0);
  c->layer_index_.assign(static_cast<size_t>(config.num_hidden_layers), 0);
  for (size_t g = 0; g < groups.size(); ++g) {
    groups[g].n_pages = n_pages[g];
    for (size_t i = 0; i < groups[g].layers.size(); ++i) {
      c->layer_group_[groups[g].layers[i]] = static_cast<int>(g);
      c->layer_index_[groups[g].layers[i]] = static_cast<int>(i);
    }
    if (n_pages[g] < 1 || n_pages[g] > (int64_t{1} << 30)) {
      return InvalidArgument("KV cache: " + std::to_string(n_pages[g]) + " pages is out of range");
    }
    const uint64_t bytes = static_cast<uint64_t>(n_pages[g]) * static_cast<uint64_t>(groups[g].page_bytes);
    auto memory = AnonymousMemory::Allocate(bytes);
    if (!memory.ok()) {
      return memory.status().WithContext("allocating a KV cache of " + std::to_string(bytes >> 20) + " MiB");
    }
    (*memory)->Populate();  // every page now, not a fault inside some later step (AnonymousMemory::Populate)
    c->storage_.push_back(std::move(memory).value());
    c->total_bytes_ += static_cast<int64_t>(bytes);
    Pool pool;
    pool.refs.assign(static_cast<size_t>(n_pages[g]), 0);
    pool.entry.assign(static_cast<size_t>(n_pages[g]), 0);
    pool.prev.assign(static_cast<size_t>(n_pages[g]), -1);
    pool.next.assign(static_cast<size_t>(n_pages[g]), -1);
    for (int64_t p = n_pages[g] - 1; p >= 0; --p) pool.free_list.push_back(static_cast<int32_t>(p));
    c->pools_.push_back(std::move(pool));
  }
  c->groups_ = std::move(groups);
  return c;
}

int64_t KvCache::total_pages() const {
  int64_t n = 0;
  for (const Group& g : groups_) n += g.n_pages;
  return n;
}

int64_t KvCache::used_pages() const {
  int64_t n = 0;
  for (size_t g = 0; g < groups_.size(); ++g) n += groups_[g].n_pages - Available(static_cast<int>(g));
  return n;
}

int64_t KvCache::cached_pages() const {
  int64_t n = 0;
  for (const Pool& p : pools_) {
    for (uint64_t e : p.entry) n += e != 0;
  }
  return n;
}

void KvCache::EnsureTables(KvSequence& seq) const {
  if (seq.tables_.size() != groups_.size()) seq.tables_.resize(groups_.size());
}

std::vector<int64_t> KvCache::PagesNeeded(const KvSequence& seq, int64_t new_len) const {
  std::vector<int64_t> need(groups_.size(), 0);
  if (new_len <= seq.n_past_) return need;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const int s = groups_[g].page_shift;
    const std::vector<int32_t>* table = seq.tables_.size() > g ? &seq.tables_[g] : nullptr;
    for (int64_t i = seq.n_past_ >> s; i <= (new_len - 1) >> s; ++i) {
      need[g] += table == nullptr || i >= static_cast<int64_t>(table->size()) || (*table)[i] < 0;
    }
  }
  return need;
}

bool KvCache::Holds(const KvSequence& seq, int64_t new_len) const {
  if (new_len <= seq.n_past_) return true;
  if (seq.tables_.size() != groups_.size()) return false;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const int s = groups_[g].page_shift;
    const std::vector<int32_t>& table = seq.tables_[g];
    for (int64_t i = seq.n_past_ >> s; i <= (new_len - 1) >> s; ++i) {
      if (i >= static_cast<int64_t>(table.size()) || table[i] < 0) return false;
    }
  }
  return true;
}

bool KvCache::CanReserve(const KvSequence& seq, int64_t new_len) const {
  const std::vector<int64_t> need = PagesNeeded(seq, new_len);
  for (size_t g = 0; g < groups_.size(); ++g) {
    if (need[g] > Available(static_cast<int>(g))) return false;
  }
  return true;
}

int64_t KvCache::TokensToChunkEnd(int64_t pos) const {
  int64_t n = int64_t{1} << 62;
  for (const Group& g : groups_) {
    if (g.chunk > 0) n = std::min(n, g.chunk - pos % g.chunk);
  }
  return n;
}

Status KvCache::Restore(KvSequence& seq, int64_t n_past) {
  Release(seq);
  EnsureTables(seq);
  for (size_t g = 0; g < groups_.size(); ++g) {
    const Group& group = groups_[g];
    const int64_t first = group.chunk > 0 ? n_past / group.chunk * group.chunk : 0;
    const int64_t need = n_past > first ? ((n_past - 1) >> group.page_shift) - (first >> group.page_shift) + 1 : 0;
    if (need > Available(static_cast<int>(g))) {
      return ResourceExhausted("the KV cache has no room for " + std::to_string(n_past) + " positions");
    }
  }
  for (size_t g = 0; g < groups_.size(); ++g) {
    const Group& group = groups_[g];
    const int64_t first = group.chunk > 0 ? n_past / group.chunk * group.chunk : 0;
    seq.tables_[g].assign(static_cast<size_t>(CeilDiv(n_past, group.page_tokens)), -1);
    for (int64_t pos = first >> group.page_shift << group.page_shift; pos < n_past; pos += group.page_tokens) {
      seq.tables_[g][pos >> group.page_shift] = Allocate(static_cast<int>(g));
    }
  }
  seq.n_past_ = n_past;
  seq.tokens_.assign(static_cast<size_t>(n_past), -1);
  return Status::Ok();
}

bool KvCache::Fits(int64_t len) const {
  const std::vector<int64_t> need = PagesFor(groups_, len, 1);
  for (size_t g = 0; g < groups_.size(); ++g) {
    if (need[g] > groups_[g].n_pages) return false;
  }
  return true;
}

Status KvCache::Reserve(KvSequence& seq, int64_t new_len) {
  if (!CanReserve(seq, new_len)) {
    return ResourceExhausted("the KV cache has no free pages for positions " + std::to_string(seq.n_past_) + ".." +
                             std::to_string(new_len - 1));
  }
  EnsureTables(seq);
  for (size_t g = 0; g < groups_.size(); ++g) {
    const int s = groups_[g].page_shift;
    std::vector<int32_t>& table = seq.tables_[g];
    const int64_t last = (new_len - 1) >> s;
    if (static_cast<int64_t>(table.size()) <= last) table.resize(static_cast<size_t>(last + 1), -1);
    for (int64_t i = seq.n_past_ >> s; i <= last; ++i) {
      if (table[i] < 0) table[i] = Allocate(static_cast<int>(g));
      HERD_CHECK(table[i] >= 0);
    }
  }
  return Status::Ok();
}

void KvCache::Commit(KvSequence& seq, std::span<const int32_t> tokens) {
  seq.n_past_ += static_cast<int64_t>(tokens.size());
  seq.tokens_.insert(seq.tokens_.end(), tokens.begin(), tokens.end());
  Publish(seq);
  ReleaseChunked(seq);
}

void KvCache::ReleaseChunked(KvSequence& seq) {
  for (size_t g = 0; g < groups_.size(); ++g) {
    const Group& group = groups_[g];
    if (group.chunk == 0) continue;
    const int64_t first = seq.n_past_ / group.chunk * group.chunk;  // the next token attends from here
    std::vector<int32_t>& table = seq.tables_[g];
    for (int64_t i = 0; i < static_cast<int64_t>(table.size()) && (i + 1) * group.page_tokens <= first; ++i) {
      if (table[i] >= 0) {
        Unref(static_cast<int>(g), table[i]);
        table[i] = -1;
      }
    }
  }
}

uint64_t KvCache::BlockHash(uint64_t parent, std::span<const int32_t> tokens) const {
  uint64_t h = Mix(parent ^ 0x9e3779b97f4a7c15ull);
  for (int32_t t : tokens) h = Mix(h ^ (static_cast<uint64_t>(static_cast<uint32_t>(t)) + 0x632be59bd9b4e019ull));
  return h == 0 ? 1 : h;  // 0 means "no entry"
}

void KvCache::Publish(KvSequence& seq) {
  const int64_t p = options_.page_tokens;
  const int64_t complete = seq.n_past_ / p;
  while (static_cast<int64_t>(seq.block_hash_.size()) < complete) {
    const int64_t b = static_cast<int64_t>(seq.block_hash_.size());
    const uint64_t parent = b > 0 ? seq.block_hash_[b - 1] : 0;
    const std::span<const int32_t> toks(seq.tokens_.data() + b * p, static_cast<size_t>(p));
    const uint64_t h = BlockHash(parent, toks);
    seq.block_hash_.push_back(h);
    if (!options_.prefix_cache || entries_.count(h) != 0) continue;
    Entry e;
    e.parent = parent;
    e.tokens.assign(toks.begin(), toks.end());
    bool any = false, globals = true;
    for (size_t g = 0; g < groups_.size(); ++g) {
      const int s = groups_[g].page_shift;
      std::vector<int32_t>& pages = e.pages.emplace_back();
      for (int64_t i = (b * p) >> s; i < ((b + 1) * p) >> s; ++i) {
        const int32_t page = i < static_cast<int64_t>(seq.tables_[g].size()) ? seq.tables_[g][i] : -1;
        const bool ok = page >= 0 && pools_[g].entry[page] == 0;
        pages.push_back(ok ? page : -1);
        any |= ok;
        if (!ok && groups_[g].chunk == 0) globals = false;
      }
    }
    if (!any || !globals) continue;
    for (size_t g = 0; g < groups_.size(); ++g) {
      for (int32_t page : e.pages[g]) {
        if (page >= 0) pools_[g].entry[page] = h;
      }
    }
    entries_.emplace(h, std::move(e));
  }
}

int64_t KvCache::AttachPrefix(KvSequence& seq, std::span<const int32_t> prompt) {
  if (!options_.prefix_cache || seq.n_past_ != 0 || prompt.size() < 2) return 0;
  EnsureTables(seq);
  const int64_t p = options_.page_tokens;
  const int64_t max_blocks = (static_cast<int64_t>(prompt.size()) - 1) / p;
  std::vector<const Entry*> found;
  std::vector<uint64_t> hashes;
  uint64_t parent = 0;
  for (int64_t b = 0; b < max_blocks; ++b) {
    const std::span<const int32_t> toks = prompt.subspan(static_cast<size_t>(b * p), static_cast<size_t>(p));
    const uint64_t h = BlockHash(parent, toks);
    auto it = entries_.find(h);
    if (it == entries_.end() || it->second.parent != parent ||
        !std::equal(toks.begin(), toks.end(), it->second.tokens.begin())) {
      break;
    }
    bool globals = true;
    for (size_t g = 0; g < groups_.size(); ++g) {
      if (groups_[g].chunk == 0 && it->second.pages[g][0] < 0) globals = false;
    }
    if (!globals) break;
    found.push_back(&it->second);
    hashes.push_back(h);
    parent = h;
  }
  // The longest prefix whose chunked pages (the chunk its first new token falls in) are all cached too.
  int64_t k = static_cast<int64_t>(found.size());
  for (; k > 0; --k) {
    const int64_t u = k * p;
    bool ok = true;
    for (size_t g = 0; g < groups_.size() && ok; ++g) {
      const Group& group = groups_[g];
      if (group.chunk == 0) continue;
      for (int64_t pos = u / group.chunk * group.chunk; pos < u && ok; pos += group.page_tokens) {
        ok = found[pos / p]->pages[g][(pos % p) >> group.page_shift] >= 0;
      }
    }
    if (ok) break;
  }
  const int64_t u = k * p;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const Group& group = groups_[g];
    std::vector<int32_t>& table = seq.tables_[g];
    table.assign(static_cast<size_t>(CeilDiv(u, group.page_tokens)), -1);
    const int64_t from = group.chunk > 0 ? u / group.chunk * group.chunk : 0;
    for (int64_t pos = from; pos < u; pos += group.page_tokens) {
      const int32_t page = found[pos / p]->pages[g][(pos % p) >> group.page_shift];
      Ref(static_cast<int>(g), page);
      table[pos >> group.page_shift] = page;
    }
  }
  seq.n_past_ = u;
  seq.tokens_.assign(prompt.begin(), prompt.begin() + u);
  seq.block_hash_.assign(hashes.begin(), hashes.begin() + k);
  return u;
}

Status KvCache::Fork(const KvSequence& src, KvSequence& dst) {
  std::vector<int64_t> copies(groups_.size(), 0);
  for (size_t g = 0; g < groups_.size() && g < src.tables_.size(); ++g) {
    const int64_t pt = groups_[g].page_tokens;
    if (src.n_past_ % pt != 0 && src.tables_[g][(src.n_past_ - 1) / pt] >= 0) copies[g] = 1;
    if (copies[g] > Available(static_cast<int>(g))) {
      return ResourceExhausted("the KV cache has no free page to copy a shared prompt's last page");
    }
  }
  Release(dst);
  EnsureTables(dst);
  for (size_t g = 0; g < groups_.size() && g < src.tables_.size(); ++g) {
    const int64_t pt = groups_[g].page_tokens;
    dst.tables_[g] = src.tables_[g];
    for (size_t i = 0; i < dst.tables_[g].size(); ++i) {
      const int32_t page = dst.tables_[g][i];
      if (page < 0) continue;
      const bool partial = static_cast<int64_t>(i) == (src.n_past_ - 1) / pt && src.n_past_ % pt != 0;
      if (partial) {
        const int32_t copy = Allocate(static_cast<int>(g));
        HERD_CHECK(copy >= 0);
        uint8_t* base = storage_[g]->data();
        std::memcpy(base + copy * groups_[g].page_bytes, base + page * groups_[g].page_bytes,
                    static_cast<size_t>(groups_[g].page_bytes));
        dst.tables_[g][i] = copy;
      } else {
        Ref(static_cast<int>(g), page);
      }
    }
  }
  dst.n_past_ = src.n_past_;
  dst.tokens_ = src.tokens_;
  dst.block_hash_ = src.block_hash_;
  return Status::Ok();
}

Status KvCache::Truncate(KvSequence& seq, int64_t n) {
  if (n < 0 || n > seq.n_past_) {
    return OutOfRange("cannot rewind to position " + std::to_string(n) + " of " + std::to_string(seq.n_past_));
  }
  if (n == seq.n_past_) return Status::Ok();
  std::vector<int64_t> copies(groups_.size(), 0);
  for (size_t g = 0; g < groups_.size(); ++g) {
    const Group& group = groups_[g];
    const std::vector<int32_t>& table = seq.tables_[g];
    if (group.chunk > 0) {
      for (int64_t pos = n / group.chunk * group.chunk; pos < n; pos += group.page_tokens) {
        if (table[pos >> group.page_shift] < 0) {
          return OutOfRange("cannot rewind to position " + std::to_string(n) + ": layer " +
                            std::to_string(group.layers[0]) + " keeps only its current attention chunk of " +
                            std::to_string(group.chunk) + " positions");
        }
      }
    }
    if (n % group.page_tokens != 0) {
      const int32_t page = table[n >> group.page_shift];
      if (pools_[g].refs[page] > 1 || pools_[g].entry[page] != 0) copies[g] = 1;
      if (copies[g] > Available(static_cast<int>(g))) {
        return ResourceExhausted("the KV cache has no free page to copy a shared page while rewinding");
      }
    }
  }
  for (size_t g = 0; g < groups_.size(); ++g) {
    const Group& group = groups_[g];
    std::vector<int32_t>& table = seq.tables_[g];
    const int64_t keep = CeilDiv(n, group.page_tokens);
    for (int64_t i = keep; i < static_cast<int64_t>(table.size()); ++i) {
      if (table[i] >= 0) Unref(static_cast<int>(g), table[i]);
    }
    table.resize(static_cast<size_t>(keep));
    if (copies[g] > 0) {
      const int32_t old = table[n >> group.page_shift];
      const int32_t copy = Allocate(static_cast<int>(g));
      HERD_CHECK(copy >= 0);
      uint8_t* base = storage_[g]->data();
      std::memcpy(base + copy * group.page_bytes, base + old * group.page_bytes, static_cast<size_t>(group.page_bytes));
      Unref(static_cast<int>(g), old);
      table[n >> group.page_shift] = copy;
    }
  }
  seq.n_past_ = n;
  seq.tokens_.resize(static_cast<size_t>(n));
  seq.block_hash_.resize(std::min(seq.block_hash_.size(), static_cast<size_t>(n / options_.page_tokens)));
  return Status::Ok();
}

void KvCache::Release(KvSequence& seq) {
  for (size_t g = 0; g < seq.tables_.size() && g < groups_.size(); ++g) {
    for (int32_t page : seq.tables_[g]) {
      if (page >= 0) Unref(static_cast<int>(g), page);
    }
    seq.tables_[g].clear();
  }
  seq.n_past_ = 0;
  seq.tokens_.clear();
  seq.block_hash_.clear();
}

int32_t KvCache::Allocate(int g) {
  Pool& pool = pools_[g];
  int32_t page = -1;
  if (!pool.free_list.empty()) {
    page = pool.free_list.back();
    pool.free_list.pop_back();
  } else if (pool.lru_head >= 0) {
    page = pool.lru_head;
    Evict(g, page);
  } else {
    return -1;
  }
  pool.refs[page] = 1;
  return page;
}

void KvCache::Ref(int g, int32_t page) {
  Pool& pool = pools_[g];
  if (pool.refs[page] == 0) {
    HERD_CHECK(pool.entry[page] != 0);  // a page with no holder is either cached (in the LRU) or free
    LruRemove(g, page);
  }
  ++pool.refs[page];
}

void KvCache::Unref(int g, int32_t page) {
  Pool& pool = pools_[g];
  HERD_CHECK(pool.refs[page] > 0);
  if (--pool.refs[page] > 0) return;
  if (pool.entry[page] != 0) {
    LruPush(g, page);
  } else {
    pool.free_list.push_back(page);
  }
}

void KvCache::LruRemove(int g, int32_t page) {
  Pool& pool = pools_[g];
  const int32_t prev = pool.prev[page], next = pool.next[page];
  (prev >= 0 ? pool.next[prev] : pool.lru_head) = next;
  (next >= 0 ? pool.prev[next] : pool.lru_tail) = prev;
  pool.prev[page] = pool.next[page] = -1;
  --pool.lru_size;
}

void KvCache::LruPush(int g, int32_t page) {
  Pool& pool = pools_[g];
  pool.prev[page] = pool.lru_tail;
  pool.next[page] = -1;
  (pool.lru_tail >= 0 ? pool.next[pool.lru_tail] : pool.lru_head) = page;
  pool.lru_tail = page;
  ++pool.lru_size;
}

// Takes an evictable page out of the LRU and out of its entry; an entry left without a global page is dropped.
void KvCache::Evict(int g, int32_t page) {
  Pool& pool = pools_[g];
  LruRemove(g, page);
  const uint64_t h = pool.entry[page];
  pool.entry[page] = 0;
  auto it = entries_.find(h);
  if (it == entries_.end()) return;
  bool globals = true, any = false;
  for (size_t gg = 0; gg < groups_.size(); ++gg) {
    for (int32_t& p : it->second.pages[gg]) {
      if (static_cast<int>(gg) == g && p == page) p = -1;
      any |= p >= 0;
      if (groups_[gg].chunk == 0 && p < 0) globals = false;
    }
  }
  if (!globals || !any) DropEntry(h);
}

void KvCache::DropEntry(uint64_t hash) {
  auto it = entries_.find(hash);
  if (it == entries_.end()) return;
  for (size_t g = 0; g < groups_.size(); ++g) {
    Pool& pool = pools_[g];
    for (int32_t page : it->second.pages[g]) {
      if (page < 0 || pool.entry[page] != hash) continue;
      pool.entry[page] = 0;
      if (pool.refs[page] == 0) {
        LruRemove(static_cast<int>(g), page);
        pool.free_list.push_back(page);
      }
    }
  }
  entries_.erase(it);
}

uint8_t* KvCache::Row(const KvSequence& seq, int layer, int kv, int64_t kv_head, int64_t pos) const {
  const int g = layer_group_[layer];
  const Group& group = groups_[g];
  const int32_t page = seq.tables_[g][pos >> group.page_shift];
  HERD_DCHECK(page >= 0);
  return storage_[g]->data() + page * group.page_bytes +
         ((layer_index_[layer] * 2 + kv) * n_kv_heads_ + kv_head) * group.page_tokens * row_bytes_ +
         (pos & (group.page_tokens - 1)) * row_bytes_;
}

uint8_t* KvCache::KeyRow(const KvSequence& seq, int layer, int64_t kv_head, int64_t pos) const {
  return Row(seq, layer, 0, kv_head, pos);
}

uint8_t* KvCache::ValueRow(const KvSequence& seq, int layer, int64_t kv_head, int64_t pos) const {
  return Row(seq, layer, 1, kv_head, pos);
}

kernels::KvView KvCache::View(const KvSequence& seq, int layer, int64_t kv_head) const {
  const int g = layer_group_[layer];
  const Group& group = groups_[g];
  const int64_t k_off = ((layer_index_[layer] * 2 + 0) * n_kv_heads_ + kv_head) * group.page_tokens * row_bytes_;
  const int64_t v_off = ((layer_index_[layer] * 2 + 1) * n_kv_heads_ + kv_head) * group.page_tokens * row_bytes_;
  kernels::KvView view;
  view.k_base = storage_[g]->data() + k_off;
  view.v_base = storage_[g]->data() + v_off;
  view.pages = seq.tables_[g].data();
  view.page_shift = group.page_shift;
  view.page_bytes = group.page_bytes;
  view.row_bytes = row_bytes_;
  view.type = options_.type;
  return view;
}

int64_t KvCache::FirstKey(int layer, int64_t pos) const {
  const int64_t chunk = groups_[layer_group_[layer]].chunk;
  return chunk > 0 ? pos / chunk * chunk : 0;
}

void ImageCacheKeys(uint64_t content, int64_t n, int32_t* keys) {
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t h = Mix(content + 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(i + 1));
    keys[i] = -2 - static_cast<int32_t>(h & 0x3fffffffu);  // -1 is Restore's "unknown"
  }
}

}  // namespace herd::model
