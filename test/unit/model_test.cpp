// weft/test/unit/model_test.cpp v3 — every layer's backward, through the whole model, against central finite
// differences in double precision; parameter init independent of layout.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "dist/process_grid.h"
#include "data/batches.h"
#include "data/sft_dataset.h"
#include "model/gpt_model.h"
#include "test_util.h"

using namespace weft;
using weft::test::each_rank_alone;
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

void check_model_gradients(ModelSpec spec, uint64_t seed) {
  auto tp = each_rank_alone("tp");
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

  // The output layer and loss fused with their backward in chunks of 5 of the 12 tokens: the same losses and
  // gradients, without the whole logits.
  GptModel fused(spec, ctx, StageLayout::whole(spec));
  ModelSaved f;
  const Tensor fused_losses = fused.loss(fused.forward_layers(fused.embed(batch), batch, f), batch, f, scale, 5);
  EXPECT_FALSE(f.logits.defined());
  Tensor fdx = fused.loss_backward(batch, f, scale);
  fdx = fused.backward_layers(fdx, batch, f);
  fused.embed_backward(fdx, batch);
  const auto close = [](const std::vector<double>& a, const std::vector<double>& b, const std::string& what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-12 * (1 + std::abs(b[i]))) << what << " " << i;
  };
  close(fused_losses.to_doubles(), losses.to_doubles(), "losses");
  for (size_t i = 0; i < model.parameters().size(); ++i)
    close(fused.parameters()[i]->grad.to_doubles(), model.parameters()[i]->grad.to_doubles(),
          model.parameters()[i]->name);

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

// Recomputation keeps less between the passes and gives the same gradients, bit for bit.
TEST(Recompute, KeepsLessAndGivesTheSameGradients) {
  const ModelSpec spec = tiny_spec();
  auto tp = each_rank_alone("tp");
  std::mt19937 gen(7);
  const Batch batch = tiny_batch(gen, spec.vocab);
  const Tensor scale = random_tensor({12}, DType::f64, gen);
  std::map<Recompute, std::vector<std::vector<double>>> grads;
  for (Recompute mode : {Recompute::none, Recompute::selective, Recompute::full}) {
    LayerContext ctx{tp.get(), false, DType::f64, Device::cpu, 5};
    ctx.recompute = mode;
    GptModel model(spec, ctx, StageLayout::whole(spec));
    ModelSaved s;
    model.loss(model.forward_layers(model.embed(batch), batch, s), batch, s);
    for (const DecoderLayerSaved& l : s.layers) {
      EXPECT_TRUE(l.input.defined());
      EXPECT_EQ(l.attention != nullptr, mode != Recompute::full);
      EXPECT_EQ(l.mlp != nullptr, mode != Recompute::full);
      if (mode == Recompute::full) continue;
      const auto& attention = dynamic_cast<const SelfAttention::Saved&>(*l.attention);
      const auto& mlp = dynamic_cast<const SwiGluMlp::Saved&>(*l.mlp);
      EXPECT_TRUE(attention.q.defined());
      EXPECT_TRUE(mlp.fc1_out.defined());
      EXPECT_EQ(mlp.fc2_input.defined(), mode == Recompute::none);
    }
    Tensor dx = model.loss_backward(batch, s, scale);
    dx = model.backward_layers(dx, batch, s);
    model.embed_backward(dx, batch);
    for (Parameter* p : model.parameters()) grads[mode].push_back(p->grad.to_doubles());
  }
  EXPECT_EQ(grads[Recompute::selective], grads[Recompute::none]);
  EXPECT_EQ(grads[Recompute::full], grads[Recompute::none]);
}

TEST(ModelInit, MegatronStdAndLayoutIndependence) {
  ModelSpec spec = tiny_spec();
  spec.init_std = 0.02;
  spec.hidden = 64;
  spec.ffn = 128;
  spec.heads = 4;
  spec.head_dim = 16;
  spec.num_layers = 8;
  auto tp = each_rank_alone("tp");
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

// Packing: chats packed into one row (positions restart, attention per chat, padding masked) give exactly the
// loss and gradients of the same chats run one by one.
TEST(SftPacking, PackedRowEqualsChatsRunSeparately) {
  weft::test::TempDir dir;
  const std::vector<std::vector<int32_t>> chats = {{5, 9, 2, 7, 1}, {3, 3, 8, 1, 4, 6, 2}, {10, 11, 12, 13}};
  const std::vector<std::vector<int32_t>> masks = {{0, 0, 1, 1, 1}, {0, 1, 0, 1, 1, 1, 1}, {0, 0, 1, 1}};
  {
    IndexedDatasetWriter tokens(dir.file("sft"), TokenDType::u16), mask(dir.file("sft_loss_mask"), TokenDType::u8);
    for (size_t i = 0; i < chats.size(); ++i) {
      tokens.add_sequence(chats[i]);
      tokens.end_document();
      mask.add_sequence(masks[i]);
      mask.end_document();
    }
    tokens.finish();
    mask.finish();
  }
  const SftSamples packed(dir.file("sft"), {1, 0, 0}, 0, 1, {16, 0, false, true, 0});
  ASSERT_EQ(packed.size(), 1);  // 4 + 6 + 3 = 13 positions fit one row of 16
  BatchOptions opt;
  opt.vocab_size = 37;
  const Batch row = MicroBatches(packed, opt).samples(0, 1);
  EXPECT_EQ(row.cu_seqlens.to_doubles(), (std::vector<double>{0, 4, 10, 13, 16}));

  ModelSpec spec = tiny_spec();
  auto tp = each_rank_alone("tp");
  LayerContext ctx{tp.get(), false, DType::f64, Device::cpu, 3};
  GptModel model(spec, ctx, StageLayout::whole(spec));
  auto run = [&](const Batch& b) {  // Σ mask·loss, with gradients of the same sum accumulated
    ModelSaved s;
    const Tensor losses = model.loss(model.forward_layers(model.embed(b), b, s), b, s);
    Tensor scale = Tensor::empty({b.tokens_count()}, DType::f64);
    double total = 0;
    for (int64_t t = 0; t < b.tokens_count(); ++t) {
      scale.data<double>()[t] = b.loss_mask.data<float>()[t];
      total += scale.data<double>()[t] * losses.data<double>()[t];
    }
    Tensor dx = model.loss_backward(b, s, scale);
    model.embed_backward(model.backward_layers(dx, b, s), b);
    return total;
  };
  auto grads = [&] {
    std::vector<double> g;
    for (Parameter* p : model.parameters()) {
      const auto v = p->grad.to_doubles();
      g.insert(g.end(), v.begin(), v.end());
      ops_for(p->grad).zero(p->grad);
    }
    return g;
  };
  const double packed_loss = run(row);
  const std::vector<double> packed_grads = grads();
  double separate_loss = 0;
  for (size_t i = 0; i < chats.size(); ++i) {
    const int64_t n = static_cast<int64_t>(chats[i].size()) - 1;
    Batch b;
    b.rows = 1;
    b.seq = n;
    std::vector<int32_t> in(chats[i].begin(), chats[i].end() - 1), lab(chats[i].begin() + 1, chats[i].end()), pos(n);
    std::vector<float> m(n);
    for (int64_t t = 0; t < n; ++t) {
      pos[t] = static_cast<int32_t>(t);
      m[t] = static_cast<float>(masks[i][t + 1]);
    }
    b.tokens = Tensor::from_vector(in, {n});
    b.labels = Tensor::from_vector(lab, {n});
    b.positions = Tensor::from_vector(pos, {n});
    b.loss_mask = Tensor::from_vector(m, {n});
    b.cu_seqlens = Tensor::from_vector<int32_t>({0, static_cast<int32_t>(n)}, {2});
    separate_loss += run(b);
  }
  const std::vector<double> separate_grads = grads();
  EXPECT_NEAR(packed_loss, separate_loss, 1e-12 * std::abs(separate_loss));
  ASSERT_EQ(packed_grads.size(), separate_grads.size());
  for (size_t i = 0; i < packed_grads.size(); ++i)
    ASSERT_NEAR(packed_grads[i], separate_grads[i], 1e-12 + 1e-10 * std::abs(separate_grads[i])) << "gradient " << i;
}
