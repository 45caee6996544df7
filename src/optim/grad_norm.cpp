// weft/src/optim/grad_norm.cpp v1 — global gradient norm and clipping.
#include "optim/grad_norm.h"

#include <cmath>

#include "ops/ops.h"

namespace weft {

double global_grad_norm(const std::vector<Parameter*>& params, Comm& mp, int tp_rank) {
  double local = 0;
  for (const Parameter* p : params)
    if ((!p->tp_duplicate || tp_rank == 0) && !p->pipeline_copy) local += ops_for(p->grad).sum_squares(p->grad);
  Tensor sum = Tensor::from_vector<double>({local}, {1});
  mp.all_reduce(sum);
  return std::sqrt(sum.data<double>()[0]);
}

void clip_gradients(const std::vector<Parameter*>& params, double norm, double max_norm) {
  if (max_norm <= 0) return;
  const double coeff = max_norm / (norm + 1e-6);
  if (coeff >= 1.0) return;
  for (Parameter* p : params) ops_for(p->grad).scale(p->grad, coeff);
}

}  // namespace weft
