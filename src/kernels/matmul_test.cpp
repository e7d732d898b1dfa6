// Tests of kernels/matmul.h against the scalar reference kernels/ref/matmul.h on every compiled Highway target
// the CPU supports: hand-built Q8_0/Q4_0 blocks (llama4.md 5.4) and every F16/BF16 bit pattern dequantize
// exactly; random products agree within the f32 dot-product error bound; integer-valued products (all partial
// sums exact) agree bit for bit; results do not depend on threads or row ranges.
#include "kernels/matmul.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "kernels/kernels_test_util.h"
#include "kernels/ref/matmul.h"

namespace herd::kernels {
namespace {

using testing::F32Buffer;
using testing::kU;
using testing::SeedTrace;

// Owns the bytes of a weight tensor.
struct Weights {
  std::vector<uint8_t> bytes;
  TensorView view;
};

Weights MakeWeights(DType t, int64_t rows, int64_t cols, std::vector<uint8_t> bytes) {
  Weights w;
  w.bytes = std::move(bytes);
  if (w.bytes.empty()) w.bytes.resize(1);  // a valid pointer even for empty tensors
  Result<TensorView> v = MakeTensorView(t, {rows, cols}, w.bytes.data(), RowBytes(t, cols) * rows, "test");
  HERD_CHECK(v.ok());
  w.view = *v;
  return w;
}

void PutU16(std::vector<uint8_t>& b, size_t at, uint16_t v) { std::memcpy(b.data() + at, &v, 2); }

// How values are drawn: random (floats, random scales and quants) or small integers, for which every partial
// sum of a product with integer activations is exact in f32, whatever the summation order.
enum class Fill { kRandom, kIntegers };

Weights RandomWeights(DType t, int64_t rows, int64_t cols, Fill fill, std::mt19937_64& rng) {
  const int64_t n = rows * cols;
  std::vector<uint8_t> b(static_cast<size_t>(RowBytes(t, cols) * rows));
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::uniform_int_distribution<int> small(-64, 64);
  std::uniform_int_distribution<int> byte(0, 255);
  const auto value = [&] { return fill == Fill::kRandom ? unit(rng) : static_cast<float>(small(rng)); };
  switch (t) {
    case DType::kF32:
      for (int64_t i = 0; i < n; ++i) {
        const float v = value();
        std::memcpy(b.data() + 4 * i, &v, 4);
      }
      break;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) PutU16(b, 2 * i, F32ToF16(value()));
      break;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) PutU16(b, 2 * i, F32ToBf16(value()));
      break;
    case DType::kQ8_0:
    case DType::kQ4_0: {
      const size_t block = t == DType::kQ8_0 ? 34 : 18;
      std::uniform_real_distribution<float> scale(1e-3f, 0.1f);
      for (size_t at = 0; at < b.size(); at += block) {
        uint16_t d = F32ToF16(scale(rng));
        if (fill == Fill::kIntegers) {
          d = 0x3C00;  // 1.0
        } else if (byte(rng) < 8) {
          d = static_cast<uint16_t>(byte(rng) + 1);  // a subnormal scale
        } else if (byte(rng) < 64) {
          d |= 0x8000;  // a negative scale
        }
        PutU16(b, at, d);
        for (size_t j = 2; j < block; ++j) b[at + j] = static_cast<uint8_t>(byte(rng));
      }
      break;
    }
    default:
      HERD_CHECK(false);
  }
  return MakeWeights(t, rows, cols, std::move(b));
}

std::string Describe(DType t, int64_t n_out, int64_t n_in, int64_t n_tokens) {
  return std::string(DTypeName(t)) + " W[" + std::to_string(n_out) + ", " + std::to_string(n_in) +
         "] x " + std::to_string(n_tokens) + " tokens";
}

// |got - ref| <= (n_in + 2) u sum_i |W[o, i] x[t, i]|: the bound of an n-term dot product in f32 in any
// summation order, fused or not (Higham, Accuracy and Stability, 3.1: gamma_n), plus the rounding of the
// double reference to f32. Dequantized weights are exact in f32 (d * q needs at most 11 + 8 bits).
void ExpectWithinDotBound(const TensorView& w, const float* x, int64_t n_tokens, const float* got,
                          const float* ref, int64_t y_stride, int64_t o_begin, int64_t o_end) {
  const int64_t n_in = w.Cols();
  std::vector<float> row(static_cast<size_t>(n_in));
  int failures = 0;
  for (int64_t o = o_begin; o < o_end && failures < 5; ++o) {
    ref::DequantizeRow(w, o, row.data());
    for (int64_t t = 0; t < n_tokens && failures < 5; ++t) {
      double abs_sum = 0.0;
      for (int64_t i = 0; i < n_in; ++i) abs_sum += std::fabs(static_cast<double>(row[i]) * x[t * n_in + i]);
      const double tol = static_cast<double>(n_in + 2) * kU * abs_sum;
      const double g = got[t * y_stride + o], r = ref[t * y_stride + o];
      if (!(std::fabs(g - r) <= tol)) {
        ADD_FAILURE() << "y[" << t << ", " << o << "] = " << g << ", reference " << r << ", |diff| "
                      << std::fabs(g - r) << " > tolerance " << tol;
        ++failures;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Exact dequantization.

class DequantTest : public testing::TargetTest {};
HERD_INSTANTIATE_FOR_TARGETS(DequantTest);

TEST_P(DequantTest, Q8_0HandBuiltBlocks) {
  // Block 0: d = 0.25 (f16 0x3400), qs[j] = 8j - 128, so y[j] = 2j - 32.
  // Block 1: d = -2^-24 (f16 0x8001, the smallest subnormal), qs[j] = 127 - j, so y[j] = -(127 - j) * 2^-24.
  std::vector<uint8_t> b(2 * 34);
  PutU16(b, 0, 0x3400);
  for (int j = 0; j < 32; ++j) b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(8 * j - 128));
  PutU16(b, 34, 0x8001);
  for (int j = 0; j < 32; ++j) b[36 + j] = static_cast<uint8_t>(127 - j);
  const Weights w = MakeWeights(DType::kQ8_0, 1, 64, b);
  std::vector<float> got(64), want(64);
  for (int j = 0; j < 32; ++j) {
    want[j] = 2.0f * j - 32.0f;
    want[32 + j] = -std::ldexp(static_cast<float>(127 - j), -24);
  }
  DequantizeRow(w.view, 0, got.data());
  for (int j = 0; j < 64; ++j) EXPECT_EQ(got[j], want[j]) << "element " << j;
  ref::DequantizeRow(w.view, 0, got.data());
  for (int j = 0; j < 64; ++j) EXPECT_EQ(got[j], want[j]) << "reference, element " << j;
}

TEST_P(DequantTest, Q4_0HandBuiltBlocks) {
  // d = 0.5 (f16 0x3800); qs[j] = ((15 - j) << 4) | j: low nibbles give weights 0..15 = (j - 8) / 2, high nibbles
  // give weights 16..31 = (7 - j) / 2 (not interleaved).
  // Second block: d = -3 (f16 0xC200), qs[j] = 0x0F for all j: weights 0..15 = -21, 16..31 = 24.
  std::vector<uint8_t> b(2 * 18);
  PutU16(b, 0, 0x3800);
  for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(((15 - j) << 4) | j);
  PutU16(b, 18, 0xC200);
  for (int j = 0; j < 16; ++j) b[20 + j] = 0x0F;
  const Weights w = MakeWeights(DType::kQ4_0, 1, 64, b);
  std::vector<float> got(64), want(64);
  for (int j = 0; j < 16; ++j) {
    want[j] = (j - 8) * 0.5f;
    want[16 + j] = (7 - j) * 0.5f;
    want[32 + j] = -21.0f;
    want[48 + j] = 24.0f;
  }
  DequantizeRow(w.view, 0, got.data());
  for (int j = 0; j < 64; ++j) EXPECT_EQ(got[j], want[j]) << "element " << j;
  ref::DequantizeRow(w.view, 0, got.data());
  for (int j = 0; j < 64; ++j) EXPECT_EQ(got[j], want[j]) << "reference, element " << j;
}

// Every one of the 65536 bit patterns, against core/half.h (NaN only needs to stay NaN).
void ExpectAllHalfPatterns(DType t) {
  std::vector<uint8_t> b(2 * 65536);
  for (uint32_t i = 0; i < 65536; ++i) PutU16(b, 2 * i, static_cast<uint16_t>(i));
  const Weights w = MakeWeights(t, 1, 65536, b);
  std::vector<float> got(65536);
  DequantizeRow(w.view, 0, got.data());
  int failures = 0;
  for (uint32_t i = 0; i < 65536 && failures < 5; ++i) {
    const float want = t == DType::kF16 ? F16ToF32(static_cast<uint16_t>(i)) : Bf16ToF32(static_cast<uint16_t>(i));
    uint32_t gb, wb;
    std::memcpy(&gb, &got[i], 4);
    std::memcpy(&wb, &want, 4);
    const bool ok = std::isnan(want) ? std::isnan(got[i]) : gb == wb;
    if (!ok) {
      ADD_FAILURE() << DTypeName(t) << " bits 0x" << std::hex << i << ": got 0x" << gb << ", want 0x" << wb;
      ++failures;
    }
  }
}

TEST_P(DequantTest, F16AllBitPatterns) { ExpectAllHalfPatterns(DType::kF16); }
TEST_P(DequantTest, BF16AllBitPatterns) { ExpectAllHalfPatterns(DType::kBF16); }

TEST_P(DequantTest, RandomRowsMatchReferenceExactly) {
  std::mt19937_64 rng(testing::BaseSeed());
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    const bool blocked = t == DType::kQ8_0 || t == DType::kQ4_0;
    for (int64_t cols : {1, 15, 17, 32, 33, 96, 1000, 4128}) {
      if (blocked && cols % 32 != 0) continue;
      const Weights w = RandomWeights(t, 3, cols, Fill::kRandom, rng);
      std::vector<float> got(cols + 1), want(cols + 1);
      for (int64_t r = 0; r < 3; ++r) {
        DequantizeRow(w.view, r, got.data());
        ref::DequantizeRow(w.view, r, want.data());
        EXPECT_EQ(0, std::memcmp(got.data(), want.data(), cols * sizeof(float))) << Describe(t, 3, cols, 0) << " row " << r;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Products.

class MatMulTest : public testing::TargetTest {};
HERD_INSTANTIATE_FOR_TARGETS(MatMulTest);

constexpr DType kAllTypes[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0};
constexpr int64_t kTokenCounts[] = {1, 2, 3, 7, 16, 33};

// Runs MatMul (pool of `threads`) on random data and compares with the reference.
void CheckProduct(DType t, int64_t n_out, int64_t n_in, int64_t n_tokens, int threads, Fill fill, uint64_t seed) {
  SCOPED_TRACE(Describe(t, n_out, n_in, n_tokens) + ", " + std::to_string(threads) + " threads, " +
               SeedTrace(seed));
  std::mt19937_64 rng(seed);
  const Weights w = RandomWeights(t, n_out, n_in, fill, rng);
  n_out = w.view.Rows();  // a tensor with no columns has no rows either (TensorView::Rows)
  F32Buffer x(n_tokens * n_in, static_cast<int64_t>(seed % 7));
  if (fill == Fill::kRandom) {
    testing::FillUniform(rng, -1.0f, 1.0f, x.data(), x.size());
  } else {
    std::uniform_int_distribution<int> small(-8, 8);
    for (int64_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(small(rng));
  }
  F32Buffer y(n_tokens * n_out, static_cast<int64_t>(seed % 5) + 1);
  std::fill(y.data(), y.data() + y.size(), std::nanf(""));
  std::vector<float> want(static_cast<size_t>(n_tokens * n_out));
  ThreadPool pool(threads);
  MatMul(w.view, x.data(), n_tokens, y.data(), pool);
  ref::MatMul(w.view, x.data(), n_tokens, want.data());
  if (fill == Fill::kIntegers) {
    for (int64_t i = 0; i < n_tokens * n_out; ++i) {
      ASSERT_EQ(y[i], want[i]) << "y[" << i / n_out << ", " << i % n_out << "] (exact integer arithmetic)";
    }
  } else {
    ExpectWithinDotBound(w.view, x.data(), n_tokens, y.data(), want.data(), n_out, 0, n_out);
  }
}

TEST_P(MatMulTest, EdgeShapesAllTypes) {
  const uint64_t seed = testing::BaseSeed();
  // Lane counts on x86: 4 (SSE, EMU128), 8 (AVX2), 16 (AVX-512): lanes +- 1 for all of them; 31/33 straddle a
  // micro-tile of 32 rows; 300 spans more than one packed tile (256 rows, 256 inputs).
  const int64_t outs[] = {0, 1, 3, 5, 7, 9, 15, 17, 31, 33, 300};
  const int64_t plain_ins[] = {0, 1, 3, 5, 15, 17, 31, 33, 100, 300};
  const int64_t block_ins[] = {0, 32, 64, 96, 288, 544};
  uint64_t case_idx = 0;
  for (DType t : kAllTypes) {
    const bool blocked = t == DType::kQ8_0 || t == DType::kQ4_0;
    for (int64_t n_tokens : kTokenCounts) {
      for (int64_t n_out : outs) {
        const auto& ins = blocked ? std::vector<int64_t>(std::begin(block_ins), std::end(block_ins))
                                  : std::vector<int64_t>(std::begin(plain_ins), std::end(plain_ins));
        // A rotating subset of the inputs keeps the cross product affordable under sanitizers.
        for (size_t k = 0; k < ins.size(); ++k) {
          if ((k + static_cast<size_t>(n_out) + static_cast<size_t>(n_tokens)) % 3 != 0 && n_out > 33) continue;
          CheckProduct(t, n_out, ins[k], n_tokens, 1, Fill::kRandom, seed + case_idx++);
        }
      }
    }
  }
}

TEST_P(MatMulTest, RandomShapesAllTypes) {
  const uint64_t seed0 = testing::BaseSeed() ^ 0x9e3779b97f4a7c15ull;
  std::mt19937_64 rng(seed0);
  for (int i = 0; i < 40; ++i) {
    const DType t = kAllTypes[rng() % 5];
    const bool blocked = t == DType::kQ8_0 || t == DType::kQ4_0;
    const int64_t n_out = 1 + static_cast<int64_t>(rng() % 400);
    const int64_t n_in = blocked ? 32 * (1 + static_cast<int64_t>(rng() % 20)) : 1 + static_cast<int64_t>(rng() % 700);
    const int64_t n_tokens = kTokenCounts[rng() % 6];
    CheckProduct(t, n_out, n_in, n_tokens, 1 + static_cast<int>(rng() % 3), Fill::kRandom, seed0 + i);
  }
}

// Integer data: every partial sum is an exact f32 integer, so any indexing or blocking mistake shows up as an
// exact mismatch however long the rows are (the float bound above grows with n_in).
TEST_P(MatMulTest, IntegerDataIsExact) {
  const uint64_t seed = testing::BaseSeed() + 1000;
  uint64_t case_idx = 0;
  for (DType t : kAllTypes) {
    for (int64_t n_tokens : {1, 2, 3, 4, 9, 33}) {
      CheckProduct(t, 67, 1056, n_tokens, 2, Fill::kIntegers, seed + case_idx++);
      CheckProduct(t, 290, 544, n_tokens, 1, Fill::kIntegers, seed + case_idx++);
    }
  }
}

// The same product with 1, 2 and 3 threads, and by disjoint MatMulRows calls, is bit-identical; MatMulRows
// writes only its rows (y_stride > n_out leaves a margin that must stay untouched).
TEST_P(MatMulTest, ThreadCountAndRowRangesDoNotChangeResults) {
  const uint64_t seed = testing::BaseSeed() + 2000;
  std::mt19937_64 rng(seed);
  SCOPED_TRACE(SeedTrace(seed));
  for (DType t : kAllTypes) {
    for (int64_t n_tokens : {1, 3, 5, 40}) {
      const int64_t n_out = 100, n_in = 160;
      SCOPED_TRACE(Describe(t, n_out, n_in, n_tokens));
      const Weights w = RandomWeights(t, n_out, n_in, Fill::kRandom, rng);
      std::vector<float> x(static_cast<size_t>(n_tokens * n_in));
      testing::FillUniform(rng, -1.0f, 1.0f, x.data(), static_cast<int64_t>(x.size()));
      std::vector<float> y1(static_cast<size_t>(n_tokens * n_out));
      ThreadPool pool1(1);
      MatMul(w.view, x.data(), n_tokens, y1.data(), pool1);
      for (int threads : {2, 3}) {
        std::vector<float> yn(y1.size());
        ThreadPool pool(threads);
        MatMul(w.view, x.data(), n_tokens, yn.data(), pool);
        EXPECT_EQ(0, std::memcmp(y1.data(), yn.data(), y1.size() * sizeof(float))) << threads << " threads";
      }
      const int64_t stride = n_out + 3;
      std::vector<float> yr(static_cast<size_t>(n_tokens * stride), -7.0f);
      const int64_t cuts[] = {0, 1, 4, 37, 64, 99, 100};
      for (size_t c = 0; c + 1 < std::size(cuts); c += 2) {  // ranges [0,1), [4,37), [64,99); [1,4) etc. skipped
        MatMulRows(w.view, x.data(), n_tokens, yr.data(), stride, cuts[c], cuts[c + 1]);
      }
      for (int64_t tt = 0; tt < n_tokens; ++tt) {
        for (int64_t o = 0; o < stride; ++o) {
          const bool written = (o < 1) || (o >= 4 && o < 37) || (o >= 64 && o < 99);
          const float v = yr[tt * stride + o];
          if (written) {
            ASSERT_EQ(v, y1[tt * n_out + o]) << "y[" << tt << ", " << o << "]";
          } else {
            ASSERT_EQ(v, -7.0f) << "MatMulRows wrote outside its range at y[" << tt << ", " << o << "]";
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Input-major weights (HF Llama 4 experts).

void CheckInputMajor(DType t, int64_t n_in, int64_t n_cols, int64_t c0, int64_t c1, int64_t n_tokens, int threads,
                     uint64_t seed) {
  SCOPED_TRACE("input-major " + Describe(t, n_in, n_cols, n_tokens) + " columns [" + std::to_string(c0) + ", " +
               std::to_string(c1) + "), " + SeedTrace(seed));
  std::mt19937_64 rng(seed);
  const Weights w = RandomWeights(t, n_in, n_cols, Fill::kRandom, rng);
  F32Buffer x(n_tokens * n_in, static_cast<int64_t>(seed % 3));
  testing::FillUniform(rng, -1.0f, 1.0f, x.data(), x.size());
  const int64_t width = c1 - c0;
  F32Buffer y(n_tokens * width, 1);
  std::vector<float> want(static_cast<size_t>(n_tokens * width));
  ThreadPool pool(threads);
  MatMulInputMajor(w.view, c0, c1, x.data(), n_tokens, y.data(), pool);
  ref::MatMulInputMajor(w.view, c0, c1, x.data(), n_tokens, want.data());
  std::vector<float> dense(static_cast<size_t>(n_in * n_cols));  // W[i, c], dequantized
  for (int64_t i = 0; i < n_in; ++i) ref::DequantizeRow(w.view, i, dense.data() + i * n_cols);
  int failures = 0;
  for (int64_t tt = 0; tt < n_tokens && failures < 5; ++tt) {
    for (int64_t c = c0; c < c1 && failures < 5; ++c) {
      double abs_sum = 0.0;
      for (int64_t i = 0; i < n_in; ++i) abs_sum += std::fabs(static_cast<double>(dense[i * n_cols + c]) * x[tt * n_in + i]);
      const double tol = static_cast<double>(n_in + 2) * kU * abs_sum;  // as ExpectWithinDotBound
      const double g = y[tt * width + c - c0], r = want[tt * width + c - c0];
      if (!(std::fabs(g - r) <= tol)) {
        ADD_FAILURE() << "y[" << tt << ", " << c - c0 << "] = " << g << ", reference " << r << ", tolerance " << tol;
        ++failures;
      }
    }
  }
}

TEST_P(MatMulTest, InputMajorMatchesReference) {
  const uint64_t seed = testing::BaseSeed() + 3000;
  uint64_t case_idx = 0;
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int64_t n_tokens : kTokenCounts) {
      CheckInputMajor(t, 37, 70, 0, 70, n_tokens, 1, seed + case_idx++);
      CheckInputMajor(t, 300, 97, 5, 96, n_tokens, 2, seed + case_idx++);
      CheckInputMajor(t, 1, 33, 31, 33, n_tokens, 1, seed + case_idx++);
      CheckInputMajor(t, 0, 16, 0, 16, n_tokens, 1, seed + case_idx++);
    }
  }
}

TEST(MatMulSupportsTest, SupportedTypes) {
  for (DType t : kAllTypes) {
    EXPECT_TRUE(MatMulSupports(t)) << DTypeName(t);
    EXPECT_TRUE(ref::MatMulSupports(t)) << DTypeName(t);
  }
  for (DType t : {DType::kQ4_1, DType::kQ4_K, DType::kQ6_K, DType::kI32, DType::kF8_E4M3}) {
    EXPECT_FALSE(MatMulSupports(t)) << DTypeName(t);
  }
  EXPECT_TRUE(MatMulInputMajorSupports(DType::kBF16));
  EXPECT_FALSE(MatMulInputMajorSupports(DType::kQ8_0));
}

}  // namespace
}  // namespace herd::kernels
