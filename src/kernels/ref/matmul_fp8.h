// Scalar reference of the scaled products of kernels/matmul.h (MatMulScaled and friends): weights with a
// per-output f32 scale, as FP8 checkpoints store them (llama4.md 6.3: W[o, :] = e4m3(weight[o, :]) * scale[o]).
// The weight is dequantized exactly as written there (one f32 product per element), then multiplied in double.
// The oracle of matmul_fp8_test.cpp, never a fast path.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/tensor.h"

namespace herd::kernels::ref {

// ref::MatMulSupports(t) or F8_E4M3.
bool MatMulScaledSupports(DType t);

// dst[i] = (float) (W[r, i] * row_scale[r]) for i < w.Cols(): W[r, i] from core/half.h F8E4M3ToF32 for F8_E4M3,
// else from ref::DequantizeRow; the product is one f32 multiplication. row_scale: f32 [w.Rows()] or nullptr (1).
void DequantizeRowScaled(const TensorView& w, const float* row_scale, int64_t r, float* dst);

// y[t * y_stride + o] = (float) sum_i (double) Ws[o, i] * x[t, i] for t < n_tokens, o in [o_begin, o_end), with Ws
// the rows of DequantizeRowScaled.
void MatMulRowsScaled(const TensorView& w, const float* row_scale, const float* x, int64_t n_tokens, float* y,
                      int64_t y_stride, int64_t o_begin, int64_t o_end);

// MatMulRowsScaled over all rows, y row stride n_out.
void MatMulScaled(const TensorView& w, const float* row_scale, const float* x, int64_t n_tokens, float* y);

// Input-major w [n_in, n_cols] (F32, F16, BF16 or F8_E4M3) with one scale per column (col_scale: f32 [n_cols] or
// nullptr): y[t, c - col_begin] = (float) sum_i (double) (float) (W[i, c] * col_scale[c]) * x[t, i].
void MatMulInputMajorScaled(const TensorView& w, const float* col_scale, int64_t col_begin, int64_t col_end,
                            const float* x, int64_t n_tokens, float* y);

}  // namespace herd::kernels::ref
