// weft/test/gpu/model_gpu_test.cpp v3 — the whole model on the GPU in bf16: logits against HuggingFace, the fused
// loss against the unfused one.
#include <mpi.h>

#include "../unit/test_util.h"
#include "dist/process_grid.h"
#include "gpu_util.h"
#include "io/hf_config.h"
#include "io/model_io.h"
#include "io/npy.h"
#include "ops/device.h"

using namespace weft;
using namespace weft::test;

namespace {

// `rows` rows of `seq` tokens on the GPU, each row its own segment with positions from 0.
Batch rows_batch(const std::vector<int32_t>& tokens, const std::vector<int32_t>& labels, const std::vector<float>& mask,
                 int64_t rows, int64_t seq) {
  const int64_t t = rows * seq;
  std::vector<int32_t> pos(t), cu;
  for (int64_t i = 0; i < t; ++i) pos[i] = static_cast<int32_t>(i % seq);
  for (int64_t r = 0; r <= rows; ++r) cu.push_back(static_cast<int32_t>(r * seq));
  Batch b;
  b.rows = rows;
  b.seq = seq;
  b.max_seqlen = seq;
  b.tokens = Tensor::from_vector(tokens, {t});
  b.labels = Tensor::from_vector(labels, {t});
  b.positions = Tensor::from_vector(pos, {t});
  b.cu_seqlens = Tensor::from_vector(cu, {rows + 1});
  b.loss_mask = Tensor::from_vector(mask, {t});
  return b.to(Device::cuda);
}

}  // namespace

TEST(GpuModel, Bf16LogitsTrackHuggingFace) {
  REQUIRE_GPU();
  auto tp = make_mpi_comm("tp", {{0}});
  for (const char* c : {"llama2", "llama31", "mistral", "qwen2"}) {
    const std::string dir = fixture(std::string("hf/") + c);
    const ModelSpec spec = read_hf_config(dir);
    LayerContext ctx{tp.get(), false, DType::bf16, Device::cuda, 0};
    GptModel model(spec, ctx, StageLayout::whole(spec));
    load_hf_weights(spec, model.parameters(), dir);
    const Tensor ids = read_npy(dir + "/input_ids.npy"), ref = read_npy(dir + "/logits.npy");
    const int64_t rows = ids.size(0), seq = ids.size(1), t = rows * seq;
    std::vector<int32_t> tokens;
    for (double id : ids.to_doubles()) tokens.push_back(static_cast<int32_t>(id));
    const Batch g = rows_batch(tokens, std::vector<int32_t>(t, 0), std::vector<float>(t, 0.f), rows, seq);
    ModelSaved s;
    const Tensor logits = model.logits(model.forward_layers(model.embed(g), g, s)).to(Device::cpu);
    const auto ours = logits.to_doubles(), theirs = ref.to_doubles();
    const int64_t vocab = spec.vocab, cols = logits.size(1);
    double diff = 0, scale = 0;
    for (int64_t i = 0; i < t; ++i)
      for (int64_t v = 0; v < vocab; ++v) {
        diff = std::max(diff, std::abs(ours[i * cols + v] - theirs[i * vocab + v]));
        scale = std::max(scale, std::abs(theirs[i * vocab + v]));
      }
    EXPECT_LE(diff / scale, 2e-2) << c << ": max|Δ| " << diff << " / max|ref| " << scale;
  }
}

// The output layer and loss fused with their backward in chunks (7 tokens here, 256 MiB of logits in training)
// against the unfused path on the GPU: the same losses and gradients to bf16 rounding.
TEST(GpuModel, FusedChunkedLossMatchesTheUnfusedPath) {
  REQUIRE_GPU();
  auto tp = device_support().comm_factory("tp", {{0}});  // the loss reduces device tensors over tp
  const std::string dir = fixture("hf/llama31");
  const ModelSpec spec = read_hf_config(dir);
  LayerContext ctx{tp.get(), false, DType::bf16, Device::cuda, 0};
  GptModel plain(spec, ctx, StageLayout::whole(spec)), fused(spec, ctx, StageLayout::whole(spec));
  for (GptModel* m : {&plain, &fused}) load_hf_weights(spec, m->parameters(), dir);
  const int64_t rows = 2, seq = 24, t = rows * seq;
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(spec.vocab - 1));
  std::vector<int32_t> tokens(t), labels(t);
  std::vector<float> mask(t), scale(t);
  for (int64_t i = 0; i < t; ++i) {
    tokens[i] = id(rng());
    labels[i] = id(rng());
    mask[i] = i % 5 == 3 ? 0.f : 1.f;
    scale[i] = mask[i] / float(t);
  }
  const Batch g = rows_batch(tokens, labels, mask, rows, seq);
  const Tensor row_scale = Tensor::from_vector(scale, {t}).to(Device::cuda);
  std::vector<Tensor> losses;
  for (GptModel* m : {&plain, &fused}) {
    ModelSaved s;
    const Tensor hidden = m->forward_layers(m->embed(g), g, s);
    losses.push_back((m == &plain ? m->loss(hidden, g, s) : m->loss(hidden, g, s, row_scale, 7)).to(Device::cpu));
    Tensor dx = m->loss_backward(g, s, row_scale);
    dx = m->backward_layers(dx, g, s);
    m->embed_backward(dx, g);
  }
  EXPECT_LT(rel_error(losses[1], losses[0]), 1e-3);
  for (size_t i = 0; i < plain.parameters().size(); ++i) {
    const Parameter &p = *plain.parameters()[i], &f = *fused.parameters()[i];
    EXPECT_LT(rel_error(f.grad, p.grad.to(Device::cpu)), 1e-2) << p.name;
  }
}
