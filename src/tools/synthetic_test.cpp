// Synthetic models: the presets reproduce Scout's and Maverick's published sizes (llama4.md section 1), each
// weight type computes the network of its reference-dequantized weights, the MoE data path reads only the
// selected experts (decode) and runs each active expert once over its tokens (prefill), and a saved GGUF reads
// back as the same network.
#include "tools/synthetic.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "formats/model_files.h"
#include "kernels/matmul.h"
#include "kernels/ref/matmul.h"
#include "kernels/repack.h"
#include "model/decoder.h"
#include "model/vision.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace herd::tools {
namespace {

// A model small enough for a unit test that still has every Llama 4 feature: NoPE layer 3, chunked RoPE layers
// with QK-norm, llama3 RoPE scaling, 8 experts top-1 + shared expert in every layer.
SyntheticSpec TinySpec(DType dtype = DType::kQ8_0) {
  SyntheticSpec s;
  s.preset = "custom";
  s.dtype = dtype;
  s.num_hidden_layers = 4;
  s.hidden_size = 128;
  s.num_attention_heads = 4;
  s.num_key_value_heads = 2;
  s.num_local_experts = 8;
  s.num_experts_per_tok = 1;
  s.intermediate_size = 256;
  s.intermediate_size_mlp = 512;
  s.vocab_size = 512;
  s.max_position_embeddings = 4096;
  s.seed = 7;
  return s;
}

struct Built {
  model::ModelConfig config;
  SyntheticModel weights;
  std::unique_ptr<model::Model> model;
};

Built Build(const SyntheticSpec& spec, ThreadPool& pool) {
  Built b;
  auto c = SyntheticConfig(spec);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  b.config = *c;
  auto w = MakeSyntheticWeights(b.config, spec.dtype, spec.seed, pool);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  b.weights = std::move(w).value();
  auto m = model::CreateModel(b.config, b.weights.weights);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  b.model = std::move(m).value();
  return b;
}

std::vector<int32_t> Tokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  uint32_t x = seed;
  for (auto& id : t) {
    x = x * 1664525u + 1013904223u;
    id = static_cast<int32_t>((x >> 8) % vocab);
  }
  return t;
}

double Near(double a, double b) { return std::abs(a - b) / b; }

TEST(SyntheticConfigTest, ScoutMatchesPublishedShape) {
  SyntheticSpec s;
  s.preset = "scout";
  auto c = SyntheticConfig(s);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->hidden_size, 5120);
  EXPECT_EQ(c->num_hidden_layers, 48);
  EXPECT_EQ(c->num_attention_heads, 40);
  EXPECT_EQ(c->num_key_value_heads, 8);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->num_local_experts, 16);
  EXPECT_EQ(c->num_experts_per_tok, 1);
  EXPECT_EQ(c->intermediate_size, 8192);
  EXPECT_EQ(c->intermediate_size_mlp, 16384);
  EXPECT_EQ(c->vocab_size, 202048);
  EXPECT_FLOAT_EQ(c->rope_theta, 500000.0f);
  EXPECT_FLOAT_EQ(c->rope_scaling.factor, 16.0f);
  EXPECT_FALSE(c->tie_word_embeddings);
  for (int64_t l = 0; l < 48; ++l) {
    const model::LayerConfig& lc = c->layers[l];
    const bool nope = (l + 1) % 4 == 0;  // llama4.md section 2.2
    EXPECT_EQ(lc.use_rope, !nope) << l;
    EXPECT_EQ(lc.attention_chunk_size, nope ? 0 : 8192) << l;
    EXPECT_EQ(lc.use_qk_norm, !nope) << l;
    EXPECT_EQ(lc.attn_temperature_tuning, nope) << l;
    EXPECT_TRUE(lc.moe) << l;
    EXPECT_EQ(lc.ffn_size, 8192) << l;
  }
  // llama4.md section 1: 107.8 B text parameters (109 B with the 0.87 B vision tower); 17.17 B active counting
  // the whole embedding table, which we count as the one row a token reads.
  const model::WeightFootprint fp = ComputeFootprint(*c, SyntheticLayout(*c, DType::kQ8_0));
  EXPECT_LT(Near(fp.total_params, 107.8e9), 0.01) << fp.total_params;
  EXPECT_LT(Near(fp.total_params + 0.87e9, 109e9), 0.02) << fp.total_params;
  const double embedding_rest = 202048.0 * 5120 - 5120;
  EXPECT_LT(Near(fp.active_params + embedding_rest, 17.17e9), 0.01) << fp.active_params;
  EXPECT_LT(Near(fp.active_params + embedding_rest, 17e9), 0.02) << fp.active_params;
  // Q8_0 stores 34 bytes per 32 weights: the whole of Scout is about 115 GB.
  EXPECT_LT(Near(fp.total_bytes, 107.8e9 * 34 / 32), 0.01) << fp.total_bytes;
}

TEST(SyntheticConfigTest, MaverickMatchesPublishedShape) {
  SyntheticSpec s;
  s.preset = "maverick";
  auto c = SyntheticConfig(s);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->num_local_experts, 128);
  EXPECT_FLOAT_EQ(c->rope_scaling.factor, 0.0f);
  for (int64_t l = 0; l < 48; ++l) {
    EXPECT_EQ(c->layers[l].moe, l % 2 == 1) << l;
    EXPECT_EQ(c->layers[l].ffn_size, l % 2 == 1 ? 8192 : 16384) << l;
    EXPECT_FALSE(c->layers[l].use_qk_norm) << l;
  }
  const model::WeightFootprint fp = ComputeFootprint(*c, SyntheticLayout(*c, DType::kBF16));
  EXPECT_LT(Near(fp.total_params, 400.7e9), 0.01) << fp.total_params;
  EXPECT_LT(Near(fp.active_params + 202048.0 * 5120 - 5120, 17.17e9), 0.01) << fp.active_params;
}

TEST(SyntheticConfigTest, SmallMoeIsTheReferenceShape) {
  SyntheticSpec s;
  s.preset = "small-moe";
  auto c = SyntheticConfig(s);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->head_dim, 128);
  const model::WeightFootprint fp = ComputeFootprint(*c, SyntheticLayout(*c, DType::kQ8_0));
  EXPECT_LT(Near(fp.total_params, 3.64e9), 0.01) << fp.total_params;
  EXPECT_LT(Near(fp.active_params, 0.55e9), 0.01) << fp.active_params;
}

TEST(SyntheticConfigTest, RejectsBadSpecs) {
  SyntheticSpec s = TinySpec();
  s.preset = "behemoth";
  EXPECT_EQ(SyntheticConfig(s).status().code(), StatusCode::kInvalidArgument);
  s = TinySpec();
  s.hidden_size = 136;  // 34 heads of 4? no: 136 / 4 = 34, and 136 is not a multiple of the Q8_0 block
  auto r = SyntheticConfig(s);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("block size"), std::string::npos) << r.status().ToString();
  s = TinySpec();
  s.vocab_size = 100;
  EXPECT_EQ(SyntheticConfig(s).status().code(), StatusCode::kInvalidArgument);
  s = TinySpec();
  s.num_key_value_heads = 3;
  EXPECT_EQ(SyntheticConfig(s).status().code(), StatusCode::kInvalidArgument);
  s = TinySpec();
  s.num_experts_per_tok = 9;
  EXPECT_EQ(SyntheticConfig(s).status().code(), StatusCode::kInvalidArgument);
  s = TinySpec(DType::kQ4_K);
  EXPECT_EQ(SyntheticConfig(s).status().code(), StatusCode::kInvalidArgument);
}

TEST(SyntheticWeightsTest, TooLargeForMemoryIsResourceExhausted) {
  SyntheticSpec s;
  s.preset = "maverick";
  s.dtype = DType::kF32;  // 1.6 TB: more than any machine we test on
  auto c = SyntheticConfig(s);
  ASSERT_TRUE(c.ok());
  ThreadPool pool(1);
  auto w = MakeSyntheticWeights(*c, DType::kF32, 1, pool);
  ASSERT_EQ(w.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(w.status().message().find("GiB"), std::string::npos) << w.status().ToString();
}

TEST(SyntheticWeightsTest, IndependentOfThreadCountAndAligned) {
  ThreadPool one(1), two(2);
  auto c = SyntheticConfig(TinySpec());
  ASSERT_TRUE(c.ok());
  auto a = MakeSyntheticWeights(*c, DType::kQ8_0, 3, one);
  auto b = MakeSyntheticWeights(*c, DType::kQ8_0, 3, two);
  auto other = MakeSyntheticWeights(*c, DType::kQ8_0, 4, two);
  ASSERT_TRUE(a.ok() && b.ok() && other.ok());
  ASSERT_EQ(a->weights.size(), b->weights.size());
  for (const auto& [name, va] : a->weights.tensors()) {
    const TensorView* vb = b->weights.Find(name);
    ASSERT_NE(vb, nullptr) << name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(va.data) % 64, 0u) << name;
    EXPECT_EQ(std::memcmp(va.data, vb->data, va.size_bytes), 0) << name;
  }
  const TensorView* q = a->weights.Find("blk.0.attn_q.weight");
  EXPECT_NE(std::memcmp(q->data, other->weights.Find("blk.0.attn_q.weight")->data, q->size_bytes), 0);
}

// The network of each type's weights as they decode, in F32: every tensor of `w` that is not F32 replaced by its
// values from the scalar reference dequantizer (kernels/ref/matmul.h, pinned to the block layouts by matmul_test
// and quantize_test), independent of the SIMD decoding the kernels use.
WeightMap ReferenceDequantized(const WeightMap& w) {
  WeightMap out;
  for (const auto& [name, view] : w.tensors()) {
    if (view.dtype == DType::kF32) {
      EXPECT_TRUE(out.Add(name, view).ok());
      continue;
    }
    auto values = std::make_shared<std::vector<float>>(static_cast<size_t>(view.NumElements()));
    for (int64_t r = 0; r < view.Rows(); ++r) kernels::ref::DequantizeRow(view, r, values->data() + r * view.Cols());
    const std::vector<int64_t> shape(view.shape.begin(), view.shape.begin() + view.n_dims);
    auto f32 = MakeTensorView(DType::kF32, shape, reinterpret_cast<const uint8_t*>(values->data()),
                              static_cast<int64_t>(values->size() * sizeof(float)), "reference dequantization");
    EXPECT_TRUE(f32.ok()) << name << ": " << f32.status().ToString();
    EXPECT_TRUE(out.Add(name, *f32).ok());
    out.KeepAlive(values);
  }
  return out;
}

// The logits of a 40-token prefill (every position) and 4 decode steps after it.
std::vector<float> PrefillAndDecodeLogits(model::Model& m, int64_t vocab, ThreadPool& pool) {
  auto state = m.NewState(128, 64);
  EXPECT_TRUE(state.ok());
  if (!state.ok()) return {};
  const std::vector<int32_t> prompt = Tokens(40, vocab, 5);
  std::vector<float> out(static_cast<size_t>((40 + 4) * vocab));
  EXPECT_TRUE(m.Forward(**state, prompt, model::LogitsMode::kAll, out.data(), pool).ok());
  const std::vector<int32_t> next = Tokens(4, vocab, 9);  // the same for every model compared (not each one's argmax)
  for (int step = 0; step < 4; ++step) {
    EXPECT_TRUE(
        m.Forward(**state, {&next[step], 1}, model::LogitsMode::kLast, out.data() + (40 + step) * vocab, pool).ok());
  }
  return out;
}

// sqrt(sum (a - b)^2 / sum b^2).
double NormalizedRmsError(const std::vector<float>& a, const std::vector<float>& b) {
  double err2 = 0, ref2 = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    err2 += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    ref2 += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(err2 / ref2);
}

// --repack (model::Model::RepackWeights), on a model whose every matrix has rows of 512 or 1024 inputs (the
// repacked layouts' unit), in prefill (the expert GEMMs over their tokens) and decode. Types that are only copied
// (BF16, and every type on a CPU without the repacked kernels) give the same logits bit for bit. Types that change
// layout on AVX-512 VNNI and AVX2 (Q8_0 -> Q8_0R, Q4_0 -> Q4_0R: f32 sums in another order; Q4_K -> Q4_KR, Q5_K ->
// Q5_KR: activations quantized per 32 inputs instead of 256) stay as close to the reference-dequantized F32 network as
// the file's own layout is (their error within 1.25x the map's, which is within
// EveryTypeComputesItsDequantizedNetwork's bound), and close to the map's logits. A second call does nothing.
TEST(SyntheticWeightsTest, RepackedModelComputesTheSameNetwork) {
  ThreadPool pool(2);
  for (DType t : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kBF16}) {
    SCOPED_TRACE(std::string(DTypeName(t)));
    SyntheticSpec spec = TinySpec(t);
    spec.hidden_size = 512;
    spec.intermediate_size = 512;
    spec.intermediate_size_mlp = 1024;
    spec.num_hidden_layers = 2;
    spec.num_experts_per_tok = 8;  // every expert: no routing choice that a rounding could flip
    Built plain = Build(spec, pool), packed = Build(spec, pool);
    ASSERT_NE(plain.model, nullptr);
    ASSERT_NE(packed.model, nullptr);
    const int64_t before = packed.model->RepackBytes();
    auto stats = packed.model->RepackWeights(pool, /*show_progress=*/false);
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    // Per layer q, k, v, o, shared gate/up/down, router, 3 x 8 experts; and the untied output head.
    EXPECT_EQ(stats->tensors, 2 * (8 + 3 * 8) + 1);
    EXPECT_GT(stats->bytes, 0);
    EXPECT_LE(stats->bytes, before);  // the sum of the matrices; before: each rounded up to 64 bytes
    EXPECT_EQ(packed.model->RepackBytes(), 0);
    const bool relays = kernels::RepackedType(t, 512) != t;
    // Every matrix but the router (F32 rows of 512: copied) takes the new layout.
    EXPECT_EQ(stats->relaid, relays ? stats->tensors - 2 : 0);
    auto again = packed.model->RepackWeights(pool, false);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->tensors, 0);

    const int64_t vocab = plain.config.vocab_size;
    const std::vector<float> l1 = PrefillAndDecodeLogits(*plain.model, vocab, pool);
    const std::vector<float> l2 = PrefillAndDecodeLogits(*packed.model, vocab, pool);
    ASSERT_EQ(l1.size(), l2.size());
    if (!relays) {
      EXPECT_EQ(0, std::memcmp(l1.data(), l2.data(), l1.size() * sizeof(float)));
      continue;
    }
    auto ref = model::CreateModel(plain.config, ReferenceDequantized(plain.weights.weights));
    ASSERT_TRUE(ref.ok()) << ref.status().ToString();
    const std::vector<float> want = PrefillAndDecodeLogits(**ref, vocab, pool);
    const double map_err = NormalizedRmsError(l1, want), packed_err = NormalizedRmsError(l2, want);
    std::printf(
        "[ synthetic ] %s: normalized RMS error against the F32 network %.3g from the map, %.3g repacked; "
        "%.3g between them\n",
        std::string(DTypeName(t)).c_str(), map_err, packed_err, NormalizedRmsError(l2, l1));
    EXPECT_LE(packed_err, 1.25 * map_err + 1e-6);
    EXPECT_LE(packed_err, 0.03);
  }
}

// Each weight type computes the network of its own weights, checked against that network in F32 with the weights
// from the scalar reference dequantizer (ReferenceDequantized), on a model with every expert active (top-k 8):
//  * Prefill of 40 tokens and decode, 8 single-token steps, judged alike (the products are batch invariant,
//    kernels/matmul.h, so a token's arithmetic is the same in both): F16 runs the f32 kernel on exactly widened
//    weights, bit-identical.
//    BF16 multiplies on CPUs with AVX512_BF16 activations split exactly into three bf16 terms, each product within
//    (n_in / 16 + 102) eps of sum |W x| (kernels/matmul.h): <= 134 eps = 8e-6 for n_in <= 512, and ~17 products in
//    series to the logits (per layer Q/K/V, attention output, expert gate/up, down; then the output head), so a
//    normalized RMS error <= 17 x 8e-6 = 1.4e-4 (measured 2.4e-7; 0 without AVX512_BF16). Q8_0 and Q4_0 round the
//    activations of each product to 8 bits per 32 (scale amax / 127): an RMS error of amax / (254 sqrt 3), about
//    0.5% of the RMS of Gaussian-like values (amax ~ 2.1 RMS in 32), which the ~17 products in series add in
//    quadrature: sqrt(17) x 0.5% = 2%; bound 3% (measured 0.96% and 0.31%). A wrong block, scale or offset moves
//    the logits by their whole size; the rounding itself is pinned bit for bit by matmul_test (ref::MatMulQuantized).
TEST(SyntheticWeightsTest, EveryTypeComputesItsDequantizedNetwork) {
  ThreadPool pool(2);
  for (DType t : {DType::kQ8_0, DType::kQ4_0, DType::kF16, DType::kBF16}) {
    SCOPED_TRACE(std::string(DTypeName(t)));
    SyntheticSpec spec = TinySpec(t);
    spec.num_experts_per_tok = 8;
    Built b = Build(spec, pool);
    ASSERT_NE(b.model, nullptr);
    // Realistic magnitudes: matrices have a weight standard deviation of about 0.02.
    std::vector<float> row(128);
    kernels::DequantizeRow(*b.weights.weights.Find("blk.1.attn_q.weight"), 5, row.data());
    double ss = 0;
    for (float v : row) ss += v * v;
    EXPECT_NEAR(std::sqrt(ss / 128), 0.02, 0.006);

    const WeightMap ref_weights = ReferenceDequantized(b.weights.weights);
    auto ref = model::CreateModel(b.config, ref_weights);
    ASSERT_TRUE(ref.ok()) << ref.status().ToString();
    const int64_t vocab = b.config.vocab_size;
    auto state = b.model->NewState(64, 64), ref_state = (*ref)->NewState(64, 64);
    ASSERT_TRUE(state.ok() && ref_state.ok());
    const std::vector<int32_t> tokens = Tokens(40, vocab, 11);
    std::vector<float> got(tokens.size() * vocab), want(got.size());
    ASSERT_TRUE(b.model->Forward(**state, tokens, model::LogitsMode::kAll, got.data(), pool).ok());
    ASSERT_TRUE((*ref)->Forward(**ref_state, tokens, model::LogitsMode::kAll, want.data(), pool).ok());
    ASSERT_TRUE(std::all_of(want.begin(), want.end(), [](float v) { return std::isfinite(v); }));
    double err2 = 0, ref2 = 0;
    bool identical = true;
    for (size_t v = 0; v < got.size(); ++v) {
      const double e = static_cast<double>(got[v]) - want[v];
      err2 += e * e;
      ref2 += static_cast<double>(want[v]) * want[v];
      identical = identical && got[v] == want[v];
    }
    std::vector<float> step(vocab), ref_step(vocab);
    int32_t next[1] = {static_cast<int32_t>(std::max_element(want.end() - vocab, want.end()) - (want.end() - vocab))};
    for (int i = 0; i < 8; ++i) {
      ASSERT_TRUE(b.model->Forward(**state, next, model::LogitsMode::kLast, step.data(), pool).ok());
      ASSERT_TRUE((*ref)->Forward(**ref_state, next, model::LogitsMode::kLast, ref_step.data(), pool).ok());
      for (int64_t v = 0; v < vocab; ++v) {
        const double e = static_cast<double>(step[v]) - ref_step[v];
        err2 += e * e;
        ref2 += static_cast<double>(ref_step[v]) * ref_step[v];
        identical = identical && step[v] == ref_step[v];
      }
      next[0] = static_cast<int32_t>(std::max_element(ref_step.begin(), ref_step.end()) - ref_step.begin());
    }
    const double nrmse = std::sqrt(err2 / ref2);
    std::printf(
        "[ synthetic ] %s prefill + decode: normalized RMS error %.3g against the reference-dequantized F32 "
        "network\n",
        std::string(DTypeName(t)).c_str(), nrmse);
    if (t == DType::kF16) {
      EXPECT_TRUE(identical) << "normalized RMS error " << nrmse;
    } else {
      EXPECT_LE(nrmse, t == DType::kBF16 ? 1.4e-4 : 0.03);
    }
  }
}

// The analytic bytes of a decode step: per layer attention + router + shared expert + k experts, the output
// head and one embedding row. Norms are not counted by the kernels (the model converts them at bind time).
TEST(MoeBytesTest, DecodeReadsOnlyTheSelectedExperts) {
  ThreadPool pool(2);
  for (int64_t top_k : {1, 2}) {
    SCOPED_TRACE("top_k " + std::to_string(top_k));
    SyntheticSpec spec = TinySpec();
    spec.num_experts_per_tok = top_k;
    Built b = Build(spec, pool);
    ASSERT_NE(b.model, nullptr);
    const model::WeightFootprint fp = ComputeFootprint(b.config, b.weights.weights);
    auto state = b.model->NewState(64, 64);
    ASSERT_TRUE(state.ok());
    std::vector<float> logits(512);
    ASSERT_TRUE(b.model->Forward(**state, Tokens(8, 512, 3), model::LogitsMode::kLast, logits.data(), pool).ok());
    kernels::EnableWeightByteCounting(true);
    kernels::ResetWeightBytesRead();
    constexpr int kSteps = 8;
    int32_t tok[1] = {17};
    for (int i = 0; i < kSteps; ++i) {
      ASSERT_TRUE(b.model->Forward(**state, tok, model::LogitsMode::kLast, logits.data(), pool).ok());
      tok[0] = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    }
    kernels::EnableWeightByteCounting(false);
    const double per_token = static_cast<double>(kernels::WeightBytesRead()) / kSteps;
    const double ratio = per_token / static_cast<double>(fp.active_bytes);
    EXPECT_GT(ratio, 0.9) << per_token << " vs " << fp.active_bytes;
    EXPECT_LT(ratio, 1.1) << per_token << " vs " << fp.active_bytes;
    // Far from reading every expert: the test would not tell the two apart otherwise.
    EXPECT_LT(static_cast<double>(fp.active_bytes), 0.6 * static_cast<double>(fp.total_bytes));
    // Exactly: the norm bytes are the whole difference.
    int64_t norm_bytes = 0;
    for (const auto& [name, v] : b.weights.weights.tensors()) norm_bytes += v.n_dims == 1 ? v.size_bytes : 0;
    EXPECT_EQ(static_cast<int64_t>(per_token), fp.active_bytes - norm_bytes);
  }
}

// A 64-token prefill runs each active expert once over all its tokens: it reads each chosen expert's weights
// once, so the bytes read equal the dense weights + (distinct experts chosen per layer) x expert bytes + 64
// embedding rows, never tokens x active bytes.
TEST(MoeBytesTest, PrefillReadsEachActiveExpertOnce) {
  ThreadPool pool(2);
  Built b = Build(TinySpec(), pool);
  ASSERT_NE(b.model, nullptr);
  const model::ModelConfig& c = b.config;
  const model::WeightFootprint fp = ComputeFootprint(c, b.weights.weights);
  constexpr int64_t kTokens = 64;
  auto state = b.model->NewState(kTokens, kTokens);
  ASSERT_TRUE(state.ok());
  model::ForwardTrace trace;
  model::DecoderModel::SetTrace(**state, &trace);
  std::vector<float> logits(512);
  kernels::EnableWeightByteCounting(true);
  kernels::ResetWeightBytesRead();
  ASSERT_TRUE(b.model->Forward(**state, Tokens(kTokens, 512, 5), model::LogitsMode::kLast, logits.data(), pool).ok());
  kernels::EnableWeightByteCounting(false);
  const int64_t read = kernels::WeightBytesRead();

  const WeightMap& w = b.weights.weights;
  int64_t expected = kTokens * w.Find("token_embd.weight")->RowStride() + w.Find("output.weight")->size_bytes;
  ASSERT_EQ(trace.router_choice.size(), static_cast<size_t>(c.num_hidden_layers));
  int64_t distinct_total = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate_inp", "ffn_gate_shexp", "ffn_up_shexp",
                          "ffn_down_shexp"}) {
      expected += w.Find(p + n + ".weight")->size_bytes;
    }
    const std::set<int32_t> distinct(trace.router_choice[l].begin(), trace.router_choice[l].end());
    distinct_total += static_cast<int64_t>(distinct.size());
    int64_t per_expert = 0;
    for (const char* n : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"}) {
      per_expert += w.Find(p + n + ".weight")->size_bytes / c.num_local_experts;
    }
    expected += static_cast<int64_t>(distinct.size()) * per_expert;
  }
  EXPECT_EQ(read, expected);
  EXPECT_GT(distinct_total, c.num_hidden_layers);  // the router spreads 64 tokens over several experts
  EXPECT_LE(read - kTokens * w.Find("token_embd.weight")->RowStride(), fp.total_bytes);
  EXPECT_LT(static_cast<double>(read), 0.25 * kTokens * static_cast<double>(fp.active_bytes));
}

// A saved file states llama3 scaling as rope_freqs.weight divisors, not as a config field.
void ExpectSameConfig(const model::ModelConfig& a, model::ModelConfig b) {
  b.rope_scaling = a.rope_scaling;
  EXPECT_TRUE(a == b) << a.Describe() << "\n-- differs from --\n" << b.Describe();
}

TEST(SyntheticGgufTest, SavedFileReadsBackAsTheSameNetwork) {
  ThreadPool pool(2);
  // Scout-like (every layer MoE, llama3 scaling) and Maverick-like (dense and MoE layers alternate, no scaling;
  // with 4 experts it has QK-norm, as llama.cpp would infer).
  SyntheticSpec maverick = TinySpec(DType::kQ4_0);
  maverick.preset = "maverick";
  maverick.num_hidden_layers = 4;
  maverick.hidden_size = 128;
  maverick.num_attention_heads = 4;
  maverick.num_key_value_heads = 2;
  maverick.num_local_experts = 4;
  for (const SyntheticSpec& spec : {TinySpec(), maverick}) {
    SCOPED_TRACE(spec.preset);
    Built b = Build(spec, pool);
    ASSERT_NE(b.model, nullptr);
    const std::string path = testing::TempDir("synthetic-gguf-" + spec.preset) + "/model.gguf";
    ASSERT_TRUE(SaveSyntheticGguf(b.config, b.weights.weights, path).ok());

    auto files = formats::OpenModelFiles(path);
    ASSERT_TRUE(files.ok()) << files.status().ToString();
    auto config = model::ConfigFromMetadata(files->metadata);
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    ExpectSameConfig(b.config, *config);
    EXPECT_EQ(files->gguf->GetString("general.architecture").value(), "llama4");
    EXPECT_EQ(files->gguf->GetInt("llama4.interleave_moe_layer_step").value(), spec.preset == "maverick" ? 2 : 1);
    auto reread = model::CreateModel(*config, files->weights);
    ASSERT_TRUE(reread.ok()) << reread.status().ToString();
    EXPECT_EQ((*reread)->WeightBytes(), b.model->WeightBytes() + (spec.preset == "maverick" ? 0 : 4 * 16));

    const std::vector<int32_t> tokens = Tokens(20, 512, 9);
    std::vector<float> want(20 * 512), got(20 * 512);
    auto s1 = b.model->NewState(64, 64);
    auto s2 = (*reread)->NewState(64, 64);
    ASSERT_TRUE(s1.ok() && s2.ok());
    ASSERT_TRUE(b.model->Forward(**s1, tokens, model::LogitsMode::kAll, want.data(), pool).ok());
    ASSERT_TRUE((*reread)->Forward(**s2, tokens, model::LogitsMode::kAll, got.data(), pool).ok());
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(want[i], got[i]) << "logit " << i;

    // The minimal vocabulary loads: byte tokens, BOS/EOS, fillers.
    auto tok = tokenizer::LoadTokenizerFromGguf(*files->gguf);
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    EXPECT_EQ((*tok)->vocab_size(), 512);
    EXPECT_EQ((*tok)->bos_id(), std::optional<int32_t>(256));
    const std::vector<int32_t> ids = (*tok)->Encode("Hi\n", /*add_bos=*/true, /*parse_special=*/false);
    EXPECT_EQ(ids, (std::vector<int32_t>{256, 'H', 'i', '\n'}));
  }
}

}  // namespace
}  // namespace herd::tools

namespace herd::tools {
namespace {

// Llama 4's vision tower (llama4.md section 3) and its tensors' shapes; a tiny one binds and encodes.
TEST(SyntheticVisionTest, ScoutShapeAndTinyTowerRuns) {
  auto scout = SyntheticVisionConfig("scout", 5120);
  ASSERT_TRUE(scout.ok()) << scout.status().ToString();
  EXPECT_EQ(scout->GridSize(), 24);
  EXPECT_EQ(scout->head_dim, 88);
  EXPECT_EQ(scout->TokensPerTile(), 144);
  EXPECT_EQ(scout->intermediate_size, 5632);
  EXPECT_EQ(scout->num_hidden_layers, 34);
  std::map<std::string, model::TensorSpec> layout;
  for (const model::TensorSpec& t : SyntheticVisionLayout(*scout, DType::kQ8_0)) layout[t.name] = t;
  EXPECT_EQ(layout.size(), 10u + 34u * 16u);
  EXPECT_EQ(layout["v.patch_embd.weight"].shape, (std::vector<int64_t>{1408, 588}));
  EXPECT_EQ(layout["v.patch_embd.weight"].dtype, DType::kF16);  // 588 is no whole number of Q8_0 blocks
  EXPECT_EQ(layout["v.position_embd.weight"].shape, (std::vector<int64_t>{577, 1408}));
  EXPECT_EQ(layout["v.blk.33.ffn_down.weight"].shape, (std::vector<int64_t>{1408, 5632}));
  EXPECT_EQ(layout["v.blk.33.ffn_down.weight"].dtype, DType::kQ8_0);
  EXPECT_EQ(layout["mm.model.mlp.1.weight"].shape, (std::vector<int64_t>{4096, 5632}));
  EXPECT_EQ(layout["mm.model.fc.weight"].shape, (std::vector<int64_t>{5120, 4096}));
  // About 1 TFLOP per tile: 34 layers of 577 positions through 1408 x (4 x 1408 + 2 x 5632) weights dominate.
  EXPECT_NEAR(scout->FlopsPerTile() / 1e12, 1.0156, 0.001);
  EXPECT_FALSE(SyntheticVisionConfig("llava", 64).ok());

  auto tiny = SyntheticVisionConfig("tiny", 64);
  ASSERT_TRUE(tiny.ok()) << tiny.status().ToString();
  auto pool = ThreadPool::Create(2);
  ASSERT_TRUE(pool.ok());
  for (DType t : {DType::kF32, DType::kQ8_0}) {
    auto w = MakeSyntheticVisionWeights(*tiny, t, 3, **pool);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    auto tower = model::VisionTower::Create(*tiny, w->weights);
    ASSERT_TRUE(tower.ok()) << tower.status().ToString();
    std::vector<float> pixels(static_cast<size_t>(2 * 3 * tiny->image_size * tiny->image_size), 0.25f);
    std::vector<float> out(static_cast<size_t>(2 * (*tower)->TokensPerTile() * 64));
    ASSERT_TRUE((*tower)->Encode(pixels.data(), 2, out.data(), **pool).ok());
    for (float v : out) ASSERT_TRUE(std::isfinite(v));
    EXPECT_NE(out.front(), out.back());
  }
}

}  // namespace
}  // namespace herd::tools
