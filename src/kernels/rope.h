// Rotary position embedding of one head vector (llama4.md 2.5: interleaved pairs for Llama 4, Meta, GGUF and
// llama2.c; 10.2: half-split pairs for HF Llama 1-3 safetensors). The caller builds cos/sin per position from
// the model's frequencies (including any llama3 scaling); this kernel only rotates. Reference: kernels/ref/rope.h.
#pragma once

#include <cstdint>

namespace herd::kernels {

enum class RopeStyle {
  kInterleaved,  // pairs (2i, 2i+1): Meta, GGUF, llama2.c
  kHalfSplit,    // pairs (i, i + head_dim/2): HF Llama 1-3 (rotate_half)
};

// Rotates x[head_dim] in place: for each pair (a, b) = (x[first(i)], x[second(i)]), i < head_dim/2,
//   a' = a * cos[i] - b * sin[i],  b' = a * sin[i] + b * cos[i].
// x: f32 [head_dim] (head_dim even); cos, sin: f32 [head_dim / 2], cos[i] = cos(pos * inv_freq[i]).
// Thread-safe, allocates nothing, any alignment.
void Rope(float* x, int64_t head_dim, const float* cos, const float* sin, RopeStyle style);

}  // namespace herd::kernels
