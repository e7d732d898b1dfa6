// Scalar reference of kernels/attention.h: for each query row the full score row is computed in double, then an
// exact (max-subtracted) softmax and the weighted sum of values, all in double, rounded once to f32 per output.
// Plain loops, no tiling; the oracle of attention_test.cpp, never the fast path. Same arguments and contract as
// kernels::Attention, minus the scratch (it allocates its score row).
#pragma once

#include <cstdint>

namespace herd::kernels::ref {

void Attention(const float* q, int64_t q_stride, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const float* k,
               const float* v, int64_t kv_stride, const int64_t* key_begin, const int64_t* key_end, float scale,
               float* out, int64_t out_stride);

}  // namespace herd::kernels::ref
