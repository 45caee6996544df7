// weft/src/optim/lr_schedule.h v1 — Megatron's learning-rate schedule (OptimizerParamScheduler.get_lr).
#pragma once
#include <cstdint>
#include <string>

namespace weft {

struct LrSchedule {
  double max_lr = 0, min_lr = 0;
  int64_t warmup_steps = 0, decay_steps = 0;
  std::string style = "linear";  // constant | linear | cosine

  // The learning rate after `steps` completed optimizer steps: linear warmup from 0 over warmup_steps, then
  // constant, or linear / cosine decay to min_lr at decay_steps, min_lr after.
  double at(int64_t steps) const;
};

}  // namespace weft
