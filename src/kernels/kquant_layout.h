// The K-quant super-block layouts (llama4.md 5.4) in both directions: the 6-bit scales and mins of Q4_K/Q5_K, and
// the codes of Q4_K, Q5_K and Q6_K in element order. Shared by the scalar reference, the quantizer and the repacking.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace herd::kernels {

// Q4_K/Q5_K sub-block j's (0..7) scale and min from the 12 packed bytes s.
void UnpackScaleMin(const uint8_t* s, int j, int* sc, int* mn);
// The inverse: 8 scales and 8 mins (each < 64) into the 12 bytes s (the 96 bits fill them exactly).
void PackScalesMins(const int* sc, const int* mn, uint8_t* s);

// The unsigned codes of one super-block of t (Q4_K, Q5_K, Q6_K) in element order: Q4_K/Q5_K q in [0, 31], Q6_K q in
// [0, 63] (the offset -32 not applied).
void KQuantCodes(DType t, const uint8_t* blk, int* q);
// The inverse: writes the code bytes of blk (Q4_K qs; Q5_K qh and qs; Q6_K ql and qh), leaving d, dmin and the scales.
void PutKQuantCodes(DType t, const int* q, uint8_t* blk);

}  // namespace herd::kernels
