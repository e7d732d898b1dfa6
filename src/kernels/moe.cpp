#include "kernels/moe.h"

#include <algorithm>
#include <cmath>

#include "kernels/ops.h"

namespace herd::kernels {

void RouteTopK(const float* logits, int64_t n_experts, int64_t k, int64_t t_begin, int64_t t_end, int32_t* choice,
               float* gate) {
  for (int64_t t = t_begin; t < t_end; ++t) {
    const float* r = logits + t * n_experts;
    int32_t* c = choice + t * k;
    for (int64_t j = 0; j < k; ++j) {
      int32_t best = -1;
      for (int64_t e = 0; e < n_experts; ++e) {
        bool taken = false;
        for (int64_t i = 0; i < j; ++i) taken |= c[i] == e;
        if (!taken && (best < 0 || r[e] > r[best])) best = static_cast<int32_t>(e);  // a tie keeps the lower
      }
      c[j] = best;
      gate[t * k + j] = 1.0f / (1.0f + std::exp(-r[best]));
    }
  }
}

void GroupByExpert(const int32_t* choice, int64_t n_assign, int64_t n_experts, int64_t* offsets, int64_t* cursor,
                   int32_t* order, int32_t* slot) {
  std::fill(cursor, cursor + n_experts, 0);
  for (int64_t a = 0; a < n_assign; ++a) cursor[choice[a]]++;
  offsets[0] = 0;
  for (int64_t e = 0; e < n_experts; ++e) {
    offsets[e + 1] = offsets[e] + cursor[e];
    cursor[e] = offsets[e];
  }
  for (int64_t a = 0; a < n_assign; ++a) {
    const int64_t i = cursor[choice[a]]++;
    order[i] = static_cast<int32_t>(a);
    slot[a] = static_cast<int32_t>(i);
  }
}

void GatherScaled(const float* x, int64_t d, const int32_t* order, const float* gate, int64_t k, int64_t begin,
                  int64_t end, float* xe) {
  for (int64_t i = begin; i < end; ++i) {
    const int32_t a = order[i];
    const float g = gate[a];
    const float* src = x + (a / k) * d;
    float* dst = xe + i * d;
    for (int64_t j = 0; j < d; ++j) dst[j] = g * src[j];
  }
}

void ScatterAdd(const float* ye, int64_t d, const int32_t* slot, int64_t k, int64_t t_begin, int64_t t_end,
                float* out) {
  for (int64_t t = t_begin; t < t_end; ++t) {
    float* row = out + t * d;
    const int32_t* s = slot + t * k;
    // The k positions in increasing order, the smallest remaining one each time (k is small: 1 for Llama 4).
    for (int32_t j = 0, last = -1; j < k; ++j) {
      int32_t next = -1;
      for (int64_t i = 0; i < k; ++i) {
        if (s[i] > last && (next < 0 || s[i] < next)) next = s[i];
      }
      Add(row, ye + static_cast<int64_t>(next) * d, row, d);
      last = next;
    }
  }
}

}  // namespace herd::kernels
