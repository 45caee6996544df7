// weft/src/parallel/shared_gradients.cpp v1 — sequence-parallel and tied-embedding gradient sums.
#include "parallel/shared_gradients.h"

namespace weft {

void reduce_shared_gradients(const std::vector<Parameter*>& params, Comm& tp, Comm& embedding, bool tied_embeddings,
                             int pp_size) {
  for (Parameter* p : params) {
    if (p->sequence_parallel) tp.all_reduce(p->grad);
    if (tied_embeddings && pp_size > 1 && p->name == "embedding.word_embeddings.weight") embedding.all_reduce(p->grad);
  }
}

}  // namespace weft
