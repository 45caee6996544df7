// weft/src/optim/grouped_optimizer.h v1 — one optimizer per parameter group, each over its own ranks.
//
// Dense parameters reduce their gradients over the data- (and context-) parallel group and sum their norm over the
// model-parallel ranks (tp × pp); experts reduce over the expert-data-parallel group and sum their norm over the
// expert-model-parallel ranks (tp × ep × pp), as Megatron-Core does. The global gradient norm is the root of both
// sums, and clipping scales both groups by it. A group this rank holds nothing of still takes part in its norm's
// reduction (with zero), so every rank of those groups agrees.
#pragma once
#include <memory>
#include <vector>

#include "optim/optimizer.h"

namespace weft {

struct GroupSpec {
  ParamGroup group;
  Comm* grad_group;   // the ranks that average this group's gradients
  Comm* norm_group;   // the ranks that hold different parts of this group (their squares add)
};

class GroupedOptimizer {
 public:
  // `groups` lists every group the model has (on every rank alike); each parameter goes to its group's optimizer.
  GroupedOptimizer(const std::vector<Parameter*>& params, const OptimizerConfig& cfg,
                   const std::vector<GroupSpec>& groups);

  void zero_grad();
  Parameter* row_sparse_param() const;  // the dense group's (see Optimizer)
  void set_sparse_rows(const std::vector<int32_t>& rows);
  void grads_ready(const std::vector<Parameter*>& done);
  void reduce_gradients();
  std::vector<Parameter*> unreported() const;
  // sqrt(Σ over the groups of their reduced Σ grad²).
  double grad_norm(int tp_rank);
  void clip(double norm, double max_norm);
  void step(double lr);
  void await_values(const std::vector<Parameter*>& params);
  void await_all_values();

  int64_t steps() const { return steps_; }
  void set_steps(int64_t steps);
  // Every parameter, group by group, and the checkpoint state in the same order (Optimizer::gather_state).
  std::vector<Parameter*> parameters() const;
  std::vector<Tensor> gather_state(const std::string& kind);
  void scatter_state(const std::string& kind, const std::vector<Tensor>& full);
  int64_t shard_bytes() const;

 private:
  struct Entry {
    GroupSpec spec;
    std::unique_ptr<Optimizer> optimizer;  // null when this rank holds none of the group
  };
  Optimizer* of(const Parameter& p) const;
  // Calls `call` on each group's optimizer with the parameters of `params` in that group (none: not called).
  void by_group(const std::vector<Parameter*>& params, void (Optimizer::*call)(const std::vector<Parameter*>&));
  std::vector<Entry> entries_;
  int64_t steps_ = 0;
};

}  // namespace weft
