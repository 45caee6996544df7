// weft/src/cli/model_loading.h v2 — a whole model (pp = 1, tensor-parallel over the world) with its weights, for
// the subcommands that read checkpoints rather than train: convert, forward, eval, generate.
#pragma once
#include <memory>

#include "dist/process_grid.h"
#include "io/model_io.h"

namespace weft {

struct LoadedModel {
  std::unique_ptr<ProcessGrid> grid;
  Comms comms;
  std::unique_ptr<LayerContext> ctx;
  std::unique_ptr<GptModel> model;
};

// Builds the model `src` describes split over every rank (tp = world size / ep; an MoE model's experts split over
// ep of them, which then each run the same tokens) and loads its weights. Errors (heads not divisible by tp, experts
// not by ep, bad files) are ConfigErrors or Errors naming the cause.
LoadedModel load_model(const WeightSource& src, int world_size, int rank, int ep = 1);

// The full-vocabulary fp32 logits [rows, vocab] on every rank, from this rank's vocabulary shard of them
// [rows, local vocabulary] (the output layer's tensor-parallel split; padding columns dropped).
Tensor gather_vocab(const LoadedModel& m, const Tensor& shard_logits);

}  // namespace weft
