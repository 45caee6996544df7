// weft/src/optim/grad_norm.h v1 — the global gradient norm over a model split across ranks, and clipping.
#pragma once
#include <vector>

#include "dist/comm.h"
#include "model/parameter.h"

namespace weft {

// sqrt(Σ grad²) over the whole model: each rank sums its shards, tensor-parallel duplicates counted once (on tp
// rank 0) and a tied embedding's last-stage copy not at all; the sums are added over the model-parallel group `mp`
// (tp × pp).
double global_grad_norm(const std::vector<Parameter*>& params, Comm& mp, int tp_rank);

// Megatron's clip_grad_norm: scales every gradient by max_norm / (norm + 1e-6) when that is below 1.
void clip_gradients(const std::vector<Parameter*>& params, double norm, double max_norm);

}  // namespace weft
