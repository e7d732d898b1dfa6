// Encoding f32 rows into the weight dtypes herd writes: F32, F16, BF16 (round to nearest even, core/half.h) and the
// ggml block formats Q8_0 and Q4_0 (llama4.md section 5.4), bit-exactly as ggml's reference quantizers
// (quantize_row_q8_0_ref / quantize_row_q4_0_ref in ggml-quants.c) so that a file written by `herd convert` or
// `herd quantize` is the file llama.cpp would write. Scalar code: converters are bound by I/O, not by this.
// Decoding for the matmul kernels lives in kernels/matmul.h; DequantizeRow here is the scalar twin for tools/tests.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace herd::kernels {

// True for the dtypes QuantizeRow and DequantizeRow (this header) handle: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K,
// Q6_K.
bool QuantizeSupports(DType t);

// Encodes x[0, n) into dst (RowBytes(t, n) bytes). Requires QuantizeSupports(t) and n a multiple of t's block size (32 for Q8_0/Q4_0, 256 for the K-quants); violations are bugs (checked).
// Thread-safe; allocates nothing.
//   F16/BF16: round to nearest even (NaN stays NaN; F16 overflows to inf).
//   Q8_0, per block of 32: amax = max|x|, d = amax / 127, q[j] = round(x[j] * (1/d)) (half away from zero),
//        stored d as an IEEE half. All-zero blocks store d = 0, q = 0.
//   Q4_0, per block of 32: m = the element of largest magnitude, sign kept (the first one on ties),
//        d = m / -8, q[j] = min(15, trunc(x[j] * (1/d) + 8.5)); nibbles: low = element j, high = element j + 16.
//   The scale used to compute q is the f32 d; the stored scale is d rounded to half, exactly as ggml does.
//   Q4_K, Q5_K, Q6_K: per sub-block (32; Q6_K 16) a least-squares fit of the grid over a small search of
//        steps, then 6-bit (Q6_K 8-bit) super-block scales (quantize.cpp says exactly how). Our own fit, not
//        ggml's importance-weighted search, so the bytes differ from llama.cpp's files; the blocks are valid
//        K-quant blocks that any GGUF reader decodes.
//   Non-finite inputs give unspecified (but defined) codes.
void QuantizeRow(DType t, const float* x, int64_t n, uint8_t* dst);

// Decodes n elements of a row of dtype t at src into dst, exactly (llama4.md 5.4; K-quants as
// ref::DequantizeRow). Same requirements as QuantizeRow. The scalar twin of kernels::DequantizeRow(const TensorView&, ...).
void DequantizeRow(DType t, const uint8_t* src, int64_t n, float* dst);

}  // namespace herd::kernels
