// Tests of kernels/vision_ops.h (llama4.md 9.3-9.6) against the double-precision reference kernels/ref/vision_ops.h
// on random shapes and several seeds: LayerNorm on every compiled Highway target (sizes around the lane counts,
// misaligned pointers, in place), GELU, the 2-D RoPE table applied by kernels::Rope, the unfold and the pixel
// shuffle (exact copies: bit-identical), plus hand-checked cases of the spec's conventions (width angles first, CLS
// identity, Meta's shuffle order on an index grid as the fixture README states it). Each tolerance is derived in a
// comment from the f32 operations the kernel performs (u = 2^-24).
#include "kernels/vision_ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels_test_util.h"
#include "kernels/ref/vision_ops.h"
#include "kernels/rope.h"

namespace herd::kernels {
namespace {

using testing::F32Buffer;
using testing::kU;
using testing::SeedTrace;

bool SameBits(const float* a, const float* b, int64_t n) {
  return n == 0 || std::memcmp(a, b, static_cast<size_t>(n) * sizeof(float)) == 0;
}

class LayerNormTest : public testing::TargetTest {};
HERD_INSTANTIATE_FOR_TARGETS(LayerNormTest);

TEST_P(LayerNormTest, MatchesReference) {
  uint64_t case_idx = 0;
  for (int64_t n : {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 129, 1000, 1408}) {
    for (int64_t offset : {0, 1, 3}) {
      for (float shift : {0.0f, 4.0f}) {  // rows whose mean is large against their spread
        for (bool in_place : {false, true}) {
          const uint64_t seed = testing::BaseSeed() + 100 + case_idx++;
          SCOPED_TRACE("n = " + std::to_string(n) + ", offset " + std::to_string(offset) + ", shift " +
                       std::to_string(shift) + (in_place ? ", in place, " : ", ") + SeedTrace(seed));
          std::mt19937_64 rng(seed);
          F32Buffer x(n, offset), w(n, (offset + 1) % 4), b(n, (offset + 2) % 4), out(n, 3);
          testing::FillUniform(rng, shift - 3.0f, shift + 3.0f, x.data(), n);
          testing::FillUniform(rng, 0.5f, 1.5f, w.data(), n);
          testing::FillUniform(rng, -1.0f, 1.0f, b.data(), n);
          const float eps = 1e-5f;
          std::vector<float> in(x.data(), x.data() + n), want(static_cast<size_t>(n));
          ref::LayerNorm(x.data(), w.data(), b.data(), n, eps, want.data());
          float* dst = in_place ? x.data() : out.data();
          LayerNorm(x.data(), w.data(), b.data(), n, eps, dst);
          // Exact mean mu, variance var, inv = 1 / sqrt(var + eps), A = mean |x|. The f32 sum of n terms is within
          // gamma_(n-1) sum |x| (any order, Higham 3.1), so the mean is off by dmu <= (n + 1) u A. The centred
          // values are x - mu - dmu, each rounded (u); their sum of squares equals n var + n dmu^2 up to
          // (n + 2) u relative; / n, + eps, sqrt (halves the relative error), 1 / s add 3u: inv is within
          // rho = (n / 2 + 5) u + dmu^2 / (2 (var + eps)) relative. Each output (x - mu) inv w + b is then off by
          // |w| inv (dmu + u |x - mu|) + |(x - mu) inv w| (rho + 2u) + u |out|, plus the reference's rounding.
          double mu = 0, abs_mean = 0;
          for (float v : in) {
            mu += v;
            abs_mean += std::fabs(v);
          }
          mu /= static_cast<double>(n);
          abs_mean /= static_cast<double>(n);
          double var = 0;
          for (float v : in) var += (v - mu) * (v - mu);
          var /= static_cast<double>(n);
          const double inv = 1.0 / std::sqrt(var + eps);
          const double dmu = (n + 1) * kU * abs_mean;
          const double rho = (n / 2.0 + 5) * kU + dmu * dmu / (2 * (var + eps));
          for (int64_t i = 0; i < n; ++i) {
            const double centred = std::fabs(in[i] - mu);
            const double bound =
                w[i] * inv * (dmu + kU * centred) + centred * inv * w[i] * (rho + 2 * kU) + 2 * kU * std::fabs(want[i]);
            ASSERT_LE(std::fabs(static_cast<double>(dst[i]) - want[i]), bound)
                << "out[" << i << "] = " << dst[i] << ", want " << want[i];
          }
        }
      }
    }
  }
}

TEST(VisionOpsTest, GeluErfMatchesReference) {
  for (uint64_t k = 0; k < 4; ++k) {
    const uint64_t seed = testing::BaseSeed() + 200 + k;
    SCOPED_TRACE(SeedTrace(seed));
    std::mt19937_64 rng(seed);
    const int64_t n = 4096;
    F32Buffer x(n, static_cast<int64_t>(k % 3)), out(n, 1);
    testing::FillUniform(rng, -8.0f, 8.0f, x.data(), n);
    // Tails: GELU(-30) underflows to -0, GELU(+30) = 30; and zero.
    for (int64_t i = 0; i < n; i += 17) x[i] = (i % 2 ? 1.0f : -1.0f) * (10.0f + static_cast<float>(i % 40));
    x[5] = 0.0f;
    std::vector<float> want(static_cast<size_t>(n));
    ref::GeluErf(x.data(), want.data(), n);
    GeluErf(x.data(), out.data(), n);
    // 1 + erf(x / sqrt 2) comes from erfc with a relative error below 1.2e-7 (2u) from its fit plus the f32 rounding
    // of x / sqrt 2, z^2 (whose error exp amplifies by z^2, where erfc(z) is already below e^-z^2), the Horner steps
    // and the exp: within 10u of 0.5 |x| absolutely, and relatively accurate in the negative tail.
    for (int64_t i = 0; i < n; ++i) {
      const double bound = 10 * kU * std::fabs(0.5 * x[i]) + 3 * kU * std::fabs(want[i]);
      ASSERT_LE(std::fabs(static_cast<double>(out[i]) - want[i]), bound)
          << "gelu(" << x[i] << ") = " << out[i] << ", want " << want[i];
      // (Below -6 the reference's own 1 + erf cancels in double: 1 + erf(-6 / sqrt 2) = 2e-9.)
      if (x[i] < -1.0f && x[i] > -6.0f) {
        ASSERT_LE(std::fabs(static_cast<double>(out[i]) - want[i]), 5e-6 * std::fabs(want[i]))
            << "tail: gelu(" << x[i] << ") = " << out[i] << ", want " << want[i];
      }
    }
    EXPECT_EQ(out[5], 0.0f);
    GeluErf(x.data(), x.data(), n);  // in place
    EXPECT_TRUE(SameBits(x.data(), out.data(), n));
  }
}

// llama4.md 9.4 by hand: grid 2, head_dim 4 (one x pair, one y pair, inv[0] = 1), theta irrelevant.
TEST(VisionOpsTest, RopeTableWidthFirstAndClsIdentity) {
  float cos[5 * 2], sin[5 * 2];
  VisionRopeTable(2, 4, 10000.0f, cos, sin);
  const int64_t xs[4] = {0, 1, 0, 1}, ys[4] = {0, 0, 1, 1};  // patch p = 2 y + x
  for (int64_t p = 0; p < 4; ++p) {
    EXPECT_EQ(cos[2 * p], std::cos(static_cast<float>(xs[p] + 1))) << "patch " << p << ": pair 0 uses column + 1";
    EXPECT_EQ(sin[2 * p], std::sin(static_cast<float>(xs[p] + 1))) << "patch " << p;
    EXPECT_EQ(cos[2 * p + 1], std::cos(static_cast<float>(ys[p] + 1))) << "patch " << p << ": pair 1 uses row + 1";
    EXPECT_EQ(sin[2 * p + 1], std::sin(static_cast<float>(ys[p] + 1))) << "patch " << p;
  }
  EXPECT_EQ(cos[8], 1.0f);  // CLS (last): identity
  EXPECT_EQ(cos[9], 1.0f);
  EXPECT_EQ(sin[8], 0.0f);
  EXPECT_EQ(sin[9], 0.0f);
}

TEST(VisionOpsTest, RopeMatchesReference) {
  uint64_t case_idx = 0;
  for (int64_t grid : {1, 2, 3, 6, 24}) {
    for (int64_t head_dim : {4, 8, 16, 20, 88, 128}) {
      for (float theta : {10000.0f, 100.0f}) {
        const uint64_t seed = testing::BaseSeed() + 300 + case_idx++;
        SCOPED_TRACE("grid " + std::to_string(grid) + ", head_dim " + std::to_string(head_dim) + ", theta " +
                     std::to_string(theta) + ", " + SeedTrace(seed));
        std::mt19937_64 rng(seed);
        const int64_t n_tokens = grid * grid + 1, half = head_dim / 2;
        std::vector<float> cos(static_cast<size_t>(n_tokens * half)), sin(cos.size());
        VisionRopeTable(grid, head_dim, theta, cos.data(), sin.data());
        // The angle fl32(pos * inv') with inv' = fl(1 / powf(theta, fl(4k / head_dim))): the exponent's rounding
        // moves theta^e by u e ln(theta) <= u ln(theta) relatively, powf adds <= 2u, the division u, the product
        // u, so the angle is within pos (ln(theta) + 4) u of pos / theta^e (inv <= 1, pos <= grid). cos and sin
        // add u each, and the rotation a c - b s rounds twice (2u (|a c| + |b s|)) plus the reference's u: each
        // output is within (|a| + |b|) (grid (ln(theta) + 4) + 4) u.
        const double angle_err = grid * (std::log(static_cast<double>(theta)) + 4);
        F32Buffer x(head_dim, static_cast<int64_t>(case_idx % 3));
        for (int64_t t = 0; t < n_tokens; ++t) {
          testing::FillUniform(rng, -3.0f, 3.0f, x.data(), head_dim);
          std::vector<float> in(x.data(), x.data() + head_dim), want(in);
          ref::VisionRope(want.data(), head_dim, grid, theta, t);
          Rope(x.data(), head_dim, cos.data() + t * half, sin.data() + t * half, RopeStyle::kInterleaved);
          for (int64_t m = 0; m < half; ++m) {
            const double bound = kU * (std::fabs(in[2 * m]) + std::fabs(in[2 * m + 1])) * (angle_err + 4);
            for (int64_t e : {2 * m, 2 * m + 1}) {
              ASSERT_LE(std::fabs(static_cast<double>(x[e]) - want[e]), bound) << "token " << t << ", x[" << e << "]";
            }
          }
          if (t == grid * grid) {
            EXPECT_TRUE(SameBits(x.data(), in.data(), head_dim)) << "CLS must not rotate";
          }
        }
      }
    }
  }
}

TEST(VisionOpsTest, UnfoldIsTheReferenceCopy) {
  uint64_t case_idx = 0;
  struct Shape {
    int64_t channels, image_size, patch_size;
  };
  for (Shape s : {Shape{3, 48, 8}, Shape{3, 28, 14}, Shape{1, 5, 5}, Shape{3, 6, 1}, Shape{2, 12, 3}}) {
    const uint64_t seed = testing::BaseSeed() + 400 + case_idx++;
    SCOPED_TRACE(std::to_string(s.channels) + "x" + std::to_string(s.image_size) + " patch " +
                 std::to_string(s.patch_size) + ", " + SeedTrace(seed));
    std::mt19937_64 rng(seed);
    const int64_t n = s.channels * s.image_size * s.image_size;
    std::vector<float> pixels(static_cast<size_t>(n)), got(pixels.size()), want(pixels.size());
    testing::FillUniform(rng, -1.0f, 1.0f, pixels.data(), n);
    UnfoldPatches(pixels.data(), s.channels, s.image_size, s.patch_size, got.data());
    ref::UnfoldPatches(pixels.data(), s.channels, s.image_size, s.patch_size, want.data());
    EXPECT_TRUE(SameBits(got.data(), want.data(), n));
  }
}

TEST(VisionOpsTest, PixelShuffleIsMetasViewPermuteSequence) {
  uint64_t case_idx = 0;
  for (int64_t factor : {1, 2, 3}) {
    for (int64_t grid_blocks : {1, 2, 5, 12}) {
      for (int64_t channels : {1, 3, 32}) {
        const uint64_t seed = testing::BaseSeed() + 500 + case_idx++;
        const int64_t grid = grid_blocks * factor, n = grid * grid * channels;
        SCOPED_TRACE("grid " + std::to_string(grid) + ", factor " + std::to_string(factor) + ", channels " +
                     std::to_string(channels) + ", " + SeedTrace(seed));
        std::mt19937_64 rng(seed);
        std::vector<float> x(static_cast<size_t>(n)), got(x.size()), want(x.size());
        testing::FillUniform(rng, -1.0f, 1.0f, x.data(), n);
        PixelShuffle(x.data(), grid, channels, factor, got.data());
        ref::PixelShuffle(x.data(), grid, channels, factor, want.data());
        EXPECT_TRUE(SameBits(got.data(), want.data(), n));
      }
    }
  }
}

// The fixture README's index-grid check (llama4-tiny-vision, step 5): output token t = i (g/2) + j concatenates
// G[2i][2j], G[2i][2j+1], G[2i+1][2j], G[2i+1][2j+1], channel fastest, with G[r][c] the patch at row r, column c.
TEST(VisionOpsTest, PixelShuffleIndexGrid) {
  const int64_t g = 6, channels = 2;
  std::vector<float> x(static_cast<size_t>(g * g * channels)), out(x.size());
  for (int64_t p = 0; p < g * g; ++p) {
    for (int64_t ch = 0; ch < channels; ++ch) x[p * channels + ch] = static_cast<float>(100 * p + ch);
  }
  PixelShuffle(x.data(), g, channels, 2, out.data());
  for (int64_t i = 0; i < g / 2; ++i) {
    for (int64_t j = 0; j < g / 2; ++j) {
      const int64_t t = i * (g / 2) + j;
      const int64_t sources[4] = {2 * i * g + 2 * j, 2 * i * g + 2 * j + 1, (2 * i + 1) * g + 2 * j,
                                  (2 * i + 1) * g + 2 * j + 1};
      for (int64_t s = 0; s < 4; ++s) {
        for (int64_t ch = 0; ch < channels; ++ch) {
          EXPECT_EQ(out[(t * 4 + s) * channels + ch], static_cast<float>(100 * sources[s] + ch))
              << "token " << t << ", slot " << s << ", channel " << ch;
        }
      }
    }
  }
}

}  // namespace
}  // namespace herd::kernels
