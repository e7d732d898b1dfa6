// The paged KV cache: layout of the layer groups, a randomized life of many sequences (arriving, growing,
// sharing cached prefixes, forking, rewinding, leaving) in which every row a sequence can attend to must hold what
// that sequence wrote there (no page aliasing, prefixes attached only where the tokens agree) and no page leaks,
// chunked groups that keep only the current chunk, and LRU eviction of cached pages.
#include "model/kv_cache.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace herd::model {
namespace {

// Layers 0..n-1; every `global_every`-th layer global, the others chunked with `chunk` (0: all global).
ModelConfig Config(int64_t layers, int64_t chunk, int64_t global_every) {
  ModelConfig c;
  c.num_hidden_layers = layers;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  for (int64_t l = 0; l < layers; ++l) {
    LayerConfig lc;
    lc.attention_chunk_size = chunk > 0 && (l + 1) % global_every != 0 ? chunk : 0;
    c.layers.push_back(lc);
  }
  return c;
}

// A row's signature: the hash of the tokens [0, pos] of the sequence that wrote it, and the layer and head.
uint64_t Signature(std::span<const int32_t> tokens, int64_t pos, int layer, int64_t head, int kv) {
  uint64_t h = 1469598103934665603ull ^ static_cast<uint64_t>(layer * 131 + head * 7 + kv);
  for (int64_t i = 0; i <= pos; ++i) h = (h ^ static_cast<uint64_t>(tokens[i])) * 1099511628211ull;
  return h;
}

void Write(KvCache& c, const KvSequence& s, std::span<const int32_t> all, int64_t from, int64_t to) {
  for (int64_t pos = from; pos < to; ++pos) {
    for (int l = 0; l < c.n_layers(); ++l) {
      for (int64_t h = 0; h < c.n_kv_heads(); ++h) {
        for (int kv = 0; kv < 2; ++kv) {
          const uint64_t sig = Signature(all, pos, l, h, kv);
          std::memcpy(kv == 0 ? c.KeyRow(s, l, h, pos) : c.ValueRow(s, l, h, pos), &sig, sizeof sig);
        }
      }
    }
  }
}

// Every row seq can attend to from its next position holds its own signature.
void Check(const KvCache& c, const KvSequence& s) {
  const int64_t n = s.n_past();
  for (int l = 0; l < c.n_layers(); ++l) {
    for (int64_t pos = c.FirstKey(l, n); pos < n; ++pos) {
      for (int64_t h = 0; h < c.n_kv_heads(); ++h) {
        for (int kv = 0; kv < 2; ++kv) {
          uint64_t got;
          std::memcpy(&got, kv == 0 ? c.KeyRow(s, l, h, pos) : c.ValueRow(s, l, h, pos), sizeof got);
          ASSERT_EQ(got, Signature(s.tokens(), pos, l, h, kv)) << "layer " << l << " pos " << pos;
        }
      }
    }
  }
}

TEST(KvCacheTest, GroupsByAttentionSpan) {
  KvCache::Options o;
  o.page_tokens = 16;
  auto groups = KvCache::Layout(Config(8, 8, 4), o);
  ASSERT_TRUE(groups.ok());
  ASSERT_EQ(groups->size(), 2u);
  EXPECT_EQ((*groups)[0].chunk, 0);
  EXPECT_EQ((*groups)[0].page_tokens, 16);
  EXPECT_EQ((*groups)[0].layers, (std::vector<int>{3, 7}));
  EXPECT_EQ((*groups)[1].chunk, 8);
  EXPECT_EQ((*groups)[1].page_tokens, 8);  // gcd(16, 8): a page never straddles a chunk
  EXPECT_EQ((*groups)[1].layers.size(), 6u);
  EXPECT_EQ((*groups)[0].page_bytes, 2 * 2 * 2 * 16 * 8 * 4);  // layers x K,V x heads x positions x row
  o.page_tokens = 12;
  EXPECT_FALSE(KvCache::Layout(Config(8, 8, 4), o).ok());
  o.page_tokens = 16;
  o.type = DType::kQ8_0;  // head_dim 8 is not a multiple of 32
  auto bad = KvCache::Layout(Config(8, 8, 4), o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("multiple of 32"), std::string::npos);
  EXPECT_FALSE(ParseKvType("f8").ok());
}

class KvCacheLife : public ::testing::TestWithParam<int64_t> {};  // param: chunk size (0: dense)

TEST_P(KvCacheLife, RandomSequencesKeepTheirRowsAndLeakNothing) {
  const int64_t chunk = GetParam();
  const ModelConfig cfg = Config(4, chunk, 2);
  KvCache::Options o;
  o.page_tokens = 4;
  auto groups = KvCache::Layout(cfg, o);
  ASSERT_TRUE(groups.ok());
  auto cache = KvCache::Create(cfg, o, KvCache::PagesFor(*groups, 48, 6));  // room for 6 sequences of 48
  ASSERT_TRUE(cache.ok());
  KvCache& c = **cache;
  std::mt19937_64 rng(GetParam() + 11);
  struct Live {
    KvSequence seq;
    std::vector<int32_t> tokens;  // what it will hold
  };
  std::vector<Live> live;
  int64_t attached = 0, forks = 0, rewinds = 0;
  for (int it = 0; it < 3000; ++it) {
    const int action = static_cast<int>(rng() % 10);
    if (action < 2 && live.size() < 8) {  // a new sequence; tokens from a tiny vocabulary so prefixes repeat
      Live l;
      const int64_t len = 1 + static_cast<int64_t>(rng() % 48);
      for (int64_t i = 0; i < len; ++i) l.tokens.push_back(static_cast<int32_t>(rng() % 2));
      attached += c.AttachPrefix(l.seq, l.tokens);
      Check(c, l.seq);
      live.push_back(std::move(l));
    } else if (action < 3 && !live.empty()) {  // one leaves
      const size_t i = rng() % live.size();
      c.Release(live[i].seq);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
    } else if (action < 4 && !live.empty() && live.size() < 8) {  // fork (n > 1 choices)
      const size_t i = rng() % live.size();
      Live l;
      if (c.Fork(live[i].seq, l.seq).ok()) {
        l.tokens.assign(live[i].seq.tokens().begin(), live[i].seq.tokens().end());
        for (int64_t k = 0; k < 5; ++k) l.tokens.push_back(static_cast<int32_t>(rng() % 2));
        ++forks;
        Check(c, l.seq);
        live.push_back(std::move(l));
      }
    } else if (action < 5 && !live.empty()) {  // rewind
      Live& l = live[rng() % live.size()];
      const int64_t n = l.seq.n_past() > 0 ? static_cast<int64_t>(rng() % (l.seq.n_past() + 1)) : 0;
      const Status s = c.Truncate(l.seq, n);
      if (s.ok()) {
        l.tokens.resize(static_cast<size_t>(n));
        for (int64_t k = 0; k < 3; ++k) l.tokens.push_back(static_cast<int32_t>(rng() % 2));
        ++rewinds;
        Check(c, l.seq);
      } else {
        EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
        EXPECT_GT(chunk, 0) << "only chunked layers forget positions";
      }
    } else if (!live.empty()) {  // one grows by a step
      Live& l = live[rng() % live.size()];
      const int64_t left = static_cast<int64_t>(l.tokens.size()) - l.seq.n_past();
      if (left <= 0) continue;
      const int64_t k =
          std::min<int64_t>({left, 1 + static_cast<int64_t>(rng() % 7), c.TokensToChunkEnd(l.seq.n_past())});
      if (!c.Reserve(l.seq, l.seq.n_past() + k).ok()) continue;  // pool short: fine, it waits
      ASSERT_TRUE(c.Holds(l.seq, l.seq.n_past() + k));
      const int64_t from = l.seq.n_past();
      Write(c, l.seq, l.tokens, from, from + k);
      c.Commit(l.seq, std::span<const int32_t>(l.tokens.data() + from, static_cast<size_t>(k)));
      Check(c, l.seq);
    }
    for (const Live& l : live) Check(c, l.seq);
  }
  EXPECT_GT(attached, 0);
  EXPECT_GT(forks, 0);
  EXPECT_GT(rewinds, 0);
  for (Live& l : live) c.Release(l.seq);
  EXPECT_EQ(c.used_pages(), 0);
}

INSTANTIATE_TEST_SUITE_P(Chunks, KvCacheLife, ::testing::Values(0, 8, 12));

TEST(KvCacheTest, ChunkedLayersHoldOnlyTheCurrentChunk) {
  const ModelConfig cfg = Config(2, 8, 2);  // layer 0 chunked (8), layer 1 global
  KvCache::Options o;
  o.page_tokens = 4;
  o.prefix_cache = false;
  auto groups = KvCache::Layout(cfg, o);
  ASSERT_TRUE(groups.ok());
  auto cache = KvCache::Create(cfg, o, KvCache::PagesFor(*groups, 64, 1));
  ASSERT_TRUE(cache.ok());
  KvCache& c = **cache;
  EXPECT_EQ(c.groups()[1].n_pages, 2);  // one chunk of 8 = 2 pages of 4
  KvSequence s;
  std::vector<int32_t> t(40, 3);
  for (int64_t pos = 0; pos < 40;) {
    const int64_t k = std::min<int64_t>(5, c.TokensToChunkEnd(pos));
    EXPECT_LE(pos % 8 + k, 8) << "a step never crosses a chunk boundary";
    ASSERT_TRUE(c.Reserve(s, pos + k).ok()) << pos;
    Write(c, s, t, pos, pos + k);
    c.Commit(s, std::span<const int32_t>(t.data() + pos, static_cast<size_t>(k)));
    pos += k;
    Check(c, s);
  }
  EXPECT_EQ(c.used_pages(), 10);         // 40 / 4 global pages; position 40 starts a new chunk: no chunked page held
  EXPECT_FALSE(c.Truncate(s, 30).ok());  // chunk [24, 32) is gone
  ASSERT_TRUE(c.Reserve(s, 43).ok());
  Write(c, s, std::vector<int32_t>(43, 3), 40, 43);
  c.Commit(s, std::span<const int32_t>(t.data(), 3));
  EXPECT_TRUE(c.Truncate(s, 41).ok());
  c.Release(s);
  EXPECT_EQ(c.used_pages(), 0);
}

TEST(KvCacheTest, CachedPagesAreEvictedOldestFirst) {
  const ModelConfig cfg = Config(1, 0, 1);
  KvCache::Options o;
  o.page_tokens = 4;
  auto cache = KvCache::Create(cfg, o, {6});
  ASSERT_TRUE(cache.ok());
  KvCache& c = **cache;
  auto fill = [&](std::vector<int32_t> tokens) {
    KvSequence s;
    c.AttachPrefix(s, tokens);
    const int64_t from = s.n_past();
    EXPECT_TRUE(c.Reserve(s, static_cast<int64_t>(tokens.size())).ok());
    Write(c, s, tokens, from, static_cast<int64_t>(tokens.size()));
    c.Commit(s, std::span<const int32_t>(tokens.data() + from, tokens.size() - static_cast<size_t>(from)));
    c.Release(s);
  };
  const std::vector<int32_t> a(12, 1), b(12, 2), a_more = [] {
    std::vector<int32_t> v(12, 1);
    v.push_back(9);
    return v;
  }();
  fill(a);  // 3 pages cached
  EXPECT_EQ(c.cached_pages(), 3);
  EXPECT_EQ(c.used_pages(), 0);
  KvSequence probe;
  EXPECT_EQ(c.AttachPrefix(probe, a_more), 12);  // all three blocks reused
  Check(c, probe);
  c.Release(probe);
  fill(b);                                      // 3 more: the pool is full of cached pages
  fill(std::vector<int32_t>(8, 3));             // needs 2: evicts a's two oldest pages (blocks 0, 1)
  EXPECT_EQ(c.AttachPrefix(probe, a_more), 0);  // a's first block is gone, so nothing of a is reachable
  c.Release(probe);
  EXPECT_EQ(c.used_pages(), 0);
}

}  // namespace
}  // namespace herd::model
