// Scalar reference matrix products and dequantization (llama4.md 5.4).
#include "kernels/ref/matmul.h"

#include <cstring>
#include <vector>

#include "core/half.h"
#include "core/status.h"

namespace herd::kernels::ref {
namespace {

uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

float LoadF32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}

// Element i of a row of plain (block size 1) dtype.
float PlainElement(DType t, const uint8_t* row, int64_t i) {
  switch (t) {
    case DType::kF32:
      return LoadF32(row + 4 * i);
    case DType::kF16:
      return F16ToF32(LoadU16(row + 2 * i));
    case DType::kBF16:
      return Bf16ToF32(LoadU16(row + 2 * i));
    default:
      HERD_CHECK(false);
      return 0.0f;
  }
}

}  // namespace

bool MatMulSupports(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 || t == DType::kQ8_0 || t == DType::kQ4_0;
}

void DequantizeRow(const TensorView& w, int64_t r, float* dst) {
  HERD_CHECK(MatMulSupports(w.dtype) && r >= 0 && r < w.Rows());
  const int64_t n_in = w.Cols();
  const uint8_t* row = w.Row(r);
  switch (w.dtype) {
    case DType::kQ8_0:  // 34 bytes: d (f16), qs[32] (int8)
      for (int64_t b = 0; b < n_in / 32; ++b) {
        const uint8_t* blk = row + 34 * b;
        const float d = F16ToF32(LoadU16(blk));
        for (int j = 0; j < 32; ++j) dst[32 * b + j] = d * static_cast<float>(static_cast<int8_t>(blk[2 + j]));
      }
      return;
    case DType::kQ4_0:  // 18 bytes: d (f16), qs[16]; low nibbles are weights 0..15, high nibbles 16..31
      for (int64_t b = 0; b < n_in / 32; ++b) {
        const uint8_t* blk = row + 18 * b;
        const float d = F16ToF32(LoadU16(blk));
        for (int j = 0; j < 16; ++j) {
          dst[32 * b + j] = static_cast<float>((blk[2 + j] & 0x0F) - 8) * d;
          dst[32 * b + j + 16] = static_cast<float>((blk[2 + j] >> 4) - 8) * d;
        }
      }
      return;
    default:
      for (int64_t i = 0; i < n_in; ++i) dst[i] = PlainElement(w.dtype, row, i);
      return;
  }
}

void MatMulRows(const TensorView& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride,
                int64_t o_begin, int64_t o_end) {
  const int64_t n_in = w.Cols();
  std::vector<float> row(static_cast<size_t>(n_in));
  for (int64_t o = o_begin; o < o_end; ++o) {
    DequantizeRow(w, o, row.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      double acc = 0.0;
      for (int64_t i = 0; i < n_in; ++i) acc += static_cast<double>(row[i]) * static_cast<double>(x[t * n_in + i]);
      y[t * y_stride + o] = static_cast<float>(acc);
    }
  }
}

void MatMul(const TensorView& w, const float* x, int64_t n_tokens, float* y) {
  MatMulRows(w, x, n_tokens, y, w.Rows(), 0, w.Rows());
}

void MatMulInputMajor(const TensorView& w, int64_t col_begin, int64_t col_end, const float* x, int64_t n_tokens,
                      float* y) {
  HERD_CHECK(w.dtype == DType::kF32 || w.dtype == DType::kF16 || w.dtype == DType::kBF16);
  const int64_t n_in = w.Rows(), n_cols = col_end - col_begin;
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t c = col_begin; c < col_end; ++c) {
      double acc = 0.0;
      for (int64_t i = 0; i < n_in; ++i) {
        acc += static_cast<double>(PlainElement(w.dtype, w.Row(i), c)) * static_cast<double>(x[t * n_in + i]);
      }
      y[t * n_cols + (c - col_begin)] = static_cast<float>(acc);
    }
  }
}

}  // namespace herd::kernels::ref
