// Scalar reference of kernels/vision_ops.h (llama4.md 9.3-9.6): LayerNorm and GELU in double, rounded once per
// output; the 2-D RoPE applied to a vector with angles and rotation in double; the unfold by its element formula and
// the pixel shuffle as the literal view / permute / view / permute sequence of Meta's pixel_shuffle_op. Plain loops
// (the shuffle allocates its intermediate); the oracle of vision_ops_test.cpp, never the fast path.
#pragma once

#include <cstdint>

namespace herd::kernels::ref {

void LayerNorm(const float* x, const float* weight, const float* bias, int64_t n, float eps, float* out);
void GeluErf(const float* x, float* out, int64_t n);
// Rotates x [head_dim] of token `token` (p = grid * y + x for a patch, grid * grid for the CLS token) by the angles
// of llama4.md 9.4 computed in double: pair m < head_dim / 4 by (x + 1) / theta^(4m / head_dim), pair head_dim / 4 + m
// by (y + 1) / theta^(4m / head_dim), no rotation for the CLS token.
void VisionRope(float* x, int64_t head_dim, int64_t grid, double theta, int64_t token);
void UnfoldPatches(const float* pixels, int64_t channels, int64_t image_size, int64_t patch_size, float* patches);
void PixelShuffle(const float* x, int64_t grid, int64_t channels, int64_t factor, float* out);

}  // namespace herd::kernels::ref
