// Tests of kernels/moe.h against straightforward references: top-k by a stable sort of each token's logits, the
// grouping by a per-expert scan, and the scatter by the sequential loop over sorted positions that the decoder
// ran before these kernels existed. Random shapes, logits drawn from a few values so that ties are common, and
// every function run over several splits of its range (the results must not depend on the split).
#include "kernels/moe.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/kernels_test_util.h"

namespace herd::kernels {
namespace {

using testing::BaseSeed;

struct Shape {
  int64_t n_tokens, n_experts, k, d;
};

std::vector<Shape> RandomShapes(std::mt19937_64& rng) {
  std::vector<Shape> shapes = {{1, 16, 1, 64}, {7, 128, 1, 32}, {33, 8, 2, 48}, {5, 4, 4, 16}, {0, 16, 1, 8}};
  for (int i = 0; i < 20; ++i) {
    const int64_t e = 1 + static_cast<int64_t>(rng() % 40);
    shapes.push_back({static_cast<int64_t>(rng() % 70), e, 1 + static_cast<int64_t>(rng() % e),
                      1 + static_cast<int64_t>(rng() % 80)});
  }
  return shapes;
}

// Splits [0, n) into pieces of random lengths and calls fn(begin, end) on each, in a random order.
template <class Fn>
void InPieces(int64_t n, std::mt19937_64& rng, Fn&& fn) {
  std::vector<std::pair<int64_t, int64_t>> pieces;
  for (int64_t b = 0; b < n;) {
    const int64_t e = std::min(n, b + 1 + static_cast<int64_t>(rng() % 9));
    pieces.emplace_back(b, e);
    b = e;
  }
  std::shuffle(pieces.begin(), pieces.end(), rng);
  for (auto [b, e] : pieces) fn(b, e);
}

TEST(MoeKernels, RouteTopKIsAStableDescendingSort) {
  std::mt19937_64 rng(BaseSeed());
  for (const Shape& s : RandomShapes(rng)) {
    SCOPED_TRACE(::testing::Message() << "tokens " << s.n_tokens << " experts " << s.n_experts << " k " << s.k);
    std::vector<float> logits(static_cast<size_t>(s.n_tokens * s.n_experts));
    for (float& v : logits) v = static_cast<float>(static_cast<int>(rng() % 7) - 3) * 0.5f;  // many ties
    std::vector<int32_t> choice(static_cast<size_t>(s.n_tokens * s.k), -1);
    std::vector<float> gate(choice.size());
    InPieces(s.n_tokens, rng, [&](int64_t b, int64_t e) {
      RouteTopK(logits.data(), s.n_experts, s.k, b, e, choice.data(), gate.data());
    });
    for (int64_t t = 0; t < s.n_tokens; ++t) {
      std::vector<int32_t> idx(static_cast<size_t>(s.n_experts));
      std::iota(idx.begin(), idx.end(), 0);
      const float* r = logits.data() + t * s.n_experts;
      std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return r[a] > r[b]; });
      for (int64_t j = 0; j < s.k; ++j) {
        ASSERT_EQ(choice[t * s.k + j], idx[j]) << "token " << t << " choice " << j;
        const double want = 1.0 / (1.0 + std::exp(-static_cast<double>(r[idx[j]])));
        EXPECT_NEAR(gate[t * s.k + j], want, 1e-6);
      }
    }
  }
}

TEST(MoeKernels, RouteTopKWithNaN) {
  // A NaN as the first expert left is kept (nothing compares greater than it); elsewhere it is never chosen.
  const float nan = std::nanf("");
  const float logits[2][4] = {{nan, 1.0f, 2.0f, 0.5f}, {0.0f, nan, -1.0f, 3.0f}};
  int32_t choice[4];
  float gate[4];
  RouteTopK(&logits[0][0], 4, 2, 0, 2, choice, gate);
  EXPECT_EQ(choice[0], 0);
  EXPECT_TRUE(std::isnan(gate[0]));
  EXPECT_EQ(choice[1], 2);
  EXPECT_EQ(choice[2], 3);
  EXPECT_EQ(choice[3], 0);
}

TEST(MoeKernels, GroupByExpertIsAStableCountingSort) {
  std::mt19937_64 rng(BaseSeed() + 1);
  for (const Shape& s : RandomShapes(rng)) {
    const int64_t n_assign = s.n_tokens * s.k;
    std::vector<int32_t> choice(static_cast<size_t>(n_assign));
    for (int32_t& c : choice) c = static_cast<int32_t>(rng() % s.n_experts);
    std::vector<int64_t> offsets(static_cast<size_t>(s.n_experts + 1), -7), cursor(static_cast<size_t>(s.n_experts));
    std::vector<int32_t> order(static_cast<size_t>(n_assign), -1), slot(static_cast<size_t>(n_assign), -1);
    GroupByExpert(choice.data(), n_assign, s.n_experts, offsets.data(), cursor.data(), order.data(), slot.data());
    int64_t i = 0;
    for (int64_t e = 0; e < s.n_experts; ++e) {
      ASSERT_EQ(offsets[e], i);
      for (int64_t a = 0; a < n_assign; ++a) {
        if (choice[a] != e) continue;
        ASSERT_EQ(order[i], a) << "expert " << e;
        ASSERT_EQ(slot[a], i);
        ++i;
      }
    }
    ASSERT_EQ(offsets[s.n_experts], n_assign);
  }
}

TEST(MoeKernels, GatherAndScatterMatchTheSequentialLoops) {
  std::mt19937_64 rng(BaseSeed() + 2);
  std::normal_distribution<float> normal;
  for (const Shape& s : RandomShapes(rng)) {
    SCOPED_TRACE(::testing::Message() << "tokens " << s.n_tokens << " experts " << s.n_experts << " k " << s.k << " d "
                                      << s.d);
    const int64_t n_assign = s.n_tokens * s.k, d = s.d;
    std::vector<float> logits(static_cast<size_t>(s.n_tokens * s.n_experts));
    for (float& v : logits) v = normal(rng);
    std::vector<int32_t> choice(static_cast<size_t>(n_assign)), order(choice.size()), slot(choice.size());
    std::vector<float> gate(choice.size());
    RouteTopK(logits.data(), s.n_experts, s.k, 0, s.n_tokens, choice.data(), gate.data());
    std::vector<int64_t> offsets(static_cast<size_t>(s.n_experts + 1)), cursor(static_cast<size_t>(s.n_experts));
    GroupByExpert(choice.data(), n_assign, s.n_experts, offsets.data(), cursor.data(), order.data(), slot.data());

    std::vector<float> x(static_cast<size_t>(s.n_tokens * d));
    for (float& v : x) v = normal(rng);
    std::vector<float> xe(static_cast<size_t>(n_assign * d), NAN);
    InPieces(n_assign, rng,
             [&](int64_t b, int64_t e) { GatherScaled(x.data(), d, order.data(), gate.data(), s.k, b, e, xe.data()); });
    for (int64_t i = 0; i < n_assign; ++i) {
      for (int64_t j = 0; j < d; ++j) {
        const float want = gate[order[i]] * x[(order[i] / s.k) * d + j];
        ASSERT_EQ(std::memcmp(&xe[i * d + j], &want, 4), 0) << "row " << i << " col " << j;
      }
    }

    // The expert outputs: random rows, with large and small values so that the order of the adds shows.
    std::vector<float> ye(static_cast<size_t>(n_assign * d));
    for (float& v : ye) v = normal(rng) * (rng() % 2 ? 1e4f : 1e-3f);
    std::vector<float> base(static_cast<size_t>(s.n_tokens * d));
    for (float& v : base) v = normal(rng);
    std::vector<float> want = base, got = base;
    for (int64_t i = 0; i < n_assign; ++i) {  // the decoder's loop before moe.h: positions in increasing order
      const int64_t t = order[i] / s.k;
      for (int64_t j = 0; j < d; ++j) want[t * d + j] = want[t * d + j] + ye[i * d + j];
    }
    InPieces(s.n_tokens, rng,
             [&](int64_t b, int64_t e) { ScatterAdd(ye.data(), d, slot.data(), s.k, b, e, got.data()); });
    ASSERT_TRUE(want.empty() || std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) == 0);
  }
}

TEST(MoeKernels, ScatterAddWithManyChoices) {
  // k = 70 choices per token: still added in increasing position.
  const int64_t k = 70, n = 3, d = 5, n_exp = 80;
  std::mt19937_64 rng(BaseSeed() + 3);
  std::normal_distribution<float> normal;
  std::vector<float> logits(static_cast<size_t>(n * n_exp));
  for (float& v : logits) v = normal(rng);
  std::vector<int32_t> choice(static_cast<size_t>(n * k)), order(choice.size()), slot(choice.size());
  std::vector<float> gate(choice.size());
  RouteTopK(logits.data(), n_exp, k, 0, n, choice.data(), gate.data());
  std::vector<int64_t> offsets(n_exp + 1), cursor(n_exp);
  GroupByExpert(choice.data(), n * k, n_exp, offsets.data(), cursor.data(), order.data(), slot.data());
  std::vector<float> ye(static_cast<size_t>(n * k * d));
  for (float& v : ye) v = normal(rng) * (rng() % 2 ? 1e4f : 1e-3f);
  std::vector<float> want(static_cast<size_t>(n * d), 0.5f), got = want;
  for (int64_t i = 0; i < n * k; ++i) {
    for (int64_t j = 0; j < d; ++j) want[(order[i] / k) * d + j] += ye[i * d + j];
  }
  ScatterAdd(ye.data(), d, slot.data(), k, 0, n, got.data());
  EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace herd::kernels
