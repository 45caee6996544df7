// weft/src/optim/grouped_optimizer.cpp v1 — routing parameters to their group's optimizer; the global norm.
#include "optim/grouped_optimizer.h"

#include <cmath>

namespace weft {

GroupedOptimizer::GroupedOptimizer(const std::vector<Parameter*>& params, const OptimizerConfig& cfg,
                                   const std::vector<GroupSpec>& groups) {
  for (const GroupSpec& g : groups) {
    std::vector<Parameter*> mine;
    for (Parameter* p : params)
      if (p->group == g.group) mine.push_back(p);
    Entry e{g, nullptr};
    if (!mine.empty()) e.optimizer = std::make_unique<Optimizer>(mine, cfg, *g.grad_group);
    entries_.push_back(std::move(e));
  }
  for (const Parameter* p : params) WEFT_ASSERT(of(*p) != nullptr);
}

Optimizer* GroupedOptimizer::of(const Parameter& p) const {
  for (const Entry& e : entries_)
    if (e.spec.group == p.group) return e.optimizer.get();
  return nullptr;
}

void GroupedOptimizer::zero_grad() {
  for (Entry& e : entries_)
    if (e.optimizer) e.optimizer->zero_grad();
}

Parameter* GroupedOptimizer::row_sparse_param() const {
  for (const Entry& e : entries_)
    if (e.optimizer && e.optimizer->row_sparse_param()) return e.optimizer->row_sparse_param();
  return nullptr;
}

void GroupedOptimizer::set_sparse_rows(const std::vector<int32_t>& rows) { of(*row_sparse_param())->set_sparse_rows(rows); }

void GroupedOptimizer::by_group(const std::vector<Parameter*>& params,
                                void (Optimizer::*call)(const std::vector<Parameter*>&)) {
  for (Entry& e : entries_) {
    std::vector<Parameter*> part;
    for (Parameter* p : params)
      if (p->group == e.spec.group) part.push_back(p);
    if (!part.empty()) (e.optimizer.get()->*call)(part);
  }
}

void GroupedOptimizer::grads_ready(const std::vector<Parameter*>& done) { by_group(done, &Optimizer::grads_ready); }

void GroupedOptimizer::reduce_gradients() {
  for (Entry& e : entries_)
    if (e.optimizer) e.optimizer->reduce_gradients();
}

std::vector<Parameter*> GroupedOptimizer::unreported() const {
  std::vector<Parameter*> out;
  for (const Entry& e : entries_)
    if (e.optimizer)
      for (Parameter* p : e.optimizer->unreported()) out.push_back(p);
  return out;
}

double GroupedOptimizer::grad_norm(int tp_rank) {
  double total = 0;
  for (Entry& e : entries_) {
    Tensor sum = Tensor::from_vector<double>({e.optimizer ? e.optimizer->grad_norm_squared(tp_rank) : 0.0}, {1});
    e.spec.norm_group->all_reduce(sum);
    total += sum.data<double>()[0];
  }
  return std::sqrt(total);
}

void GroupedOptimizer::clip(double norm, double max_norm) {
  for (Entry& e : entries_)
    if (e.optimizer) e.optimizer->clip(norm, max_norm);
}

void GroupedOptimizer::step(double lr) {
  ++steps_;
  for (Entry& e : entries_)
    if (e.optimizer) e.optimizer->step(lr);
}

void GroupedOptimizer::await_values(const std::vector<Parameter*>& params) {
  by_group(params, &Optimizer::await_values);
}

void GroupedOptimizer::await_all_values() {
  for (Entry& e : entries_)
    if (e.optimizer) e.optimizer->await_all_values();
}

void GroupedOptimizer::set_steps(int64_t steps) {
  steps_ = steps;
  for (Entry& e : entries_)
    if (e.optimizer) e.optimizer->set_steps(steps);
}

std::vector<Parameter*> GroupedOptimizer::parameters() const {
  std::vector<Parameter*> out;
  for (const Entry& e : entries_)
    if (e.optimizer) out.insert(out.end(), e.optimizer->parameters().begin(), e.optimizer->parameters().end());
  return out;
}

std::vector<Tensor> GroupedOptimizer::gather_state(const std::string& kind) {
  std::vector<Tensor> out;
  for (Entry& e : entries_)
    if (e.optimizer)
      for (Tensor& t : e.optimizer->gather_state(kind)) out.push_back(t);
  return out;
}

void GroupedOptimizer::scatter_state(const std::string& kind, const std::vector<Tensor>& full) {
  size_t at = 0;
  for (Entry& e : entries_) {
    if (!e.optimizer) continue;
    const size_t n = e.optimizer->parameters().size();
    e.optimizer->scatter_state(kind, std::vector<Tensor>(full.begin() + at, full.begin() + at + n));
    at += n;
  }
  WEFT_ASSERT(at == full.size());
}

int64_t GroupedOptimizer::shard_bytes() const {
  int64_t total = 0;
  for (const Entry& e : entries_)
    if (e.optimizer) total += e.optimizer->shard_bytes();
  return total;
}

}  // namespace weft
