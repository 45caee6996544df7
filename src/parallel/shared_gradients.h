// weft/src/parallel/shared_gradients.h v2 — gradients that several model-parallel ranks hold parts or copies of.
#pragma once
#include <vector>

#include "dist/comm.h"
#include "model/parameter.h"

namespace weft {

// Sums sequence-parallel norm weights' gradients over the tensor-parallel group, and a tied embedding's gradients
// between the first and last pipeline stages (Megatron's embedding group), for the given parameters once their
// backward is done, before their data-parallel reduction.
void reduce_shared_gradients(const std::vector<Parameter*>& params, Comm& tp, Comm& embedding, bool tied_embeddings,
                             int pp_size);

// A tied embedding split over pipeline stages: its gradient is summed between the first and last stages, which
// finish their backwards at different times, so its reduction waits for the end of the pipeline.
bool spans_stages(const Parameter& p, bool tied_embeddings, int pp_size);

}  // namespace weft
