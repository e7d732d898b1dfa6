// Ops of the Llama 4 vision tower that the text model does not have (llama4.md 9.3-9.6): LayerNorm with weight and
// bias, exact (erf) GELU, the 2-D RoPE table, unfolding a tile into patches, and pixel shuffle in Meta's order.
// LayerNorm and GELU are SIMD (Highway, best target chosen at run time; the tower splits GELU over its threads); the
// others are plain loops: copies or per-tile tables, far from the matrix products in cost. Scalar twins computing in
// double: kernels/ref/vision_ops.h, the oracle of vision_ops_test.cpp. All functions are thread-safe, allocate nothing
// and accept any alignment; inputs and outputs must not overlap unless noted.
#pragma once

#include <cstdint>

namespace herd::kernels {

// out[j] = (x[j] - mean) / sqrt(var + eps) * weight[j] + bias[j], with the mean and the biased variance (divided
// by n) of x[0, n) (PyTorch nn.LayerNorm). x, weight, bias, out: f32 [n], n >= 1; out == x allowed. Sums in f32
// (several lanes), the variance in a second pass over the centred values.
void LayerNorm(const float* x, const float* weight, const float* bias, int64_t n, float eps, float* out);

// out[i] = 0.5 x[i] (1 + erf(x[i] / sqrt 2)): PyTorch's exact GELU (llama4.md 9.3 MLP, 9.6 adapter; not the tanh
// approximation llama.cpp uses). Vectors of f32 (per Highway target): 1 + erf from a Chebyshev-fitted erfc of relative
// error below 1.2e-7 (cpu/vision_ops.cpp), so out is within 10 units in the last place of 0.5 |x| of the exact value,
// and the negative tail (1 + erf -> 0) keeps its relative accuracy. out == x allowed.
void GeluErf(const float* x, float* out, int64_t n);

// The 2-D RoPE table of one tile (llama4.md 9.4) for a grid of grid x grid patches plus the CLS token:
// n_tokens = grid * grid + 1 rows of head_dim / 2 pairs each (head_dim a multiple of 4). With
//   inv[k] = 1 / theta^(2k / (head_dim/2)),  k < head_dim / 4   (fp32, as HF's Llama4VisionRotaryEmbedding),
// patch p = grid * y + x has the angles fl32((x + 1) * inv[k]) for pairs k < head_dim / 4 and fl32((y + 1) * inv[k])
// for pairs head_dim / 4 + k; the CLS token (p = grid * grid, last) has every angle 0. cos, sin: f32
// [n_tokens, head_dim / 2] receive the cosines and sines. The rotation itself is kernels::Rope with
// RopeStyle::kInterleaved (pairs (2m, 2m + 1)) by row p of the table, the same for every head.
void VisionRopeTable(int64_t grid, int64_t head_dim, float theta, float* cos, float* sin);

// The unfold of llama4.md 9.3 step 1 (Meta's nn.Unfold, HF's Llama4UnfoldConvolution): pixels f32
// [channels, image_size, image_size] -> patches f32 [grid * grid, channels * patch_size^2], grid =
// image_size / patch_size (a divisor), with patch p = grid * a + b holding element c * patch_size^2 + ky * patch_size
// + kx = pixels[c, patch_size * a + ky, patch_size * b + kx]. An exact copy.
void UnfoldPatches(const float* pixels, int64_t channels, int64_t image_size, int64_t patch_size, float* patches);

// Pixel shuffle with ratio 1 / factor in Meta's order (llama4.md 9.5, which the view / permute / view / permute of
// Meta's pixel_shuffle_op and HF's pixel_shuffle compute; not llama.cpp's, which leaves out the last permute): x f32
// [grid * grid, channels] (token grid * r + c at row r, column c) -> out f32 [(grid / factor)^2, factor^2 *
// channels] with
//   out[(grid / factor) * i + j][(factor * a + b) * channels + ch] = x[grid * (factor * i + a) + factor * j + b][ch]
// for a, b < factor: factor 2 concatenates G[2i][2j], G[2i][2j+1], G[2i+1][2j], G[2i+1][2j+1]. grid a multiple of
// factor >= 1. An exact copy.
void PixelShuffle(const float* x, int64_t grid, int64_t channels, int64_t factor, float* out);

}  // namespace herd::kernels
