// Tests of kernels/attention.h against the double-precision reference kernels/ref/attention.h on every compiled
// Highway target the CPU supports: random GQA shapes (head_dim 64/80/128, 1..8 heads per group, 1..70 query
// tokens, up to 700 keys, tile and lane boundaries), causal and chunked-local masks expressed as key ranges,
// strided rows, large scores (the running max must keep exp finite), and the bitwise independence of the result
// from how tokens are split into calls.
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "kernels/kernels_test_util.h"
#include "kernels/quantize.h"
#include "kernels/ref/attention.h"

namespace herd::kernels {
namespace {

using testing::SeedTrace;

class AttentionTest : public testing::TargetTest {};
HERD_INSTANTIATE_FOR_TARGETS(AttentionTest);

// A problem in the decoder's shape: n_q query tokens at absolute positions pos0.. of a cache whose keys start at
// position `base` (key index j = position base + j); causal, and with chunk > 0 restricted to the chunk.
struct Problem {
  int64_t hd, n_heads, n_q, n_keys, chunk, kv_stride, q_stride;
  std::vector<float> q, k, v;
  std::vector<int64_t> begin, end;
  std::string Trace() const {
    return "hd " + std::to_string(hd) + ", heads " + std::to_string(n_heads) + ", tokens " + std::to_string(n_q) +
           ", keys " + std::to_string(n_keys) + ", chunk " + std::to_string(chunk);
  }
};

// Keys 0..n_keys-1 are positions 0..n_keys-1; the queries are the last n_q positions. Chunked: the keys of the
// query at pos are [pos / chunk * chunk, pos].
Problem Make(std::mt19937_64& rng, int64_t hd, int64_t n_heads, int64_t n_q, int64_t n_keys, int64_t chunk,
             float q_range) {
  Problem p{hd, n_heads, n_q, n_keys, chunk, hd + 3, n_heads * hd + 5, {}, {}, {}, {}, {}};
  p.q.resize(static_cast<size_t>(n_q * p.q_stride));
  p.k.resize(static_cast<size_t>(n_keys * p.kv_stride));
  p.v.resize(static_cast<size_t>(n_keys * p.kv_stride));
  testing::FillUniform(rng, -q_range, q_range, p.q.data(), static_cast<int64_t>(p.q.size()));
  testing::FillUniform(rng, -1.0f, 1.0f, p.k.data(), static_cast<int64_t>(p.k.size()));
  testing::FillUniform(rng, -1.0f, 1.0f, p.v.data(), static_cast<int64_t>(p.v.size()));
  for (int64_t t = 0; t < n_q; ++t) {
    const int64_t pos = n_keys - n_q + t;
    p.begin.push_back(chunk > 0 ? pos / chunk * chunk : 0);
    p.end.push_back(pos + 1);
  }
  return p;
}

std::vector<float> RunKernel(const Problem& p, float scale) {
  std::vector<float> out(static_cast<size_t>(p.n_q * p.q_stride), -7.0f);
  std::vector<float> scratch(static_cast<size_t>(AttentionScratchFloats(p.hd)), std::nanf(""));
  Attention(p.q.data(), p.q_stride, p.n_q, p.n_heads, p.hd, p.k.data(), p.v.data(), p.kv_stride, p.begin.data(),
            p.end.data(), scale, out.data(), p.q_stride, scratch.data());
  return out;
}

// |got - want| <= tol * sum_j p_j |v_j[i]| (the output's condition: a convex combination of the values), with
// p the exact probabilities recomputed in double.
void ExpectClose(const Problem& p, float scale, const std::vector<float>& got, double tol) {
  std::vector<float> want(got.size(), -7.0f);
  ref::Attention(p.q.data(), p.q_stride, p.n_q, p.n_heads, p.hd, p.k.data(), p.v.data(), p.kv_stride, p.begin.data(),
                 p.end.data(), scale, want.data(), p.q_stride);
  int failures = 0;
  for (int64_t t = 0; t < p.n_q; ++t) {
    for (int64_t g = 0; g < p.n_heads; ++g) {
      const float* qr = p.q.data() + t * p.q_stride + g * p.hd;
      const int64_t b = p.begin[t], n = p.end[t] - b;
      std::vector<double> prob(static_cast<size_t>(n));
      double m = -HUGE_VAL, sum = 0.0;
      for (int64_t j = 0; j < n; ++j) {
        double dot = 0.0;
        for (int64_t i = 0; i < p.hd; ++i) dot += static_cast<double>(qr[i]) * p.k[(b + j) * p.kv_stride + i];
        prob[j] = scale * dot;
        m = std::max(m, prob[j]);
      }
      for (double& x : prob) sum += (x = std::exp(x - m));
      for (int64_t i = 0; i < p.hd; ++i) {
        double cond = 0.0;
        for (int64_t j = 0; j < n; ++j) cond += prob[j] / sum * std::fabs(p.v[(b + j) * p.kv_stride + i]);
        const size_t at = static_cast<size_t>(t * p.q_stride + g * p.hd + i);
        if (!(std::fabs(static_cast<double>(got[at]) - want[at]) <= tol * cond) && failures++ < 5) {
          ADD_FAILURE() << "token " << t << " head " << g << " dim " << i << ": got " << got[at] << ", want "
                        << want[at] << " (bound " << tol * cond << ")";
        }
      }
    }
    // Padding between rows is untouched.
    for (int64_t i = p.n_heads * p.hd; i < p.q_stride; ++i) EXPECT_EQ(got[t * p.q_stride + i], -7.0f);
  }
  EXPECT_EQ(failures, 0);
}

TEST_P(AttentionTest, MatchesReferenceOnRandomShapes) {
  std::mt19937_64 rng(testing::BaseSeed() + 1);
  const int64_t head_dims[] = {64, 128, 80};
  for (int c = 0; c < 40; ++c) {
    const uint64_t seed = rng();
    std::mt19937_64 r(seed);
    const int64_t hd = head_dims[c % 3];
    const int64_t n_heads = std::uniform_int_distribution<int64_t>(1, 8)(r);
    const int64_t n_q = std::uniform_int_distribution<int64_t>(1, 70)(r);
    // Key counts around the tile (64) and beyond several tiles, never fewer than the queries.
    int64_t n_keys = std::uniform_int_distribution<int64_t>(1, 700)(r);
    if (c % 5 == 0) n_keys = kAttentionKeyTile * std::uniform_int_distribution<int64_t>(1, 6)(r) + (c % 3) - 1;
    n_keys = std::max(n_keys, n_q);
    const int64_t chunks[] = {0, 0, 32, 100, 256};
    const int64_t chunk = chunks[c % 5];
    Problem p = Make(r, hd, n_heads, n_q, n_keys, chunk, 2.0f);
    SCOPED_TRACE(p.Trace() + ", " + SeedTrace(seed));
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    ExpectClose(p, scale, RunKernel(p, scale), 1e-5);
  }
}

TEST_P(AttentionTest, DecodeAndManyHeads) {
  // One token (decode) with a key range not starting at 0, and more heads than rows per block.
  for (int64_t n_heads : {1, 4, 5, 40}) {
    for (int64_t n_keys : {1, 2, 63, 64, 65, 129, 700}) {
      const uint64_t seed = testing::BaseSeed() + 100 + n_heads * 1000 + n_keys;
      std::mt19937_64 r(seed);
      Problem p = Make(r, 128, n_heads, 1, n_keys, 50, 2.0f);
      SCOPED_TRACE(p.Trace() + ", " + SeedTrace(seed));
      ExpectClose(p, 0.088f, RunKernel(p, 0.088f), 1e-5);
    }
  }
}

TEST_P(AttentionTest, LargeScoresStayFinite) {
  // Scores of order +-1e4: exp without the running max would overflow. The result is a convex combination of
  // the values (within them); f32 scores carry an absolute error of about 1e-3 here, so the comparison is loose.
  const uint64_t seed = testing::BaseSeed() + 7;
  std::mt19937_64 r(seed);
  for (int64_t n_keys : {5, 64, 300}) {
    Problem p = Make(r, 64, 4, 3, n_keys, 0, 300.0f);
    // Make a late key dominate so the running max changes between tiles.
    for (int64_t i = 0; i < p.hd; ++i) p.k[(n_keys - 4) * p.kv_stride + i] = p.q[i] > 0 ? 40.0f : -40.0f;
    SCOPED_TRACE(p.Trace() + ", " + SeedTrace(seed));
    const std::vector<float> got = RunKernel(p, 1.0f);
    for (int64_t t = 0; t < p.n_q; ++t) {
      for (int64_t i = 0; i < p.n_heads * p.hd; ++i) {
        const float x = got[t * p.q_stride + i];
        ASSERT_TRUE(std::isfinite(x));
        EXPECT_LE(std::fabs(x), 1.0f);
      }
    }
    ExpectClose(p, 1.0f, got, 1e-2);
  }
}

TEST_P(AttentionTest, SplitIntoCallsIsBitIdentical) {
  const uint64_t seed = testing::BaseSeed() + 9;
  std::mt19937_64 r(seed);
  Problem p = Make(r, 80, 3, 37, 333, 0, 2.0f);
  const float scale = 0.11f;
  const std::vector<float> whole = RunKernel(p, scale);
  std::vector<float> parts(whole.size(), -7.0f);
  std::vector<float> scratch(static_cast<size_t>(AttentionScratchFloats(p.hd)));
  for (int64_t t = 0; t < p.n_q; ++t) {
    for (int64_t g = 0; g < p.n_heads; ++g) {  // one token and one head per call
      Attention(p.q.data() + t * p.q_stride + g * p.hd, p.q_stride, 1, 1, p.hd, p.k.data(), p.v.data(), p.kv_stride,
                p.begin.data() + t, p.end.data() + t, scale, parts.data() + t * p.q_stride + g * p.hd, p.q_stride,
                scratch.data());
    }
  }
  for (int64_t t = 0; t < p.n_q; ++t) {
    for (int64_t i = 0; i < p.n_heads * p.hd; ++i) {
      ASSERT_EQ(whole[t * p.q_stride + i], parts[t * p.q_stride + i]) << "token " << t << " element " << i;
    }
  }
}

// A paged cache of each row type gives exactly Attention's output on its rows decoded by DequantizeRow: pages in a
// shuffled order, head_dim 80 (not a multiple of the vector lanes, nor of the Q8_0 block for f16/bf16) or 128, and
// f16/bf16 rows holding subnormal, zero and large values, so every element of the vector decode is checked.
TEST_P(AttentionTest, PagedRowsOfEachTypeDecodeExactly) {
  const uint64_t seed = testing::BaseSeed() + 10;
  std::mt19937_64 r(seed);
  SCOPED_TRACE(SeedTrace(seed));
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0}) {
    const int64_t hd = type == DType::kQ8_0 ? 128 : 80;
    SCOPED_TRACE(std::string(DTypeName(type)));
    Problem p = Make(r, hd, 4, 9, 70, 0, 2.0f);
    const float specials[] = {0.0f, -0.0f, 3e-6f, -6e-8f, 1e-38f, 60000.0f, -1.5e38f};
    for (int64_t j = 0; j < p.n_keys; ++j) {  // a few special values in the rows types other than Q8_0 keep
      if (type != DType::kQ8_0 && j % 7 == 3) {
        p.k[j * p.kv_stride + j % hd] = specials[j % 7];
        p.v[j * p.kv_stride + (j * 5) % hd] = specials[(j / 7) % 7] * 1e-30f;
      }
    }
    constexpr int kShift = 4;  // 16 positions per page
    const int64_t page_tokens = int64_t{1} << kShift, n_pages = (p.n_keys + page_tokens - 1) / page_tokens;
    const int64_t row_bytes = RowBytes(type, hd), page_bytes = page_tokens * row_bytes;
    std::vector<int32_t> pages(static_cast<size_t>(n_pages));
    for (int64_t i = 0; i < n_pages; ++i) pages[i] = static_cast<int32_t>(n_pages - 1 - i);
    std::shuffle(pages.begin(), pages.end(), r);
    std::vector<uint8_t> kbuf(static_cast<size_t>(n_pages * page_bytes)), vbuf(kbuf.size());
    std::vector<float> kd(static_cast<size_t>(p.n_keys * hd)), vd(kd.size());
    for (int64_t j = 0; j < p.n_keys; ++j) {
      const int64_t at = pages[j >> kShift] * page_bytes + (j & (page_tokens - 1)) * row_bytes;
      QuantizeRow(type, p.k.data() + j * p.kv_stride, hd, kbuf.data() + at);
      QuantizeRow(type, p.v.data() + j * p.kv_stride, hd, vbuf.data() + at);
      DequantizeRow(type, kbuf.data() + at, hd, kd.data() + j * hd);
      DequantizeRow(type, vbuf.data() + at, hd, vd.data() + j * hd);
    }
    KvView view;
    view.k_base = kbuf.data();
    view.v_base = vbuf.data();
    view.pages = pages.data();
    view.page_shift = kShift;
    view.page_bytes = page_bytes;
    view.row_bytes = row_bytes;
    view.type = type;
    std::vector<float> want(static_cast<size_t>(p.n_q * p.q_stride), -7.0f), got(want.size(), -7.0f);
    std::vector<float> scratch(static_cast<size_t>(AttentionScratchFloats(hd)));
    const float scale = 0.09f;
    Attention(p.q.data(), p.q_stride, p.n_q, p.n_heads, hd, kd.data(), vd.data(), hd, p.begin.data(), p.end.data(),
              scale, want.data(), p.q_stride, scratch.data());
    AttentionPaged(p.q.data(), p.q_stride, p.n_q, p.n_heads, hd, view, p.begin.data(), p.end.data(), scale, got.data(),
                   p.q_stride, scratch.data());
    ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)));
  }
}

}  // namespace
}  // namespace herd::kernels
