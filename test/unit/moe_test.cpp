// weft/test/unit/moe_test.cpp v2 — the mixture-of-experts ops against their definitions, and MoE models' gradients
// (router, experts, shared expert, load-balancing and z-losses, capacity dropping) against finite differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "data/batch.h"
#include "model/gpt_model.h"
#include "model/moe.h"
#include "ops/ops.h"
#include "parallel/expert_dispatch.h"
#include "layer_loss_gradients.h"
#include "test_util.h"

using namespace weft;
using weft::test::check_layer_loss_gradients;
using weft::test::each_rank_alone;
using weft::test::expect_gradient;
using weft::test::random_tensor;
using weft::test::two_sequence_batch;

namespace {

std::vector<double> values(const Tensor& t) { return t.to_doubles(); }

// The definition: each token's k largest logits (ties to the lower index); weights the softmax of those k, or the
// softmax over all experts taken at them.
void reference_route(const Tensor& logits, int64_t k, bool pre_softmax, std::vector<int32_t>& experts,
                     std::vector<double>& probs) {
  const int64_t t = logits.size(0), n = logits.size(1);
  const std::vector<double> l = values(logits);
  for (int64_t i = 0; i < t; ++i) {
    std::vector<int32_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[i * n + a] > l[i * n + b]; });
    double all = 0, top = 0;
    for (int64_t e = 0; e < n; ++e) all += std::exp(l[i * n + e]);
    for (int64_t j = 0; j < k; ++j) top += std::exp(l[i * n + order[j]]);
    for (int64_t j = 0; j < k; ++j) {
      experts.push_back(order[j]);
      probs.push_back(std::exp(l[i * n + order[j]]) / (pre_softmax ? all : top));
    }
  }
}

}  // namespace

TEST(MoeOps, RoutingFollowsTheDefinition) {
  std::mt19937 gen(1);
  const Tensor logits = random_tensor({7, 6}, DType::f64, gen, 2.0);
  for (const bool pre : {false, true}) {
    Tensor probs = Tensor::empty({7, 3}, DType::f64), experts = Tensor::empty({7, 3}, DType::i32);
    cpu_ops().moe_route(probs, experts, logits, {.topk = 3, .pre_softmax = pre});
    std::vector<int32_t> want_e;
    std::vector<double> want_p;
    reference_route(logits, 3, pre, want_e, want_p);
    for (int64_t i = 0; i < 21; ++i) {
      EXPECT_EQ(experts.data<int32_t>()[i], want_e[i]) << "pre_softmax " << pre << " pair " << i;
      EXPECT_NEAR(probs.data<double>()[i], want_p[i], 1e-15) << "pre_softmax " << pre << " pair " << i;
    }
  }
  // Equal logits: the lower expert first.
  const Tensor tied = Tensor::from_vector<double>({0.5, 1.0, 1.0, 0.2}, {1, 4});
  Tensor probs = Tensor::empty({1, 2}, DType::f64), experts = Tensor::empty({1, 2}, DType::i32);
  cpu_ops().moe_route(probs, experts, tied, {.topk = 2});
  EXPECT_EQ(experts.data<int32_t>()[0], 1);
  EXPECT_EQ(experts.data<int32_t>()[1], 2);
}

TEST(MoeOps, RouterStatsFollowTheDefinition) {
  std::mt19937 gen(2);
  const Tensor logits = random_tensor({5, 4}, DType::f64, gen);
  Tensor probs = Tensor::empty({5, 2}, DType::f64), experts = Tensor::empty({5, 2}, DType::i32);
  cpu_ops().moe_route(probs, experts, logits, {.topk = 2});
  Tensor scores = Tensor::empty({4}, DType::f64), counts = Tensor::empty({4}, DType::f64), z = Tensor::empty({1}, DType::f64);
  cpu_ops().moe_router_stats(scores, counts, z, logits, experts);
  const std::vector<double> l = values(logits);
  std::vector<double> want_scores(4, 0.0), want_counts(4, 0.0);
  double want_z = 0;
  for (int t = 0; t < 5; ++t) {
    double sum = 0;
    for (int e = 0; e < 4; ++e) sum += std::exp(l[t * 4 + e]);
    for (int e = 0; e < 4; ++e) want_scores[e] += std::exp(l[t * 4 + e]) / sum;
    want_z += std::log(sum) * std::log(sum);
    for (int j = 0; j < 2; ++j) want_counts[experts.data<int32_t>()[t * 2 + j]] += 1;
  }
  for (int e = 0; e < 4; ++e) {
    EXPECT_NEAR(scores.data<double>()[e], want_scores[e], 1e-14);
    EXPECT_EQ(counts.data<double>()[e], want_counts[e]);
  }
  EXPECT_NEAR(z.data<double>()[0], want_z, 1e-13);
}

// ∂/∂logits of Σ dprobs·probs + Σ_t Σ_e w_e·softmax_te + z·Σ_t lse_t², both routing forms.
TEST(MoeOps, RouteBackwardMatchesFiniteDifferences) {
  for (const bool pre : {false, true}) {
    std::mt19937 gen(pre ? 3 : 4);
    Tensor logits = random_tensor({6, 5}, DType::f64, gen, 1.5);
    const Tensor dprobs = random_tensor({6, 2}, DType::f64, gen), aux = random_tensor({5}, DType::f64, gen);
    const double z = 0.37;
    const RouterParams p{.topk = 2, .pre_softmax = pre};
    auto objective = [&] {
      Tensor probs = Tensor::empty({6, 2}, DType::f64), experts = Tensor::empty({6, 2}, DType::i32);
      cpu_ops().moe_route(probs, experts, logits, p);
      Tensor scores = Tensor::empty({5}, DType::f64), counts = Tensor::empty({5}, DType::f64),
             zsum = Tensor::empty({1}, DType::f64);
      cpu_ops().moe_router_stats(scores, counts, zsum, logits, experts);
      double total = z * zsum.data<double>()[0];
      for (int i = 0; i < 12; ++i) total += dprobs.data<double>()[i] * probs.data<double>()[i];
      for (int e = 0; e < 5; ++e) total += aux.data<double>()[e] * scores.data<double>()[e];
      return total;
    };
    Tensor probs = Tensor::empty({6, 2}, DType::f64), experts = Tensor::empty({6, 2}, DType::i32);
    cpu_ops().moe_route(probs, experts, logits, p);
    Tensor dlogits = Tensor::empty({6, 5}, DType::f64);
    cpu_ops().moe_route_backward(dlogits, dprobs, probs, experts, logits, aux, z, p);
    expect_gradient(logits, objective, dlogits, pre ? "pre-softmax routing" : "top-k softmax routing", gen, 30);
  }
}

TEST(MoeOps, DispatchOrdersByExpertThenTokenAndPads) {
  // Token 1's second choice was dropped (-1).
  const Tensor experts = Tensor::from_vector<int32_t>({2, 0, 0, -1, 2, 1, 0, 2}, {4, 2});
  Tensor rows = Tensor::empty({4, 2}, DType::i32);
  std::vector<int64_t> counts;
  cpu_ops().moe_dispatch_plan(rows, counts, experts, 3, 0);
  EXPECT_EQ(counts, (std::vector<int64_t>{3, 1, 3}));
  // Expert 0: pairs (0,1), (1,0), (3,0) → rows 0, 1, 2; expert 1: (2,1) → 3; expert 2: (0,0), (2,0), (3,1) → 4, 5, 6.
  EXPECT_EQ(values(rows), (std::vector<double>{4, 0, 1, -1, 5, 3, 2, 6}));
  cpu_ops().moe_dispatch_plan(rows, counts, experts, 3, 4);
  EXPECT_EQ(counts, (std::vector<int64_t>{4, 4, 4}));
  EXPECT_EQ(values(rows), (std::vector<double>{8, 0, 1, -1, 9, 4, 2, 10}));
  EXPECT_THROW(cpu_ops().moe_dispatch_plan(rows, counts, experts, 3, 2), Error);  // 3 pairs do not fit 2 rows
}

TEST(MoeOps, PermuteCombineAndPairValuesAreInverse) {
  std::mt19937 gen(5);
  const Tensor x = random_tensor({4, 3}, DType::f64, gen);
  const Tensor rows = Tensor::from_vector<int32_t>({4, 0, 1, -1, 5, 3, 2, 6}, {4, 2});
  Tensor permuted = Tensor::zeros({7, 3}, DType::f64);
  cpu_ops().moe_permute(permuted, x, rows);
  for (int64_t p = 0; p < 8; ++p) {
    const int32_t r = rows.data<int32_t>()[p];
    if (r < 0) continue;
    for (int c = 0; c < 3; ++c) EXPECT_EQ(permuted.data<double>()[r * 3 + c], x.data<double>()[(p / 2) * 3 + c]);
  }
  Tensor combined = Tensor::empty({4, 3}, DType::f64);
  cpu_ops().moe_unpermute(combined, permuted, rows);
  for (int64_t t = 0; t < 4; ++t)
    for (int c = 0; c < 3; ++c)  // a token's rows are copies of it: the combine sums one per kept pair
      EXPECT_DOUBLE_EQ(combined.data<double>()[t * 3 + c], x.data<double>()[t * 3 + c] * (t == 1 ? 1 : 2));
  const Tensor pairs = random_tensor({4, 2}, DType::f64, gen);
  Tensor by_row = Tensor::zeros({7}, DType::f64), back = Tensor::empty({4, 2}, DType::f64);
  cpu_ops().moe_pair_values(by_row, pairs, rows, true);
  cpu_ops().moe_pair_values(back, by_row, rows, false);
  for (int64_t p = 0; p < 8; ++p)
    EXPECT_EQ(back.data<double>()[p], p == 3 ? 0.0 : pairs.data<double>()[p]) << "pair " << p;
}

TEST(MoeOps, GroupedGemmIsAGemmPerGroup) {
  std::mt19937 gen(6);
  const std::vector<int64_t> rows = {3, 0, 2};
  const Tensor a = random_tensor({5, 4}, DType::f64, gen);
  std::vector<Tensor> b, db;
  for (int g = 0; g < 3; ++g) {
    b.push_back(random_tensor({6, 4}, DType::f64, gen));
    db.push_back(random_tensor({6, 4}, DType::f64, gen));
  }
  const std::vector<Tensor> db_before = {db[0].clone(), db[1].clone(), db[2].clone()};
  Tensor c = Tensor::empty({5, 6}, DType::f64);
  cpu_ops().grouped_gemm(c, a, b, true, rows);
  const Tensor dc = random_tensor({5, 6}, DType::f64, gen);
  cpu_ops().grouped_gemm_wgrad(db, dc, a, rows, {1.0, 0.0, 0.0});
  for (int64_t r = 0, g = 0, at = 0; r < 5; ++r) {
    while (r >= at + rows[g]) at += rows[g++];
    for (int n = 0; n < 6; ++n) {
      double want = 0;
      for (int k = 0; k < 4; ++k) want += a.data<double>()[r * 4 + k] * b[g].data<double>()[n * 4 + k];
      EXPECT_NEAR(c.data<double>()[r * 6 + n], want, 1e-13);
    }
  }
  for (int g = 0, at = 0; g < 3; at += static_cast<int>(rows[g++]))
    for (int n = 0; n < 6; ++n)
      for (int k = 0; k < 4; ++k) {
        double want = g == 0 ? db_before[g].data<double>()[n * 4 + k] : 0.0;  // beta 1, then 0 (and no rows: zero)
        for (int64_t r = at; r < at + rows[g]; ++r) want += dc.data<double>()[r * 6 + n] * a.data<double>()[r * 4 + k];
        EXPECT_NEAR(db[g].data<double>()[n * 4 + k], want, 1e-13) << "group " << g;
      }
}

// Megatron's apply_router_token_dropping: capacity = ceil(t·k/E·factor); past it an expert keeps its most probable
// pairs, or its first ones.
TEST(MoeCapacity, DropsByProbabilityOrPosition) {
  // 4 tokens, top-2 of 2 experts, factor 0.5: capacity ceil(4·2/2·0.5) = 2 per expert.
  const Tensor probs = Tensor::from_vector<double>({0.6, 0.4, 0.7, 0.3, 0.45, 0.55, 0.8, 0.2}, {4, 2});
  const Tensor routed = Tensor::from_vector<int32_t>({0, 1, 0, 1, 1, 0, 0, 1}, {4, 2});
  Tensor by_prob = routed.clone(), by_position = routed.clone();
  EXPECT_EQ(drop_over_capacity(by_prob, probs, 2, 0.5, false), 2);
  drop_over_capacity(by_position, probs, 2, 0.5, true);
  // Expert 0 gets 0.6, 0.7, 0.55, 0.8: keeps 0.8 and 0.7; expert 1 gets 0.4, 0.3, 0.45, 0.2: keeps 0.45 and 0.4.
  EXPECT_EQ(values(by_prob), (std::vector<double>{-1, 1, 0, -1, 1, -1, 0, -1}));
  // By position: the first two tokens of each expert.
  EXPECT_EQ(values(by_position), (std::vector<double>{0, 1, 0, 1, -1, -1, -1, -1}));
}

namespace {

ModelSpec moe_spec(bool qwen) {
  ModelSpec s;
  s.family = qwen ? "qwen2_moe" : "mixtral";
  s.num_layers = qwen ? 3 : 2;
  s.hidden = 16;
  s.ffn = 20;
  s.heads = 4;
  s.groups = 2;
  s.head_dim = 4;
  s.vocab = 37;
  s.max_positions = 32;
  s.init_std = 0.3;
  s.num_experts = qwen ? 6 : 4;
  s.moe_ffn = qwen ? 8 : 12;
  s.moe_topk = qwen ? 3 : 2;
  s.moe_pre_softmax = qwen;
  if (qwen) {
    s.qkv_bias = true;
    s.moe_shared_ffn = 10;
    s.moe_shared_gate = true;
    s.mlp_only_layers = {1};
  }
  return s;
}

// Every parameter's gradient with the routers' losses in the objective (layer_loss_gradients.h); every expert of
// every MoE layer is there, in the expert group.
void check_moe_gradients(const ModelSpec& spec, const MoeOptions& moe, uint64_t seed) {
  int experts_seen = 0;
  for (const auto& [name, group] : check_layer_loss_gradients(spec, moe, seed)) experts_seen += group == ParamGroup::expert;
  EXPECT_EQ(experts_seen, 2 * spec.num_experts * spec.moe_layers());
}

}  // namespace

TEST(MoeGradients, MixtralStyleWithAuxAndZLosses) {
  check_moe_gradients(moe_spec(false), {.aux_loss_coeff = 0.3, .z_loss_coeff = 0.05}, 31);
}

TEST(MoeGradients, QwenStyleSharedGatedExpertDenseLayerPreSoftmax) {
  check_moe_gradients(moe_spec(true), {.aux_loss_coeff = 0.2, .z_loss_coeff = 0.1}, 32);
}

TEST(MoeGradients, CapacityDroppingAndPadding) {
  for (const bool position : {false, true})
    check_moe_gradients(moe_spec(false), {.aux_loss_coeff = 0.1, .capacity_factor = 0.75,
                                          .drop_by_position = position, .pad_to_capacity = position},
                        33);
}

// Recomputation of an MoE model (the experts' SwiGLU under selective, whole layers under full, their routing and
// dispatch rerun) gives the same gradients bit for bit, and counts the routers' losses once.
TEST(MoeGradients, RecomputationGivesTheSameBits) {
  const ModelSpec spec = moe_spec(true);
  auto tp = each_rank_alone("tp");
  std::mt19937 gen(7);
  const Batch batch = two_sequence_batch(gen, spec.vocab);
  const Tensor scale = random_tensor({12}, DType::f64, gen);
  std::map<Recompute, std::vector<std::vector<double>>> grads;
  std::map<Recompute, double> aux;
  for (Recompute mode : {Recompute::none, Recompute::selective, Recompute::full}) {
    LayerContext ctx{.tp = tp.get(), .dtype = DType::f64, .device = Device::cpu, .seed = 5, .recompute = mode,
                     .moe = {.aux_loss_coeff = 0.1, .z_loss_coeff = 0.01}};
    GptModel model(spec, ctx, StageLayout::whole(spec));
    ModelSaved s;
    model.loss(model.forward_layers(model.embed(batch), batch, s), batch, s);
    Tensor dx = model.loss_backward(batch, s, scale);
    dx = model.backward_layers(dx, batch, s);
    model.embed_backward(dx, batch);
    aux[mode] = s.losses.sums.at("load_balancing_loss");
    for (Parameter* p : model.parameters()) grads[mode].push_back(p->grad.to_doubles());
  }
  EXPECT_EQ(grads[Recompute::selective], grads[Recompute::none]);
  EXPECT_EQ(grads[Recompute::full], grads[Recompute::none]);
  EXPECT_EQ(aux[Recompute::full], aux[Recompute::none]);
}
