// weft/src/train/checkpointing.h v2 — saving and resuming a training run.
#pragma once
#include <cstdint>

#include "config/config.h"
#include "dist/process_grid.h"
#include "model/gpt_model.h"
#include "optim/grouped_optimizer.h"

namespace weft {

// Saves weights, Adam moments and the run's position to cfg.checkpoint.save (collective over comms.world).
void save_checkpoint(const Config& cfg, const ProcessGrid& grid, Comms& comms, const ModelSpec& spec,
                     GroupedOptimizer& optimizer, int64_t iteration);

// Restores a run saved by save_checkpoint, at this layout, from cfg.checkpoint.load; returns the iteration to
// continue after. Errors name the directory and what does not match (model shape, missing tensor, no `latest`).
int64_t resume_checkpoint(const Config& cfg, const ModelSpec& spec, GroupedOptimizer& optimizer);

// Initial weights from model.init (random init needs nothing) for the parameters this rank holds.
void load_initial_weights(const Config& cfg, const ModelSpec& spec, const std::vector<Parameter*>& params);

}  // namespace weft
