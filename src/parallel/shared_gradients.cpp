// weft/src/parallel/shared_gradients.cpp v4 — sequence-parallel and tied-embedding gradient sums.
#include "parallel/shared_gradients.h"

namespace weft {
namespace {

bool spans_stages(const Parameter& p, bool tied_embeddings, int pp_size) {
  return tied_embeddings && pp_size > 1 && p.name == "embedding.word_embeddings.weight";
}

}  // namespace

void reduce_shared_gradients(const std::vector<Parameter*>& params, Comm& tp, Comm& embedding, bool tied_embeddings,
                             int pp_size) {
  for (Parameter* p : params) {
    prepare_grad(*p);
    if (p->sequence_parallel) tp.all_reduce(p->grad);
    if (spans_stages(*p, tied_embeddings, pp_size)) embedding.all_reduce(p->grad);
  }
}

std::vector<Parameter*> reduce_finished_gradients(const std::vector<Parameter*>& done, Comm& tp, bool tied_embeddings,
                                                  int pp_size) {
  std::vector<Parameter*> now;
  for (Parameter* p : done) {
    prepare_grad(*p);
    if (spans_stages(*p, tied_embeddings, pp_size)) continue;
    if (p->sequence_parallel) tp.all_reduce(p->grad);
    now.push_back(p);
  }
  return now;
}

}  // namespace weft
