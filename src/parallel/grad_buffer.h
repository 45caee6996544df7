// weft/src/parallel/grad_buffer.h v1 — all gradients of a rank in one contiguous buffer.
//
// Each parameter's grad becomes a view into the buffer, so data-parallel reduction is one collective (or a few
// buckets) instead of one per tensor — Megatron's DistributedDataParallel layout.
#pragma once
#include <vector>

#include "dist/comm.h"
#include "model/parameter.h"

namespace weft {

// Sums the gradients that several ranks hold partial or duplicate copies of: sequence-parallel norm weights over
// the tensor-parallel group, and a tied embedding between the first and last pipeline stages (Megatron's
// embedding group). Call after the backward, before the data-parallel reduction.
void reduce_shared_gradients(const std::vector<Parameter*>& params, Comm& tp, Comm& embedding, bool tied_embeddings,
                             int pp_size);

class GradBuffer {
 public:
  explicit GradBuffer(const std::vector<Parameter*>& params);
  void zero();
  // Every rank of `dp` ends with the mean of the group's gradients.
  void all_reduce_mean(Comm& dp);
  Tensor& flat() { return flat_; }

 private:
  Tensor flat_;
};

}  // namespace weft
