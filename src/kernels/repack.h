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
//
// Q4_KR does the same for Q4_K: a group of 512 elements is two super-blocks, whose 16 sub-blocks of 32 are the
// group's 16 blocks (block j = sub-block j % 8 of super-block j / 8), 296 bytes (Q4_K: 288):
//
//     bytes [0, 256):                        the unsigned codes q as Q4_0R's (value d sc q - dmin mn)
//     bytes [256, 272), [272, 288):          the 6-bit scale sc and min mn of each block, one byte each
//     bytes [288, 296):                      f16 d of super-blocks 0 and 1, then f16 dmin of both
//
// so that lane j of the kernel's integer sum is block j's sum q x, scaled by d sc in f32 (one lane, one scale), and
// the mins' share is each lane's code sum (from the activation record's start value) times dmin mn. Q5_KR adds the
// fifth bits, 360 bytes (Q5_K: 352):
//
//     bytes [0, 256):                        the low 4 bits of the codes, as Q4_KR
//     bytes [256, 320):                      8 bytes per Q8_0R code vector c (0 .. 7): bit k = the fifth bit of its
//                                            byte k (a mask register's worth: one masked add makes the code vector)
//     bytes [320, 360):                      sc, mn, d, dmin as Q4_KR's bytes [256, 296)
//
// Q6_KR, 420 bytes (Q6_K's size):
//
//     bytes [0, 256):                        the low 4 bits of the codes q (0 .. 63), as Q4_0R's
//     bytes [256, 384):                      the high 2 bits: 64 bytes for Q8_0R code vectors 0-3, then 64 for 4-7;
//                                            bits 2 (c % 4), 2 (c % 4) + 1 of byte k = those of code vector c's byte k
//     bytes [384, 400), [400, 416):          the int8 scale of the first / second 16 codes of each block
//     bytes [416, 420):                      f16 d of super-blocks 0 and 1 (value d S (q - 32))
//
// Unlike Q8_0R and Q4_0R, these are multiplied with Q8_0R's activation records (one scale per 32 inputs) where
// Q4_K and Q5_K take Q8_K's (one per 256), so the products differ from the GGUF layout's by more than rounding:
// they are those of a finer activation quantization (matmul_test bounds them against the exact product).
//
// AVX2 reads the same layouts as two 256-bit halves of each 64-byte vector (lanes 0-7 and 8-15, a K-quant's two
// super-blocks), with pmaddubsw + pmaddwd for vpdpbusd (cpu/qdot-inl.h, HWY_AVX2's RepackedTiles and friends).
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/tensor.h"

namespace herd::kernels {

// The layout RepackRows turns a [rows, n_in] matrix of dtype t into on this CPU and Highway target, or t itself
// when there is none or it would not be faster: Q8_0 -> kQ8_0R, Q4_0 -> kQ4_0R, Q4_K -> kQ4_KR, Q5_K -> kQ5_KR and
// Q6_K -> kQ6_KR with n_in a multiple of 512 where their dot kernels exist (AVX-512 VNNI, and AVX2 with pmaddubsw on
// half a group at a time); t otherwise.
DType RepackedType(DType t, int64_t n_in);

// Rows [r_begin, r_end) of w into dst in the layout RepackedType(w.dtype, w.Cols()) (a plain copy when that is
// w.dtype); dst holds the whole matrix (RepackedBytes(w): rows contiguous).
// Thread-safe for disjoint rows.
void RepackRows(const TensorView& w, int64_t r_begin, int64_t r_end, uint8_t* dst);
// The bytes of w in that layout (w.Rows() * RowBytes(RepackedType(w.dtype, w.Cols()), w.Cols())).
int64_t RepackedBytes(const TensorView& w);

// One Q8_0R row of n_in elements back to the GGUF Q8_0 layout (the reference of the layout; tests, ref::).
void UnpackRowQ8_0R(const uint8_t* row, int64_t n_in, uint8_t* q8_0);
// One GGUF Q8_0 row of n_in elements (a multiple of 512) to Q8_0R.
void PackRowQ8_0R(const uint8_t* q8_0, int64_t n_in, uint8_t* row);
// The same for Q4_0R and GGUF Q4_0.
void UnpackRowQ4_0R(const uint8_t* row, int64_t n_in, uint8_t* q4_0);
void PackRowQ4_0R(const uint8_t* q4_0, int64_t n_in, uint8_t* row);
// The same for Q4_KR / Q5_KR and GGUF Q4_K / Q5_K (q5 chooses).
void UnpackRowQ45KR(bool q5, const uint8_t* row, int64_t n_in, uint8_t* q45k);
void PackRowQ45KR(bool q5, const uint8_t* q45k, int64_t n_in, uint8_t* row);
void UnpackRowQ6KR(const uint8_t* row, int64_t n_in, uint8_t* q6k);
void PackRowQ6KR(const uint8_t* q6k, int64_t n_in, uint8_t* row);

// Whether t is a layout RepackRows makes (Q8_0R, Q4_0R, Q4_KR, Q5_KR, Q6_KR), and the GGUF type it is made from.
inline bool IsRepacked(DType t) {
  return t == DType::kQ8_0R || t == DType::kQ4_0R || t == DType::kQ4_KR || t == DType::kQ5_KR || t == DType::kQ6_KR;
}
DType PackedFrom(DType t);
// One GGUF row of type PackedFrom(t) to the repacked type t, and back.
void PackRow(DType t, const uint8_t* src, int64_t n_in, uint8_t* row);
void UnpackRow(DType t, const uint8_t* row, int64_t n_in, uint8_t* out);

}  // namespace herd::kernels
