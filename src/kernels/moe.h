// The routing half of a mixture-of-experts layer (llama4.md 2.9), the loops around the experts' matrix products:
// each token's top-k experts and their sigmoid gates, the assignments grouped by expert, the expert inputs
// gathered and scaled by their gates, and the expert outputs added back to their tokens. Every function works on
// a range of tokens or assignments, so a caller can split the work over threads; the results do not depend on
// the split (each output element is computed by one call, in a fixed order). Plain scalar code: these loops move
// a few rows per token and are a fraction of a percent of a step (bench/RESULTS.md, per-op profile); moe_test
// checks them against straightforward references on random inputs with ties.
// All functions are thread-safe for disjoint output ranges and allocate nothing.
#pragma once

#include <cstdint>

namespace herd::kernels {

// The top-k of each token t in [t_begin, t_end): logits is [n_tokens, n_experts]; choice[t * k + j] is the
// expert with the j-th largest logit (the lowest index first among equal logits; a NaN compares as nothing,
// so it is kept only where it is the first expert left) and gate[t * k + j] = sigmoid(its logit) = 1 / (1 +
// exp(-logit)). 1 <= k <= n_experts.
void RouteTopK(const float* logits, int64_t n_experts, int64_t k, int64_t t_begin, int64_t t_end, int32_t* choice,
               float* gate);

// Groups the n_assign assignments (token t's j-th choice is assignment t * k + j) by expert, a stable counting
// sort: the assignments of expert e are order[offsets[e] .. offsets[e + 1]) in increasing assignment index, and
// slot[a] is assignment a's position in order (order[slot[a]] == a). offsets: [n_experts + 1]; cursor: scratch
// [n_experts]; order, slot: [n_assign]. Every choice must be in [0, n_experts). Serial: O(n_assign + n_experts).
void GroupByExpert(const int32_t* choice, int64_t n_assign, int64_t n_experts, int64_t* offsets, int64_t* cursor,
                   int32_t* order, int32_t* slot);

// The expert inputs: for positions i in [begin, end), row i of xe = gate[a] * row (a / k) of x, a = order[i]
// (rows of d floats; each product correctly rounded, as Scale).
void GatherScaled(const float* x, int64_t d, const int32_t* order, const float* gate, int64_t k, int64_t begin,
                  int64_t end, float* xe);

// The expert outputs back to their tokens: for tokens t in [t_begin, t_end), row t of out += rows slot[t * k + j]
// of ye for j < k, added one at a time in increasing position (that is, in expert order), each add correctly
// rounded. The order is fixed by the assignments alone, so the sums do not depend on how tokens are split.
void ScatterAdd(const float* ye, int64_t d, const int32_t* slot, int64_t k, int64_t t_begin, int64_t t_end, float* out);

}  // namespace herd::kernels
