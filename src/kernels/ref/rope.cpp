// Scalar reference RoPE rotation (llama4.md 2.5, 10.2).
#include "kernels/ref/rope.h"

#include "kernels/ref/ops.h"

namespace herd::kernels::ref {

void Rope(float* x, int64_t head_dim, const float* cos, const float* sin, RopeStyle style) {
  const int64_t half = head_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const int64_t ia = style == RopeStyle::kInterleaved ? 2 * i : i;
    const int64_t ib = style == RopeStyle::kInterleaved ? 2 * i + 1 : i + half;
    const double a = x[ia], b = x[ib], c = cos[i], s = sin[i];
    x[ia] = static_cast<float>(a * c - b * s);
    x[ib] = static_cast<float>(a * s + b * c);
  }
}

void PrepareQueryKey(const QueryKeyPrep& p, const float* cos, const float* sin, bool scale_q, float q_scale, float* q,
                     float* k) {
  const int64_t hd = p.head_dim;
  if (p.rope) {
    for (int64_t h = 0; h < p.n_heads; ++h) ref::Rope(q + h * hd, hd, cos, sin, p.style);
    for (int64_t h = 0; h < p.n_kv_heads; ++h) ref::Rope(k + h * hd, hd, cos, sin, p.style);
  }
  if (p.qk_norm) {
    for (int64_t h = 0; h < p.n_heads; ++h) RmsNorm(q + h * hd, nullptr, hd, p.eps, q + h * hd);
    for (int64_t h = 0; h < p.n_kv_heads; ++h) RmsNorm(k + h * hd, nullptr, hd, p.eps, k + h * hd);
  }
  if (scale_q) Scale(q, q_scale, p.n_heads * hd);
}

}  // namespace herd::kernels::ref
