// Scalar reference of kernels/matmul.h: exact dequantization of every supported weight dtype (llama4.md 5.4)
// and plain triple loops with double accumulation. The oracle of matmul_test.cpp, never a fast path.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/tensor.h"

namespace herd::kernels::ref {

// F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K.
bool MatMulSupports(DType t);

// dst[i] = W[r, i] for i < w.Cols(), exactly: F16/BF16 via core/half.h; Q8_0 y[j] = d * qs[j];
// Q4_0 y[j] = ((qs[j] & 0xF) - 8) * d, y[j + 16] = ((qs[j] >> 4) - 8) * d (d an IEEE half); Q4_K, Q5_K, Q6_K
// as the formulas of llama4.md 5.4, each product d * sc * q (and dmin * mn) evaluated in f32, where it is exact.
void DequantizeRow(const TensorView& w, int64_t r, float* dst);

// The same for n elements of a raw row of dtype t (n a multiple of the block size).
void DequantizeRow(DType t, const uint8_t* row, int64_t n, float* dst);

// y[t * y_stride + o] = (float) sum_i (double) W[o, i] * x[t, i] for t < n_tokens, o in [o_begin, o_end).
void MatMulRows(const TensorView& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride, int64_t o_begin,
                int64_t o_end);

// MatMulRows over all rows, y row stride n_out.
void MatMul(const TensorView& w, const float* x, int64_t n_tokens, float* y);

// y[t, c - col_begin] = (float) sum_i (double) W[i, c] * x[t, i] (w input-major [n_in, n_cols], F32/F16/BF16).
void MatMulInputMajor(const TensorView& w, int64_t col_begin, int64_t col_end, const float* x, int64_t n_tokens,
                      float* y);

// ---------------------------------------------------------------------------------------------------------
// Quantized activations: what kernels::MatMul computes for Q8_0, Q4_0, Q4_K, Q5_K and Q6_K weights, which it
// multiplies with activations rounded to 8 bits per block (ggml's Q8_0 and Q8_K).

// Elements per activation block for weights of dtype t: 32 for Q8_0 and Q4_0, 256 for Q4_K, Q5_K and Q6_K; 0
// for the dtypes whose products use f32 activations.
int64_t ActivationBlock(DType t);

// Quantizes x[0, n) in blocks of `block` elements (n a multiple of it) to int8 codes q[0, n) and one f32 scale
// d[b] per block, so that x[i] ~ d[i / block] * q[i]. Per block: if an element is not finite, d = NaN and q = 0
// (the products then come out NaN); else with amax = max |x|, d = amax / 127 and q[i] = nearbyint(x[i] * (127 /
// amax)) in f32 arithmetic, rounding half to even, so |q| <= 127 (d = 0 and q = 0 when amax = 0). Error:
// |x[i] - d q[i]| <= d / 2 + 3u |x[i]| (u = 2^-24: the roundings of d and 127 / amax).
void QuantizeActivations(const float* x, int64_t n, int64_t block, int8_t* q, float* d);

// Dot products of a weight row w_row (n elements of the named dtype) with quantized activations (q, d from
// QuantizeActivations with block ActivationBlock of that dtype), in the integer arithmetic of llama4.md 5.4:
// per block an exact integer sum, times the block's f32 scales in double, summed in double.
//   Q8_0: sum_b d_w d_x sum_j q_w q_x;  Q4_0: sum_b d_w d_x sum_j (q_w - 8) q_x;
//   Q4_K/Q5_K: sum_B d_x (d sum_j sc_j sum_{i in j} q_i q_x,i - dmin sum_j mn_j sum_{i in j} q_x,i) over the 8
//   sub-blocks j of 32;  Q6_K: sum_B d_x d sum_g S_g sum_{i in g} (q_i - 32) q_x,i over the 16 groups g of 16.
// The result is the exact value of sum_i W[i] * d[i / block] * q[i] up to the rounding of the double sums.
double DotQ8_0Q8(const uint8_t* w_row, const int8_t* q, const float* d, int64_t n);
double DotQ4_0Q8(const uint8_t* w_row, const int8_t* q, const float* d, int64_t n);
double DotQ4KQ8K(const uint8_t* w_row, const int8_t* q, const float* d, int64_t n);
double DotQ5KQ8K(const uint8_t* w_row, const int8_t* q, const float* d, int64_t n);
double DotQ6KQ8K(const uint8_t* w_row, const int8_t* q, const float* d, int64_t n);

// BF16 weights on CPUs with native BF16 dot products (AVX512_BF16): kernels::MatMul multiplies them with each
// activation split exactly into three bf16 terms, x = t0 + t1 + t2: t0 = the upper 16 bits of x (a NaN with its
// quiet bit set), t1 = the upper 16 bits of r1 = x - t0, t2 = those of r1 - t1 (t1 = t2 = 0 when x is not
// finite; every difference is exact in f32 and the sum is x exactly, f32 denormals aside). The dot product of a
// BF16 row with them: sum_i (double) W[i] t0[i] + W[i] t1[i] + W[i] t2[i], each product exact.
void SplitActivationsBf16(const float* x, int64_t n, uint16_t* t0, uint16_t* t1, uint16_t* t2);
double DotBF16BF16(const uint8_t* w_row, const uint16_t* t0, const uint16_t* t1, const uint16_t* t2, int64_t n);

// y[t, o] = (float) Dot<dtype>(W[o], QuantizeActivations(x[t])) for t < n_tokens, o < n_out (y row stride
// n_out). w in Q8_0, Q4_0, Q4_K, Q5_K or Q6_K; for BF16, (float) DotBF16BF16(W[o], SplitActivationsBf16(x[t])).
void MatMulQuantized(const TensorView& w, const float* x, int64_t n_tokens, float* y);

}  // namespace herd::kernels::ref
