// Batch invariance of the batched forward pass (issue 12): a sequence's logits are bit-identical (f32 KV) whether
// it runs alone, inside a step with up to 16 other sequences, or with its prompt cut at random chunk boundaries,
// on the Llama 4 fixtures (chunked and global attention, MoE) and on stories260K (dense). Also: every KV type
// runs, and the prefix cache gives the logits of a full recomputation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "core/thread_pool.h"
#include "model/decoder.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "test_util.h"

namespace herd {
namespace {

using testing::SharedPath;

std::unique_ptr<runtime::LoadedModel> Load(const std::string& rel) {
  runtime::LoadOptions o;
  o.model_path = SharedPath(rel);
  o.require_tokenizer = false;
  o.show_progress = false;
  auto m = runtime::LoadModel(o);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? std::move(m).value() : nullptr;
}

std::vector<std::vector<int32_t>> RandomPrompts(std::mt19937_64& rng, int n, int64_t vocab, int64_t max_len) {
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(n));
  for (auto& p : prompts) {
    p.resize(static_cast<size_t>(std::uniform_int_distribution<int64_t>(1, max_len)(rng)));
    for (int32_t& t : p) t = static_cast<int32_t>(std::uniform_int_distribution<int64_t>(0, vocab - 1)(rng));
  }
  return prompts;
}

// Logits of every position of `p` run alone, in one Forward (split only where the model must split).
std::vector<float> Alone(const model::Model& m, const std::vector<int32_t>& p, ThreadPool& pool, DType kv) {
  auto st = m.NewState(256, 256, kv);
  EXPECT_TRUE(st.ok());
  std::vector<float> all(p.size() * static_cast<size_t>(m.config().vocab_size));
  EXPECT_TRUE(m.Forward(**st, p, model::LogitsMode::kAll, all.data(), pool).ok());
  return all;
}

// A paged KV cache (f32 rows) for `m`: pages of page_tokens positions, room for n_seqs sequences of n_ctx.
std::unique_ptr<model::KvCache> MakeCache(const model::Model& m, int64_t page_tokens, bool prefix_cache, int64_t n_ctx,
                                          int64_t n_seqs) {
  model::KvCache::Options ko;
  ko.page_tokens = page_tokens;
  ko.prefix_cache = prefix_cache;
  auto groups = model::KvCache::Layout(m.config(), ko);
  EXPECT_TRUE(groups.ok()) << groups.status().ToString();
  if (!groups.ok()) return nullptr;
  auto cache = model::KvCache::Create(m.config(), ko, model::KvCache::PagesFor(*groups, n_ctx, n_seqs));
  EXPECT_TRUE(cache.ok()) << cache.status().ToString();
  return cache.ok() ? std::move(cache).value() : nullptr;
}

class BatchInvariance : public ::testing::TestWithParam<std::string> {};

TEST_P(BatchInvariance, SequencesInOneStepEqualTheirRunsAlone) {
  auto lm = Load(GetParam());
  ASSERT_NE(lm, nullptr);
  const model::Model& m = *lm->model;
  const int64_t vocab = m.config().vocab_size;
  auto pool = ThreadPool::Create(2);
  ASSERT_TRUE(pool.ok());
  std::mt19937_64 rng(20261206);
  auto prompts = RandomPrompts(rng, 17, vocab, 40);
  for (size_t i = 9; i < prompts.size(); ++i) {  // these share a prefix with an earlier one (the prefix cache)
    const auto& base = prompts[i - 9];
    std::vector<int32_t> p(base.begin(), base.begin() + static_cast<std::ptrdiff_t>(base.size() / 2 + 1));
    p.insert(p.end(), prompts[i].begin(), prompts[i].begin() + std::min<std::ptrdiff_t>(prompts[i].size(), 19));
    prompts[i] = p;
  }
  std::vector<std::vector<float>> want;
  for (const auto& p : prompts) want.push_back(Alone(m, p, **pool, DType::kF32));

  for (bool prefix_cache : {false, true}) {
    SCOPED_TRACE(prefix_cache ? "prefix cache on" : "prefix cache off");
    auto cache = MakeCache(m, 4, prefix_cache, 64, 17);
    ASSERT_NE(cache, nullptr);
    auto ws = m.NewWorkspace(17 * 40, 17);
    ASSERT_TRUE(ws.ok());
    std::vector<model::KvSequence> seqs(prompts.size());
    std::vector<std::vector<float>> logits(prompts.size(), std::vector<float>(static_cast<size_t>(vocab)));
    int64_t compared = 0, attached = 0;
    for (int round = 0;; ++round) {
      std::vector<model::StepInput> inputs;
      std::vector<size_t> who;
      for (size_t i = 0; i < prompts.size(); ++i) {
        model::KvSequence& s = seqs[i];
        const int64_t left = static_cast<int64_t>(prompts[i].size()) - s.n_past();
        if (left == 0 || rng() % 4 == 0) continue;  // some sequences sit some steps out
        if (s.n_past() == 0 && prefix_cache) attached += cache->AttachPrefix(s, prompts[i]);
        const int64_t room =
            std::min(static_cast<int64_t>(prompts[i].size()) - s.n_past(), cache->TokensToChunkEnd(s.n_past()));
        const int64_t k = std::uniform_int_distribution<int64_t>(1, room)(rng);
        ASSERT_TRUE(cache->Reserve(s, s.n_past() + k).ok());
        inputs.push_back({&s, std::span<const int32_t>(prompts[i].data() + s.n_past(), static_cast<size_t>(k)),
                          model::LogitsMode::kLast, logits[i].data()});
        who.push_back(i);
      }
      if (inputs.empty()) {
        bool done = true;
        for (size_t i = 0; i < prompts.size(); ++i) done &= seqs[i].n_past() == static_cast<int64_t>(prompts[i].size());
        if (done) break;
        continue;
      }
      ASSERT_TRUE(m.Step(*cache, inputs, **ws, **pool).ok());
      for (size_t j = 0; j < who.size(); ++j) {
        const size_t i = who[j];
        const int64_t pos = seqs[i].n_past() - 1;
        ASSERT_EQ(0, std::memcmp(logits[i].data(), want[i].data() + pos * vocab, static_cast<size_t>(vocab) * 4))
            << "sequence " << i << " position " << pos << " in a step of " << inputs.size() << " sequences";
        ++compared;
      }
    }
    EXPECT_GT(compared, 17);
    if (prefix_cache) {
      EXPECT_GT(attached, 0) << "no prompt reused a cached prefix";
    }
    for (auto& s : seqs) cache->Release(s);
    EXPECT_EQ(cache->used_pages(), 0) << "pages leaked";
  }
}

// Early fusion (StepInput::embed_at / embed_rows, Forward's EmbeddingOverride): replacing the embedding rows of
// some positions of prompt P with the token-table rows of prompt Q's tokens there gives Q's logits bit for bit,
// whatever the batch split; other rows change the logits; and positions keyed by content (ImageCacheKeys) are
// reused by the prefix cache only for the same content.
TEST_P(BatchInvariance, EmbeddingRowsReplaceTokens) {
  auto lm = Load(GetParam());
  ASSERT_NE(lm, nullptr);
  const model::Model& m = *lm->model;
  const int64_t vocab = m.config().vocab_size, d = m.config().hidden_size;
  auto pool = ThreadPool::Create(2);
  ASSERT_TRUE(pool.ok());
  std::mt19937_64 rng(20261207);
  std::vector<int32_t> p(37);
  for (int32_t& t : p) t = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
  std::vector<int32_t> q = p;
  const std::vector<int32_t> at = {2, 3, 4, 5, 17, 18, 30, 36};
  for (int32_t i : at) q[i] = static_cast<int32_t>((q[i] + 1 + rng() % static_cast<uint64_t>(vocab - 1)) % vocab);
  // Q's embeddings: the first hidden state a trace records.
  model::ForwardTrace trace;
  auto traced = m.NewState(256, 256, DType::kF32);
  ASSERT_TRUE(traced.ok());
  (*traced)->workspace().trace = &trace;
  std::vector<float> want(q.size() * static_cast<size_t>(vocab));
  ASSERT_TRUE(m.Forward(**traced, q, model::LogitsMode::kAll, want.data(), **pool).ok());
  // Each step (Forward cuts at chunk boundaries) traces [n_layers + 2] states; the first is the embeddings.
  const size_t per_step = static_cast<size_t>(m.config().num_hidden_layers + 2);
  ASSERT_EQ(trace.hidden.size() % per_step, 0u);
  std::vector<float> embedded;
  for (size_t i = 0; i < trace.hidden.size(); i += per_step) {
    embedded.insert(embedded.end(), trace.hidden[i].begin(), trace.hidden[i].end());
  }
  ASSERT_EQ(embedded.size(), q.size() * static_cast<size_t>(d));
  std::vector<float> rows;
  for (int32_t i : at) rows.insert(rows.end(), embedded.begin() + i * d, embedded.begin() + (i + 1) * d);
  for (int64_t n_batch : {int64_t{256}, int64_t{3}, int64_t{16}}) {
    SCOPED_TRACE("batches of " + std::to_string(n_batch));
    auto st = m.NewState(256, n_batch, DType::kF32);
    ASSERT_TRUE(st.ok());
    std::vector<float> got(want.size());
    const model::EmbeddingOverride o{at, rows.data(), {}};
    ASSERT_TRUE(m.Forward(**st, p, model::LogitsMode::kAll, got.data(), **pool, &o).ok());
    ASSERT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)));
  }
  {  // other rows give other logits; bad overrides are refused and leave the state as it was
    std::vector<float> other = rows;
    for (float& v : other) v = -v;
    auto st = m.NewState(256, 256, DType::kF32);
    ASSERT_TRUE(st.ok());
    std::vector<float> got(want.size());
    const model::EmbeddingOverride o{at, other.data(), {}};
    ASSERT_TRUE(m.Forward(**st, p, model::LogitsMode::kAll, got.data(), **pool, &o).ok());
    EXPECT_NE(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)));
    const std::vector<int32_t> unordered = {5, 4};
    const model::EmbeddingOverride bad{unordered, rows.data(), {}};
    auto fresh = m.NewState(256, 256, DType::kF32);
    ASSERT_TRUE(fresh.ok());
    EXPECT_EQ(m.Forward(**fresh, p, model::LogitsMode::kLast, got.data(), **pool, &bad).code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ((*fresh)->n_past(), 0);
    const std::vector<int32_t> outside = {37};
    const model::EmbeddingOverride bad2{outside, rows.data(), {}};
    EXPECT_EQ(m.Forward(**fresh, p, model::LogitsMode::kLast, got.data(), **pool, &bad2).code(),
              StatusCode::kInvalidArgument);
  }
  // The prefix cache: the same tokens with the same content keys reuse pages; with another content's keys, only
  // the pages before the first replaced position.
  auto cache = MakeCache(m, 2, true, 64, 3);
  ASSERT_NE(cache, nullptr);
  auto ws = m.NewWorkspace(64, 1);
  ASSERT_TRUE(ws.ok());
  auto keys_for = [&](uint64_t content) {
    std::vector<int32_t> keys = p, image(at.size());
    model::ImageCacheKeys(content, static_cast<int64_t>(at.size()), image.data());
    for (size_t k = 0; k < at.size(); ++k) keys[at[k]] = image[k];
    return keys;
  };
  const std::vector<int32_t> keys_a = keys_for(1111), keys_b = keys_for(2222);
  EXPECT_NE(keys_a, keys_b);
  for (int32_t k : keys_a) EXPECT_NE(k, -1);
  model::KvSequence first;
  const int64_t chunk_room = cache->TokensToChunkEnd(0);
  const int64_t n = std::min<int64_t>(static_cast<int64_t>(p.size()), chunk_room);
  ASSERT_TRUE(cache->Reserve(first, n).ok());
  std::vector<float> last(static_cast<size_t>(vocab));
  std::vector<int32_t> local_at;
  for (int32_t i : at) {
    if (i < n) local_at.push_back(i);
  }
  model::StepInput in{&first, std::span<const int32_t>(p.data(), static_cast<size_t>(n)), model::LogitsMode::kLast,
                      last.data()};
  in.embed_at = local_at;
  in.embed_rows = rows.data();
  in.cache_keys = std::span<const int32_t>(keys_a.data(), static_cast<size_t>(n));
  ASSERT_TRUE(m.Step(*cache, std::span<const model::StepInput>(&in, 1), **ws, **pool).ok());
  model::KvSequence same, other;
  const std::span<const int32_t> ka(keys_a.data(), static_cast<size_t>(n)), kb(keys_b.data(), static_cast<size_t>(n));
  EXPECT_GE(cache->AttachPrefix(same, ka), n / 2 * 2 - 2);
  EXPECT_LE(cache->AttachPrefix(other, kb), at[0]);
  for (model::KvSequence* s : {&first, &same, &other}) cache->Release(*s);
  EXPECT_EQ(cache->used_pages(), 0);
}

TEST_P(BatchInvariance, EveryKvTypeRunsAndStaysClose) {
  auto lm = Load(GetParam());
  ASSERT_NE(lm, nullptr);
  const model::Model& m = *lm->model;
  const int64_t vocab = m.config().vocab_size;
  ThreadPool pool(2);
  std::mt19937_64 rng(7);
  const auto p = RandomPrompts(rng, 1, vocab, 30)[0];
  const std::vector<float> ref = Alone(m, p, pool, DType::kF32);
  for (DType t : {DType::kF16, DType::kBF16, DType::kQ8_0}) {
    if (!model::CheckKvType(t, m.config().head_dim).ok()) {
      EXPECT_FALSE(m.NewState(64, 64, t).ok()) << DTypeName(t);  // refused, naming why
      continue;
    }
    const std::vector<float> got = Alone(m, p, pool, t);
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      max_diff = std::max(max_diff, static_cast<double>(std::abs(got[i] - ref[i])));
      max_ref = std::max(max_ref, static_cast<double>(std::abs(ref[i])));
    }
    EXPECT_LT(max_diff, 0.05 * max_ref + 1e-3) << DTypeName(t);
    EXPECT_GT(max_diff, 0.0) << DTypeName(t) << ": rounded KV rows should move the logits a little";
  }
}

INSTANTIATE_TEST_SUITE_P(Models, BatchInvariance,
                         ::testing::Values("fixtures/llama4-tiny-text/interleaved", "fixtures/llama4-tiny-text/allmoe",
                                           "models/stories260K/stories260K.bin"),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           return testing::ModelParamName(p.param);
                         });

}  // namespace
}  // namespace herd
