// Tests of the scaled products of kernels/matmul.h (FP8 E4M3 weights with per-output f32 scales, llama4.md 6.3)
// against kernels/ref/matmul_fp8.h on every compiled Highway target the CPU supports: all 256 E4M3 codes decode
// exactly (subnormals, +-448, NaN = 0x7F/0xFF); core/half.h's encoder rounds to nearest even and saturates;
// random products agree within the f32 dot-product bound; results do not depend on threads or row ranges; a
// null scale on a non-FP8 weight is bit-identical to the unscaled kernels.
#include "kernels/ref/matmul_fp8.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "kernels/kernels_test_util.h"
#include "kernels/matmul.h"

namespace herd::kernels {
namespace {

using testing::F32Buffer;
using testing::kU;
using testing::MakeWeights;
using testing::SeedTrace;
using testing::Weights;


// Random E4M3 bytes over the whole finite range (both signs, subnormals included), never a NaN code.
Weights RandomF8(int64_t rows, int64_t cols, std::mt19937_64& rng) {
  std::vector<uint8_t> b(static_cast<size_t>(rows * cols));
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& v : b) {
    do {
      v = static_cast<uint8_t>(byte(rng));
    } while ((v & 0x7F) == 0x7F);
  }
  return MakeWeights(DType::kF8_E4M3, rows, cols, std::move(b));
}

Weights RandomBf16(int64_t rows, int64_t cols, std::mt19937_64& rng) {
  std::vector<uint8_t> b(static_cast<size_t>(rows * cols * 2));
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  for (size_t i = 0; i < b.size(); i += 2) {
    const uint16_t h = F32ToBf16(unit(rng));
    std::memcpy(b.data() + i, &h, 2);
  }
  return MakeWeights(DType::kBF16, rows, cols, std::move(b));
}

// Per-row scales as an FP8 checkpoint has them (amax / 448 of BF16-sized weights: ~1e-4..1e-2), with an
// occasional odd one (1, a power of two, a negative scale) to catch sign and exponent handling.
std::vector<float> RandomScales(int64_t n, std::mt19937_64& rng) {
  std::vector<float> s(static_cast<size_t>(n));
  std::uniform_real_distribution<float> log_scale(-9.0f, -4.0f);
  std::uniform_int_distribution<int> pick(0, 15);
  for (float& v : s) {
    const int k = pick(rng);
    v = k == 0 ? 1.0f : k == 1 ? 0.0078125f : k == 2 ? -0.003f : std::exp(log_scale(rng));
  }
  return s;
}

bool SameFloat(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  uint32_t x, y;
  std::memcpy(&x, &a, 4);
  std::memcpy(&y, &b, 4);
  return x == y;
}

// ---------------------------------------------------------------------------------------------------------
// Decoding and encoding.

// The value of E4M3 code v from its fields, written independently of core/half.h.
double E4M3Value(uint8_t v) {
  const int sign = v >> 7, exp = (v >> 3) & 15, mant = v & 7;
  if (exp == 15 && mant == 7) return std::numeric_limits<double>::quiet_NaN();
  const double mag = exp == 0 ? mant / 8.0 * std::pow(2.0, -6) : (1.0 + mant / 8.0) * std::pow(2.0, exp - 7);
  return sign ? -mag : mag;
}

TEST(F8E4M3Codes, CoreDecoderKnownValues) {
  EXPECT_EQ(F8E4M3ToF32(0x00), 0.0f);
  EXPECT_TRUE(std::signbit(F8E4M3ToF32(0x80)));
  EXPECT_EQ(F8E4M3ToF32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(F8E4M3ToF32(0x07), std::ldexp(7.0f, -9));  // largest subnormal
  EXPECT_EQ(F8E4M3ToF32(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(F8E4M3ToF32(0x38), 1.0f);
  EXPECT_EQ(F8E4M3ToF32(0x7E), 448.0f);
  EXPECT_EQ(F8E4M3ToF32(0xFE), -448.0f);
  EXPECT_TRUE(std::isnan(F8E4M3ToF32(0x7F)));
  EXPECT_TRUE(std::isnan(F8E4M3ToF32(0xFF)));
  for (int v = 0; v < 256; ++v) {
    const double want = E4M3Value(static_cast<uint8_t>(v));
    const float got = F8E4M3ToF32(static_cast<uint8_t>(v));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << "code 0x" << std::hex << v;
    } else {
      EXPECT_EQ(static_cast<double>(got), want) << "code 0x" << std::hex << v;
      EXPECT_EQ(std::signbit(got), (v & 0x80) != 0) << "code 0x" << std::hex << v;
    }
  }
}

// Nearest finite E4M3 code by exhaustive search; ties go to the even code (mantissa bit 0 clear); beyond 448,
// saturation.
uint8_t NearestE4M3(float f) {
  if (std::isnan(f)) return std::signbit(f) ? 0xFF : 0x7F;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0x00;
  const double a = std::fabs(static_cast<double>(f));
  uint8_t best = 0;
  double best_err = INFINITY;
  for (int c = 0; c < 0x7F; ++c) {
    const double err = std::fabs(E4M3Value(static_cast<uint8_t>(c)) - a);
    if (err < best_err || (err == best_err && (c & 1) == 0)) {
      best = static_cast<uint8_t>(c);
      best_err = err;
    }
  }
  return sign | best;
}

TEST(F8E4M3Codes, EncoderRoundsToNearestEvenAndSaturates) {
  for (int v = 0; v < 256; ++v) {  // every finite code round-trips
    if ((v & 0x7F) == 0x7F) continue;
    EXPECT_EQ(F32ToF8E4M3(F8E4M3ToF32(static_cast<uint8_t>(v))), v) << "code 0x" << std::hex << v;
  }
  std::vector<float> probes;
  for (int c = 0; c + 1 < 0x7F; ++c) {  // midpoints of neighbours, and one f32 step either side of each
    const double lo = E4M3Value(static_cast<uint8_t>(c)), hi = E4M3Value(static_cast<uint8_t>(c + 1));
    const float mid = static_cast<float>((lo + hi) / 2);  // exact: both have at most 5 significant bits
    for (float p : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1000.0f)}) {
      probes.push_back(p);
      probes.push_back(-p);
    }
  }
  std::mt19937_64 rng(testing::BaseSeed());
  std::uniform_real_distribution<float> log_mag(-14.0f, 9.5f);
  for (int i = 0; i < 20000; ++i) probes.push_back((i & 1 ? -1.0f : 1.0f) * std::exp2(log_mag(rng)));
  for (float p : {0.0f, -0.0f, 448.0f, 463.9f, 464.0f, 500.0f, 1e30f, INFINITY, -INFINITY, 1e-30f, -1e-30f}) {
    probes.push_back(p);
  }
  int failures = 0;
  for (float p : probes) {
    const uint8_t got = F32ToF8E4M3(p), want = NearestE4M3(p);
    if (got != want && failures++ < 5) {
      ADD_FAILURE() << p << " -> 0x" << std::hex << int(got) << ", want 0x" << int(want);
    }
  }
  EXPECT_EQ(F32ToF8E4M3(std::nanf("")) & 0x7F, 0x7F);
  EXPECT_EQ(F32ToF8E4M3(std::ldexp(1.0f, -10)), 0x00);  // half the smallest subnormal: tie to even (zero)
  EXPECT_EQ(F32ToF8E4M3(std::ldexp(3.0f, -10)), 0x02);  // 1.5 subnormal steps: tie to even (2 steps)
}

class F8DequantTest : public testing::TargetTest {};
HERD_INSTANTIATE_FOR_TARGETS(F8DequantTest);

// All 256 codes in one row (offset so both the vector body and the scalar tail see every code).
TEST_P(F8DequantTest, All256CodesExactly) {
  for (int64_t offset : {0, 3, 17}) {
    const int64_t cols = 256 + offset;
    std::vector<uint8_t> b(static_cast<size_t>(cols));
    for (int64_t i = 0; i < cols; ++i) b[i] = static_cast<uint8_t>((i + 256 - offset) & 0xFF);
    const Weights w = MakeWeights(DType::kF8_E4M3, 1, cols, b);
    std::vector<float> got(cols), want(cols);
    DequantizeRowScaled(w.view, nullptr, 0, got.data());
    ref::DequantizeRowScaled(w.view, nullptr, 0, want.data());
    for (int64_t i = 0; i < cols; ++i) {
      EXPECT_TRUE(SameFloat(got[i], F8E4M3ToF32(b[i]))) << "code 0x" << std::hex << int(b[i]) << ": " << got[i];
      EXPECT_TRUE(SameFloat(want[i], F8E4M3ToF32(b[i]))) << "reference, code 0x" << std::hex << int(b[i]);
    }
  }
}

TEST_P(F8DequantTest, ScaledRowsMatchReferenceExactly) {
  std::mt19937_64 rng(testing::BaseSeed() + 1);
  for (int64_t cols : {1, 7, 15, 17, 32, 33, 100, 1000}) {
    const Weights w = RandomF8(4, cols, rng);
    const std::vector<float> scale = RandomScales(4, rng);
    std::vector<float> got(cols), want(cols);
    for (int64_t r = 0; r < 4; ++r) {
      DequantizeRowScaled(w.view, scale.data(), r, got.data());
      ref::DequantizeRowScaled(w.view, scale.data(), r, want.data());
      EXPECT_EQ(0, std::memcmp(got.data(), want.data(), cols * sizeof(float))) << cols << " columns, row " << r;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Products.

class F8MatMulTest : public testing::TargetTest {};
HERD_INSTANTIATE_FOR_TARGETS(F8MatMulTest);

constexpr int64_t kTokenCounts[] = {1, 2, 3, 4, 7, 16, 33};

// |got - ref| <= (n_in + 4) u sum_i |Ws[o, i] x[t, i]|, Ws the reference's scaled weights: the f32 dot-product
// bound of MatMul (n_in + 2, see matmul_test.cpp), plus the rounding of the final scale product and the relative
// difference between scaling the sum and summing fl(q * scale) (one u each).
void ExpectWithinBound(const std::vector<double>& abs_sum, const float* got, const float* want, int64_t n,
                       int64_t n_in) {
  int failures = 0;
  for (int64_t k = 0; k < n && failures < 5; ++k) {
    const double tol = static_cast<double>(n_in + 4) * kU * abs_sum[k];
    if (!(std::fabs(static_cast<double>(got[k]) - want[k]) <= tol)) {
      ADD_FAILURE() << "y[" << k << "] = " << got[k] << ", reference " << want[k] << ", tolerance " << tol;
      ++failures;
    }
  }
}

void CheckProduct(int64_t n_out, int64_t n_in, int64_t n_tokens, int threads, bool with_scale, uint64_t seed) {
  SCOPED_TRACE("F8_E4M3 W[" + std::to_string(n_out) + ", " + std::to_string(n_in) + "] x " + std::to_string(n_tokens) +
               " tokens, " + std::to_string(threads) + " threads" + (with_scale ? "" : ", no scale") + ", " +
               SeedTrace(seed));
  std::mt19937_64 rng(seed);
  const Weights w = RandomF8(n_out, n_in, rng);
  n_out = w.view.Rows();
  const std::vector<float> scale = RandomScales(n_out, rng);
  const float* s = with_scale ? scale.data() : nullptr;
  F32Buffer x(n_tokens * n_in, static_cast<int64_t>(seed % 7));
  testing::FillUniform(rng, -1.0f, 1.0f, x.data(), x.size());
  F32Buffer y(n_tokens * n_out, static_cast<int64_t>(seed % 5) + 1);
  std::fill(y.data(), y.data() + y.size(), std::nanf(""));
  std::vector<float> want(static_cast<size_t>(n_tokens * n_out));
  ThreadPool pool(threads);
  MatMulScaled(w.view, s, x.data(), n_tokens, y.data(), pool);
  ref::MatMulScaled(w.view, s, x.data(), n_tokens, want.data());
  std::vector<double> abs_sum(want.size(), 0.0);
  std::vector<float> row(static_cast<size_t>(n_in));
  for (int64_t o = 0; o < n_out; ++o) {
    ref::DequantizeRowScaled(w.view, s, o, row.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t i = 0; i < n_in; ++i) abs_sum[t * n_out + o] += std::fabs(double{row[i]} * x[t * n_in + i]);
    }
  }
  ExpectWithinBound(abs_sum, y.data(), want.data(), n_tokens * n_out, n_in);
}

TEST_P(F8MatMulTest, EdgeShapes) {
  const uint64_t seed = testing::BaseSeed() + 100;
  uint64_t case_idx = 0;
  const int64_t outs[] = {0, 1, 3, 5, 9, 15, 17, 31, 33, 300};
  const int64_t ins[] = {0, 1, 3, 5, 15, 17, 31, 33, 100, 300};
  for (int64_t n_tokens : kTokenCounts) {
    for (int64_t n_out : outs) {
      for (size_t k = 0; k < std::size(ins); ++k) {
        if ((k + static_cast<size_t>(n_out) + static_cast<size_t>(n_tokens)) % 3 != 0 && n_out > 33) continue;
        CheckProduct(n_out, ins[k], n_tokens, 1, true, seed + case_idx++);
      }
    }
  }
}

TEST_P(F8MatMulTest, RandomShapes) {
  const uint64_t seed0 = testing::BaseSeed() ^ 0x5bd1e995u;
  std::mt19937_64 rng(seed0);
  for (int i = 0; i < 30; ++i) {
    const int64_t n_out = 1 + static_cast<int64_t>(rng() % 400);
    const int64_t n_in = 1 + static_cast<int64_t>(rng() % 700);
    const int64_t n_tokens = kTokenCounts[rng() % std::size(kTokenCounts)];
    CheckProduct(n_out, n_in, n_tokens, 1 + static_cast<int>(rng() % 3), i % 5 != 0, seed0 + i);
  }
}

// 1, 2 and 3 threads and disjoint MatMulRowsScaled calls give identical bits; MatMulRowsScaled writes only its
// rows (the margin of y_stride > n_out stays untouched).
TEST_P(F8MatMulTest, ThreadCountAndRowRangesDoNotChangeResults) {
  const uint64_t seed = testing::BaseSeed() + 200;
  std::mt19937_64 rng(seed);
  SCOPED_TRACE(SeedTrace(seed));
  for (int64_t n_tokens : {1, 3, 5, 40}) {
    const int64_t n_out = 100, n_in = 160;
    const Weights w = RandomF8(n_out, n_in, rng);
    const std::vector<float> scale = RandomScales(n_out, rng);
    std::vector<float> x(static_cast<size_t>(n_tokens * n_in));
    testing::FillUniform(rng, -1.0f, 1.0f, x.data(), static_cast<int64_t>(x.size()));
    std::vector<float> y1(static_cast<size_t>(n_tokens * n_out));
    ThreadPool pool1(1);
    MatMulScaled(w.view, scale.data(), x.data(), n_tokens, y1.data(), pool1);
    for (int threads : {2, 3}) {
      std::vector<float> yn(y1.size());
      ThreadPool pool(threads);
      MatMulScaled(w.view, scale.data(), x.data(), n_tokens, yn.data(), pool);
      EXPECT_EQ(0, std::memcmp(y1.data(), yn.data(), y1.size() * sizeof(float))) << threads << " threads";
    }
    const int64_t stride = n_out + 3;
    std::vector<float> yr(static_cast<size_t>(n_tokens * stride), -7.0f);
    const int64_t cuts[] = {0, 1, 4, 37, 64, 99};
    for (size_t c = 0; c + 1 < std::size(cuts); c += 2) {  // rows [0, 1), [4, 37), [64, 99)
      MatMulRowsScaled(w.view, scale.data(), x.data(), n_tokens, yr.data(), stride, cuts[c], cuts[c + 1]);
    }
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t o = 0; o < stride; ++o) {
        const bool written = o < 1 || (o >= 4 && o < 37) || (o >= 64 && o < 99);
        const float v = yr[t * stride + o];
        if (written) {
          ASSERT_EQ(v, y1[t * n_out + o]) << n_tokens << " tokens, y[" << t << ", " << o << "]";
        } else {
          ASSERT_EQ(v, -7.0f) << "MatMulRowsScaled wrote outside its range at y[" << t << ", " << o << "]";
        }
      }
    }
  }
}

// A non-FP8 weight: no scale is bit-identical to MatMul / DequantizeRow / MatMulInputMajor (the existing paths
// keep their numerics), and a scale multiplies each output.
TEST_P(F8MatMulTest, NonFp8WeightsDelegate) {
  std::mt19937_64 rng(testing::BaseSeed() + 300);
  ThreadPool pool(2);
  for (int64_t n_tokens : {1, 5, 20}) {
    const Weights w = RandomBf16(70, 96, rng);
    std::vector<float> x(static_cast<size_t>(n_tokens * 96));
    testing::FillUniform(rng, -1.0f, 1.0f, x.data(), static_cast<int64_t>(x.size()));
    std::vector<float> a(static_cast<size_t>(n_tokens * 70)), b(a.size());
    MatMul(w.view, x.data(), n_tokens, a.data(), pool);
    MatMulScaled(w.view, nullptr, x.data(), n_tokens, b.data(), pool);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
    const std::vector<float> scale = RandomScales(70, rng);
    MatMulScaled(w.view, scale.data(), x.data(), n_tokens, b.data(), pool);
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t o = 0; o < 70; ++o) ASSERT_EQ(b[t * 70 + o], a[t * 70 + o] * scale[o]);
    }
    std::vector<float> ia(static_cast<size_t>(n_tokens * 50)), ib(ia.size());
    const Weights im = RandomBf16(96, 70, rng);  // input-major [n_in, n_cols]
    MatMulInputMajor(im.view, 10, 60, x.data(), n_tokens, ia.data(), pool);
    MatMulInputMajorScaled(im.view, nullptr, 10, 60, x.data(), n_tokens, ib.data(), pool);
    EXPECT_EQ(0, std::memcmp(ia.data(), ib.data(), ia.size() * sizeof(float)));
  }
  const Weights w = RandomBf16(3, 40, rng);
  std::vector<float> a(40), b(40);
  DequantizeRow(w.view, 2, a.data());
  DequantizeRowScaled(w.view, nullptr, 2, b.data());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), sizeof(float) * 40));
  EXPECT_TRUE(MatMulScaledSupports(DType::kF8_E4M3));
  EXPECT_TRUE(MatMulScaledSupports(DType::kQ8_0));
  EXPECT_FALSE(MatMulScaledSupports(DType::kF8_E5M2));
  EXPECT_TRUE(MatMulInputMajorScaledSupports(DType::kF8_E4M3));
  EXPECT_FALSE(MatMulInputMajorScaledSupports(DType::kQ8_0));
}

// Input-major FP8 (HF's fused experts) with one scale per column, over column ranges.
void CheckInputMajor(int64_t n_in, int64_t n_cols, int64_t c0, int64_t c1, int64_t n_tokens, int threads,
                     uint64_t seed) {
  SCOPED_TRACE("input-major F8_E4M3 W[" + std::to_string(n_in) + ", " + std::to_string(n_cols) + "] columns [" +
               std::to_string(c0) + ", " + std::to_string(c1) + ") x " + std::to_string(n_tokens) + " tokens, " +
               SeedTrace(seed));
  std::mt19937_64 rng(seed);
  const Weights w = RandomF8(n_in, n_cols, rng);
  const std::vector<float> scale = RandomScales(n_cols, rng);
  F32Buffer x(n_tokens * n_in, static_cast<int64_t>(seed % 3));
  testing::FillUniform(rng, -1.0f, 1.0f, x.data(), x.size());
  const int64_t width = c1 - c0;
  F32Buffer y(n_tokens * width, 1);
  std::vector<float> want(static_cast<size_t>(n_tokens * width));
  ThreadPool pool(threads);
  MatMulInputMajorScaled(w.view, scale.data(), c0, c1, x.data(), n_tokens, y.data(), pool);
  ref::MatMulInputMajorScaled(w.view, scale.data(), c0, c1, x.data(), n_tokens, want.data());
  std::vector<double> abs_sum(want.size(), 0.0);
  for (int64_t i = 0; i < n_in; ++i) {
    for (int64_t c = c0; c < c1; ++c) {
      const double wc = static_cast<double>(F8E4M3ToF32(w.view.Row(i)[c]) * scale[c]);
      for (int64_t t = 0; t < n_tokens; ++t) abs_sum[t * width + c - c0] += std::fabs(wc * x[t * n_in + i]);
    }
  }
  ExpectWithinBound(abs_sum, y.data(), want.data(), n_tokens * width, n_in);
}

TEST_P(F8MatMulTest, InputMajorMatchesReference) {
  const uint64_t seed = testing::BaseSeed() + 400;
  uint64_t case_idx = 0;
  for (int64_t n_tokens : kTokenCounts) {
    CheckInputMajor(37, 70, 0, 70, n_tokens, 1, seed + case_idx++);
    CheckInputMajor(300, 97, 5, 96, n_tokens, 2, seed + case_idx++);
    CheckInputMajor(64, 192, 96, 192, n_tokens, 3, seed + case_idx++);  // the "up" half of a fused gate_up
    CheckInputMajor(1, 33, 31, 33, n_tokens, 1, seed + case_idx++);
    CheckInputMajor(0, 16, 0, 16, n_tokens, 1, seed + case_idx++);
  }
}

}  // namespace
}  // namespace herd::kernels
