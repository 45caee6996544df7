// weft/src/optim/optimizer.cpp v1 — flat buffers, shards, AdamW, gradient norm and clipping.
#include "optim/optimizer.h"

#include <algorithm>
#include <cmath>

namespace weft {

Optimizer::Optimizer(std::vector<Parameter*> params, const OptimizerConfig& cfg, Comm& grad_group)
    : params_(std::move(params)), cfg_(cfg), group_(grad_group) {
  WEFT_CHECK(cfg.context_parallel >= 1 && grad_group.size() % cfg.context_parallel == 0,
             "optimizer: the gradient group of ", grad_group.size(), " ranks does not hold cp = ", cfg.context_parallel);
  WEFT_ASSERT(!params_.empty());
  const Tensor& first = params_.front()->value;
  int64_t total = 0;
  for (const Parameter* p : params_) {
    offsets_.push_back(total);
    total += p->value.numel();
  }
  const int shards = cfg.distributed ? group_.size() : 1;
  const int64_t padded = (total + shards - 1) / shards * shards;
  values_ = Tensor::zeros({padded}, first.dtype(), first.device());
  grads_ = Tensor::zeros({padded}, stat_dtype(first.dtype()), first.device());
  for (size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = *params_[i];
    const int64_t n = p.value.numel();
    Tensor view = values_.rows(offsets_[i], offsets_[i] + n);
    ops_for(view).convert(view, p.value.reshape({n}));
    p.value = view.reshape(p.value.shape());
    p.grad = grads_.rows(offsets_[i], offsets_[i] + n).reshape(p.grad.shape());
  }
  const int64_t shard = padded / shards, r = cfg.distributed ? group_.rank() : 0;
  shard_begin_ = r * shard;
  shard_end_ = shard_begin_ + shard;
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t lo = std::max(shard_begin_, offsets_[i]), hi = std::min(shard_end_, offsets_[i] + params_[i]->value.numel());
    if (lo < hi) segments_.push_back({i, lo, hi - lo});
  }
  master_ = Tensor::empty({shard}, grads_.dtype(), first.device());
  ops_for(master_).convert(master_, values_.rows(shard_begin_, shard_end_));
  exp_avg_ = Tensor::zeros({shard}, grads_.dtype(), first.device());
  exp_avg_sq_ = Tensor::zeros({shard}, grads_.dtype(), first.device());
}

int64_t Optimizer::shard_bytes() const {
  return static_cast<int64_t>(master_.nbytes() + exp_avg_.nbytes() + exp_avg_sq_.nbytes());
}

void Optimizer::zero_grad() { ops_for(grads_).zero(grads_); }

void Optimizer::reduce_gradients() {
  if (group_.size() == 1) return;
  if (cfg_.distributed) {
    Tensor summed = grads_.rows(shard_begin_, shard_end_).clone();
    group_.reduce_scatter(summed, grads_);
    Tensor mine = grads_.rows(shard_begin_, shard_end_);
    ops_for(mine).convert(mine, summed);
  } else {
    group_.all_reduce(grads_);
  }
  Tensor mine = grads_.rows(shard_begin_, shard_end_);
  ops_for(mine).scale(mine, double(cfg_.context_parallel) / group_.size());
}

double Optimizer::grad_norm(Comm& mp, int tp_rank) {
  double local = 0;
  for (const Segment& s : segments_) {
    const Parameter& p = *params_[s.param];
    if ((p.tp_duplicate && tp_rank != 0) || p.pipeline_copy) continue;
    const Tensor g = grads_.rows(s.flat_begin, s.flat_begin + s.length);
    local += ops_for(g).sum_squares(g);
  }
  Tensor sum = Tensor::from_vector<double>({local}, {1});
  if (cfg_.distributed) group_.all_reduce(sum);
  mp.all_reduce(sum);
  return std::sqrt(sum.data<double>()[0]);
}

void Optimizer::clip(double norm, double max_norm) {
  if (max_norm <= 0) return;
  const double coeff = max_norm / (norm + 1e-6);
  if (coeff >= 1.0) return;
  Tensor mine = grads_.rows(shard_begin_, shard_end_);
  ops_for(mine).scale(mine, coeff);
}

void Optimizer::step(double lr) {
  ++steps_;
  for (const Segment& s : segments_) {
    const Parameter& p = *params_[s.param];
    const int64_t at = s.flat_begin - shard_begin_;
    Tensor w = master_.rows(at, at + s.length), m = exp_avg_.rows(at, at + s.length),
           v = exp_avg_sq_.rows(at, at + s.length);
    const Tensor g = grads_.rows(s.flat_begin, s.flat_begin + s.length);
    const AdamWParams h{lr, cfg_.beta1, cfg_.beta2, cfg_.eps, p.weight_decay ? cfg_.weight_decay : 0.0, steps_};
    ops_for(w).adamw(w, g, m, v, h);
  }
  publish_values();
}

void Optimizer::publish_values() {
  Tensor mine = values_.rows(shard_begin_, shard_end_);
  ops_for(mine).convert(mine, master_);
  if (cfg_.distributed && group_.size() > 1) {
    const Tensor local = mine.clone();
    group_.all_gather(values_, local);
  }
}

Tensor& Optimizer::state(const std::string& kind) {
  if (kind == "master") return master_;
  if (kind == "exp_avg") return exp_avg_;
  WEFT_ASSERT(kind == "exp_avg_sq");
  return exp_avg_sq_;
}

std::vector<Tensor> Optimizer::gather_state(const std::string& kind) {
  Tensor& shard = state(kind);
  Tensor full = shard;
  if (cfg_.distributed && group_.size() > 1) {
    full = Tensor::empty({shard.numel() * group_.size()}, shard.dtype(), shard.device());
    group_.all_gather(full, shard);
  }
  std::vector<Tensor> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t n = params_[i]->value.numel(), base = cfg_.distributed ? 0 : shard_begin_;
    out.push_back(full.rows(offsets_[i] - base, offsets_[i] - base + n).reshape(params_[i]->value.shape()));
  }
  return out;
}

void Optimizer::scatter_state(const std::string& kind, const std::vector<Tensor>& full) {
  WEFT_ASSERT(full.size() == params_.size());
  Tensor& shard = state(kind);
  for (const Segment& s : segments_) {
    const int64_t within = s.flat_begin - offsets_[s.param], at = s.flat_begin - shard_begin_;
    Tensor dst = shard.rows(at, at + s.length);
    const Tensor src = full[s.param].reshape({full[s.param].numel()}).rows(within, within + s.length);
    ops_for(dst).convert(dst, src.to(dst.device()));
  }
  if (kind == "master") publish_values();
}

}  // namespace weft
