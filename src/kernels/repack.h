// Weight layouts made at load for faster dot products (issue: "optional repacking at load"). The GGUF layout of
// Q8_0 interleaves each block's f16 scale with its 32 codes (34 bytes), so a 512-bit kernel needs byte permutes to
// gather codes and scales (cpu/qdot-inl.h VbmiStepQ8_0), an xor to offset the codes for vpdpbusd, and spreads each
// block's sum over 4 int32 lanes, so that its f32 work (convert, scale, add) is done once per 4 blocks. Q8_0R
// stores the same bytes regrouped so that the kernel loads them as they are multiplied and each block's sum lands
// in one lane (the f32 work once per 16 blocks):
//
//   row = n_in / 512 groups of 544 bytes; group g holds blocks 16g .. 16g + 15 (elements [512 g, 512 g + 512)):
//     bytes [64 v, 64 v + 64), v = 0 .. 7:   int32 lane j = codes 4v .. 4v + 3 of block 16g + j, each plus 128 (u8)
//     bytes [512, 544):                      the 16 f16 scales d of blocks 16g .. 16g + 15, in order
//
// Same bytes per row as Q8_0 (34 per 32 elements), same values: W[o, 32 b + c] = d_b * (byte - 128). The integer
// block sums are those of the Q8_0 kernel; the f32 arithmetic that scales and adds them is the Q8_0R kernel's own
// (cpu/qdot-inl.h RepackedQ8Tiles), so products differ from the GGUF layout's in rounding only (matmul_test bounds
// it), and are batch invariant like every kernel. Repacking costs a copy of the weights in memory (the mapped
// file stays mapped; its pages are clean and the OS may drop them) and one pass over them at load.
// Q4_0R does the same for Q4_0 (288 bytes per group of 16 blocks, Q4_0's own size):
//
//     bytes [64 v, 64 v + 64), v = 0 .. 3:   int32 lane j = codes 8v .. 8v + 3 of block 16g + j in the low nibbles of
//                                            its 4 bytes and codes 8v + 4 .. 8v + 7 in the high nibbles (Q4_0's
//                                            unsigned codes q, value (q - 8) d)
//     bytes [256, 288):                      the 16 f16 scales d
//
// so that an and and a shift make two of Q8_0R's code vectors from one load, multiplied with Q8_0R's activation
// records.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/tensor.h"

namespace herd::kernels {

// The layout RepackRows turns a [rows, n_in] matrix of dtype t into on this CPU and Highway target, or t itself
// when there is none or it would not be faster: kQ8_0R for Q8_0 and kQ4_0R for Q4_0 with n_in a multiple of 512 where
// their dot kernels exist (AVX-512 VNNI); t otherwise.
DType RepackedType(DType t, int64_t n_in);

// Rows [r_begin, r_end) of w into dst in the layout RepackedType(w.dtype, w.Cols()) (a plain copy when that is
// w.dtype); dst holds the whole matrix (w.Rows() * RowBytes(that type, n_in) bytes, rows contiguous).
// Thread-safe for disjoint rows.
void RepackRows(const TensorView& w, int64_t r_begin, int64_t r_end, uint8_t* dst);

// One Q8_0R row of n_in elements back to the GGUF Q8_0 layout (the reference of the layout; tests, ref::).
void UnpackRowQ8_0R(const uint8_t* row, int64_t n_in, uint8_t* q8_0);
// One GGUF Q8_0 row of n_in elements (a multiple of 512) to Q8_0R.
void PackRowQ8_0R(const uint8_t* q8_0, int64_t n_in, uint8_t* row);
// The same for Q4_0R and GGUF Q4_0.
void UnpackRowQ4_0R(const uint8_t* row, int64_t n_in, uint8_t* q4_0);
void PackRowQ4_0R(const uint8_t* q4_0, int64_t n_in, uint8_t* row);

// Whether t is a layout RepackRows makes (Q8_0R, Q4_0R), and the GGUF type it is made from (Q8_0, Q4_0).
inline bool IsRepacked(DType t) { return t == DType::kQ8_0R || t == DType::kQ4_0R; }
inline DType PackedFrom(DType t) { return t == DType::kQ4_0R ? DType::kQ4_0 : DType::kQ8_0; }
// One row of a repacked type t back to PackedFrom(t) (UnpackRowQ8_0R or UnpackRowQ4_0R).
void UnpackRow(DType t, const uint8_t* row, int64_t n_in, uint8_t* out);

}  // namespace herd::kernels
