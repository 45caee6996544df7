// weft/test/unit/deepseek_test.cpp v1 — DeepSeek-V2's pieces against their definitions: group-limited, scaled routing
// (forward as DeepSeek's gate writes it, backward by finite differences), YaRN's frequencies and scales, latent
// attention's head layout, and a whole DeepSeek-style model's gradients (latent attention with a query latent, YaRN,
// a dense first layer, grouped routing, shared experts) against central differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>
#include <random>

#include "data/batch.h"
#include "model/gpt_model.h"
#include "model/latent_attention.h"
#include "model/moe.h"
#include "ops/ops.h"
#include "layer_loss_gradients.h"
#include "test_util.h"

using namespace weft;
using weft::test::check_layer_loss_gradients;
using weft::test::expect_gradient;
using weft::test::random_tensor;

namespace {

// DeepSeek-V2's group_limited_greedy gate as its reference code writes it: softmax over all experts, each group's
// best score, the topk_group best groups kept (others' scores zeroed), the top-k of what is left, times the scale.
void reference_group_route(const std::vector<double>& l, int64_t n, int64_t groups, int64_t group_topk, int64_t k,
                           double scale, std::vector<int32_t>& experts, std::vector<double>& weights) {
  std::vector<double> s(static_cast<size_t>(n));
  const double m = *std::max_element(l.begin(), l.end());
  double sum = 0;
  for (int64_t e = 0; e < n; ++e) sum += (s[e] = std::exp(l[e] - m));
  for (double& v : s) v /= sum;
  const int64_t size = n / groups;
  std::vector<int32_t> order(static_cast<size_t>(groups));
  std::iota(order.begin(), order.end(), 0);
  auto best = [&](int32_t g) { return *std::max_element(s.begin() + g * size, s.begin() + (g + 1) * size); };
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return best(a) > best(b); });
  std::vector<double> masked(static_cast<size_t>(n), 0.0);
  for (int64_t j = 0; j < group_topk; ++j)
    std::copy(s.begin() + order[j] * size, s.begin() + (order[j] + 1) * size, masked.begin() + order[j] * size);
  std::vector<int32_t> top(static_cast<size_t>(n));
  std::iota(top.begin(), top.end(), 0);
  std::stable_sort(top.begin(), top.end(), [&](int32_t a, int32_t b) { return masked[a] > masked[b]; });
  for (int64_t j = 0; j < k; ++j) {
    experts.push_back(top[j]);
    weights.push_back(masked[top[j]] * scale);
  }
}

}  // namespace

TEST(DeepseekRouting, GroupLimitedScaledRoutingFollowsDeepseeksGate) {
  std::mt19937 gen(11);
  const int64_t t = 9, n = 12;
  const Tensor logits = random_tensor({t, n}, DType::f64, gen, 2.0);
  const RouterParams p{.topk = 3, .pre_softmax = true, .num_groups = 4, .group_topk = 2, .scaling = 16.0};
  Tensor probs = Tensor::empty({t, 3}, DType::f64), experts = Tensor::empty({t, 3}, DType::i32);
  cpu_ops().moe_route(probs, experts, logits, p);
  const std::vector<double> l = logits.to_doubles();
  int outside_best_groups = 0;
  for (int64_t i = 0; i < t; ++i) {
    std::vector<int32_t> want_e;
    std::vector<double> want_w;
    reference_group_route({l.begin() + i * n, l.begin() + (i + 1) * n}, n, 4, 2, 3, 16.0, want_e, want_w);
    for (int64_t j = 0; j < 3; ++j) {
      EXPECT_EQ(experts.data<int32_t>()[i * 3 + j], want_e[j]) << "token " << i << " choice " << j;
      EXPECT_NEAR(probs.data<double>()[i * 3 + j], want_w[j], 1e-13) << "token " << i << " choice " << j;
    }
    // Would the plain top-3 have picked an expert of a third group? Then the groups made a difference.
    std::vector<int32_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[i * n + a] > l[i * n + b]; });
    outside_best_groups += !std::equal(order.begin(), order.begin() + 3, want_e.begin());
  }
  EXPECT_GT(outside_best_groups, 0) << "the logits never made the group limit matter";
}

TEST(DeepseekRouting, GroupLimitedScaledRouteBackwardMatchesFiniteDifferences) {
  for (const bool pre : {true, false}) {
    std::mt19937 gen(pre ? 5 : 6);
    Tensor logits = random_tensor({6, 8}, DType::f64, gen, 1.5);
    const Tensor dprobs = random_tensor({6, 2}, DType::f64, gen), aux = random_tensor({8}, DType::f64, gen);
    const RouterParams p{.topk = 2, .pre_softmax = pre, .num_groups = 4, .group_topk = 2, .scaling = 2.5};
    auto objective = [&] {
      Tensor probs = Tensor::empty({6, 2}, DType::f64), experts = Tensor::empty({6, 2}, DType::i32);
      cpu_ops().moe_route(probs, experts, logits, p);
      Tensor scores = Tensor::empty({8}, DType::f64), counts = Tensor::empty({8}, DType::f64),
             zsum = Tensor::empty({1}, DType::f64);
      cpu_ops().moe_router_stats(scores, counts, zsum, logits, experts);
      double total = 0.2 * zsum.data<double>()[0];
      for (int i = 0; i < 12; ++i) total += dprobs.data<double>()[i] * probs.data<double>()[i];
      for (int e = 0; e < 8; ++e) total += aux.data<double>()[e] * scores.data<double>()[e];
      return total;
    };
    Tensor probs = Tensor::empty({6, 2}, DType::f64), experts = Tensor::empty({6, 2}, DType::i32);
    cpu_ops().moe_route(probs, experts, logits, p);
    Tensor dlogits = Tensor::empty({6, 8}, DType::f64);
    cpu_ops().moe_route_backward(dlogits, dprobs, probs, experts, logits, aux, 0.2, p);
    expect_gradient(logits, objective, dlogits, pre ? "grouped pre-softmax routing" : "grouped top-k routing", gen, 48);
  }
}

// YaRN as DeepSeek-V2's reference code computes it (yarn_find_correction_range, yarn_linear_ramp_mask, mscale).
TEST(DeepseekYarn, FrequenciesAndScalesFollowTheReference) {
  ModelSpec s;
  s.kv_lora_rank = 16;
  s.qk_nope_head_dim = 8;
  s.qk_rope_head_dim = 64;
  s.v_head_dim = 8;
  s.rope_theta = 10000;
  s.rope_scaling = {.type = "yarn", .factor = 40, .original_max_position_embeddings = 4096, .beta_fast = 32,
                    .beta_slow = 1, .mscale = 0.707, .mscale_all_dim = 0.707};
  s = s.resolved();
  const std::vector<double> inv = rope_inv_freq(s);
  const double dim = 64, base = 10000;
  auto correction_dim = [&](double rotations) {
    return dim * std::log(4096 / (rotations * 2 * std::numbers::pi)) / (2 * std::log(base));
  };
  const double low = std::max(std::floor(correction_dim(32)), 0.0), high = std::min(std::ceil(correction_dim(1)), 63.0);
  ASSERT_EQ(inv.size(), 32u);
  for (int i = 0; i < 32; ++i) {
    const double extra = 1 / std::pow(base, 2 * i / dim), inter = extra / 40;
    const double mask = 1 - std::clamp((i - low) / (high - low), 0.0, 1.0);
    EXPECT_NEAR(inv[i], inter * (1 - mask) + extra * mask, 1e-15 * extra) << "pair " << i;
  }
  EXPECT_LT(inv[31], inv[0] / 1000);  // the slow end interpolated by the factor
  const double m = 0.1 * 0.707 * std::log(40.0) + 1;
  EXPECT_NEAR(s.softmax_scale(), m * m / std::sqrt(72.0), 1e-15);
}

// mla_split places each head's plain dims, its rotated query dims and the shared rotated key dims, and mla_merge is
// its transpose: <merge(g), x> = <g, split(x)> for any x and g.
TEST(DeepseekLayout, MlaMergeIsTheTransposeOfMlaSplit) {
  std::mt19937 gen(3);
  const int64_t t = 5, H = 3, dn = 4, dr = 6, dv = 5, d = dn + dr;
  const Tensor q = random_tensor({t, H * d}, DType::f64, gen), kv = random_tensor({t, H * (dn + dv)}, DType::f64, gen),
               kr = random_tensor({t, dr}, DType::f64, gen);
  const Tensor cos = random_tensor({8, dr / 2}, DType::f64, gen), sin = random_tensor({8, dr / 2}, DType::f64, gen);
  const Tensor pos = Tensor::from_vector<int32_t>({3, 0, 7, 2, 2}, {t});
  Tensor qh = Tensor::empty({t, H, d}, DType::f64), kh = Tensor::empty({t, H, d}, DType::f64),
         vh = Tensor::empty({t, H, dv}, DType::f64);
  cpu_ops().mla_split(qh, kh, vh, q, kv, kr, pos, cos, sin);
  // Plain dims copied; the key's rotated dims the same for every head.
  EXPECT_EQ(qh.data<double>()[(1 * H + 2) * d + 3], q.data<double>()[(1 * H + 2) * d + 3]);
  EXPECT_EQ(kh.data<double>()[(4 * H + 0) * d + dn + 1], kh.data<double>()[(4 * H + 2) * d + dn + 1]);
  EXPECT_EQ(vh.data<double>()[(2 * H + 1) * dv + 4], kv.data<double>()[(2 * H + 1) * (dn + dv) + dn + 4]);
  const Tensor gq = random_tensor(qh.shape(), DType::f64, gen), gk = random_tensor(kh.shape(), DType::f64, gen),
               gv = random_tensor(vh.shape(), DType::f64, gen);
  Tensor dq = Tensor::empty(q.shape(), DType::f64), dkv = Tensor::empty(kv.shape(), DType::f64),
         dkr = Tensor::empty(kr.shape(), DType::f64);
  cpu_ops().mla_merge(dq, dkv, dkr, gq, gk, gv, pos, cos, sin);
  auto dot = [](const Tensor& a, const Tensor& b) {
    double s = 0;
    for (int64_t i = 0; i < a.numel(); ++i) s += a.data<double>()[i] * b.data<double>()[i];
    return s;
  };
  const double lhs = dot(dq, q) + dot(dkv, kv) + dot(dkr, kr), rhs = dot(gq, qh) + dot(gk, kh) + dot(gv, vh);
  EXPECT_NEAR(lhs, rhs, 1e-12 * std::abs(rhs));
}

namespace {

ModelSpec deepseek_spec(bool q_latent) {
  ModelSpec s;
  s.family = "deepseek_v2";
  s.num_layers = 2;
  s.hidden = 16;
  s.ffn = 20;
  s.heads = 2;
  s.vocab = 37;
  s.max_positions = 32;
  s.init_std = 0.3;
  s.q_lora_rank = q_latent ? 8 : 0;
  s.kv_lora_rank = 6;
  s.qk_nope_head_dim = 4;
  s.qk_rope_head_dim = 4;
  s.v_head_dim = 6;
  s.rope_scaling = {.type = "yarn", .factor = 4, .original_max_position_embeddings = 8, .beta_fast = 32,
                    .beta_slow = 1, .mscale = 0.9, .mscale_all_dim = 0.7};
  s.num_experts = 4;
  s.moe_ffn = 6;
  s.moe_topk = 2;
  s.moe_pre_softmax = true;
  s.moe_num_groups = 2;
  s.moe_group_topk = 1;
  s.moe_topk_scaling = 1.5;
  s.moe_shared_ffn = 12;
  s.first_k_dense_replace = 1;
  return s.resolved();
}

// Every parameter's gradient with all four router losses in the objective (layer_loss_gradients.h); every layer
// has latent attention.
void check_deepseek_gradients(const ModelSpec& spec, uint64_t seed) {
  const MoeOptions moe{.aux_loss_coeff = 0.3, .z_loss_coeff = 0.05, .device_balance_coeff = 0.4,
                       .comm_balance_coeff = 0.2};
  int latent = 0;
  for (const auto& [name, group] : check_layer_loss_gradients(spec, moe, seed))
    latent += name.find("linear_kv_down_proj") != std::string::npos;
  EXPECT_EQ(latent, spec.num_layers);
}

}  // namespace

TEST(DeepseekGradients, V2StyleQueryLatentYarnGroupsSharedExperts) { check_deepseek_gradients(deepseek_spec(true), 41); }

TEST(DeepseekGradients, V2LiteStyleQueriesFromTheHiddenState) { check_deepseek_gradients(deepseek_spec(false), 42); }

// DeepSeek-V2's device- and communication-balance losses, worked out by hand: 4 experts in 2 groups, 3 tokens, top-2
// from at most 1 group each.
TEST(DeepseekBalance, DeviceAndCommunicationLossesFollowThePaper) {
  const std::vector<double> score_sum = {0.9, 0.6, 0.3, 1.2}, counts = {2, 2, 0, 2}, reached = {2, 1};
  const GroupBalance b = group_balance(score_sum, counts, reached, 2, 1, 3.0);
  // f_e = 4/(2·3)·count_e = {4/3, 4/3, 0, 4/3}; group means {4/3, 2/3}; P_g = {1.5/3, 1.5/3}.
  EXPECT_NEAR(b.device, 4.0 / 3 * 0.5 + 2.0 / 3 * 0.5, 1e-15);
  // f''_g = 2/(1·3)·reached_g = {4/3, 2/3}.
  EXPECT_NEAR(b.comm, 4.0 / 3 * 0.5 + 2.0 / 3 * 0.5, 1e-15);
  EXPECT_NEAR(b.device_weight[1], 4.0 / 3 / 3, 1e-15);
  EXPECT_NEAR(b.comm_weight[3], 2.0 / 3 / 3, 1e-15);
  // Perfect balance gives 1: 2 tokens, each with its 2 experts in its own group, probability spread evenly.
  const GroupBalance even = group_balance({0.5, 0.5, 0.5, 0.5}, {1, 1, 1, 1}, {1, 1}, 2, 1, 2.0);
  EXPECT_NEAR(even.device, 1.0, 1e-15);
  EXPECT_NEAR(even.comm, 1.0, 1e-15);
}
