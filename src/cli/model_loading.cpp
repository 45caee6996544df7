// weft/src/cli/model_loading.cpp v1 — model + weights for the inference-side subcommands.
#include "cli/model_loading.h"

namespace weft {

LoadedModel load_model(const WeightSource& src, int world_size, int rank) {
  const ModelSpec spec = spec_of(src);
  if (spec.heads % world_size || spec.groups % world_size || spec.ffn % world_size)
    throw ConfigError(str("running on ", world_size, " ranks splits the model ", world_size, " ways (tensor "
                          "parallel), but it has ", spec.heads, " heads, ", spec.groups, " query groups and ffn ",
                          spec.ffn, ": use a rank count that divides them"));
  LoadedModel m;
  m.grid = std::make_unique<ProcessGrid>(world_size, rank, ParallelSizes{world_size, 1, 1, 1});
  m.comms = Comms::create(*m.grid);
  m.ctx = std::make_unique<LayerContext>(LayerContext{.tp = m.comms.tp.get(), .dtype = DType::f32, .device = Device::cpu});
  m.model = std::make_unique<GptModel>(spec, *m.ctx, StageLayout::whole(spec));
  if (src.kind == WeightSource::hf) {
    load_hf_weights(spec, m.model->parameters(), src.dir);
  } else {
    const CheckpointReader r(src.dir);
    load_native_weights(m.model->parameters(), r);
  }
  return m;
}

}  // namespace weft
