// Scalar reference attention in double (llama4.md 2.6/2.7).
#include "kernels/ref/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace herd::kernels::ref {

void Attention(const float* q, int64_t q_stride, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const float* k,
               const float* v, int64_t kv_stride, const int64_t* key_begin, const int64_t* key_end, float scale,
               float* out, int64_t out_stride) {
  std::vector<double> scores, acc(static_cast<size_t>(head_dim));
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int64_t b = key_begin[t], n_keys = key_end[t] - b;
    scores.assign(static_cast<size_t>(n_keys), 0.0);
    for (int64_t g = 0; g < n_heads; ++g) {
      const float* qr = q + t * q_stride + g * head_dim;
      double m = -HUGE_VAL;
      for (int64_t j = 0; j < n_keys; ++j) {
        const float* kj = k + (b + j) * kv_stride;
        double dot = 0.0;
        for (int64_t i = 0; i < head_dim; ++i) dot += static_cast<double>(qr[i]) * kj[i];
        scores[j] = static_cast<double>(scale) * dot;
        m = std::max(m, scores[j]);
      }
      double sum = 0.0;
      for (int64_t j = 0; j < n_keys; ++j) {
        scores[j] = std::exp(scores[j] - m);
        sum += scores[j];
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < n_keys; ++j) {
        const float* vj = v + (b + j) * kv_stride;
        for (int64_t i = 0; i < head_dim; ++i) acc[i] += scores[j] * vj[i];
      }
      float* o = out + t * out_stride + g * head_dim;
      for (int64_t i = 0; i < head_dim; ++i) o[i] = static_cast<float>(acc[i] / sum);
    }
  }
}

}  // namespace herd::kernels::ref
