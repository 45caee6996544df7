// weft/src/parallel/grad_buffer.cpp v1 — contiguous gradient storage and its data-parallel reduction.
#include "parallel/grad_buffer.h"

#include "ops/ops.h"

namespace weft {

GradBuffer::GradBuffer(const std::vector<Parameter*>& params) {
  WEFT_ASSERT(!params.empty());
  int64_t total = 0;
  for (const Parameter* p : params) total += p->grad.numel();
  flat_ = Tensor::zeros({total}, params.front()->grad.dtype(), params.front()->grad.device());
  int64_t offset = 0;
  for (Parameter* p : params) {
    const int64_t n = p->grad.numel();
    p->grad = flat_.rows(offset, offset + n).reshape(p->grad.shape());
    offset += n;
  }
}

void reduce_shared_gradients(const std::vector<Parameter*>& params, Comm& tp, Comm& embedding, bool tied_embeddings,
                             int pp_size) {
  for (Parameter* p : params) {
    if (p->sequence_parallel) tp.all_reduce(p->grad);
    if (tied_embeddings && pp_size > 1 && p->name == "embedding.word_embeddings.weight") embedding.all_reduce(p->grad);
  }
}

void GradBuffer::zero() { ops_for(flat_).zero(flat_); }

void GradBuffer::all_reduce_mean(Comm& dp) {
  if (dp.size() == 1) return;
  dp.all_reduce(flat_);
  ops_for(flat_).scale(flat_, 1.0 / dp.size());
}

}  // namespace weft
