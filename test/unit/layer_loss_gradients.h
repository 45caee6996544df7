// weft/test/unit/layer_loss_gradients.h v1 — the gradient check of models whose layers add losses (the MoE routers'):
// a two-sequence batch and the objective Σ_t scale_t·loss_t plus each router loss times its coefficient, every
// parameter's gradient through the model's backward against central differences.
#pragma once
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "data/batch.h"
#include "model/gpt_model.h"
#include "test_util.h"

namespace weft::test {

// Two rows of six tokens (random ids and labels below `vocab`), each its own sequence.
inline Batch two_sequence_batch(std::mt19937& gen, int64_t vocab) {
  Batch b;
  b.rows = 2;
  b.seq = 6;
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> tokens(12), labels(12);
  for (auto& t : tokens) t = id(gen);
  for (auto& t : labels) t = id(gen);
  b.tokens = Tensor::from_vector(tokens, {12});
  b.labels = Tensor::from_vector(labels, {12});
  b.loss_mask = Tensor::from_vector<float>(std::vector<float>(12, 1.f), {12});
  b.positions = Tensor::from_vector<int32_t>({0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5}, {12});
  b.cu_seqlens = Tensor::from_vector<int32_t>({0, 6, 12}, {3});
  b.max_seqlen = 6;
  return b;
}

// The objective with the load-balancing and z-losses (and, where the model logs them, the device and communication
// balance losses) at moe's coefficients; checks every parameter's gradient and returns the parameters' names and
// groups, for the caller to count what the model holds.
inline std::vector<std::pair<std::string, ParamGroup>> check_layer_loss_gradients(const ModelSpec& spec,
                                                                                 const MoeOptions& moe, uint64_t seed) {
  auto tp = each_rank_alone("tp");
  LayerContext ctx{.tp = tp.get(), .dtype = DType::f64, .device = Device::cpu, .seed = seed, .moe = moe};
  GptModel model(spec, ctx, StageLayout::whole(spec));
  std::mt19937 gen(static_cast<uint32_t>(seed));
  const Batch batch = two_sequence_batch(gen, spec.vocab);
  const Tensor scale = random_tensor({12}, DType::f64, gen);
  const std::pair<const char*, double> coefficients[] = {{"load_balancing_loss", moe.aux_loss_coeff},
                                                         {"z_loss", moe.z_loss_coeff},
                                                         {"device_balance_loss", moe.device_balance_coeff},
                                                         {"comm_balance_loss", moe.comm_balance_coeff}};
  auto objective = [&](ModelSaved& s) {
    const Tensor losses = model.loss(model.forward_layers(model.embed(batch), batch, s), batch, s);
    double total = 0;
    for (const auto& [name, coeff] : coefficients)
      if (s.losses.sums.count(name)) total += coeff * s.losses.sums.at(name);
    for (int64_t t = 0; t < 12; ++t) total += scale.data<double>()[t] * losses.data<double>()[t];
    return total;
  };
  auto loss = [&] {
    ModelSaved s;
    return objective(s);
  };
  ModelSaved s;
  objective(s);
  EXPECT_TRUE(s.losses.sums.count("load_balancing_loss") && s.losses.sums.count("z_loss"));
  Tensor dx = model.loss_backward(batch, s, scale);
  dx = model.backward_layers(dx, batch, s);
  model.embed_backward(dx, batch);
  std::vector<std::pair<std::string, ParamGroup>> held;
  for (Parameter* p : model.parameters()) {
    held.emplace_back(p->name, p->group);
    Tensor value = p->value, grad = p->grad;
    if (p->name.find("word_embeddings") != std::string::npos || p->name.find("output_layer") != std::string::npos) {
      value = value.rows(0, spec.vocab);
      grad = grad.rows(0, spec.vocab);
    }
    expect_gradient(value, loss, grad, p->name, gen, 12);
  }
  return held;
}

}  // namespace weft::test
