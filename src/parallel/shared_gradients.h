// weft/src/parallel/shared_gradients.h v3 — gradients that several model-parallel ranks hold parts or copies of.
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

// For parameters a backward has just finished: sums the sequence-parallel ones over tp at once and returns those
// whose data-parallel reduction may start now. A tied embedding split over pipeline stages is left out: the first
// and last stages finish their backwards at different times, so its sum waits for the end of the pipeline
// (reduce_shared_gradients over what was not handed on).
std::vector<Parameter*> reduce_finished_gradients(const std::vector<Parameter*>& done, Comm& tp, bool tied_embeddings,
                                                  int pp_size);

}  // namespace weft
