// Scalar reference RoPE rotation (llama4.md 2.5, 10.2).
#include "kernels/ref/rope.h"

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

}  // namespace herd::kernels::ref
