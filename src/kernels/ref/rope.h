// Scalar reference of kernels/rope.h (llama4.md 2.5 interleaved pairs, 10.2 half-split pairs), each rotated
// pair computed in double and rounded once. The oracle of rope_test.cpp.
#pragma once

#include <cstdint>

#include "kernels/rope.h"

namespace herd::kernels::ref {

void Rope(float* x, int64_t head_dim, const float* cos, const float* sin, RopeStyle style);

// kernels::PrepareQueryKey from ref::Rope, ref::RmsNorm and ref::Scale (each step rounded once per output).
void PrepareQueryKey(const QueryKeyPrep& p, const float* cos, const float* sin, bool scale_q, float q_scale, float* q,
                     float* k);

}  // namespace herd::kernels::ref
