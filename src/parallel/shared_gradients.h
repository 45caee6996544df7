// weft/src/parallel/shared_gradients.h v1 — gradients that several model-parallel ranks hold parts or copies of.
#pragma once
#include <vector>

#include "dist/comm.h"
#include "model/parameter.h"

namespace weft {

// Sums sequence-parallel norm weights' gradients over the tensor-parallel group, and a tied embedding's gradients
// between the first and last pipeline stages (Megatron's embedding group). Call after the backward, before the
// data-parallel reduction.
void reduce_shared_gradients(const std::vector<Parameter*>& params, Comm& tp, Comm& embedding, bool tied_embeddings,
                             int pp_size);

}  // namespace weft
