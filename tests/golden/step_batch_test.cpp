// Batch invariance of the batched forward pass (issue 12): a sequence's logits are bit-identical (f32 KV) whether
// it runs alone, inside a step with up to 16 other sequences, or with its prompt cut at random chunk boundaries,
// on the Llama 4 fixtures (chunked and global attention, MoE) and on stories260K (dense). Also: every KV type
// runs, and the prefix cache gives the logits of a full recomputation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "core/thread_pool.h"
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
    model::KvCache::Options ko;
    ko.page_tokens = 4;
    ko.prefix_cache = prefix_cache;
    auto groups = model::KvCache::Layout(m.config(), ko);
    ASSERT_TRUE(groups.ok());
    auto cache = model::KvCache::Create(m.config(), ko, model::KvCache::PagesFor(*groups, 64, 17));
    ASSERT_TRUE(cache.ok());
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
        if (s.n_past() == 0 && prefix_cache) attached += (*cache)->AttachPrefix(s, prompts[i]);
        const int64_t room =
            std::min(static_cast<int64_t>(prompts[i].size()) - s.n_past(), (*cache)->TokensToChunkEnd(s.n_past()));
        const int64_t k = std::uniform_int_distribution<int64_t>(1, room)(rng);
        ASSERT_TRUE((*cache)->Reserve(s, s.n_past() + k).ok());
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
      ASSERT_TRUE(m.Step(**cache, inputs, **ws, **pool).ok());
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
    for (auto& s : seqs) (*cache)->Release(s);
    EXPECT_EQ((*cache)->used_pages(), 0) << "pages leaked";
  }
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
                           return p.param.find("interleaved") != std::string::npos ? std::string("interleaved")
                                  : p.param.find("allmoe") != std::string::npos    ? std::string("allmoe")
                                                                                   : std::string("stories260K");
                         });

}  // namespace
}  // namespace herd
