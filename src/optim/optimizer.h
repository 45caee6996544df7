// weft/src/optim/optimizer.h v11 — AdamW over contiguous parameter and gradient buffers in buckets, optionally
// sharded over data-parallel ranks (Megatron's distributed optimizer, ZeRO stage 1).
//
// The gradient group is every rank holding the same model shard: data-parallel ranks, times context-parallel
// ones when the sequence is split (Megatron's dp_cp group). Context-parallel ranks hold parts of one gradient,
// which add; data-parallel ranks hold gradients of different samples, which average.
//
// Every parameter's value and gradient become views into two flat buffers, cut into buckets of whole parameters
// (Megatron's DDP buckets, each padded to a multiple of the data-parallel size; within a bucket the parameters
// that take weight decay come first, so that one AdamW launch steps a bucket). A bucket's gradients are reduced
// as soon as the backward has finished all of its parameters (grads_ready), on the communication stream while the
// backward goes on. Each data-parallel rank owns one slice of every bucket: with the distributed optimizer the
// gradients are reduce-scattered into the slices, fp32 masters and Adam moments exist for the slices only, and the
// updated values are all-gathered back bucket by bucket while the next bucket steps; without it the slice is the
// whole bucket and the gradients are all-reduced. With overlap_param_gather those all-gathers run on past step()
// into the next forward, which waits for a bucket only when it reaches its parameters (await_values; Megatron's
// --overlap-param-gather). With overlap_step the AdamW updates themselves run on the backend's side queue on into
// the next forward, awaited the same way.
//
// A row-sparse parameter (an untied word embedding: of its 128k rows a step's tokens touch a few thousand) has a
// bucket of its own. When the trainer names the rows any rank may have written (set_sparse_rows), only those rows
// travel: gathered into a packed [rows, cols] buffer, all-reduced, and written back, on every rank (so also into
// every shard); the other rows are zero everywhere.
#pragma once
#include <memory>
#include <unordered_map>
#include <vector>

#include "dist/comm.h"
#include "model/parameter.h"
#include "ops/ops.h"

namespace weft {

struct OptimizerConfig {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
  bool distributed = false;  // shard masters and moments over the gradient group
  // The reduced gradient is the group's sum divided by this: the data-parallel size (context-parallel ranks hold
  // parts of one gradient, which add; data-parallel ranks hold gradients of different samples, which average).
  int data_parallel = 1;
  int64_t bucket_elements = 0;  // parameters are grouped into buckets of at least this many elements (0: one bucket)
  // Adam moments in bf16 beside fp32 masters (Megatron's --exp-avg-dtype/--exp-avg-sq-dtype bf16, as DeepSeek-V3
  // trains): 4 bytes less per parameter each.
  bool bf16_moments = false;
  // Gradients in bf16 beside bf16 values (Megatron's default without --accumulate-allreduce-grads-in-fp32): half
  // the gradient buffer and half the bytes its reductions move; the masters and moments are unchanged.
  bool bf16_grads = false;
  // Masters split (split_master.h): the bf16 values are their upper halves and a u16 buffer holds the lower ones,
  // the same fp32 masters in 2 bytes per parameter beside the values instead of 4 (needs bf16 values).
  bool split_master = false;
  // With distributed: step() returns with the all-gathers of updated values still running; whatever reads values
  // first calls await_values (the model's forward, through GptModel::set_params_needed) or await_all_values.
  bool overlap_param_gather = false;
  // step() queues the AdamW updates (and their all-gathers) on the backend's side queue and returns; the next
  // forward waits for each bucket's update only when it reaches the bucket's parameters (await_values), so the
  // updates run in what the forward's kernels leave of the GPU. The results are the same to the bit.
  bool overlap_step = false;
};

class Optimizer {
 public:
  Optimizer(std::vector<Parameter*> params, const OptimizerConfig& cfg, Comm& grad_group);
  // A new step: every gradient counts as zero, without a pass over them (Parameter::grad_unwritten; the first
  // writer overwrites, and whatever reads a gradient nothing wrote zeroes it first).
  void zero_grad();
  // The parameter with Parameter::row_sparse_grad (at most one), or null.
  Parameter* row_sparse_param() const { return sparse_param_ < 0 ? nullptr : params_[sparse_param_]; }
  // For this step (after zero_grad): the rows of row_sparse_param() that any rank of the gradient group may have
  // written, as sorted local row indices, the same list on every rank; its reduction then moves only these rows.
  // Empty: every row is reduced (the default each step).
  void set_sparse_rows(const std::vector<int32_t>& rows);
  // These parameters' gradients are final for this step: buckets whose parameters are all final start their
  // reduction now. Every rank of the gradient group must report the same parameters in the same order.
  void grads_ready(const std::vector<Parameter*>& done);
  // The data-parallel mean of the (context-parallel summed) gradients, in this rank's shard (all of them without
  // sharding): starts the buckets not yet started, waits for all.
  void reduce_gradients();
  std::vector<Parameter*> unreported() const;  // parameters grads_ready has not seen this step
  int buckets() const { return static_cast<int>(buckets_.size()); }
  int buckets_started() const;  // buckets whose reduction has started this step
  // Σ grad² over this rank's shard, tensor-parallel duplicates counted once (tp rank 0) and a tied embedding's
  // last-stage copy not at all, summed over the shards (the gradient group) when sharded; the caller sums it over
  // the model-parallel ranks.
  double grad_norm_squared(int tp_rank);
  // Megatron's clip_grad_norm: the next step uses the gradients times max_norm / (norm + 1e-6) when that is below
  // 1 (the scaling happens inside the step's update, not as a pass of its own; the gradients stay as they are).
  void clip(double norm, double max_norm);
  double grad_scale() const { return grad_scale_; }  // what clip decided for the next step
  // One AdamW step (no weight decay on 1-D parameters) on the fp32 masters of the shard; the parameters then hold
  // the masters rounded to their dtype, on every data-parallel rank.
  void step(double lr);
  // The device work queued after this sees these parameters' updated values (overlap_param_gather and
  // overlap_step: waits for their buckets' all-gathers and updates; otherwise step() has waited already). With
  // overlap_step every parameter must be awaited before the next step's backward writes its gradient.
  void await_values(const std::vector<Parameter*>& params);
  void await_all_values();

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
    int64_t at;                  // where that part sits in the shard-sized masters and moments
  };
  struct Bucket {
    size_t first_param, end_param;  // params_[first_param, end_param)
    int64_t begin, end;             // flat range, a multiple of the shard count long
    int64_t decay_end = 0;          // [begin, decay_end) holds the parameters that take weight decay
    int64_t slice_begin, slice_end;  // this rank's slice of it
    int64_t at;                     // where the slice sits in the shard-sized buffers
    int pending = 0;                // parameters not yet final this step
    bool started = false;
    int gathered = -1;              // the comm's mark after its values' all-gather, until awaited; -1: none
    int updated = -1;               // overlap_step: the side queue's mark after its update, until awaited
    // The slice's place in a shard-sized buffer (masters, moments).
    Tensor in_shard(const Tensor& shard) const { return shard.rows(at, at + slice_end - slice_begin); }
  };
  Tensor& state(const std::string& kind);
  // The shard's masters whole: master_ itself (fp32, f64 for f64 models), or fp32 joined from the values' slices
  // and master_'s low halves when split.
  Tensor fp32_masters();
  // Split masters: makes the shard's masters (the values' slices and the low halves) these fp32 ones (host).
  void set_fp32_masters(const Tensor& masters);
  void start_step();    // no bucket started, no parameter reported
  void settle_grads();  // zeroes the gradients nothing wrote this step
  void start_reduction(Bucket& b);
  void share_values(Bucket& b);  // starts all-gathering the bucket's updated values (when sharded)
  void wait_all_started();      // waits for every collective started; no all-gather is left to await
  void await_bucket(Bucket& b);  // the device work queued after this sees b's gathered values
  // The flat buffer of every rank's shards of `shard` (a shard-sized buffer), in flat-buffer order.
  Tensor gather_flat(const Tensor& shard);

  std::vector<Parameter*> params_;
  OptimizerConfig cfg_;
  Comm& group_;  // the gradient group (dp, or dp × cp)
  std::vector<int64_t> offsets_;  // flat offset of each parameter
  Tensor values_, grads_;         // flat buffers over every parameter
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;  // bucket of each parameter
  std::vector<char> ready_;        // parameters reported final this step
  std::unordered_map<const Parameter*, size_t> index_;  // position of each parameter in params_
  std::vector<Segment> segments_;
  // Shard-sized: fp32 (f64 for f64 models), or u16 low halves when split; moments bf16 if asked.
  Tensor master_, exp_avg_, exp_avg_sq_;
  int64_t sparse_param_ = -1;  // index of the row-sparse parameter in params_
  Tensor sparse_rows_;         // i32 local rows on its device this step; undefined: all rows
  Tensor packed_;              // its rows in flight: [sparse rows, cols]
  Tensor sparse_table() const;  // its gradient as [rows, cols]
  int64_t steps_ = 0;
  double grad_scale_ = 1.0;  // set by clip, used and reset by step
};

}  // namespace weft
