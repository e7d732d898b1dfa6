// The KV cache costs what the Llama 4 architecture needs: chunked RoPE layers keep a ring of one chunk, only
// the global NoPE layers grow with the context. And a conversation saved from the cache and loaded into a new
// state continues with exactly the logits of an uninterrupted one.
#include <gtest/gtest.h>

#include "core/thread_pool.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "test_util.h"

namespace herd {
namespace {

using testing::SharedPath;

std::unique_ptr<model::Model> LoadFixture(const std::string& name) {
  runtime::LoadOptions o;
  o.model_path = SharedPath("fixtures/llama4-tiny-text/" + name);
  o.require_tokenizer = false;
  o.show_progress = false;
  auto m = runtime::LoadModel(o);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return std::move((*m)->model);
}

TEST(Llama4KvCache, ChunkedLayersKeepOneChunk) {
  auto m = LoadFixture("interleaved");
  const model::ModelConfig& c = m->config();
  int64_t global = 0, chunked = 0;
  for (const auto& l : c.layers) (l.attention_chunk_size > 0 ? chunked : global)++;
  ASSERT_EQ(global, 2);  // no_rope_layers [1,1,1,0,1,1,1,0]: layers 3 and 7 are NoPE, global
  ASSERT_EQ(chunked, 6);
  const int64_t per_pos = 2 * c.num_key_value_heads * c.head_dim * int64_t{sizeof(float)};  // K and V
  for (int64_t n_ctx : {64, 1024, 4096}) {
    auto s = m->NewState(n_ctx, 16);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ((*s)->KvBytes(), per_pos * (global * n_ctx + chunked * 8)) << n_ctx;
  }
}

TEST(Llama4KvCache, SaveLoadContinuesExactly) {
  auto m = LoadFixture("allmoe");
  ThreadPool pool(2);
  const int64_t vocab = m->config().vocab_size;
  std::vector<int32_t> first = {1, 17, 300, 42, 5, 9, 81, 77, 3, 120, 11};  // crosses a chunk boundary (8)
  std::vector<int32_t> second = {64, 65, 66, 7};
  std::vector<float> a(vocab), b(vocab);

  auto s1 = m->NewState(256, 16);
  ASSERT_TRUE(s1.ok());
  ASSERT_TRUE(m->Forward(**s1, first, model::LogitsMode::kLast, a.data(), pool).ok());
  std::string blob;
  ASSERT_TRUE((*s1)->SaveTo(&blob).ok());
  ASSERT_TRUE(m->Forward(**s1, second, model::LogitsMode::kLast, a.data(), pool).ok());

  auto s2 = m->NewState(512, 16);  // a larger context is fine
  ASSERT_TRUE(s2.ok());
  ASSERT_TRUE((*s2)->LoadFrom(blob).ok());
  EXPECT_EQ((*s2)->n_past(), static_cast<int64_t>(first.size()));
  ASSERT_TRUE(m->Forward(**s2, second, model::LogitsMode::kLast, b.data(), pool).ok());
  EXPECT_EQ(a, b);

  // Damaged or foreign blobs are errors, and a too-small context is refused.
  EXPECT_FALSE((*s2)->LoadFrom(blob.substr(0, blob.size() - 4)).ok());
  EXPECT_FALSE((*s2)->LoadFrom("HERDKV01").ok());
  auto tiny = m->NewState(8, 8);
  ASSERT_TRUE(tiny.ok());
  EXPECT_FALSE((*tiny)->LoadFrom(blob).ok());
}

TEST(Llama4KvCache, RewindWithinTheCurrentChunkOnly) {
  auto m = LoadFixture("interleaved");
  ThreadPool pool(1);
  auto s = m->NewState(128, 16);
  ASSERT_TRUE(s.ok());
  std::vector<int32_t> t(20, 5);
  std::vector<float> logits(m->config().vocab_size);
  ASSERT_TRUE(m->Forward(**s, t, model::LogitsMode::kLast, logits.data(), pool).ok());
  EXPECT_TRUE((*s)->Rewind(18).ok());   // same chunk [16, 24)
  EXPECT_FALSE((*s)->Rewind(10).ok());  // chunk [8, 16) was overwritten by the ring
  EXPECT_TRUE((*s)->Rewind(0).ok());
}

}  // namespace
}  // namespace herd
