// Sampler tests: greedy, top-k / top-p / min-p cuts, repetition penalty, seeded determinism and the sampled
// distribution against the softmax it should follow.
#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

namespace herd::runtime {
namespace {

TEST(SamplerTest, GreedyPicksArgmaxLowestIdOnTies) {
  Sampler s(SamplingParams::Greedy(), 5);
  const float logits[5] = {1, 3, 2, 3, -1};
  EXPECT_EQ(s.Sample(logits, {}), 1);
}

TEST(SamplerTest, TopKOneIsGreedy) {
  SamplingParams p;
  p.temperature = 1.5f;
  p.top_k = 1;
  p.seed = 3;
  Sampler s(p, 4);
  const float logits[4] = {0.1f, 0.5f, 0.4f, 0.2f};
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.Sample(logits, {}), 1);
}

TEST(SamplerTest, TopPKeepsSmallestNucleus) {
  // probabilities ~ {0.6, 0.3, 0.1}: top-p 0.8 keeps ids 0 and 1 only.
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 0.8f;
  p.min_p = 0;
  p.seed = 11;
  Sampler s(p, 3);
  const float logits[3] = {std::log(0.6f), std::log(0.3f), std::log(0.1f)};
  std::map<int, int> counts;
  for (int i = 0; i < 3000; ++i) counts[s.Sample(logits, {})]++;
  EXPECT_EQ(counts[2], 0);
  EXPECT_NEAR(counts[0] / 3000.0, 2.0 / 3.0, 0.04);
}

TEST(SamplerTest, MinPDropsUnlikelyTokens) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.2f;  // keeps tokens with p >= 0.2 * p_max
  p.seed = 5;
  Sampler s(p, 3);
  const float logits[3] = {std::log(0.7f), std::log(0.25f), std::log(0.05f)};
  for (int i = 0; i < 2000; ++i) EXPECT_NE(s.Sample(logits, {}), 2);
}

TEST(SamplerTest, DistributionFollowsTemperatureSoftmax) {
  SamplingParams p;
  p.temperature = 0.5f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0;
  p.seed = 42;
  Sampler s(p, 3);
  const float logits[3] = {1.0f, 0.5f, 0.0f};
  double z = 0, want[3];
  for (int i = 0; i < 3; ++i) z += want[i] = std::exp(logits[i] / 0.5);
  std::vector<int> counts(3);
  const int n = 20000;
  for (int i = 0; i < n; ++i) counts[s.Sample(logits, {})]++;
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(counts[i] / double(n), want[i] / z, 0.015) << i;
}

TEST(SamplerTest, SameSeedSameSequence) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 1234;
  std::vector<float> logits(100);
  for (int i = 0; i < 100; ++i) logits[i] = std::sin(i * 0.7f);
  Sampler a(p, 100), b(p, 100);
  for (int i = 0; i < 200; ++i) ASSERT_EQ(a.Sample(logits.data(), {}), b.Sample(logits.data(), {}));
  p.seed = 1235;
  Sampler c(p, 100);
  Sampler a2(SamplingParams{p.temperature, p.top_k, p.top_p, p.min_p, p.repeat_penalty, p.repeat_last_n, 1234}, 100);
  int same = 0;
  for (int i = 0; i < 200; ++i) same += a2.Sample(logits.data(), {}) == c.Sample(logits.data(), {});
  EXPECT_LT(same, 200);
}

TEST(SamplerTest, RepetitionPenaltyDemotesRecentTokens) {
  SamplingParams p = SamplingParams::Greedy();
  p.repeat_penalty = 2.0f;
  p.repeat_last_n = 2;
  Sampler s(p, 3);
  const float logits[3] = {2.0f, 1.5f, -1.0f};
  const int32_t history1[] = {0};
  EXPECT_EQ(s.Sample(logits, history1), 1);  // 2.0 / 2 = 1.0 < 1.5
  const int32_t history2[] = {0, 2, 2};      // 0 is outside the last 2
  EXPECT_EQ(s.Sample(logits, history2), 0);
}

TEST(SamplerTest, ValidateRejectsBadValues) {
  SamplingParams p;
  p.temperature = -1;
  EXPECT_FALSE(p.Validate().ok());
  p = SamplingParams();
  p.top_p = 0;
  EXPECT_FALSE(p.Validate().ok());
  p = SamplingParams();
  p.min_p = 1.5f;
  EXPECT_FALSE(p.Validate().ok());
  p = SamplingParams();
  p.repeat_penalty = 0;
  EXPECT_FALSE(p.Validate().ok());
  EXPECT_TRUE(SamplingParams().Validate().ok());
}

}  // namespace
}  // namespace herd::runtime
