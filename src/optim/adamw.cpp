// weft/src/optim/adamw.cpp v1 — moments per parameter, one fused update per tensor.
#include "optim/adamw.h"

namespace weft {

AdamW::AdamW(std::vector<Parameter*> params, const AdamWConfig& cfg) : params_(std::move(params)), cfg_(cfg) {
  for (Parameter* p : params_) {
    exp_avg_.push_back(Tensor::zeros(p->value.shape(), p->value.dtype(), p->value.device()));
    exp_avg_sq_.push_back(Tensor::zeros(p->value.shape(), p->value.dtype(), p->value.device()));
  }
}

void AdamW::step(double lr) {
  ++steps_;
  for (size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = *params_[i];
    AdamWParams h{lr, cfg_.beta1, cfg_.beta2, cfg_.eps, p.weight_decay ? cfg_.weight_decay : 0.0, steps_};
    ops_for(p.value).adamw(p.value, p.grad, exp_avg_[i], exp_avg_sq_[i], h);
  }
}

}  // namespace weft
