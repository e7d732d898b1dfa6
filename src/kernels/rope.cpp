// The RoPE cos/sin table of one position (kernels/rope.h; llama4.md 2.5 "Angles", 2.13): scalar code, since the
// decoder builds it once per token and batch, not per head.
#include "kernels/rope.h"

#include <cmath>

namespace herd::kernels {

void RopeCosSin(const float* inv_freq, int64_t n_pairs, int64_t pos, float* cos, float* sin) {
  const float p = static_cast<float>(pos);
  for (int64_t i = 0; i < n_pairs; ++i) {
    const float angle = p * inv_freq[i];  // fp32 product, as the references compute it
    cos[i] = std::cos(angle);
    sin[i] = std::sin(angle);
  }
}

}  // namespace herd::kernels
