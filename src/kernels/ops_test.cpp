// Tests of kernels/ops.h against the double-precision reference kernels/ref/ops.h on every compiled Highway
// target the CPU supports, on sizes around the lane counts and misaligned pointers. Each tolerance is derived
// in a comment from the operations the SIMD code performs (u = 2^-24, the f32 unit roundoff); Scale and Add
// must be bit-identical (one correctly rounded operation each; the double reference rounds twice, which is
// innocuous for + and x since 53 >= 2 * 24 + 2, Figueroa 1995).
#include "kernels/ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "kernels/kernels_test_util.h"
#include "kernels/ref/ops.h"

namespace herd::kernels {
namespace {

// Bitwise equality of n floats; n == 0 is equal (an empty vector's data() may be null, which memcmp forbids).
bool SameBits(const float* a, const float* b, int64_t n) {
  return n == 0 || std::memcmp(a, b, static_cast<size_t>(n) * sizeof(float)) == 0;
}

using testing::F32Buffer;
using testing::kU;
using testing::SeedTrace;

class OpsTest : public testing::TargetTest {};
HERD_INSTANTIATE_FOR_TARGETS(OpsTest);

// 0, 1, lanes +- 1 for 4, 8 and 16 lanes, multiples of the 4-vector unroll +- 1, and long vectors.
constexpr int64_t kSizes[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 127, 128, 129, 1000, 5120};

struct Case {
  int64_t n;
  uint64_t seed;
  int64_t offset;  // floats past a 64-byte boundary
  std::string Trace() const {
    return "n = " + std::to_string(n) + ", offset " + std::to_string(offset) + ", " + SeedTrace(seed);
  }
};

std::vector<Case> Cases(uint64_t salt) {
  std::vector<Case> cases;
  uint64_t i = 0;
  for (int64_t n : kSizes) {
    for (int64_t offset : {0, 1, 3}) cases.push_back({n, testing::BaseSeed() + salt * 1000 + i++, offset});
  }
  return cases;
}

TEST_P(OpsTest, Dot) {
  for (const Case& c : Cases(1)) {
    SCOPED_TRACE(c.Trace());
    std::mt19937_64 rng(c.seed);
    F32Buffer a(c.n, c.offset), b(c.n, (c.offset + 1) % 4);
    testing::FillUniform(rng, -2.0f, 2.0f, a.data(), c.n);
    testing::FillUniform(rng, -2.0f, 2.0f, b.data(), c.n);
    const double got = Dot(a.data(), b.data(), c.n);
    const double want = ref::Dot(a.data(), b.data(), c.n);
    // gamma_n bound of an n-term dot product in any order (Higham 3.1), plus the final rounding to f32.
    double abs_sum = 0.0;
    for (int64_t i = 0; i < c.n; ++i) abs_sum += std::fabs(static_cast<double>(a[i]) * b[i]);
    EXPECT_LE(std::fabs(got - want), (c.n + 1) * kU * abs_sum) << "got " << got << ", want " << want;
  }
}

TEST_P(OpsTest, RmsNorm) {
  for (const Case& c : Cases(2)) {
    for (bool weighted : {true, false}) {
      for (bool in_place : {false, true}) {
        SCOPED_TRACE(c.Trace() + (weighted ? ", weighted" : ", weightless") + (in_place ? ", in place" : ""));
        std::mt19937_64 rng(c.seed);
        F32Buffer x(c.n, c.offset), w(c.n, 2), out(c.n, (c.offset + 1) % 4);
        testing::FillUniform(rng, -3.0f, 3.0f, x.data(), c.n);
        testing::FillUniform(rng, 0.5f, 1.5f, w.data(), c.n);
        std::vector<float> want(static_cast<size_t>(c.n));
        const float eps = 1e-5f;
        ref::RmsNorm(x.data(), weighted ? w.data() : nullptr, c.n, eps, want.data());
        float* dst = in_place ? x.data() : out.data();
        RmsNorm(x.data(), weighted ? w.data() : nullptr, c.n, eps, dst);
        // Sum of n non-negative squares: relative error <= gamma_n; / n, + eps, sqrt (halves the relative
        // error of its argument, adds u), 1 / s, * x, * w: six more roundings; plus the reference's rounding.
        // |got - want| <= (n / 2 + 8) u |want|.
        for (int64_t i = 0; i < c.n; ++i) {
          ASSERT_LE(std::fabs(static_cast<double>(dst[i]) - want[i]), (c.n / 2.0 + 8) * kU * std::fabs(want[i]))
              << "out[" << i << "] = " << dst[i] << ", want " << want[i];
        }
      }
    }
  }
}

TEST_P(OpsTest, RmsNormOfZerosIsZero) {
  std::vector<float> x(33, 0.0f), out(33, 1.0f);
  RmsNorm(x.data(), nullptr, 33, 1e-5f, out.data());
  for (float v : out) EXPECT_EQ(v, 0.0f);
}

TEST_P(OpsTest, Axpy) {
  for (const Case& c : Cases(3)) {
    SCOPED_TRACE(c.Trace());
    std::mt19937_64 rng(c.seed);
    F32Buffer x(c.n, c.offset), y(c.n, (c.offset + 2) % 4);
    testing::FillUniform(rng, -2.0f, 2.0f, x.data(), c.n);
    testing::FillUniform(rng, -2.0f, 2.0f, y.data(), c.n);
    std::vector<float> want(y.data(), y.data() + c.n);
    const float alpha = 0.7f;
    ref::Axpy(alpha, x.data(), want.data(), c.n);
    std::vector<float> y0(y.data(), y.data() + c.n);
    Axpy(alpha, x.data(), y.data(), c.n);
    // Fused: one rounding of alpha x + y; unfused: u |alpha x| + u |alpha x + y|. Plus the reference's rounding:
    // |got - want| <= 3 u (|alpha x| + |y|).
    for (int64_t i = 0; i < c.n; ++i) {
      const double bound = 3 * kU * (std::fabs(static_cast<double>(alpha) * x[i]) + std::fabs(y0[i]));
      ASSERT_LE(std::fabs(static_cast<double>(y[i]) - want[i]), bound) << "y[" << i << "]";
    }
  }
}

TEST_P(OpsTest, ScaleIsBitExact) {
  for (const Case& c : Cases(4)) {
    SCOPED_TRACE(c.Trace());
    std::mt19937_64 rng(c.seed);
    F32Buffer x(c.n, c.offset);
    testing::FillUniform(rng, -5.0f, 5.0f, x.data(), c.n);
    std::vector<float> want(x.data(), x.data() + c.n);
    ref::Scale(want.data(), 0.088388347f, c.n);
    Scale(x.data(), 0.088388347f, c.n);
    EXPECT_TRUE(SameBits(x.data(), want.data(), c.n));
  }
}

TEST_P(OpsTest, AddIsBitExactAlsoInPlace) {
  for (const Case& c : Cases(5)) {
    SCOPED_TRACE(c.Trace());
    std::mt19937_64 rng(c.seed);
    F32Buffer a(c.n, c.offset), b(c.n, (c.offset + 1) % 4), out(c.n, 3);
    testing::FillUniform(rng, -5.0f, 5.0f, a.data(), c.n);
    testing::FillUniform(rng, -1e-3f, 1e-3f, b.data(), c.n);
    std::vector<float> want(static_cast<size_t>(c.n));
    ref::Add(a.data(), b.data(), want.data(), c.n);
    Add(a.data(), b.data(), out.data(), c.n);
    EXPECT_TRUE(SameBits(out.data(), want.data(), c.n));
    Add(a.data(), b.data(), a.data(), c.n);  // residual update in place: x = x + delta
    EXPECT_TRUE(SameBits(a.data(), want.data(), c.n));
  }
}

// Every sign, exponent and top 7 mantissa bits of f32, each with low mantissa bits at and around the rounding
// boundaries of binary16 (half a unit: 0x1000 of the 13 bits dropped for normals) and a few random ones; the
// output one byte off alignment; then the sizes of Cases for the tail.
TEST_P(OpsTest, F32ToF16RowIsF32ToF16BitForBit) {
  std::mt19937_64 rng(testing::BaseSeed() + 7);
  std::vector<uint32_t> low = {0, 1, 0x0fff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x3000, 0x5000, 0xffff};
  for (int i = 0; i < 4; ++i) low.push_back(static_cast<uint32_t>(rng()) & 0xffffu);
  std::vector<float> x;
  x.reserve(low.size() << 16);
  for (uint32_t hi = 0; hi < 0x10000u; ++hi) {
    for (uint32_t lo : low) {
      const uint32_t bits = hi << 16 | lo;
      float f;
      std::memcpy(&f, &bits, 4);
      x.push_back(f);
    }
  }
  std::vector<uint8_t> out(2 * x.size() + 1);
  F32ToF16Row(x.data(), static_cast<int64_t>(x.size()), out.data() + 1);
  for (size_t i = 0; i < x.size(); ++i) {
    uint16_t got;
    std::memcpy(&got, out.data() + 1 + 2 * i, 2);
    uint32_t bits;
    std::memcpy(&bits, &x[i], 4);
    ASSERT_EQ(got, F32ToF16(x[i])) << "f32 bits 0x" << std::hex << bits;
  }
  for (const Case& c : Cases(9)) {
    SCOPED_TRACE(c.Trace());
    std::mt19937_64 r(c.seed);
    F32Buffer a(c.n, c.offset);
    testing::FillUniform(r, -70000.0f, 70000.0f, a.data(), c.n);
    std::vector<uint8_t> h(static_cast<size_t>(2 * c.n + 2), 0xab);
    F32ToF16Row(a.data(), c.n, h.data());
    for (int64_t i = 0; i < c.n; ++i) {
      uint16_t got;
      std::memcpy(&got, h.data() + 2 * i, 2);
      ASSERT_EQ(got, F32ToF16(a.data()[i])) << "x[" << i << "] = " << a.data()[i];
    }
    EXPECT_EQ(h[static_cast<size_t>(2 * c.n)], 0xab) << "wrote past the row";
  }
}

TEST_P(OpsTest, Softmax) {
  for (const Case& c : Cases(6)) {
    if (c.n == 0) continue;
    for (bool masked : {false, true}) {
      SCOPED_TRACE(c.Trace() + (masked ? ", with -inf entries" : ""));
      std::mt19937_64 rng(c.seed);
      F32Buffer x(c.n, c.offset);
      testing::FillUniform(rng, -30.0f, 30.0f, x.data(), c.n);
      if (masked) {
        for (int64_t i = 1; i < c.n; i += 3) x[i] = -std::numeric_limits<float>::infinity();
      }
      std::vector<float> in(x.data(), x.data() + c.n), want(in);
      ref::SoftmaxInPlace(want.data(), c.n);
      SoftmaxInPlace(x.data(), c.n);
      double m = -INFINITY;
      for (float v : in) m = std::fmax(m, v);
      double max_gap = 0.0;
      for (float v : in) {
        if (std::isfinite(v)) max_gap = std::fmax(max_gap, m - v);
      }
      // e_i = exp(fl(x_i - m)): the subtraction perturbs the argument by u |x_i - m|, Exp adds 1 ULP (2u):
      // relative error u (|x_i - m| + 2). The sum of n positive terms, each off by at most u (max_gap + 2),
      // gains gamma_n; 1 / sum and the product add 2u; the reference's rounding u. Below the smallest normal
      // the relative bound no longer holds, hence the absolute 2^-126.
      double sum = 0.0;
      for (int64_t i = 0; i < c.n; ++i) {
        const double rel = kU * (std::fabs(in[i] - m) + 2 + max_gap + 2 + c.n + 3);
        const double bound = std::isinf(in[i]) ? 0.0 : rel * want[i] + std::ldexp(1.0, -126);
        ASSERT_LE(std::fabs(static_cast<double>(x[i]) - want[i]), bound)
            << "p[" << i << "] = " << x[i] << ", want " << want[i] << ", input " << in[i];
        sum += x[i];
      }
      EXPECT_NEAR(sum, 1.0, (c.n + 8) * kU * 4 + 1e-6);
    }
  }
}

TEST_P(OpsTest, SwiGLU) {
  for (const Case& c : Cases(7)) {
    for (int alias = 0; alias < 2; ++alias) {
      SCOPED_TRACE(c.Trace() + (alias ? ", out = gate" : ""));
      std::mt19937_64 rng(c.seed);
      F32Buffer gate(c.n, c.offset), up(c.n, (c.offset + 1) % 4), out(c.n, 2);
      testing::FillUniform(rng, -20.0f, 20.0f, gate.data(), c.n);
      testing::FillUniform(rng, -3.0f, 3.0f, up.data(), c.n);
      // Some inputs beyond exp's range: silu(-100) underflows, silu(+100) = 100.
      for (int64_t i = 0; i < c.n; i += 11) gate[i] = (i % 2 ? 1.0f : -1.0f) * (90.0f + static_cast<float>(i % 50));
      std::vector<float> g0(gate.data(), gate.data() + c.n), want(static_cast<size_t>(c.n));
      ref::SwiGLU(gate.data(), up.data(), want.data(), c.n);
      float* dst = alias ? gate.data() : out.data();
      SwiGLU(gate.data(), up.data(), dst, c.n);
      // e = Exp(-g) is within 1 ULP (2u); 1 + e adds u, so the denominator is within 3u relative; the division
      // and the product add 2u, the reference's rounding u: 6u relative. When exp(-g) overflows (g < -88.7)
      // the kernel gives -0 where the exact value is below |g| e^g |up| < 1e-36 |up|.
      for (int64_t i = 0; i < c.n; ++i) {
        const double bound = 6 * kU * std::fabs(want[i]) + 1e-36 * std::fabs(up[i]);
        ASSERT_LE(std::fabs(static_cast<double>(dst[i]) - want[i]), bound)
            << "out[" << i << "] = " << dst[i] << ", want " << want[i] << ", gate " << g0[i] << ", up " << up[i];
      }
    }
  }
}

}  // namespace
}  // namespace herd::kernels
