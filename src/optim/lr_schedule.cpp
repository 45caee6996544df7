// weft/src/optim/lr_schedule.cpp v1 — warmup and decay as Megatron computes them.
#include "optim/lr_schedule.h"

#include <cmath>
#include <numbers>

namespace weft {

double LrSchedule::at(int64_t steps) const {
  if (warmup_steps > 0 && steps <= warmup_steps) return max_lr * double(steps) / double(warmup_steps);
  if (style == "constant") return max_lr;
  if (steps > decay_steps) return min_lr;
  const double ratio = double(steps - warmup_steps) / double(decay_steps - warmup_steps);
  const double coeff = style == "cosine" ? 0.5 * (std::cos(std::numbers::pi * ratio) + 1.0) : 1.0 - ratio;
  return min_lr + coeff * (max_lr - min_lr);
}

}  // namespace weft
