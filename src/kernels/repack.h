// Weight layouts made at load for faster dot products (issue: "optional repacking at load"). The GGUF layout of
// Q8_0 interleaves each block's f16 scale with its 32 codes (34 bytes), so a 512-bit kernel needs byte permutes to
// gather codes and scales (cpu/qdot-inl.h VbmiStepQ8_0) and an xor to offset the codes for vpdpbusd. Q8_0R
// stores the same bytes regrouped so that the kernel loads them as they are multiplied:
//
//   row = n_in / 256 groups of 272 bytes; group g holds blocks 8g .. 8g + 7 (elements [256 g, 256 g + 256)):
//     bytes [128 s, 128 s + 64), s = 0, 1:      byte i = code (i % 16) of block 8g + 4s + i / 16, plus 128 (u8)
//     bytes [128 s + 64, 128 s + 128):         byte i = code 16 + (i % 16) of the same block, plus 128
//     bytes [256, 272):                        the 8 f16 scales d of blocks 8g .. 8g + 7, in order
//
// Same bytes per row as Q8_0 (34 per 32 elements), same values: W[o, 32 b + j] = d_b * (byte - 128). The integer
// sums and the f32 arithmetic of the Q8_0R kernel are those of the Q8_0 kernel on AVX3_DL, so the outputs are
// bit-identical to the GGUF layout's (matmul_test). Repacking costs a copy of the weights in memory (the mapped
// file stays mapped; its pages are clean and the OS may drop them) and one pass over them at load.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/tensor.h"

namespace herd::kernels {

// The layout RepackRows turns a [rows, n_in] matrix of dtype t into on this CPU and Highway target, or t itself
// when there is none or it would not be faster: kQ8_0R for Q8_0 with n_in a multiple of 256 where the Q8_0R dot
// kernel exists (AVX-512 VNNI); t otherwise.
DType RepackedType(DType t, int64_t n_in);

// Rows [r_begin, r_end) of w into dst in the layout RepackedType(w.dtype, w.Cols()) (a plain copy when that is
// w.dtype); dst holds the whole matrix (w.Rows() * RowBytes(that type, n_in) bytes, rows contiguous).
// Thread-safe for disjoint rows.
void RepackRows(const TensorView& w, int64_t r_begin, int64_t r_end, uint8_t* dst);

// One Q8_0R row of n_in elements back to the GGUF Q8_0 layout (the reference of the layout; tests, ref::).
void UnpackRowQ8_0R(const uint8_t* row, int64_t n_in, uint8_t* q8_0);
// One GGUF Q8_0 row of n_in elements (a multiple of 256) to Q8_0R.
void PackRowQ8_0R(const uint8_t* q8_0, int64_t n_in, uint8_t* row);

}  // namespace herd::kernels
