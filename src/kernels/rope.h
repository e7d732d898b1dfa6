// Rotary position embedding of one head vector (llama4.md 2.5: interleaved pairs for Llama 4, Meta, GGUF and
// llama2.c; 10.2: half-split pairs for HF Llama 1-3 safetensors), and the per-position cos/sin table it rotates
// by (RopeCosSin, from the model's inverse frequencies including any llama3 scaling). Reference: kernels/ref/rope.h
// for the rotation; the table is pinned to the Llama 4 fixtures' rope_cos_sin.npy (tests/golden).
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

// The angles of position `pos` and their cosines and sines: for i < n_pairs,
//   angle = fl32(float(pos) * inv_freq[i]),  cos[i] = std::cos(angle),  sin[i] = std::sin(angle),
// with the product formed in fp32, as Meta's and HF's references do (llama4.md 2.5 "Angles", 2.13): a double
// product would differ from them by up to |angle| * 2^-24 at large positions. inv_freq: f32 [n_pairs]; cos, sin:
// f32 [n_pairs] (n_pairs = head_dim / 2). pos is exact in fp32 up to 2^24. Thread-safe, allocates nothing.
void RopeCosSin(const float* inv_freq, int64_t n_pairs, int64_t pos, float* cos, float* sin);

// What PrepareQueryKey does to one token's queries and keys; the layer's flags of ModelConfig (llama4.md 2.4, 2.5).
struct QueryKeyPrep {
  int64_t n_heads = 0;     // query heads, head_dim floats apart
  int64_t n_kv_heads = 0;  // key heads
  int64_t head_dim = 0;    // even
  RopeStyle style = RopeStyle::kInterleaved;
  bool rope = true;      // false: a NoPE layer
  bool qk_norm = false;  // weightless RMS over each head, after RoPE
  float eps = 1e-5f;     // of the QK-norm
};

// One token's queries q [n_heads * head_dim] and keys k [n_kv_heads * head_dim], in place, in the references'
// order: every head rotated by cos/sin [head_dim / 2] (when p.rope), then every head RMS-normed without a weight
// (when p.qk_norm), then every query multiplied by q_scale (when scale_q: attention temperature tuning, llama4.md
// 2.8). The same arithmetic as Rope, RmsNorm and Scale of kernels/ops.h called in that order (bit for bit); the
// scalar twin is ref::PrepareQueryKey. Thread-safe, allocates nothing.
void PrepareQueryKey(const QueryKeyPrep& p, const float* cos, const float* sin, bool scale_q, float q_scale, float* q,
                     float* k);

// The query scale of attention temperature tuning at position pos (llama4.md 2.8), in fp32 like the references:
//   log(floor((pos + 1) / floor_scale) + 1) * attn_scale + 1.
float AttentionTemperature(int64_t pos, float floor_scale, float attn_scale);

}  // namespace herd::kernels
