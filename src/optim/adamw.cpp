// weft/src/optim/adamw.cpp v1 — moments per parameter, one fused update per tensor.
#include "optim/adamw.h"

namespace weft {

AdamW::AdamW(std::vector<Parameter*> params, const AdamWConfig& cfg) : params_(std::move(params)), cfg_(cfg) {
  for (Parameter* p : params_) {
    const DType state = stat_dtype(p->value.dtype());
    exp_avg_.push_back(Tensor::zeros(p->value.shape(), state, p->value.device()));
    exp_avg_sq_.push_back(Tensor::zeros(p->value.shape(), state, p->value.device()));
    Tensor master;
    if (state != p->value.dtype()) {
      master = Tensor::empty(p->value.shape(), state, p->value.device());
      ops_for(master).convert(master, p->value);
    }
    masters_.push_back(master);
  }
}

void AdamW::write_back() {
  for (size_t i = 0; i < params_.size(); ++i)
    if (masters_[i].defined()) ops_for(masters_[i]).convert(params_[i]->value, masters_[i]);
}

void AdamW::step(double lr) {
  ++steps_;
  for (size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = *params_[i];
    AdamWParams h{lr, cfg_.beta1, cfg_.beta2, cfg_.eps, p.weight_decay ? cfg_.weight_decay : 0.0, steps_};
    Tensor& master = masters_[i].defined() ? masters_[i] : p.value;
    ops_for(master).adamw(master, p.grad, exp_avg_[i], exp_avg_sq_[i], h);
  }
  write_back();
}

}  // namespace weft
