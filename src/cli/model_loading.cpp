// weft/src/cli/model_loading.cpp v3 — model + weights for the inference-side subcommands, and their logits gathered.
#include "cli/model_loading.h"

#include "ops/ops.h"
#include "parallel/tensor_parallel.h"

namespace weft {

LoadedModel load_model(const WeightSource& src, int world_size, int rank, int ep) {
  const ModelSpec spec = spec_of(src);
  if (ep < 1 || world_size % ep || (ep > 1 && spec.num_experts % ep))
    throw ConfigError(str("--ep ", ep, " must divide the ", world_size, " ranks and the model's ", spec.num_experts,
                          " experts"));
  const int tp = world_size / ep;
  if (spec.heads % tp || spec.groups % tp || spec.ffn % tp || spec.moe_ffn % tp || spec.moe_shared_ffn % tp)
    throw ConfigError(str("running on ", world_size, " ranks splits the model ", tp, " ways (tensor parallel), but "
                          "it has ", spec.heads, " heads, ", spec.groups, " query groups and MLP widths ", spec.ffn,
                          "/", spec.moe_ffn, "/", spec.moe_shared_ffn, ": use a rank count that divides them"));
  LoadedModel m;
  m.grid = std::make_unique<ProcessGrid>(world_size, rank, ParallelSizes{tp, 1, ep, 1});
  m.comms = Comms::create(*m.grid);
  m.ctx = std::make_unique<LayerContext>(LayerContext{
      .tp = m.comms.tp.get(), .dtype = DType::f32, .device = Device::cpu, .ep = m.comms.expert_parallel()});
  m.model = std::make_unique<GptModel>(spec, *m.ctx, StageLayout::whole(spec));
  if (src.kind == WeightSource::hf) {
    load_hf_weights(spec, m.model->parameters(), src.dir);
  } else {
    const CheckpointReader r(src.dir);
    load_native_weights(m.model->parameters(), r);
  }
  return m;
}

Tensor gather_vocab(const LoadedModel& m, const Tensor& shard_logits) {
  const ModelSpec& spec = m.model->spec();
  Tensor local = Tensor::empty(shard_logits.shape(), DType::f32);
  cpu_ops().convert(local, shard_logits.to(Device::cpu));
  const int64_t rows = local.size(0), cols = local.size(1);
  Comm& tp = *m.comms.tp;
  Tensor all = Tensor::empty({tp.size() * rows * cols}, DType::f32);
  tp.all_gather(all, local.reshape({rows * cols}));
  Tensor out = Tensor::empty({rows, spec.vocab}, DType::f32);
  for (int rank = 0; rank < tp.size(); ++rank) {  // [tp, rows, local] → [rows, vocab]
    const VocabShard shard = VocabShard::of(spec.vocab, spec.padded_vocab(tp.size()), rank, tp.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < shard.valid; ++c)
        out.data<float>()[r * spec.vocab + shard.start + c] = all.data<float>()[(rank * rows + r) * cols + c];
  }
  return out;
}

}  // namespace weft
