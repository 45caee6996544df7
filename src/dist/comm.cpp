// weft/src/dist/comm.cpp v2 — the default (run-at-once) overlapped collectives, and the time they hold compute.
#include "dist/comm.h"

#include <chrono>

#include "ops/ops.h"

namespace weft {

namespace {

// Runs a run-at-once collective, adding its host time to `waited_ms` while `counting`: compute waits for all of it.
template <typename Collective>
void run_counted(bool counting, double& waited_ms, Collective&& collective) {
  const auto start = std::chrono::steady_clock::now();
  collective();
  if (counting)
    waited_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

void Comm::start_all_reduce(Tensor& t, double scale) {
  run_counted(counting_waits_, waited_ms_, [&] {
    all_reduce(t);
    if (scale != 1.0) ops_for(t).scale(t, scale);
  });
}

void Comm::start_reduce_scatter(Tensor& out, const Tensor& in, double scale) {
  run_counted(counting_waits_, waited_ms_, [&] {
    reduce_scatter(out, in);
    if (scale != 1.0) ops_for(out).scale(out, scale);
  });
}

void Comm::start_all_gather(Tensor& out, const Tensor& in) {
  run_counted(counting_waits_, waited_ms_, [&] { all_gather(out, in); });
}

double Comm::take_wait_ms() {
  const double ms = waited_ms_;
  waited_ms_ = 0;
  return ms;
}

}  // namespace weft
