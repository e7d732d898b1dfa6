// The RoPE cos/sin table of one position (kernels/rope.h; llama4.md 2.5 "Angles", 2.13): scalar code, since the
// decoder builds it once per token and batch, not per head. And the per-token preparation of queries and keys, a
// sequence of the SIMD kernels of rope.h and ops.h.
#include "kernels/rope.h"

#include <cmath>

#include "kernels/ops.h"

namespace herd::kernels {

void RopeCosSin(const float* inv_freq, int64_t n_pairs, int64_t pos, float* cos, float* sin) {
  const float p = static_cast<float>(pos);
  for (int64_t i = 0; i < n_pairs; ++i) {
    const float angle = p * inv_freq[i];  // fp32 product, as the references compute it
    cos[i] = std::cos(angle);
    sin[i] = std::sin(angle);
  }
}

void PrepareQueryKey(const QueryKeyPrep& p, const float* cos, const float* sin, bool scale_q, float q_scale, float* q,
                     float* k) {
  const int64_t hd = p.head_dim;
  if (p.rope) {
    for (int64_t h = 0; h < p.n_heads; ++h) Rope(q + h * hd, hd, cos, sin, p.style);
    for (int64_t h = 0; h < p.n_kv_heads; ++h) Rope(k + h * hd, hd, cos, sin, p.style);
  }
  if (p.qk_norm) {
    for (int64_t h = 0; h < p.n_heads; ++h) RmsNorm(q + h * hd, nullptr, hd, p.eps, q + h * hd);
    for (int64_t h = 0; h < p.n_kv_heads; ++h) RmsNorm(k + h * hd, nullptr, hd, p.eps, k + h * hd);
  }
  if (scale_q) Scale(q, q_scale, p.n_heads * hd);
}

float AttentionTemperature(int64_t pos, float floor_scale, float attn_scale) {
  const float steps = std::floor(static_cast<float>(pos + 1) / floor_scale);
  return std::log(steps + 1.0f) * attn_scale + 1.0f;
}

}  // namespace herd::kernels
