// weft/test/unit/model_test.cpp v1 — every layer's backward, through the whole model, against central finite
// differences in double precision; parameter init independent of layout.
#include <gtest/gtest.h>

#include <random>

#include <mpi.h>

#include "dist/process_grid.h"
#include "model/gpt_model.h"
#include "test_util.h"

using namespace weft;
using weft::test::expect_gradient;
using weft::test::random_tensor;

namespace {

ModelSpec tiny_spec() {
  ModelSpec s;
  s.num_layers = 2;
  s.hidden = 16;
  s.ffn = 24;
  s.heads = 4;
  s.groups = 2;
  s.head_dim = 4;
  s.vocab = 37;
  s.max_positions = 32;
  s.init_std = 0.3;  // large enough that every gradient is well above the finite-difference noise
  return s;
}

// Two rows of six tokens; the second row packs two documents (positions restart, attention never crosses).
Batch tiny_batch(std::mt19937& gen, int64_t vocab) {
  Batch b;
  b.rows = 2;
  b.seq = 6;
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> tokens(12), labels(12);
  for (auto& t : tokens) t = id(gen);
  for (auto& t : labels) t = id(gen);
  b.tokens = Tensor::from_vector(tokens, {12});
  b.labels = Tensor::from_vector(labels, {12});
  b.loss_mask = Tensor::from_vector<float>({1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1}, {12});
  b.positions = Tensor::from_vector<int32_t>({0, 1, 2, 3, 4, 5, 0, 1, 2, 0, 1, 2}, {12});
  b.cu_seqlens = Tensor::from_vector<int32_t>({0, 6, 9, 12}, {4});
  return b;
}

std::unique_ptr<Comm> self_comm() {
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  GroupList singles;
  for (int r = 0; r < world; ++r) singles.push_back({r});
  return make_mpi_comm("tp", singles);
}

void check_model_gradients(ModelSpec spec, uint64_t seed) {
  auto tp = self_comm();
  LayerContext ctx{tp.get(), false, DType::f64, Device::cpu, seed};
  GptModel model(spec, ctx, StageLayout::whole(spec));
  std::mt19937 gen(static_cast<uint32_t>(seed));
  const Batch batch = tiny_batch(gen, spec.vocab);
  const Tensor scale = random_tensor({12}, DType::f64, gen);

  auto loss = [&] {
    ModelSaved s;
    const Tensor losses = model.loss(model.forward_layers(model.embed(batch), batch, s), batch, s);
    double total = 0;
    for (int64_t t = 0; t < 12; ++t) total += scale.data<double>()[t] * losses.data<double>()[t];
    return total;
  };
  ModelSaved s;
  const Tensor losses = model.loss(model.forward_layers(model.embed(batch), batch, s), batch, s);
  Tensor dx = model.loss_backward(batch, s, scale);
  dx = model.backward_layers(dx, batch, s);
  model.embed_backward(dx, batch);

  for (Parameter* p : model.parameters()) {
    // Padding rows of the vocabulary never receive gradient; sample the real rows.
    Tensor value = p->value, grad = p->grad;
    if (p->name.find("word_embeddings") != std::string::npos || p->name.find("output_layer") != std::string::npos) {
      value = value.rows(0, spec.vocab);
      grad = grad.rows(0, spec.vocab);
    }
    expect_gradient(value, loss, grad, p->name, gen, 24);
  }
}

}  // namespace

TEST(ModelGradients, LlamaStyleUntied) { check_model_gradients(tiny_spec(), 21); }

TEST(ModelGradients, QwenStyleBiasTiedLlama3Rope) {
  ModelSpec s = tiny_spec();
  s.qkv_bias = true;
  s.tie_embeddings = true;
  s.rope_scaling.type = "llama3";
  s.rope_scaling.factor = 8;
  s.rope_scaling.original_max_position_embeddings = 16;
  check_model_gradients(s, 22);
}

TEST(ModelGradients, MistralStyleSlidingWindowMultiQuery) {
  ModelSpec s = tiny_spec();
  s.groups = 1;
  s.sliding_window = 2;
  s.rope_scaling.type = "linear";
  s.rope_scaling.factor = 2;
  check_model_gradients(s, 23);
}

TEST(ModelInit, MegatronStdAndLayoutIndependence) {
  ModelSpec spec = tiny_spec();
  spec.init_std = 0.02;
  spec.hidden = 64;
  spec.ffn = 128;
  spec.heads = 4;
  spec.head_dim = 16;
  spec.num_layers = 8;
  auto tp = self_comm();
  LayerContext ctx{tp.get(), false, DType::f64, Device::cpu, 5};
  GptModel model(spec, ctx, StageLayout::whole(spec));
  for (Parameter* p : model.parameters()) {
    const std::vector<double> v = p->value.to_doubles();
    if (p->name.find("layernorm") != std::string::npos) {
      for (double x : v) EXPECT_EQ(x, 1.0) << p->name;
      continue;
    }
    double ss = 0;
    int64_t n = 0;
    for (int64_t i = 0; i < static_cast<int64_t>(v.size()); ++i) {
      const bool vocab_rows = p->name.find("word_embeddings") != std::string::npos ||
                              p->name.find("output_layer") != std::string::npos;
      if (vocab_rows && i >= spec.vocab * spec.hidden) {
        EXPECT_EQ(v[i], 0.0) << "padding row of " << p->name;
        continue;
      }
      ss += v[i] * v[i];
      ++n;
    }
    const bool residual_out = p->name.find("linear_proj") != std::string::npos ||
                              p->name.find("linear_fc2") != std::string::npos;
    const double want = residual_out ? 0.02 / std::sqrt(2.0 * 8) : 0.02;
    EXPECT_NEAR(std::sqrt(ss / double(n)), want, want * 0.1) << p->name;
  }
  // The same (seed, name, global index) gives the same value: a second model is identical, another seed is not.
  GptModel again(spec, ctx, StageLayout::whole(spec));
  LayerContext other = ctx;
  other.seed = 6;
  GptModel reseeded(spec, other, StageLayout::whole(spec));
  const auto a = model.parameters(), b = again.parameters(), c = reseeded.parameters();
  EXPECT_EQ(a[3]->value.to_doubles(), b[3]->value.to_doubles());
  EXPECT_NE(a[3]->value.to_doubles(), c[3]->value.to_doubles());
}
