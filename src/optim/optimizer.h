// weft/src/optim/optimizer.h v1 — AdamW over contiguous parameter and gradient buffers, optionally sharded over
// data-parallel ranks (Megatron's distributed optimizer, ZeRO stage 1).
//
// The gradient group is every rank holding the same model shard: data-parallel ranks, times context-parallel
// ones when the sequence is split (Megatron's dp_cp group). Context-parallel ranks hold parts of one gradient,
// which add; data-parallel ranks hold gradients of different samples, which average.
//
// Every parameter's value and gradient become views into two flat buffers (padded to a multiple of the
// data-parallel size). Each data-parallel rank owns a contiguous shard of them: with the distributed optimizer the
// gradients are reduce-scattered into the shard, fp32 masters and Adam moments exist for the shard only, and the
// updated values are all-gathered back; without it the shard is everything and the gradients are all-reduced.
#pragma once
#include <memory>
#include <vector>

#include "dist/comm.h"
#include "model/parameter.h"
#include "ops/ops.h"

namespace weft {

struct OptimizerConfig {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
  bool distributed = false;  // shard masters and moments over the gradient group
  int context_parallel = 1;  // cp ranks in the gradient group
};

class Optimizer {
 public:
  Optimizer(std::vector<Parameter*> params, const OptimizerConfig& cfg, Comm& grad_group);
  void zero_grad();
  // The data-parallel mean of the (context-parallel summed) gradients, in this rank's shard (all of them without
  // sharding).
  void reduce_gradients();
  // sqrt(Σ grad²) over the model: this rank's shard, tensor-parallel duplicates counted once (tp rank 0) and a
  // tied embedding's last-stage copy not at all, summed over the shards (dp) and the model-parallel group `mp`.
  double grad_norm(Comm& mp, int tp_rank);
  // Megatron's clip_grad_norm: scales the gradients by max_norm / (norm + 1e-6) when that is below 1.
  void clip(double norm, double max_norm);
  // One AdamW step (no weight decay on 1-D parameters) on the fp32 masters of the shard; the parameters then hold
  // the masters rounded to their dtype, on every data-parallel rank.
  void step(double lr);

  int64_t steps() const { return steps_; }
  void set_steps(int64_t steps) { steps_ = steps; }
  const std::vector<Parameter*>& parameters() const { return params_; }
  int64_t shard_bytes() const;  // masters + moments held by this rank

  // Checkpoint state as whole local parameter tensors, "master", "exp_avg" and "exp_avg_sq" (gathered over the
  // data-parallel group when sharded: collective).
  std::vector<Tensor> gather_state(const std::string& kind);
  // The inverse: takes whole local parameter tensors and keeps this rank's shard; "master" also refreshes the
  // parameters.
  void scatter_state(const std::string& kind, const std::vector<Tensor>& full);

 private:
  struct Segment {
    size_t param;                // index into params_
    int64_t flat_begin, length;  // the part of the shard [flat_begin, flat_begin + length) this parameter covers
  };
  Tensor& state(const std::string& kind);
  void publish_values();  // masters → values (all-gathered when sharded)

  std::vector<Parameter*> params_;
  OptimizerConfig cfg_;
  Comm& group_;  // the gradient group (dp, or dp × cp)
  std::vector<int64_t> offsets_;  // flat offset of each parameter
  Tensor values_, grads_;         // flat buffers over every parameter
  int64_t shard_begin_ = 0, shard_end_ = 0;
  std::vector<Segment> segments_;
  Tensor master_, exp_avg_, exp_avg_sq_;  // shard-sized, fp32 (f64 for f64 models)
  int64_t steps_ = 0;
};

}  // namespace weft
