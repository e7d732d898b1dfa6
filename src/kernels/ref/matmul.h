// Scalar reference of kernels/matmul.h: exact dequantization of every supported weight dtype (llama4.md 5.4)
// and plain triple loops with double accumulation. The oracle of matmul_test.cpp, never a fast path.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/tensor.h"

namespace herd::kernels::ref {

// F32, F16, BF16, Q8_0, Q4_0.
bool MatMulSupports(DType t);

// dst[i] = W[r, i] for i < w.Cols(), exactly: F16/BF16 via core/half.h; Q8_0 y[j] = d * qs[j];
// Q4_0 y[j] = ((qs[j] & 0xF) - 8) * d, y[j + 16] = ((qs[j] >> 4) - 8) * d (d an IEEE half).
void DequantizeRow(const TensorView& w, int64_t r, float* dst);

// y[t * y_stride + o] = (float) sum_i (double) W[o, i] * x[t, i] for t < n_tokens, o in [o_begin, o_end).
void MatMulRows(const TensorView& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride,
                int64_t o_begin, int64_t o_end);

// MatMulRows over all rows, y row stride n_out.
void MatMul(const TensorView& w, const float* x, int64_t n_tokens, float* y);

// y[t, c - col_begin] = (float) sum_i (double) W[i, c] * x[t, i] (w input-major [n_in, n_cols], F32/F16/BF16).
void MatMulInputMajor(const TensorView& w, int64_t col_begin, int64_t col_end, const float* x, int64_t n_tokens,
                      float* y);

}  // namespace herd::kernels::ref
