// weft/src/optim/adamw.h v1 — AdamW over a model's parameters, with Megatron's weight-decay rule.
#pragma once
#include <vector>

#include "model/parameter.h"
#include "ops/ops.h"

namespace weft {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
};

class AdamW {
 public:
  AdamW(std::vector<Parameter*> params, const AdamWConfig& cfg);
  // One step at learning rate `lr` from the parameters' current gradients (already reduced and clipped).
  // 1-D parameters (norms, biases) get no weight decay. Low-precision parameters are updated through fp32 masters
  // and then rounded from them.
  void step(double lr);
  int64_t steps() const { return steps_; }
  // The moments, one per parameter in construction order (checkpointing reads and restores them).
  std::vector<Tensor>& exp_avg() { return exp_avg_; }
  std::vector<Tensor>& exp_avg_sq() { return exp_avg_sq_; }
  // fp32 masters of low-precision parameters (undefined where the parameter is its own master).
  std::vector<Tensor>& masters() { return masters_; }
  // Rounds the masters into the parameters (after the masters were loaded).
  void write_back();
  const std::vector<Parameter*>& parameters() const { return params_; }
  void set_steps(int64_t steps) { steps_ = steps; }

 private:
  std::vector<Parameter*> params_;
  AdamWConfig cfg_;
  std::vector<Tensor> exp_avg_, exp_avg_sq_, masters_;
  int64_t steps_ = 0;
};

}  // namespace weft
