// weft/src/dist/comm.cpp v1 — the default (run-at-once) overlapped collectives.
#include "dist/comm.h"

#include "ops/ops.h"

namespace weft {

void Comm::start_all_reduce(Tensor& t, double scale) {
  all_reduce(t);
  if (scale != 1.0) ops_for(t).scale(t, scale);
}

void Comm::start_reduce_scatter(Tensor& out, const Tensor& in, double scale) {
  reduce_scatter(out, in);
  if (scale != 1.0) ops_for(out).scale(out, scale);
}

}  // namespace weft
