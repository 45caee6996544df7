// weft/src/train/checkpointing.cpp v1 — what a checkpoint holds and how a run resumes from it.
#include "train/checkpointing.h"

#include "io/checkpoint.h"
#include "io/model_io.h"
#include <map>

#include "ops/ops.h"

namespace weft {

void save_checkpoint(const Config& cfg, const ProcessGrid& grid, Comms& comms, const ModelSpec& spec,
                     GroupedOptimizer& optimizer, int64_t iteration) {
  CheckpointWriter writer(cfg.checkpoint.save, iteration, *comms.world, cfg.checkpoint.keep);
  // Optimizer state per parameter (gathered over the gradient group when sharded), so any layout reads it back.
  std::map<std::string, std::vector<Tensor>> state;
  for (const char* kind : {"master", "exp_avg", "exp_avg_sq"}) state[kind] = optimizer.gather_state(kind);
  // Replicas hold identical state: the first data- and context-parallel rank of each (tp, pp) position writes the
  // dense parameters, the first expert-data-parallel rank of each (tp, ep, pp) position its experts (which hold
  // their global expert index in their names, so any expert-parallel layout reads them back).
  const bool dense_writer = grid.dp_rank() == 0 && grid.cp_rank() == 0, expert_writer = grid.edp_rank() == 0;
  const auto params = optimizer.parameters();
  std::vector<ShardedTensor> tensors;
  for (size_t i = 0; i < params.size(); ++i) {
    const Parameter& p = *params[i];
    if (!(p.group == ParamGroup::expert ? expert_writer : dense_writer)) continue;
    tensors.push_back(sharded("model", p, p.value));
    for (const auto& [kind, tensors_of_kind] : state) tensors.push_back(sharded("optim/" + kind, p, tensors_of_kind[i]));
  }
  if (!tensors.empty())
    writer.write_shard(str("shard_tp", grid.tp_rank(), "_pp", grid.pp_rank(),
                           grid.ep_size() > 1 ? str("_ep", grid.ep_rank()) : "", ".h5"),
                       tensors);
  nlohmann::json meta = {
      {"format", "weft-checkpoint"},
      {"version", kCheckpointFormatVersion},
      {"iteration", iteration},
      {"consumed_samples", iteration * cfg.train.global_batch_size},
      {"optimizer", {{"type", "adamw"}, {"steps", optimizer.steps()}}},
      {"lr_schedule", {{"max_lr", cfg.train.lr}, {"min_lr", cfg.train.min_lr}, {"style", cfg.train.lr_decay_style},
                       {"warmup_iters", cfg.train.lr_warmup_iters},
                       {"decay_iters", cfg.train.lr_decay_iters ? cfg.train.lr_decay_iters : cfg.train.train_iters},
                       {"steps", optimizer.steps()}}},
      // Weights and the data order derive from the seed alone; weft keeps no other random state (no dropout).
      {"rng", {{"seed", cfg.train.seed}}},
      {"layout", {{"tp", grid.tp_size()}, {"pp", grid.pp_size()}, {"dp", grid.dp_size()}, {"cp", grid.cp_size()},
                  {"ep", grid.ep_size()}}},
      {"model", spec_to_json(spec)},
      {"deck", {{"path", cfg.deck_path}, {"values", cfg.values}}}};
  writer.commit(meta);
}

namespace {

void check_same_model(const ModelSpec& mine, const CheckpointReader& r) {
  const ModelSpec saved = spec_from_json(r.metadata().value("model", nlohmann::json::object()));
  for (const ModelField& f : model_fields()) {
    if (!f.shapes_weights) continue;
    WEFT_CHECK(f.get(saved) == f.get(mine), r.path(), ": saved model has ", f.key, " = ", f.text(saved),
               ", the deck's model has ", f.text(mine), " (config/checkpoint mismatch)");
  }
}

}  // namespace

int64_t resume_checkpoint(const Config& cfg, const ModelSpec& spec, GroupedOptimizer& optimizer) {
  const CheckpointReader r(cfg.checkpoint.load);
  check_same_model(spec, r);
  const auto& params = optimizer.parameters();
  load_native_weights(params, r);
  for (const char* kind : {"exp_avg", "exp_avg_sq", "master"}) {
    std::vector<Tensor> full;
    for (const Parameter* p : params) {
      Tensor t = Tensor::empty(p->value.shape(), stat_dtype(p->value.dtype()));
      // Checkpoints of converted models have no optimizer state: masters then start from the weights.
      if (std::string(kind) == "master" && !r.has("optim/master/" + p->name)) t = p->value.to(Device::cpu);
      else r.read(str("optim/", kind, "/", p->name), t, p->global_shape, p->shard_dim, p->blocks);
      full.push_back(t);
    }
    optimizer.scatter_state(kind, full);
  }
  optimizer.set_steps(r.metadata().at("optimizer").at("steps").get<int64_t>());
  const int64_t iteration = r.metadata().at("iteration").get<int64_t>();
  WEFT_CHECK(r.metadata().at("consumed_samples").get<int64_t>() == iteration * cfg.train.global_batch_size,
             r.path(), ": saved with a different train.global_batch_size (", r.metadata().at("consumed_samples"),
             " samples in ", iteration, " steps)");
  return iteration;
}

void load_initial_weights(const Config& cfg, const ModelSpec& spec, const std::vector<Parameter*>& params) {
  const WeightSource src = WeightSource::parse(cfg.model_init);
  if (src.kind == WeightSource::hf) {
    load_hf_weights(spec, params, src.dir);
  } else if (src.kind == WeightSource::native) {
    const CheckpointReader r(src.dir);
    check_same_model(spec, r);
    load_native_weights(params, r);
  }
}

}  // namespace weft
