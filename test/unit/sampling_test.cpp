// weft/test/unit/sampling_test.cpp v1 — the next-token filters against HF transformers' definitions (written out
// here), and draws that follow the filtered distribution and a seed.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "generate/sampling.h"

using namespace weft;

TEST(Sampling, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  std::vector<double> l = {2.0, -1.0, 0.5, 3.0};
  apply_repetition_penalty(l, {0, 1, 1}, 2.0);  // a token seen twice is penalised once
  EXPECT_EQ(l, (std::vector<double>{1.0, -2.0, 0.5, 3.0}));
}

TEST(Sampling, TopKKeepsTheKLargestAndTheirTies) {
  std::vector<double> l = {1.0, 4.0, 3.0, 3.0, 0.5};
  top_k_filter(l, 2);  // the 2nd largest is 3.0: both 3.0s stay (HF removes logits < the k-th)
  EXPECT_EQ(l[0], -INFINITY);
  EXPECT_EQ(l[1], 4.0);
  EXPECT_EQ(l[2], 3.0);
  EXPECT_EQ(l[3], 3.0);
  EXPECT_EQ(l[4], -INFINITY);
}

TEST(Sampling, TopPKeepsTheSmallestSetReachingP) {
  // Probabilities 0.5, 0.25, 0.125, 0.125 (logits as their logs).
  const std::vector<double> base = {std::log(0.125), std::log(0.5), std::log(0.125), std::log(0.25)};
  std::vector<double> l = base;
  top_p_filter(l, 0.7);  // ascending cumulative 0.125, 0.25, 0.5, 1.0: those <= 0.3 go (the two 0.125s)
  EXPECT_EQ(l[0], -INFINITY);
  EXPECT_EQ(l[2], -INFINITY);
  EXPECT_EQ(l[1], base[1]);
  EXPECT_EQ(l[3], base[3]);
  l = base;
  top_p_filter(l, 0.75);  // 1 − p = 0.25 exactly: the cumulative 0.25 of the two smallest is removed too
  EXPECT_EQ(l[3], base[3]);
  EXPECT_EQ(l[0], -INFINITY);
  l = base;
  top_p_filter(l, 0.01);  // the most probable token always stays
  EXPECT_EQ(l[1], base[1]);
  EXPECT_EQ(l[3], -INFINITY);
}

TEST(Sampling, GreedyTakesTheFirstLargestAndDrawsFollowTheFilteredDistribution) {
  std::mt19937_64 gen(1);
  EXPECT_EQ(next_token({0.1, 0.9, 0.9, 0.2}, {}, {}, gen), 1);
  // Temperature 1, top-k 2 over probabilities ∝ {1, 2, 4, 8}: only ids 2 and 3 are drawn, 1 : 2.
  const std::vector<double> l = {0.0, std::log(2.0), std::log(4.0), std::log(8.0)};
  std::map<int32_t, int> counts;
  for (int i = 0; i < 30000; ++i) ++counts[next_token(l, {}, {.temperature = 1.0, .top_k = 2}, gen)];
  EXPECT_EQ(counts.size(), 2u);
  EXPECT_NEAR(double(counts[3]) / counts[2], 2.0, 0.1);
  // The same seed, the same draws.
  std::mt19937_64 a(7), b(7);
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(next_token(l, {}, {.temperature = 0.7}, a), next_token(l, {}, {.temperature = 0.7}, b));
}
