// Tests of kernels/rope.h (llama4.md 2.5 interleaved pairs, 10.2 half-split pairs) against kernels/ref/rope.h on
// every compiled Highway target the CPU supports, plus hand-computed rotations and the 10.2 equivalence of the
// two conventions under the per-head permutation of the HF converter; RopeCosSin (the table the decoder rotates by)
// by hand values and against double precision.
#include "kernels/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels_test_util.h"
#include "kernels/ops.h"
#include "kernels/ref/rope.h"

namespace herd::kernels {
namespace {

using testing::F32Buffer;
using testing::kU;
using testing::SeedTrace;

class RopeTest : public testing::TargetTest {};
HERD_INSTANTIATE_FOR_TARGETS(RopeTest);

const char* StyleName(RopeStyle s) { return s == RopeStyle::kInterleaved ? "interleaved" : "half-split"; }

TEST_P(RopeTest, HandComputedQuarterTurns) {
  // head_dim 4, angles (90 degrees, 0): pair 0 turns (1, 0) into (0, 1); pair 1 is unchanged.
  const float cos[2] = {0.0f, 1.0f}, sin[2] = {1.0f, 0.0f};
  float inter[4] = {1.0f, 0.0f, 0.0f, 1.0f};  // pairs (x0, x1), (x2, x3)
  Rope(inter, 4, cos, sin, RopeStyle::kInterleaved);
  EXPECT_EQ(inter[0], 0.0f);
  EXPECT_EQ(inter[1], 1.0f);
  EXPECT_EQ(inter[2], 0.0f);
  EXPECT_EQ(inter[3], 1.0f);
  float half[4] = {1.0f, 0.0f, 0.0f, 1.0f};  // pairs (x0, x2), (x1, x3)
  Rope(half, 4, cos, sin, RopeStyle::kHalfSplit);
  EXPECT_EQ(half[0], 0.0f);
  EXPECT_EQ(half[1], 0.0f);
  EXPECT_EQ(half[2], 1.0f);
  EXPECT_EQ(half[3], 1.0f);
}

TEST_P(RopeTest, MatchesReference) {
  uint64_t case_idx = 0;
  for (RopeStyle style : {RopeStyle::kInterleaved, RopeStyle::kHalfSplit}) {
    // Even sizes around 4, 8, 16 and 32 lanes (pairs and halves), and real head sizes (64, 128, 256).
    for (int64_t head_dim : {2, 4, 6, 8, 10, 14, 16, 18, 30, 32, 34, 62, 64, 66, 128, 130, 256}) {
      for (int64_t offset : {0, 1}) {
        const uint64_t seed = testing::BaseSeed() + case_idx++;
        SCOPED_TRACE(std::string(StyleName(style)) + ", head_dim " + std::to_string(head_dim) + ", " + SeedTrace(seed));
        std::mt19937_64 rng(seed);
        const int64_t half = head_dim / 2;
        F32Buffer x(head_dim, offset), c(half, (offset + 1) % 4), s(half, (offset + 3) % 4);
        testing::FillUniform(rng, -4.0f, 4.0f, x.data(), head_dim);
        std::uniform_real_distribution<double> angle(-100.0, 100.0);
        for (int64_t i = 0; i < half; ++i) {
          const double a = angle(rng);
          c[i] = static_cast<float>(std::cos(a));
          s[i] = static_cast<float>(std::sin(a));
        }
        std::vector<float> in(x.data(), x.data() + head_dim), want(in);
        ref::Rope(want.data(), head_dim, c.data(), s.data(), style);
        Rope(x.data(), head_dim, c.data(), s.data(), style);
        // Each output is a c -/+ b s: one rounding for each product (or one fused) and one for the sum,
        // <= 2u (|a c| + |b s|), plus the reference's rounding u |result|.
        for (int64_t i = 0; i < half; ++i) {
          const int64_t ia = style == RopeStyle::kInterleaved ? 2 * i : i;
          const int64_t ib = style == RopeStyle::kInterleaved ? 2 * i + 1 : i + half;
          const double a = in[ia], b = in[ib];
          const double bound_a = 3 * kU * (std::fabs(a * c[i]) + std::fabs(b * s[i]));
          const double bound_b = 3 * kU * (std::fabs(a * s[i]) + std::fabs(b * c[i]));
          ASSERT_LE(std::fabs(static_cast<double>(x[ia]) - want[ia]), bound_a) << "x[" << ia << "]";
          ASSERT_LE(std::fabs(static_cast<double>(x[ib]) - want[ib]), bound_b) << "x[" << ib << "]";
        }
      }
    }
  }
}

// llama4.md 10.2: the HF converter moves row 2i + s of each head to s * (d/2) + i; half-split RoPE on the
// permuted vector equals interleaved RoPE on the original, element for element (same arithmetic per pair).
TEST(RopeReferenceTest, HalfSplitOfPermutedEqualsInterleaved) {
  const int64_t d = 128;
  std::mt19937_64 rng(testing::BaseSeed());
  std::vector<float> x(d), c(d / 2), s(d / 2);
  testing::FillUniform(rng, -1.0f, 1.0f, x.data(), d);
  const float theta = 500000.0f, pos = 1234.0f;
  for (int64_t i = 0; i < d / 2; ++i) {
    const float angle = pos * (1.0f / std::pow(theta, static_cast<float>(2 * i) / d));
    c[i] = std::cos(angle);
    s[i] = std::sin(angle);
  }
  std::vector<float> permuted(d);
  for (int64_t i = 0; i < d / 2; ++i) {
    for (int64_t sel = 0; sel < 2; ++sel) permuted[sel * (d / 2) + i] = x[2 * i + sel];
  }
  ref::Rope(x.data(), d, c.data(), s.data(), RopeStyle::kInterleaved);
  ref::Rope(permuted.data(), d, c.data(), s.data(), RopeStyle::kHalfSplit);
  for (int64_t i = 0; i < d / 2; ++i) {
    for (int64_t sel = 0; sel < 2; ++sel) EXPECT_EQ(permuted[sel * (d / 2) + i], x[2 * i + sel]) << i << "," << sel;
  }
}

// ---- RopeCosSin ----

TEST(RopeCosSinTest, HandValues) {
  // fl32(pi/2) = pi/2 + d with d = 4.371139e-8 (pi/2 = 1.5707963267948966, its float 1.5707963705062866), so the
  // angles at positions 1, 2 and 4 are exactly p pi/2 + p d (p * fl32(pi/2) is exact in fp32 for p = 1, 2, 4):
  // cos = -sin(d), -cos(2d), cos(4d) and sin = cos(d), -sin(2d), sin(4d), with cos(k d) = 1 to within 2^-45.
  // Pair 1 has frequency 0 (angle 0 at every position), pair 2 half of pair 0's.
  constexpr double kPi = std::numbers::pi;
  const float quarter = static_cast<float>(kPi / 2);
  const double d = static_cast<double>(quarter) - kPi / 2;
  ASSERT_NEAR(d, 4.371139e-8, 1e-14);
  const float inv_freq[3] = {quarter, 0.0f, quarter / 2};
  float cos[3], sin[3];
  RopeCosSin(inv_freq, 3, 0, cos, sin);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(cos[i], 1.0f) << i;
    EXPECT_EQ(sin[i], 0.0f) << i;
  }
  struct Turn {
    int64_t pos;
    float cos, sin;
  };
  for (const Turn& t : {Turn{1, static_cast<float>(-d), 1.0f}, Turn{2, -1.0f, static_cast<float>(-2 * d)},
                        Turn{4, 1.0f, static_cast<float>(4 * d)}}) {
    RopeCosSin(inv_freq, 3, t.pos, cos, sin);
    EXPECT_FLOAT_EQ(cos[0], t.cos) << "pos " << t.pos;
    EXPECT_FLOAT_EQ(sin[0], t.sin) << "pos " << t.pos;
    EXPECT_EQ(cos[1], 1.0f) << "pos " << t.pos;
    EXPECT_EQ(sin[1], 0.0f) << "pos " << t.pos;
  }
  // Pair 2 at pos 1: pi/4 + d/2, cos and sin = sqrt(1/2) -/+ 1.55e-8, within one ulp (6e-8) after rounding.
  RopeCosSin(inv_freq, 3, 1, cos, sin);
  EXPECT_NEAR(cos[2], std::sqrt(0.5), 1.55e-8 + 6e-8);
  EXPECT_NEAR(sin[2], std::sqrt(0.5), 1.55e-8 + 6e-8);
}

// Llama 4 frequencies (theta 500000, head_dim 128) at positions up to 2^24. The product p * f of two floats is
// exact in double (48 significant bits), so with a = p * f exact and a32 = fl32(a):
//  * evaluation: |cos - cos(a32)| <= 2^-24, one ulp of the [0.5, 1) binade (glibc's cosf/sinf are within one ulp);
//  * the fp32 product: |a32 - a| <= 2^-24 |a| (round to nearest), and cos and sin are 1-Lipschitz, so
//    |cos - cos(a)| <= 2^-24 (|a| + 1).
// The first fails for a product formed in double (it moves the angle by up to 2^-24 |a|, ~0.03 at a ~ 1e6); the
// second bounds what the fp32 product costs against exact math.
TEST(RopeCosSinTest, MatchesDoublePrecisionWithinDerivedBound) {
  constexpr int64_t kPairs = 64;
  float inv_freq[kPairs];
  for (int64_t i = 0; i < kPairs; ++i) {
    inv_freq[i] = static_cast<float>(1.0 / std::pow(500000.0, static_cast<double>(2 * i) / (2 * kPairs)));
  }
  std::mt19937_64 rng(testing::BaseSeed());
  SCOPED_TRACE(SeedTrace(testing::BaseSeed()));
  std::vector<int64_t> positions = {0, 1, 2, 3, 127, 8191, 8192, 65535, 1 << 20, (1 << 24) - 1, 1 << 24};
  std::uniform_int_distribution<int64_t> any_pos(0, int64_t{1} << 24);
  for (int k = 0; k < 200; ++k) positions.push_back(any_pos(rng));
  float cos[kPairs], sin[kPairs];
  for (int64_t p : positions) {
    RopeCosSin(inv_freq, kPairs, p, cos, sin);
    for (int64_t i = 0; i < kPairs; ++i) {
      const double a = static_cast<double>(p) * inv_freq[i];
      const double a32 = static_cast<float>(a);
      ASSERT_LE(std::fabs(cos[i] - std::cos(a32)), kU) << "cos, pos " << p << ", pair " << i;
      ASSERT_LE(std::fabs(sin[i] - std::sin(a32)), kU) << "sin, pos " << p << ", pair " << i;
      ASSERT_LE(std::fabs(cos[i] - std::cos(a)), kU * (std::fabs(a) + 1)) << "cos, pos " << p << ", pair " << i;
      ASSERT_LE(std::fabs(sin[i] - std::sin(a)), kU * (std::fabs(a) + 1)) << "sin, pos " << p << ", pair " << i;
    }
  }
}

// ---- PrepareQueryKey, AttentionTemperature ----

// Random token shapes (GQA groups, odd head counts, head sizes around the SIMD widths) under every combination of
// the layer flags: the fused call equals Rope, RmsNorm and Scale called in turn bit for bit (what the decoder ran
// inline before), and the scalar twin within a bound derived from the steps.
TEST_P(RopeTest, PrepareQueryKeyIsTheKernelsInTurnAndMatchesReference) {
  struct Shape {
    int64_t n_heads, n_kv_heads, head_dim;
  };
  uint64_t case_idx = 0;
  for (const Shape sh : {Shape{1, 1, 2}, Shape{4, 1, 8}, Shape{5, 5, 18}, Shape{8, 2, 64}, Shape{3, 1, 34},
                         Shape{40, 8, 128}, Shape{2, 2, 130}}) {
    for (int flags = 0; flags < 16; ++flags) {
      const uint64_t seed = testing::BaseSeed() + case_idx++;
      QueryKeyPrep p{sh.n_heads,
                     sh.n_kv_heads,
                     sh.head_dim,
                     (flags & 8) != 0 ? RopeStyle::kHalfSplit : RopeStyle::kInterleaved,
                     (flags & 1) != 0,
                     (flags & 2) != 0,
                     1e-5f};
      const bool scale_q = (flags & 4) != 0;
      SCOPED_TRACE("heads " + std::to_string(sh.n_heads) + "/" + std::to_string(sh.n_kv_heads) + ", head_dim " +
                   std::to_string(sh.head_dim) + ", flags " + std::to_string(flags) + ", " + SeedTrace(seed));
      std::mt19937_64 rng(seed);
      const int64_t hd = sh.head_dim, half = hd / 2, nq = sh.n_heads * hd, nk = sh.n_kv_heads * hd;
      std::vector<float> q(nq), k(nk), cos(half), sin(half);
      testing::FillUniform(rng, -3.0f, 3.0f, q.data(), nq);
      testing::FillUniform(rng, -3.0f, 3.0f, k.data(), nk);
      std::uniform_real_distribution<double> angle(-50.0, 50.0);
      for (int64_t i = 0; i < half; ++i) {
        const double a = angle(rng);
        cos[i] = static_cast<float>(std::cos(a));
        sin[i] = static_cast<float>(std::sin(a));
      }
      const float q_scale = AttentionTemperature(static_cast<int64_t>(rng() % 100000), 8192.0f, 0.1f);

      std::vector<float> got_q = q, got_k = k, seq_q = q, seq_k = k, ref_q = q, ref_k = k;
      PrepareQueryKey(p, cos.data(), sin.data(), scale_q, q_scale, got_q.data(), got_k.data());
      for (int64_t h = 0; h < sh.n_heads && p.rope; ++h)
        Rope(seq_q.data() + h * hd, hd, cos.data(), sin.data(), p.style);
      for (int64_t h = 0; h < sh.n_kv_heads && p.rope; ++h) {
        Rope(seq_k.data() + h * hd, hd, cos.data(), sin.data(), p.style);
      }
      for (int64_t h = 0; h < sh.n_heads && p.qk_norm; ++h) {
        RmsNorm(seq_q.data() + h * hd, nullptr, hd, p.eps, seq_q.data() + h * hd);
      }
      for (int64_t h = 0; h < sh.n_kv_heads && p.qk_norm; ++h) {
        RmsNorm(seq_k.data() + h * hd, nullptr, hd, p.eps, seq_k.data() + h * hd);
      }
      if (scale_q) Scale(seq_q.data(), q_scale, nq);
      ASSERT_EQ(got_q, seq_q);
      ASSERT_EQ(got_k, seq_k);

      ref::PrepareQueryKey(p, cos.data(), sin.data(), scale_q, q_scale, ref_q.data(), ref_k.data());
      // Per head, with M = max |input| and r its RMS: a rotated element is off by at most ~2u(|a c| + |b s|) <=
      // 3u M; the norm divides that by r and adds (hd / 2 + 8) u relative (ops_test's bound); the scale one more u.
      const auto check = [&](const std::vector<float>& in, const std::vector<float>& got,
                             const std::vector<float>& want, int64_t heads, float s) {
        for (int64_t h = 0; h < heads; ++h) {
          double m = 0, sq = 0;
          for (int64_t i = 0; i < hd; ++i) {
            m = std::max(m, std::fabs(static_cast<double>(in[h * hd + i])));
            sq += static_cast<double>(in[h * hd + i]) * in[h * hd + i];
          }
          const double r = std::sqrt(sq / static_cast<double>(hd) + p.eps);
          const double absolute = 4 * kU * m * (p.qk_norm ? 1.0 / r : 1.0) * std::fabs(s);
          for (int64_t i = 0; i < hd; ++i) {
            const size_t j = static_cast<size_t>(h * hd + i);
            ASSERT_LE(std::fabs(static_cast<double>(got[j]) - want[j]),
                      absolute + (static_cast<double>(hd) / 2 + 10) * kU * std::fabs(want[j]))
                << "head " << h << ", element " << i << ": " << got[j] << " vs " << want[j];
          }
        }
      };
      check(q, got_q, ref_q, sh.n_heads, scale_q ? q_scale : 1.0f);
      check(k, got_k, ref_k, sh.n_kv_heads, 1.0f);
    }
  }
}

TEST(AttentionTemperatureTest, HandValues) {
  // llama4.md 2.8: log(floor((pos + 1) / floor_scale) + 1) * attn_scale + 1.
  EXPECT_EQ(AttentionTemperature(0, 8192.0f, 0.1f), 1.0f);     // floor(1 / 8192) = 0: log 1 = 0
  EXPECT_EQ(AttentionTemperature(8190, 8192.0f, 0.1f), 1.0f);  // floor(8191 / 8192) = 0
  EXPECT_EQ(AttentionTemperature(8191, 8192.0f, 0.1f), std::log(2.0f) * 0.1f + 1.0f);
  EXPECT_EQ(AttentionTemperature(3 * 8192 - 1, 8192.0f, 0.1f), std::log(4.0f) * 0.1f + 1.0f);
  EXPECT_EQ(AttentionTemperature(5, 2.0f, 0.5f), std::log(4.0f) * 0.5f + 1.0f);  // floor(6 / 2) = 3
}

}  // namespace
}  // namespace herd::kernels
