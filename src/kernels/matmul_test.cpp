// Tests of kernels/matmul.h against the scalar reference kernels/ref/matmul.h on every compiled Highway target
// the CPU supports: hand-built Q8_0/Q4_0/Q4_K/Q5_K/Q6_K blocks (llama4.md 5.4) and every F16/BF16 bit pattern
// dequantize exactly; random products agree within the f32 dot-product error bound (f32 activations) or, for
// quantized weights (at every n_tokens), with ref::MatMulQuantized within the f32 scaling bound and
// with the exact product within the activation-rounding bound; integer-valued products (all partial sums
// exact) agree bit for bit; activations are quantized bit-exactly; results do not depend on threads or row ranges.

// cpu/qdot.cpp compiles Highway's AVX3_DL target (AVX-512 VNNI) on request; ask for it here too so that the
// target list the tests iterate over includes it.
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL
#endif

#include "kernels/matmul.h"

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
#include "kernels/cpu/qdot.h"
#include "kernels/kernels_test_util.h"
#include "kernels/quantize.h"
#include "kernels/ref/matmul.h"
#include "kernels/repack.h"
#include "test_util.h"

namespace herd::kernels {
namespace {

using testing::F32Buffer;
using testing::kU;
using testing::MakeWeights;
using testing::SeedTrace;
using testing::Weights;

void PutU16(std::vector<uint8_t>& b, size_t at, uint16_t v) { std::memcpy(b.data() + at, &v, 2); }

constexpr DType kAllTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ8_0,
                               DType::kQ4_0, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K};
constexpr DType kQuantTypes[] = {DType::kQ8_0, DType::kQ4_0, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K};
// The dtypes MatMul multiplies with quantized activations (integer dots), at every n_tokens.
std::vector<DType> QuantDotTypes() { return {std::begin(kQuantTypes), std::end(kQuantTypes)}; }

// The native BF16 kernel of cpu/qdot.h (where the target and CPU have AVX512_BF16), which MatMul does not use:
// y [n_tokens, n_out] = W x with activations split into three bf16 terms, on the calling thread.
void NativeBf16MatMul(const TensorView& w, const float* x, int64_t n_tokens, float* y) {
  QuantizedActivations a;
  a.Quantize(DType::kBF16, x, n_tokens, w.Cols());
  QuantDotRows(w, a, 0, n_tokens, y, w.Rows(), 0, w.Rows());
}

bool IsKQuant(DType t) { return t == DType::kQ4_K || t == DType::kQ5_K || t == DType::kQ6_K; }
int64_t BlockOf(DType t) { return Traits(t).block_size; }
// Whether MatMul multiplies with quantized activations (integer dots), at every n_tokens.
bool UsesQuantDot(DType t) { return t != DType::kBF16 && QuantDotSupports(t); }

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
    case DType::kQ4_0:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K: {
      const size_t block = static_cast<size_t>(Traits(t).type_size);
      std::uniform_real_distribution<float> scale(1e-3f, 0.1f);
      const auto scale_bits = [&] {
        uint16_t d = F32ToF16(scale(rng));
        if (fill == Fill::kIntegers) {
          d = 0x3C00;  // 1.0
        } else if (byte(rng) < 8) {
          d = static_cast<uint16_t>(byte(rng) + 1);  // a subnormal scale
        } else if (byte(rng) < 64) {
          d |= 0x8000;  // a negative scale
        }
        return d;
      };
      for (size_t at = 0; at < b.size(); at += block) {
        for (size_t j = 0; j < block; ++j) b[at + j] = static_cast<uint8_t>(byte(rng));
        if (t == DType::kQ6_K) {
          PutU16(b, at + 208, scale_bits());
          if (fill == Fill::kIntegers) {  // |S| <= 8 keeps every partial sum of the integer test below 2^24
            for (size_t g = 0; g < 16; ++g) b[at + 192 + g] = static_cast<uint8_t>(static_cast<int8_t>(small(rng) / 8));
          }
        } else {
          PutU16(b, at, scale_bits());
          if (IsKQuant(t)) PutU16(b, at + 2, scale_bits());  // dmin
          if (IsKQuant(t) && fill == Fill::kIntegers) {
            for (size_t j = 0; j < 8; ++j) b[at + 4 + j] &= 0x0F;  // 6-bit scales and mins <= 15, as for Q6_K
          }
        }
      }
      break;
    }
    default:
      HERD_CHECK(false);
  }
  return MakeWeights(t, rows, cols, std::move(b));
}

std::string Describe(DType t, int64_t n_out, int64_t n_in, int64_t n_tokens) {
  return std::string(DTypeName(t)) + " W[" + std::to_string(n_out) + ", " + std::to_string(n_in) + "] x " +
         std::to_string(n_tokens) + " tokens";
}

// |got - ref| <= (n_in + 2) u sum_i |W[o, i] x[t, i]|: the bound of an n-term dot product in f32 in any
// summation order, fused or not (Higham, Accuracy and Stability, 3.1: gamma_n), plus the rounding of the
// double reference to f32. Dequantized weights are f32 values (ref::DequantizeRow), the product of those.
void ExpectWithinDotBound(const TensorView& w, const float* x, int64_t n_tokens, const float* got, const float* ref,
                          int64_t y_stride, int64_t o_begin, int64_t o_end) {
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
        ADD_FAILURE() << "y[" << t << ", " << o << "] = " << g << ", reference " << r << ", |diff| " << std::fabs(g - r)
                      << " > tolerance " << tol;
        ++failures;
      }
    }
  }
}

// Magnitude of the offset part the integer kernels add and take back for weight j of block `blk` (dtype t):
// Q4_K/Q5_K scale the codes (d sc q, q >= 0) and the mins (dmin mn) apart, |d sc q| <= |W| + |dmin mn|, so
// 2 |dmin mn_j|. The other kernels take offsets back per lane in exact integers (0).
double OffsetPerWeight(DType t, const uint8_t* blk, int64_t j) {
  if (t == DType::kQ4_KR || t == DType::kQ5_KR) {  // blk: a group of 512 (kernels/repack.h), its mins as bytes
    const uint8_t* meta = blk + (t == DType::kQ5_KR ? 320 : 256);
    uint16_t h;
    std::memcpy(&h, meta + 36 + 2 * (j / 256), 2);
    return 2.0 * std::fabs(static_cast<double>(F16ToF32(h))) * meta[16 + j / 32];
  }
  if (t != DType::kQ4_K && t != DType::kQ5_K) return 0.0;
  uint16_t h;
  std::memcpy(&h, blk + 2, 2);
  const uint8_t* s = blk + 4;
  const int64_t sub = j / 32;
  const int mn = sub < 4 ? s[sub + 4] & 63 : (s[sub + 4] >> 4) | ((s[sub] >> 6) << 4);
  return 2.0 * std::fabs(static_cast<double>(F16ToF32(h))) * mn;
}

// Quantized-activation products (y from MatMul with quantized weights, any n_tokens), two properties:
//  1. Against ref::MatMulQuantized (`qref`, the exact product with the same rounded activations x^): the kernels'
//     block sums are exact integers, then each block (super-block: 2 terms) adds cvt(I) * fl(d_w d_x) to one of
//     at most 16 f32 lanes, which are summed at the end. Each term is within 3u of its value (conversion, scale
//     product, product), each lane sums at most n_in / 16 terms and the lanes <= 16 more additions: |y - qref|
//     <= (n_in / 16 + 19) u A + u |qref|, with A = sum_i (|W_i| + off_i) |x^_i| bounding every term: a lane
//     holds an exact partial sum of signed weight codes times activation codes (off_i: OffsetPerWeight).
//  2. Against the exact f32 product sum_i W_i x_i: |x_i - x^_i| <= d_x / 2 + 3u |x_i| (ref::QuantizeActivations),
//     so |y - exact| <= sum_i |W_i| (d_x / 2 + 3u |x_i|) + the bound of 1.
// BF16 weights on the native path (vdpbf16ps; y from NativeBf16MatMul), activations split
// exactly into three bf16 terms (ref::SplitActivationsBf16), so the products are exact and only the f32
// accumulation rounds: each of 48 f32 lanes (16 per term) adds at most
// n_in / 32 + 1 pairs in two roundings each, then at most 100 more additions join the lanes:
// |y - ref| <= (n_in / 16 + 102) u A + u |ref|, A = sum_i |W_i| (|t0_i| + |t1_i| + |t2_i|), plus what flushing
// denormals (inputs and results) can lose, under 2^-126 per operation. The terms sum to x exactly (away from f32
// denormals), so ref::MatMulQuantized is the exact f32 product itself.
void ExpectWithinBf16Bound(const TensorView& w, const float* x, int64_t n_tokens, const float* got, int64_t y_stride) {
  const int64_t n_in = w.Cols(), n_out = w.Rows();
  std::vector<float> qref(static_cast<size_t>(n_tokens * n_out));
  ref::MatMulQuantized(w, x, n_tokens, qref.data());
  std::vector<uint16_t> t0(static_cast<size_t>(n_in)), t1(t0.size()), t2(t0.size());
  std::vector<float> row(static_cast<size_t>(n_in));
  const double tiny = std::ldexp(1.0, -126) * static_cast<double>(6 * n_in + 200);
  int failures = 0;
  for (int64_t t = 0; t < n_tokens && failures < 5; ++t) {
    const float* xt = x + t * n_in;
    ref::SplitActivationsBf16(xt, n_in, t0.data(), t1.data(), t2.data());
    for (int64_t o = 0; o < n_out && failures < 5; ++o) {
      ref::DequantizeRow(w, o, row.data());
      double a = 0.0, exact = 0.0;
      for (int64_t i = 0; i < n_in; ++i) {
        ASSERT_EQ(static_cast<double>(Bf16ToF32(t0[i])) + Bf16ToF32(t1[i]) + Bf16ToF32(t2[i]), xt[i])
            << "the split of x[" << t << ", " << i << "] is not exact";
        a += std::fabs(static_cast<double>(row[i])) *
             (std::fabs(Bf16ToF32(t0[i])) + std::fabs(Bf16ToF32(t1[i])) + std::fabs(Bf16ToF32(t2[i])));
        exact += static_cast<double>(row[i]) * xt[i];
      }
      const double r = qref[t * n_out + o], g = got[t * y_stride + o];
      EXPECT_LE(std::fabs(r - exact), kU * std::fabs(exact) + tiny) << "the reference is the exact product";
      const double tol = static_cast<double>(n_in / 16 + 102) * kU * a + kU * std::fabs(r) + tiny;
      if (!(std::fabs(g - r) <= tol)) {
        ADD_FAILURE() << "y[" << t << ", " << o << "] = " << g << ", reference " << r << ", |diff| " << std::fabs(g - r)
                      << " > tolerance " << tol;
        ++failures;
      }
    }
  }
}

void ExpectWithinQuantizedBound(const TensorView& w, const float* x, int64_t n_tokens, const float* got,
                                int64_t y_stride) {
  if (w.dtype == DType::kBF16) return ExpectWithinBf16Bound(w, x, n_tokens, got, y_stride);
  const int64_t n_in = w.Cols(), n_out = w.Rows(), block = ref::ActivationBlock(w.dtype);
  ASSERT_GT(block, 0);
  std::vector<float> qref(static_cast<size_t>(n_tokens * n_out));
  ref::MatMulQuantized(w, x, n_tokens, qref.data());
  std::vector<int8_t> q(static_cast<size_t>(n_in));
  std::vector<float> d(static_cast<size_t>(n_in / block)), row(static_cast<size_t>(n_in));
  int failures = 0;
  for (int64_t t = 0; t < n_tokens && failures < 5; ++t) {
    const float* xt = x + t * n_in;
    ref::QuantizeActivations(xt, n_in, block, q.data(), d.data());
    for (int64_t o = 0; o < n_out && failures < 5; ++o) {
      ref::DequantizeRow(w, o, row.data());
      const int64_t wblock = BlockOf(w.dtype), wbytes = Traits(w.dtype).type_size;
      double a = 0.0, act = 0.0, exact = 0.0;
      for (int64_t i = 0; i < n_in; ++i) {
        const double xq = static_cast<double>(d[i / block]) * q[i];
        const double off = OffsetPerWeight(w.dtype, w.Row(o) + i / wblock * wbytes, i % wblock);
        a += (std::fabs(static_cast<double>(row[i])) + off) * std::fabs(xq);
        act += std::fabs(static_cast<double>(row[i])) * (d[i / block] / 2.0 + 3.0 * kU * std::fabs(xt[i]));
        exact += static_cast<double>(row[i]) * xt[i];
      }
      const double r = qref[t * n_out + o], g = got[t * y_stride + o];
      const double tol = static_cast<double>(n_in / 16 + 19) * kU * a + kU * std::fabs(r);
      if (!(std::fabs(g - r) <= tol)) {
        ADD_FAILURE() << "y[" << t << ", " << o << "] = " << g << ", quantized-activation reference " << r
                      << ", |diff| " << std::fabs(g - r) << " > tolerance " << tol;
        ++failures;
      }
      if (!(std::fabs(g - exact) <= act + tol)) {
        ADD_FAILURE() << "y[" << t << ", " << o << "] = " << g << ", exact product " << exact << ", |diff| "
                      << std::fabs(g - exact) << " > activation rounding bound " << act << " + " << tol;
        ++failures;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Exact dequantization.

class DequantTest : public testing::TargetTest {};
HERD_INSTANTIATE_FOR_TARGETS(DequantTest);

// Expects the kernel, the reference and quantize.h's decoder to give `want` exactly for row 0 of w.
void ExpectDequantizes(const Weights& w, const std::vector<float>& want) {
  const int64_t n = w.view.Cols();
  std::vector<float> got(static_cast<size_t>(n));
  DequantizeRow(w.view, 0, got.data());
  for (int64_t j = 0; j < n; ++j) EXPECT_EQ(got[j], want[j]) << "element " << j;
  ref::DequantizeRow(w.view, 0, got.data());
  for (int64_t j = 0; j < n; ++j) EXPECT_EQ(got[j], want[j]) << "reference, element " << j;
  DequantizeRow(w.view.dtype, w.view.Row(0), n, got.data());
  for (int64_t j = 0; j < n; ++j) EXPECT_EQ(got[j], want[j]) << "quantize.h, element " << j;
}

TEST_P(DequantTest, Q8_0HandBuiltBlocks) {
  // Block 0: d = 0.25 (f16 0x3400), qs[j] = 8j - 128, so y[j] = 2j - 32.
  // Block 1: d = -2^-24 (f16 0x8001, the smallest subnormal), qs[j] = 127 - j, so y[j] = -(127 - j) * 2^-24.
  std::vector<uint8_t> b(2 * 34);
  PutU16(b, 0, 0x3400);
  for (int j = 0; j < 32; ++j) b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(8 * j - 128));
  PutU16(b, 34, 0x8001);
  for (int j = 0; j < 32; ++j) b[36 + j] = static_cast<uint8_t>(127 - j);
  const Weights w = MakeWeights(DType::kQ8_0, 1, 64, b);
  std::vector<float> want(64);
  for (int j = 0; j < 32; ++j) {
    want[j] = 2.0f * j - 32.0f;
    want[32 + j] = -std::ldexp(static_cast<float>(127 - j), -24);
  }
  ExpectDequantizes(w, want);
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
  std::vector<float> want(64);
  for (int j = 0; j < 16; ++j) {
    want[j] = (j - 8) * 0.5f;
    want[16 + j] = (7 - j) * 0.5f;
    want[32 + j] = -21.0f;
    want[48 + j] = 24.0f;
  }
  ExpectDequantizes(w, want);
}

// Two K-quant super-blocks with every 6-bit scale and min position, the high bits of scales 4-7 included, and
// the 5th bit of Q5_K in every chunk. Block 0: d = 0.5, dmin = 0.25; block 1: d = 2^-24 (subnormal), dmin =
// -2^-14. Expected values straight from llama4.md 5.4 (all exact in f32: at most 17 significant bits).
void CheckQ45KHandBuilt(bool q5) {
  const DType t = q5 ? DType::kQ5_K : DType::kQ4_K;
  const size_t bytes = q5 ? 176 : 144;
  const int sc[8] = {1, 2, 3, 4, 17, 33, 50, 63}, mn[8] = {0, 5, 10, 63, 20, 36, 49, 1};
  const uint16_t d_bits[2] = {0x3800, 0x0001}, dmin_bits[2] = {0x3400, 0x8400};
  std::vector<uint8_t> b(2 * bytes);
  std::vector<float> want(512);
  for (int k = 0; k < 2; ++k) {
    const size_t at = k * bytes;
    PutU16(b, at, d_bits[k]);
    PutU16(b, at + 2, dmin_bits[k]);
    uint8_t* s = b.data() + at + 4;  // the inverse of the unpacking rule of llama4.md 5.4
    for (int j = 0; j < 4; ++j) {
      s[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
      s[j + 4] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
      s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
    }
    uint8_t* qh = b.data() + at + 16;
    uint8_t* qs = b.data() + at + (q5 ? 48 : 16);
    for (int l = 0; l < 32; ++l) {
      if (q5) qh[l] = static_cast<uint8_t>(l * 37 + 11 + k);
      for (int c = 0; c < 4; ++c) qs[32 * c + l] = static_cast<uint8_t>(l * 3 + c * 71 + k * 5);
    }
    const float d = F16ToF32(d_bits[k]), dmin = F16ToF32(dmin_bits[k]);
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        const int lo = (qs[32 * c + l] & 0xF) + (q5 && (qh[l] & (1 << (2 * c))) ? 16 : 0);
        const int hi = (qs[32 * c + l] >> 4) + (q5 && (qh[l] & (2 << (2 * c))) ? 16 : 0);
        want[256 * k + 64 * c + l] = d * static_cast<float>(sc[2 * c] * lo) - dmin * static_cast<float>(mn[2 * c]);
        want[256 * k + 64 * c + 32 + l] =
            d * static_cast<float>(sc[2 * c + 1] * hi) - dmin * static_cast<float>(mn[2 * c + 1]);
      }
    }
  }
  ExpectDequantizes(MakeWeights(t, 1, 512, b), want);
}

TEST_P(DequantTest, Q4_KHandBuiltBlocks) { CheckQ45KHandBuilt(false); }
TEST_P(DequantTest, Q5_KHandBuiltBlocks) { CheckQ45KHandBuilt(true); }

TEST_P(DequantTest, Q6_KHandBuiltBlocks) {
  // Block 0: d = 2^-10; block 1: d = -3. Scales include -128 and 127; codes cover 0..63.
  const int8_t sc[16] = {1, -1, 127, -128, 3, 5, -7, 9, 11, -13, 15, 17, -19, 21, 23, -25};
  const uint16_t d_bits[2] = {0x1400, 0xC200};
  std::vector<uint8_t> b(2 * 210);
  std::vector<float> want(512);
  for (int k = 0; k < 2; ++k) {
    const size_t at = k * 210;
    for (int i = 0; i < 128; ++i) b[at + i] = static_cast<uint8_t>(i * 5 + 3 + k);
    for (int i = 0; i < 64; ++i) b[at + 128 + i] = static_cast<uint8_t>(i * 29 + 7 + k);
    for (int g = 0; g < 16; ++g) b[at + 192 + g] = static_cast<uint8_t>(sc[g]);
    PutU16(b, at + 208, d_bits[k]);
    const float d = F16ToF32(d_bits[k]);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = b.data() + at + 64 * h;
      const uint8_t* qh = b.data() + at + 128 + 32 * h;
      const int8_t* s = sc + 8 * h;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        float* y = want.data() + 256 * k + 128 * h;
        y[l] = d * static_cast<float>(s[is] * q1);
        y[l + 32] = d * static_cast<float>(s[is + 2] * q2);
        y[l + 64] = d * static_cast<float>(s[is + 4] * q3);
        y[l + 96] = d * static_cast<float>(s[is + 6] * q4);
      }
    }
  }
  ExpectDequantizes(MakeWeights(DType::kQ6_K, 1, 512, b), want);
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
  for (DType t : kAllTypes) {
    for (int64_t cols : {1, 15, 17, 32, 33, 96, 256, 1000, 4128, 4352}) {
      if (cols % BlockOf(t) != 0) continue;
      const Weights w = RandomWeights(t, 3, cols, Fill::kRandom, rng);
      std::vector<float> got(cols + 1), want(cols + 1);
      for (int64_t r = 0; r < 3; ++r) {
        DequantizeRow(w.view, r, got.data());
        ref::DequantizeRow(w.view, r, want.data());
        EXPECT_EQ(0, std::memcmp(got.data(), want.data(), cols * sizeof(float)))
            << Describe(t, 3, cols, 0) << " row " << r;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Products.

class MatMulTest : public testing::TargetTest {};
HERD_INSTANTIATE_FOR_TARGETS(MatMulTest);

constexpr int64_t kTokenCounts[] = {1, 2, 3, 7, 16, 33};

// Activations for `fill`: uniform in [-1, 1), or small integers with one +-127 per 256 elements (and per 32 for
// Q8_0/Q4_0) so that every activation block quantizes exactly (amax = 127: d = 1, codes = values).
void FillActivations(DType t, Fill fill, int64_t n_tokens, int64_t n_in, std::mt19937_64& rng, float* x) {
  if (fill == Fill::kRandom) {
    testing::FillUniform(rng, -1.0f, 1.0f, x, n_tokens * n_in);
    return;
  }
  std::uniform_int_distribution<int> small(-8, 8);
  for (int64_t i = 0; i < n_tokens * n_in; ++i) x[i] = static_cast<float>(small(rng));
  const int64_t block = t == DType::kQ8_0 || t == DType::kQ4_0 ? 32 : 256;
  for (int64_t tt = 0; tt < n_tokens; ++tt) {
    for (int64_t b0 = 0; b0 < n_in; b0 += block) {
      const int64_t at = b0 + static_cast<int64_t>(rng() % static_cast<uint64_t>(std::min(block, n_in - b0)));
      x[tt * n_in + at] = rng() % 2 ? 127.0f : -127.0f;
    }
  }
}

// Runs MatMul (pool of `threads`) on random data and compares with the reference.
void CheckProduct(DType t, int64_t n_out, int64_t n_in, int64_t n_tokens, int threads, Fill fill, uint64_t seed) {
  SCOPED_TRACE(Describe(t, n_out, n_in, n_tokens) + ", " + std::to_string(threads) + " threads, " + SeedTrace(seed));
  std::mt19937_64 rng(seed);
  const Weights w = RandomWeights(t, n_out, n_in, fill, rng);
  n_out = w.view.Rows();  // a tensor with no columns has no rows either (TensorView::Rows)
  F32Buffer x(n_tokens * n_in, static_cast<int64_t>(seed % 7));
  FillActivations(t, fill, n_tokens, n_in, rng, x.data());
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
  } else if (UsesQuantDot(t)) {
    ExpectWithinQuantizedBound(w.view, x.data(), n_tokens, y.data(), n_out);
  } else {
    ExpectWithinDotBound(w.view, x.data(), n_tokens, y.data(), want.data(), n_out, 0, n_out);
  }
}

std::vector<int64_t> InSizes(DType t) {
  if (IsKQuant(t)) return {0, 256, 512, 768, 1280};
  if (BlockOf(t) == 32) return {0, 32, 64, 96, 288, 544};
  return {0, 1, 3, 5, 15, 17, 31, 33, 100, 300};
}

TEST_P(MatMulTest, EdgeShapesAllTypes) {
  const uint64_t seed = testing::BaseSeed();
  // Lane counts on x86: 4 (SSE, EMU128), 8 (AVX2), 16 (AVX-512): lanes +- 1 for all of them; 31/33 straddle a
  // micro-tile of 32 rows; 300 spans more than one packed tile (256 rows, 256 inputs). Q8_0 and Q4_0 rows of an
  // odd number of blocks end in a partial step of the 2- and 4-block integer kernels.
  const int64_t outs[] = {0, 1, 3, 5, 7, 9, 15, 17, 31, 33, 300};
  uint64_t case_idx = 0;
  for (DType t : kAllTypes) {
    const std::vector<int64_t> ins = InSizes(t);
    for (int64_t n_tokens : kTokenCounts) {
      for (int64_t n_out : outs) {
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
  for (int i = 0; i < 48; ++i) {
    const DType t = kAllTypes[rng() % std::size(kAllTypes)];
    const int64_t n_out = 1 + static_cast<int64_t>(rng() % 400);
    int64_t n_in = 1 + static_cast<int64_t>(rng() % 700);
    if (BlockOf(t) > 1) n_in = BlockOf(t) * (1 + static_cast<int64_t>(rng() % (BlockOf(t) == 32 ? 20 : 6)));
    const int64_t n_tokens = 1 + static_cast<int64_t>(rng() % 70);
    CheckProduct(t, n_out, n_in, n_tokens, 1 + static_cast<int>(rng() % 3), Fill::kRandom, seed0 + i);
  }
}

// Integer data: every partial sum is an exact f32 integer, so any indexing or blocking mistake shows up as an
// exact mismatch however long the rows are (the float bound above grows with n_in). For quantized weights the
// activations carry a +-127 per block, so they quantize exactly too, and the integer kernels must be exact.
TEST_P(MatMulTest, IntegerDataIsExact) {
  const uint64_t seed = testing::BaseSeed() + 1000;
  uint64_t case_idx = 0;
  for (DType t : kAllTypes) {
    const int64_t n_in = IsKQuant(t) ? 1280 : 1056;
    for (int64_t n_tokens : {1, 2, 3, 4, 9, 31, 32, 33, 70}) {
      CheckProduct(t, 67, n_in, n_tokens, 2, Fill::kIntegers, seed + case_idx++);
      CheckProduct(t, 290, IsKQuant(t) ? 512 : 544, n_tokens, 1, Fill::kIntegers, seed + case_idx++);
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
    for (int64_t n_tokens : {1, 3, 5, 31, 40}) {
      const int64_t n_out = 100, n_in = IsKQuant(t) ? 512 : 160;
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

// Decode (one token) over matrices of many claim blocks (the balanced split of MatMulBatch, which MatMul also takes
// for one token): every row is computed, by whichever thread, with the bits of one thread's product, for thread
// counts above the cores (so that threads finish early and take the others' blocks) and shares that end inside rows.
TEST_P(MatMulTest, DecodeSplitInClaimedBlocksComputesEveryRow) {
  const uint64_t seed = testing::BaseSeed() + 2400;
  std::mt19937_64 rng(seed);
  SCOPED_TRACE(SeedTrace(seed));
  const int64_t n_in = 2048;
  // Types whose one-token kernel reads one stream on every target: those with more keep a static split.
  const Weights w[3] = {RandomWeights(DType::kQ4_K, 701, n_in, Fill::kRandom, rng),
                        RandomWeights(DType::kQ5_K, 299, n_in, Fill::kRandom, rng),
                        RandomWeights(DType::kQ4_K, 3, n_in, Fill::kRandom, rng)};
  for (const Weights& wj : w) ASSERT_EQ(1, QuantDecodeStreams(wj.view.dtype)) << DTypeName(wj.view.dtype);
  std::vector<float> x(static_cast<size_t>(n_in));
  testing::FillUniform(rng, -1.0f, 1.0f, x.data(), n_in);
  std::vector<float> want[3], got[3];
  ThreadPool pool1(1);
  for (int j = 0; j < 3; ++j) {
    want[j].resize(static_cast<size_t>(w[j].view.Rows()));
    MatMul(w[j].view, x.data(), 1, want[j].data(), pool1);
  }
  for (int threads : {2, 3, 5}) {
    ThreadPool pool(threads);
    MatMulJob jobs[3];
    for (int j = 0; j < 3; ++j) {
      got[j].assign(want[j].size(), -7.0f);
      jobs[j] = {&w[j].view, x.data(), got[j].data()};
    }
    MatMulBatch(jobs, 3, 1, pool);
    for (int j = 0; j < 3; ++j) {
      EXPECT_EQ(0, std::memcmp(want[j].data(), got[j].data(), want[j].size() * sizeof(float)))
          << "MatMulBatch job " << j << ", " << threads << " threads";
    }
    std::vector<float> one(want[0].size(), -7.0f);
    MatMul(w[0].view, x.data(), 1, one.data(), pool);
    EXPECT_EQ(0, std::memcmp(want[0].data(), one.data(), one.size() * sizeof(float))) << threads << " threads";
  }
}

// MatMulBatch gives the bits of one MatMul per job, whatever the mix: jobs sharing x and dtype (one activation
// quantization), jobs of other dtypes or inputs, f32 jobs that take the plain path, row counts that do not split
// evenly by bytes, 1 to 3 threads, decode and prefill token counts.
TEST_P(MatMulTest, BatchEqualsOneMatMulPerJob) {
  const uint64_t seed = testing::BaseSeed() + 2500;
  std::mt19937_64 rng(seed);
  SCOPED_TRACE(SeedTrace(seed));
  const int64_t n_in = 512;
  for (int64_t n_tokens : {1, 2, 7, 40}) {
    for (int mix = 0; mix < 8; ++mix) {
      // Mixes 5 to 7: jobs on the f32 path (F32, BF16) with others.
      const DType t0 = mix == 6 ? DType::kBF16 : kQuantTypes[mix % 5];
      const DType t1 = mix == 5 ? DType::kF32 : mix == 7 ? DType::kBF16 : kQuantTypes[(mix + 2) % 5];
      SCOPED_TRACE(Describe(t0, 0, n_in, n_tokens) + " with " + std::string(DTypeName(t1)));
      const Weights w[4] = {
          RandomWeights(t0, 37, n_in, Fill::kRandom, rng), RandomWeights(t0, 5, n_in, Fill::kRandom, rng),
          RandomWeights(t1, 64, n_in, Fill::kRandom, rng), RandomWeights(t0, 129, n_in, Fill::kRandom, rng)};
      std::vector<float> xa(static_cast<size_t>(n_tokens * n_in)), xb(xa.size());
      testing::FillUniform(rng, -1.0f, 1.0f, xa.data(), static_cast<int64_t>(xa.size()));
      testing::FillUniform(rng, -2.0f, 2.0f, xb.data(), static_cast<int64_t>(xb.size()));
      const float* xs[4] = {xa.data(), xa.data(), xa.data(), xb.data()};
      std::vector<float> want[4], got[4];
      ThreadPool pool1(1);
      for (int j = 0; j < 4; ++j) {
        want[j].resize(static_cast<size_t>(n_tokens * w[j].view.Rows()));
        MatMul(w[j].view, xs[j], n_tokens, want[j].data(), pool1);
      }
      for (int threads : {1, 2, 3}) {
        ThreadPool pool(threads);
        MatMulJob jobs[4];
        for (int j = 0; j < 4; ++j) {
          got[j].assign(want[j].size(), -7.0f);
          jobs[j] = {&w[j].view, xs[j], got[j].data()};
        }
        MatMulBatch(jobs, 4, n_tokens, pool);
        for (int j = 0; j < 4; ++j) {
          EXPECT_EQ(0, std::memcmp(want[j].data(), got[j].data(), want[j].size() * sizeof(float)))
              << "job " << j << ", " << threads << " threads";
        }
      }
    }
  }
}

// The repacked types (kernels/repack.h) are their source types regrouped: packing and unpacking give back the bytes,
// and every row dequantizes to the same values. Their products are within the quantized-activation bound of the
// reference (Q8_0R, Q4_0R: the same exact integer block sums as the source type, scaled and added in the repacked
// kernel's own f32 order; Q4_KR, Q5_KR: those of Q8_0R's activations, one scale per 32 inputs) and, being one
// arithmetic per output, bit-identical for every thread count, MatMulRows range and MatMulBatch. Targets without the
// repacked kernels run the source type's kernel on the rows unpacked, so there the products are the source type's
// bit for bit. Row counts that do not split evenly, 1 to 3 threads, n_tokens 1 to 64.
TEST_P(MatMulTest, RepackedTypesAreTheirSourceRegrouped) {
  const uint64_t seed = testing::BaseSeed() + 2700;
  std::mt19937_64 rng(seed);
  SCOPED_TRACE(SeedTrace(seed));
  // Which targets have the kernels: AVX3_DL and AVX2, the others none.
  const int64_t target = GetParam();
  const bool has = target == HWY_AVX3_DL || target == HWY_AVX2;
  for (DType t : {DType::kQ8_0R, DType::kQ4_0R, DType::kQ4_KR, DType::kQ5_KR, DType::kQ6_KR}) {
    EXPECT_EQ(QuantDotSupports(t), has) << DTypeName(t);
  }
  EXPECT_EQ(RepackedType(DType::kQ8_0, 512), has ? DType::kQ8_0R : DType::kQ8_0);
  EXPECT_EQ(RepackedType(DType::kQ4_0, 1024), has ? DType::kQ4_0R : DType::kQ4_0);
  EXPECT_EQ(RepackedType(DType::kQ4_K, 512), has ? DType::kQ4_KR : DType::kQ4_K);
  EXPECT_EQ(RepackedType(DType::kQ5_K, 1536), has ? DType::kQ5_KR : DType::kQ5_K);
  EXPECT_EQ(RepackedType(DType::kQ8_0, 768), DType::kQ8_0);  // not a multiple of 512: left as it is
  EXPECT_EQ(RepackedType(DType::kQ4_0, 768), DType::kQ4_0);
  EXPECT_EQ(RepackedType(DType::kQ4_K, 768), DType::kQ4_K);
  EXPECT_EQ(RepackedType(DType::kQ6_K, 512), has ? DType::kQ6_KR : DType::kQ6_K);
  EXPECT_EQ(RepackedType(DType::kQ6_K, 256), DType::kQ6_K);
  for (DType to : {DType::kQ8_0R, DType::kQ4_0R, DType::kQ4_KR, DType::kQ5_KR, DType::kQ6_KR}) {
    SCOPED_TRACE(DTypeName(to));
    const DType from = PackedFrom(to);
    const bool dot = has;
    for (auto [n_out, n_in] : {std::pair<int64_t, int64_t>{1, 512}, {37, 1536}, {130, 2048}}) {
      // Under the sanitizers, targets without the repacked kernels (products through the source type's kernels on
      // rows unpacked on the fly, which their own tests cover) skip the largest shape and most token counts: the
      // whole sweep took 100 s on EMU128 there. The Release run and the target with the kernels run all of it.
      const bool small = herd::testing::kSanitized && !dot;
      if (small && n_out == 130) continue;
      const Weights w = RandomWeights(from, n_out, n_in, Fill::kRandom, rng);
      const int64_t row_bytes = RowBytes(to, n_in), from_bytes = RowBytes(from, n_in);
      if (to == DType::kQ8_0R || to == DType::kQ4_0R || to == DType::kQ6_KR) {
        ASSERT_EQ(row_bytes, from_bytes);
      }
      std::vector<uint8_t> packed(static_cast<size_t>(n_out * row_bytes)), back(static_cast<size_t>(from_bytes));
      for (int64_t o = 0; o < n_out; ++o) {
        PackRow(to, w.view.Row(o), n_in, packed.data() + o * row_bytes);
        UnpackRow(to, packed.data() + o * row_bytes, n_in, back.data());
        ASSERT_EQ(0, std::memcmp(back.data(), w.view.Row(o), static_cast<size_t>(from_bytes))) << "row " << o;
      }
      if (dot) {  // RepackRows is the packing over a row range
        ASSERT_EQ(RepackedBytes(w.view), n_out * row_bytes);
        std::vector<uint8_t> by_range(packed.size(), 0xEE);
        RepackRows(w.view, 0, n_out / 2, by_range.data());
        RepackRows(w.view, n_out / 2, n_out, by_range.data());
        ASSERT_EQ(packed, by_range);
      }
      const Weights r = MakeWeights(to, n_out, n_in, packed);
      std::vector<float> want_row(static_cast<size_t>(n_in)), got_row(want_row.size());
      for (int64_t o = 0; o < n_out; ++o) {
        DequantizeRow(w.view, o, want_row.data());
        DequantizeRow(r.view, o, got_row.data());
        ASSERT_EQ(0, std::memcmp(want_row.data(), got_row.data(), want_row.size() * sizeof(float))) << "row " << o;
        ref::DequantizeRow(r.view, o, got_row.data());
        ASSERT_EQ(0, std::memcmp(want_row.data(), got_row.data(), want_row.size() * sizeof(float))) << "ref row " << o;
      }
      for (int64_t n_tokens : {1, 2, 3, 5, 31, 32, 33, 64}) {
        if (small && n_tokens != 1 && n_tokens != 3 && n_tokens != 33) continue;
        SCOPED_TRACE(Describe(to, n_out, n_in, n_tokens));
        std::vector<float> x(static_cast<size_t>(n_tokens * n_in));
        testing::FillUniform(rng, -1.0f, 1.0f, x.data(), static_cast<int64_t>(x.size()));
        const size_t n_y = static_cast<size_t>(n_tokens * n_out);
        std::vector<float> want(n_y), ref_y(n_y), source(n_y);
        ThreadPool pool1(1);
        MatMul(r.view, x.data(), n_tokens, want.data(), pool1);
        // Without the kernels, the source type's products (and activations: Q8_K's for Q4_KR and Q5_KR).
        ExpectWithinQuantizedBound(dot ? r.view : w.view, x.data(), n_tokens, want.data(), n_out);
        MatMul(w.view, x.data(), n_tokens, source.data(), pool1);
        if (!dot) {
          EXPECT_EQ(0, std::memcmp(source.data(), want.data(), n_y * sizeof(float))) << "unpacked";
        }
        if (to == DType::kQ8_0R || to == DType::kQ4_0R) {  // the same activation blocks as the source type
          ref::MatMulQuantized(r.view, x.data(), n_tokens, ref_y.data());  // the reference reads the source rows
          std::vector<float> ref_source(n_y);
          ref::MatMulQuantized(w.view, x.data(), n_tokens, ref_source.data());
          ASSERT_EQ(0, std::memcmp(ref_source.data(), ref_y.data(), n_y * sizeof(float)));
        }
        if (n_tokens == 1) {  // row by row: no stream tile (QuantDecodeStreams), each output its own row's bits
          std::vector<float> alone(n_y, -7.0f);
          for (int64_t o = 0; o < n_out; ++o) MatMulRows(r.view, x.data(), 1, alone.data(), n_out, o, o + 1);
          EXPECT_EQ(0, std::memcmp(want.data(), alone.data(), n_y * sizeof(float)))
              << "row by row (" << QuantDecodeStreams(to) << " decode streams)";
        }
        for (int threads : {1, 2, 3}) {
          ThreadPool pool(threads);
          std::vector<float> got(n_y, -7.0f);
          MatMul(r.view, x.data(), n_tokens, got.data(), pool);
          EXPECT_EQ(0, std::memcmp(want.data(), got.data(), n_y * sizeof(float))) << threads << " threads";
          if (threads == 2) {  // MatMulRows on a middle range, and a batch with a Q4_0 job on the same x
            std::vector<float> rows(n_y, -7.0f);
            const int64_t o0 = n_out / 3, o1 = n_out - n_out / 4;
            MatMulRows(r.view, x.data(), n_tokens, rows.data(), n_out, o0, o1);
            for (int64_t t = 0; t < n_tokens; ++t) {
              for (int64_t o = o0; o < o1; ++o) ASSERT_EQ(rows[t * n_out + o], want[t * n_out + o]) << t << ", " << o;
            }
            const Weights q4 = RandomWeights(DType::kQ4_0, 64, n_in, Fill::kRandom, rng);
            std::vector<float> want_q4(static_cast<size_t>(n_tokens * 64)), got_q4(want_q4.size());
            MatMul(q4.view, x.data(), n_tokens, want_q4.data(), pool1);
            std::vector<float> got_b(n_y, -7.0f);
            const MatMulJob jobs[2] = {{&r.view, x.data(), got_b.data()}, {&q4.view, x.data(), got_q4.data()}};
            MatMulBatch(jobs, 2, n_tokens, pool);
            EXPECT_EQ(0, std::memcmp(want.data(), got_b.data(), n_y * sizeof(float))) << "batch";
            EXPECT_EQ(0, std::memcmp(want_q4.data(), got_q4.data(), want_q4.size() * sizeof(float))) << "batch, Q4_0";
          }
        }
      }
    }
  }
}

// One-hot weight rows (row o has the single weight 1 at input o) make y[t, o] = d_x q_x[t, o] with every
// operation exact, so the activation quantizer of every target must reproduce ref::QuantizeActivations bit for
// bit: halfway cases (round half to even), zero blocks, tiny and huge values. A non-finite activation makes its
// block's scale NaN, and as in an f32 product (0 * NaN) every output of that token NaN.
TEST_P(MatMulTest, ActivationQuantizationIsBitExact) {
  const uint64_t seed = testing::BaseSeed() + 4000;
  SCOPED_TRACE(SeedTrace(seed));
  std::mt19937_64 rng(seed);
  for (DType t : kQuantTypes) {
    SCOPED_TRACE(DTypeName(t));
    const int64_t n_in = 512, wbytes = Traits(t).type_size, wblock = BlockOf(t);
    std::vector<uint8_t> b(static_cast<size_t>(RowBytes(t, n_in) * n_in), 0);
    for (int64_t o = 0; o < n_in; ++o) {
      uint8_t* blk = b.data() + o * RowBytes(t, n_in) + o / wblock * wbytes;
      const int64_t j = o % wblock;  // the element of the block that gets weight 1
      switch (t) {
        case DType::kQ8_0:
          PutU16(b, blk - b.data(), 0x3C00);
          blk[2 + j] = 1;
          break;
        case DType::kQ4_0:  // codes 8 (weight 0) everywhere, 9 at j
          PutU16(b, blk - b.data(), 0x3C00);
          for (int k = 0; k < 16; ++k) blk[2 + k] = 0x88;
          blk[2 + j % 16] = static_cast<uint8_t>(j < 16 ? 0x89 : 0x98);
          break;
        case DType::kQ6_K: {  // codes 32 (weight 0) everywhere, 33 at j; S = 1, d = 1
          int q[256];
          for (int k = 0; k < 256; ++k) q[k] = k == j ? 33 : 32;
          for (int h = 0; h < 2; ++h) {
            for (int l = 0; l < 32; ++l) {
              const int q1 = q[128 * h + l], q2 = q[128 * h + l + 32], q3 = q[128 * h + l + 64],
                        q4 = q[128 * h + l + 96];
              blk[64 * h + l] = static_cast<uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
              blk[64 * h + l + 32] = static_cast<uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
              blk[128 + 32 * h + l] =
                  static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
          }
          for (int g = 0; g < 16; ++g) blk[192 + g] = 1;
          PutU16(b, blk + 208 - b.data(), 0x3C00);
          break;
        }
        default: {  // Q4_K/Q5_K: d = 1, dmin = 0, every scale 1, code 1 at j
          PutU16(b, blk - b.data(), 0x3C00);
          for (int k = 0; k < 4; ++k) blk[4 + k] = 1;   // scales 0-3 = 1, mins 0-3 = 0
          for (int k = 8; k < 12; ++k) blk[4 + k] = 1;  // scales 4-7 = 1 (low nibbles), mins 4-7 = 0
          const int c = static_cast<int>(j) / 64, l = static_cast<int>(j) % 32;
          blk[(t == DType::kQ5_K ? 48 : 16) + 32 * c + l] = static_cast<uint8_t>(j % 64 < 32 ? 0x01 : 0x10);
          break;
        }
      }
    }
    const Weights w = MakeWeights(t, n_in, n_in, b);
    for (int64_t n_tokens : {1, 3, 5}) {
      std::vector<float> x(static_cast<size_t>(n_tokens * n_in));
      testing::FillUniform(rng, -2.0f, 2.0f, x.data(), static_cast<int64_t>(x.size()));
      // Token 0, block 0: amax = 127 (d = 1, codes = values) with halfway values: x.5 rounds to even.
      for (int k = 0; k < 32; ++k) x[k] = static_cast<float>(k) - 15.5f;
      x[31] = 127.0f;
      for (int k = 32; k < 64; ++k) x[k] = 0.0f;                                 // an all-zero 32-block
      x[64] = 1e-30f;                                                            // tiny
      x[100] = 3e37f;                                                            // huge
      if (n_tokens > 1) x[n_in + 300] = std::numeric_limits<float>::infinity();  // non-finite block: NaN
      if (n_tokens > 2) {
        x[2 * n_in + 7] = std::nanf("");
        x[2 * n_in + 9] = -std::numeric_limits<float>::infinity();
      }
      std::vector<float> y(x.size());
      ThreadPool pool(2);
      MatMul(w.view, x.data(), n_tokens, y.data(), pool);
      const int64_t block = ref::ActivationBlock(t);
      std::vector<int8_t> q(static_cast<size_t>(n_in));
      std::vector<float> d(static_cast<size_t>(n_in / block));
      int failures = 0;
      for (int64_t tt = 0; tt < n_tokens && failures < 5; ++tt) {
        ref::QuantizeActivations(x.data() + tt * n_in, n_in, block, q.data(), d.data());
        const bool finite =
            std::all_of(x.begin() + tt * n_in, x.begin() + (tt + 1) * n_in, [](float v) { return std::isfinite(v); });
        for (int64_t i = 0; i < n_in && failures < 5; ++i) {
          const float want = finite ? d[i / block] * static_cast<float>(q[i]) : std::nanf("");
          const float got = y[tt * n_in + i];
          const bool ok = std::isnan(want) ? std::isnan(got) : got == want;
          if (!ok) {
            ADD_FAILURE() << "token " << tt << " element " << i << ": got " << got << ", want " << want;
            ++failures;
          }
        }
      }
    }
  }
}

// BF16 weights on the native path: one-hot rows (weight 1 at input o) make y[t, o] = the sum of x[t, o]'s three
// bf16 terms with every other operation exact, so the kernel's split must be ref::SplitActivationsBf16's, and
// give x back exactly: values with bits in every third of the significand, negative ones, signed zeros, NaN
// (whose truncation alone would read as inf) and infinities (0 * inf = NaN in the other rows, as in any f32
// product). Denormal activations are left out: vdpbf16ps reads them as zero (documented in cpu/bf16dot-inl.h).
TEST_P(MatMulTest, Bf16ActivationSplitIsBitExact) {
  if (!QuantDotSupports(DType::kBF16)) {
    GTEST_SKIP() << "this target/CPU has no native BF16 dot product (AVX512_BF16); BF16 uses the f32 path";
  }
  const uint64_t seed = testing::BaseSeed() + 4500;
  SCOPED_TRACE(SeedTrace(seed));
  std::mt19937_64 rng(seed);
  const int64_t n_in = 200;  // 6 full steps and a partial one
  std::vector<uint8_t> b(static_cast<size_t>(RowBytes(DType::kBF16, n_in) * n_in), 0);
  for (int64_t o = 0; o < n_in; ++o) PutU16(b, static_cast<size_t>((o * n_in + o) * 2), 0x3F80);  // 1.0
  const Weights w = MakeWeights(DType::kBF16, n_in, n_in, std::move(b));
  const auto from_bits = [](uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  };
  for (int64_t n_tokens : {1, 3}) {
    std::vector<float> x(static_cast<size_t>(n_tokens * n_in));
    testing::FillUniform(rng, -3.0f, 3.0f, x.data(), static_cast<int64_t>(x.size()));
    x[0] = from_bits(0x3F808000u);   // t1 only
    x[1] = from_bits(0x3F818081u);   // all three terms
    x[2] = from_bits(0x3F80FFFFu);   // full significand
    x[3] = from_bits(0x3FFFFFFFu);   // just below 2
    x[4] = from_bits(0x7F7FFFFFu);   // f32 max
    x[5] = -from_bits(0x3F800001u);  // t2 only, negative
    x[6] = 1e-30f;
    x[7] = 0.0f;
    x[8] = -0.0f;
    x[40] = 3e37f;
    // Infinities make every other output of their token NaN (0 * inf), so they go to the later tokens.
    if (n_tokens > 1) x[n_in + 4] = std::numeric_limits<float>::infinity();
    if (n_tokens > 2) {
      x[2 * n_in + 7] = std::nanf("");
      x[2 * n_in + 9] = -std::numeric_limits<float>::infinity();
    }
    std::vector<float> y(x.size()), want(x.size());
    NativeBf16MatMul(w.view, x.data(), n_tokens, y.data());
    ref::MatMulQuantized(w.view, x.data(), n_tokens, want.data());
    int failures = 0;
    for (int64_t i = 0; i < n_tokens * n_in && failures < 5; ++i) {
      const bool ok = std::isnan(want[i]) ? std::isnan(y[i]) : y[i] == want[i];
      if (!ok) {
        ADD_FAILURE() << "token " << i / n_in << " element " << i % n_in << ": got " << y[i] << ", want " << want[i];
        ++failures;
      }
    }
    // Token 0 (all finite) comes back exactly.
    for (int64_t i = 0; i < n_in; ++i) EXPECT_EQ(want[i], x[i]) << "element " << i;
  }
}

// Longer rows and the quantized-activation bounds in more detail than the shape sweeps: n_in up to 8192.
TEST_P(MatMulTest, QuantizedProductsLongRows) {
  const uint64_t seed = testing::BaseSeed() + 5000;
  uint64_t case_idx = 0;
  for (DType t : QuantDotTypes()) {
    for (int64_t n_in : {4096, 8192}) {
      CheckProduct(t, 37, n_in, 1 + static_cast<int64_t>(case_idx % 4), 2, Fill::kRandom, seed + case_idx);
      ++case_idx;
    }
  }
}

// The native BF16 kernel (not MatMul's path, kept for measurements: cpu/matmul.cpp) within its bound, for short
// and long rows, partial steps and 1 to 5 tokens.
TEST_P(MatMulTest, NativeBf16ProductsWithinBound) {
  if (!QuantDotSupports(DType::kBF16)) GTEST_SKIP() << "this target/CPU has no native BF16 dot product";
  const uint64_t seed = testing::BaseSeed() + 5500;
  uint64_t case_idx = 0;
  for (int64_t n_in : {1, 33, 200, 4096}) {
    for (int64_t n_tokens : {1, 2, 5}) {
      SCOPED_TRACE(Describe(DType::kBF16, 37, n_in, n_tokens) + ", " + SeedTrace(seed + case_idx));
      std::mt19937_64 rng(seed + case_idx++);
      const Weights w = RandomWeights(DType::kBF16, 37, n_in, Fill::kRandom, rng);
      std::vector<float> x(static_cast<size_t>(n_tokens * n_in)), y(static_cast<size_t>(n_tokens * 37));
      testing::FillUniform(rng, -1.0f, 1.0f, x.data(), n_tokens * n_in);
      NativeBf16MatMul(w.view, x.data(), n_tokens, y.data());
      ExpectWithinBf16Bound(w.view, x.data(), n_tokens, y.data(), 37);
    }
  }
}

// Decode reads each weight byte once (EnableWeightByteCounting), and once its scratch has grown, quantizing
// activations allocates nothing: the buffer stays where it is.
TEST_P(MatMulTest, QuantizedDecodeCountsBytesAndReusesScratch) {
  std::mt19937_64 rng(testing::BaseSeed() + 6000);
  ThreadPool pool(2);
  for (DType t : QuantDotTypes()) {
    const Weights w = RandomWeights(t, 96, 1024, Fill::kRandom, rng);
    std::vector<float> x(4 * 1024), y(4 * 96);
    testing::FillUniform(rng, -1.0f, 1.0f, x.data(), static_cast<int64_t>(x.size()));
    MatMul(w.view, x.data(), 4, y.data(), pool);  // warm-up: the largest shape below
    const uint8_t* scratch = ThreadQuantizedActivations().Token(0);
    EnableWeightByteCounting(true);
    ResetWeightBytesRead();
    for (int64_t n_tokens : {1, 2, 4, 1}) MatMul(w.view, x.data(), n_tokens, y.data(), pool);
    EnableWeightByteCounting(false);
    EXPECT_EQ(WeightBytesRead(), 4 * 96 * RowBytes(t, 1024)) << DTypeName(t);
    EXPECT_EQ(ThreadQuantizedActivations().Token(0), scratch) << DTypeName(t) << ": the scratch moved";
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
      for (int64_t i = 0; i < n_in; ++i)
        abs_sum += std::fabs(static_cast<double>(dense[i * n_cols + c]) * x[tt * n_in + i]);
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
  for (DType t : {DType::kQ4_1, DType::kQ2_K, DType::kQ3_K, DType::kQ8_K, DType::kI32, DType::kF8_E4M3}) {
    EXPECT_FALSE(MatMulSupports(t)) << DTypeName(t);
  }
  EXPECT_TRUE(MatMulSupports(DType::kQ8_0R));  // on every target: the f32 GEMM where there is no dot kernel
  EXPECT_TRUE(ref::MatMulSupports(DType::kQ8_0R));
  EXPECT_TRUE(MatMulInputMajorSupports(DType::kBF16));
  EXPECT_FALSE(MatMulInputMajorSupports(DType::kQ8_0));
}

}  // namespace
}  // namespace herd::kernels
