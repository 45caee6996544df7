// weft/src/parallel/shared_gradients.cpp v2 — sequence-parallel and tied-embedding gradient sums.
#include "parallel/shared_gradients.h"

namespace weft {

void reduce_shared_gradients(const std::vector<Parameter*>& params, Comm& tp, Comm& embedding, bool tied_embeddings,
                             int pp_size) {
  for (Parameter* p : params) {
    if (p->sequence_parallel) tp.all_reduce(p->grad);
    if (spans_stages(*p, tied_embeddings, pp_size)) embedding.all_reduce(p->grad);
  }
}

bool spans_stages(const Parameter& p, bool tied_embeddings, int pp_size) {
  return tied_embeddings && pp_size > 1 && p.name == "embedding.word_embeddings.weight";
}

}  // namespace weft
