// Scalar reference of the scaled matrix products (FP8 E4M3 with per-output scales, llama4.md 6.3).
#include "kernels/ref/matmul_fp8.h"

#include <vector>

#include "core/half.h"
#include "core/status.h"
#include "kernels/ref/matmul.h"

namespace herd::kernels::ref {
namespace {

// dst[i] = W[r, i] unscaled, for any dtype of MatMulScaledSupports.
void DequantizeRowUnscaled(const TensorView& w, int64_t r, float* dst) {
  if (w.dtype == DType::kF8_E4M3) {
    const uint8_t* row = w.Row(r);
    for (int64_t i = 0; i < w.Cols(); ++i) dst[i] = F8E4M3ToF32(row[i]);
  } else {
    DequantizeRow(w, r, dst);
  }
}

}  // namespace

bool MatMulScaledSupports(DType t) { return MatMulSupports(t) || t == DType::kF8_E4M3; }

void DequantizeRowScaled(const TensorView& w, const float* row_scale, int64_t r, float* dst) {
  HERD_CHECK(MatMulScaledSupports(w.dtype) && r >= 0 && r < w.Rows());
  DequantizeRowUnscaled(w, r, dst);
  if (row_scale == nullptr) return;
  for (int64_t i = 0; i < w.Cols(); ++i) dst[i] *= row_scale[r];
}

void MatMulRowsScaled(const TensorView& w, const float* row_scale, const float* x, int64_t n_tokens, float* y,
                      int64_t y_stride, int64_t o_begin, int64_t o_end) {
  const int64_t n_in = w.Cols();
  std::vector<float> row(static_cast<size_t>(n_in));
  for (int64_t o = o_begin; o < o_end; ++o) {
    DequantizeRowScaled(w, row_scale, o, row.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      double acc = 0.0;
      for (int64_t i = 0; i < n_in; ++i) acc += static_cast<double>(row[i]) * static_cast<double>(x[t * n_in + i]);
      y[t * y_stride + o] = static_cast<float>(acc);
    }
  }
}

void MatMulScaled(const TensorView& w, const float* row_scale, const float* x, int64_t n_tokens, float* y) {
  MatMulRowsScaled(w, row_scale, x, n_tokens, y, w.Rows(), 0, w.Rows());
}

void MatMulInputMajorScaled(const TensorView& w, const float* col_scale, int64_t col_begin, int64_t col_end,
                            const float* x, int64_t n_tokens, float* y) {
  HERD_CHECK(w.dtype == DType::kF32 || w.dtype == DType::kF16 || w.dtype == DType::kBF16 || w.dtype == DType::kF8_E4M3);
  HERD_CHECK(0 <= col_begin && col_begin <= col_end && col_end <= w.Cols());
  const int64_t n_in = w.Rows(), n_cols = col_end - col_begin;
  std::vector<float> row(static_cast<size_t>(w.Cols()));
  std::vector<double> acc(static_cast<size_t>(n_tokens * n_cols), 0.0);
  for (int64_t i = 0; i < n_in; ++i) {
    DequantizeRowUnscaled(w, i, row.data());
    for (int64_t c = col_begin; c < col_end; ++c) {
      const float wc = col_scale == nullptr ? row[c] : row[c] * col_scale[c];
      for (int64_t t = 0; t < n_tokens; ++t) {
        acc[t * n_cols + (c - col_begin)] += static_cast<double>(wc) * static_cast<double>(x[t * n_in + i]);
      }
    }
  }
  for (int64_t k = 0; k < n_tokens * n_cols; ++k) y[k] = static_cast<float>(acc[k]);
}

}  // namespace herd::kernels::ref
