// weft/src/optim/optimizer.cpp v13 — flat buffers in buckets, shards, overlapped reductions, AdamW, norm, clipping.
#include "optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "optim/split_master.h"

namespace weft {

Optimizer::Optimizer(std::vector<Parameter*> params, const OptimizerConfig& cfg, Comm& grad_group)
    : params_(std::move(params)), cfg_(cfg), group_(grad_group) {
  WEFT_ASSERT(cfg.data_parallel >= 1);
  WEFT_ASSERT(!params_.empty());
  const Tensor& first = params_.front()->value;
  const int shards = cfg.distributed ? group_.size() : 1, rank = cfg.distributed ? group_.rank() : 0;
  // Buckets fill in backward order (last parameter first), the order in which the backward finishes them. A
  // row-sparse parameter gets a bucket of its own.
  std::vector<std::pair<size_t, size_t>> ranges;
  int64_t filled = 0;
  for (size_t i = params_.size(), end = params_.size(); i-- > 0;) {
    const bool alone = params_[i]->row_sparse_grad;
    if (alone) {
      WEFT_CHECK(sparse_param_ < 0, "optimizer: two row-sparse parameters, ", params_[i]->name, " and ",
                 params_[sparse_param_]->name);
      sparse_param_ = static_cast<int64_t>(i);
      if (end > i + 1) ranges.emplace_back(i + 1, end);
      end = i + 1;
      filled = 0;
    }
    filled += params_[i]->value.numel();
    if (alone || (cfg.bucket_elements > 0 && filled >= cfg.bucket_elements) || i == 0) {
      ranges.emplace_back(i, end);
      end = i;
      filled = 0;
    }
  }
  std::reverse(ranges.begin(), ranges.end());
  offsets_.resize(params_.size());
  bucket_of_.resize(params_.size());
  int64_t total = 0, at = 0;
  for (const auto& [lo, hi] : ranges) {
    Bucket b;
    b.first_param = lo;
    b.end_param = hi;
    b.begin = total;
    // The parameters that take weight decay come first, so that one AdamW call steps the whole bucket.
    for (const bool decayed : {true, false}) {
      for (size_t i = lo; i < hi; ++i) {
        if (params_[i]->weight_decay != decayed) continue;
        offsets_[i] = total;
        total += params_[i]->value.numel();
        bucket_of_[i] = buckets_.size();
        index_[params_[i]] = i;
      }
      if (decayed) b.decay_end = total;
    }
    total = (total + shards - 1) / shards * shards;
    b.end = total;
    const int64_t slice = (b.end - b.begin) / shards;
    b.slice_begin = b.begin + rank * slice;
    b.slice_end = b.slice_begin + slice;
    b.at = at;
    at += slice;
    buckets_.push_back(b);
  }
  WEFT_CHECK(!cfg.bf16_grads || first.dtype() == DType::bf16, "optimizer: bf16 gradients need bf16 values; the "
             "model's are ", dtype_name(first.dtype()));
  const DType masters = stat_dtype(first.dtype());  // the fp32 (f64) masters' and gradients' dtype
  values_ = Tensor::zeros({total}, first.dtype(), first.device());
  grads_ = Tensor::zeros({total}, cfg.bf16_grads ? DType::bf16 : masters, first.device());
  for (size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = *params_[i];
    const int64_t n = p.value.numel();
    Tensor view = values_.rows(offsets_[i], offsets_[i] + n);
    ops_for(view).convert(view, p.value.reshape({n}));
    p.value = view.reshape(p.value.shape());
    p.grad = grads_.rows(offsets_[i], offsets_[i] + n).reshape(p.grad.shape());
  }
  WEFT_CHECK(!cfg.split_master || first.dtype() == DType::bf16, "optimizer: split masters complete bf16 values; the "
             "model's are ", dtype_name(first.dtype()));
  // Split masters start as the values themselves: their low halves are zero.
  master_ = cfg.split_master ? Tensor::zeros({at}, DType::u16, first.device())
                             : Tensor::empty({at}, masters, first.device());
  for (Bucket& b : buckets_) {
    const size_t first_segment = segments_.size();
    for (size_t i = b.first_param; i < b.end_param; ++i) {
      const int64_t lo = std::max(b.slice_begin, offsets_[i]);
      const int64_t hi = std::min(b.slice_end, offsets_[i] + params_[i]->value.numel());
      if (lo < hi) segments_.push_back({i, lo, hi - lo, b.at + lo - b.slice_begin});
    }
    // In flat order (decayed parameters first), so that the gradient norm sums whole runs.
    std::sort(segments_.begin() + static_cast<std::ptrdiff_t>(first_segment), segments_.end(),
              [](const Segment& x, const Segment& y) { return x.flat_begin < y.flat_begin; });
    if (cfg.split_master) continue;
    Tensor mine = b.in_shard(master_);
    ops_for(mine).convert(mine, values_.rows(b.slice_begin, b.slice_end));
  }
  WEFT_CHECK(!cfg.bf16_moments || masters == DType::f32,
             "optimizer: bf16 Adam moments need fp32 master weights; the model's masters are ", dtype_name(masters));
  const DType moments = cfg.bf16_moments ? DType::bf16 : masters;
  exp_avg_ = Tensor::zeros({at}, moments, first.device());
  exp_avg_sq_ = Tensor::zeros({at}, moments, first.device());
  ready_.assign(params_.size(), 0);
  start_step();  // the gradients are fresh zeros
}

int64_t Optimizer::shard_bytes() const {
  return static_cast<int64_t>(master_.nbytes() + exp_avg_.nbytes() + exp_avg_sq_.nbytes());
}

void Optimizer::zero_grad() {
  for (Parameter* p : params_) p->grad_unwritten = true;  // cleared by their first writers (or readers)
  sparse_rows_ = Tensor();
  start_step();
}

void Optimizer::set_sparse_rows(const std::vector<int32_t>& rows) {
  WEFT_ASSERT(sparse_param_ >= 0 && !buckets_[bucket_of_[sparse_param_]].started);
  if (rows.empty()) {
    sparse_rows_ = Tensor();
    return;
  }
  sparse_rows_ = Tensor::from_vector(rows, {static_cast<int64_t>(rows.size())})
                     .to(params_[sparse_param_]->grad.device());
}

Tensor Optimizer::sparse_table() const {
  const Tensor& g = params_[sparse_param_]->grad;
  return g.reshape({g.size(0), g.numel() / g.size(0)});
}

void Optimizer::settle_grads() {
  for (Parameter* p : params_) prepare_grad(*p);
}

void Optimizer::start_step() {
  std::fill(ready_.begin(), ready_.end(), 0);
  for (Bucket& b : buckets_) {
    b.pending = static_cast<int>(b.end_param - b.first_param);
    b.started = false;
  }
}

void Optimizer::grads_ready(const std::vector<Parameter*>& done) {
  for (const Parameter* p : done) {
    const auto it = index_.find(p);
    WEFT_ASSERT(it != index_.end() && !ready_[it->second]);
    ready_[it->second] = 1;
    Bucket& b = buckets_[bucket_of_[it->second]];
    if (--b.pending == 0) start_reduction(b);
  }
}

std::vector<Parameter*> Optimizer::unreported() const {
  std::vector<Parameter*> out;
  for (size_t i = 0; i < params_.size(); ++i)
    if (!ready_[i]) out.push_back(params_[i]);
  return out;
}

int Optimizer::buckets_started() const {
  return static_cast<int>(std::count_if(buckets_.begin(), buckets_.end(), [](const Bucket& b) { return b.started; }));
}

void Optimizer::start_reduction(Bucket& b) {
  for (size_t i = b.first_param; i < b.end_param; ++i) prepare_grad(*params_[i]);
  b.started = true;
  const double mean = 1.0 / cfg_.data_parallel;  // cp parts add, dp samples average
  if (group_.size() == 1) {
    // Experts under expert parallelism: their group may be one rank while their tokens came from dp ranks.
    if (mean != 1.0) {
      Tensor whole = grads_.rows(b.begin, b.end);
      ops_for(whole).scale(whole, mean);
    }
    return;
  }
  if (sparse_rows_.defined() && b.first_param == static_cast<size_t>(sparse_param_)) {
    const Tensor table = sparse_table();
    packed_ = Tensor::empty({sparse_rows_.numel(), table.size(1)}, table.dtype(), table.device());
    ops_for(table).embedding_forward(packed_, sparse_rows_, table, 0);  // gathers the rows
    group_.start_all_reduce(packed_, mean);
    return;
  }
  Tensor whole = grads_.rows(b.begin, b.end);
  if (cfg_.distributed) {
    Tensor mine = grads_.rows(b.slice_begin, b.slice_end);
    group_.start_reduce_scatter(mine, whole, mean);
  } else {
    group_.start_all_reduce(whole, mean);
  }
}

void Optimizer::reduce_gradients() {
  // Buckets nobody reported (tied embeddings, runs without overlap) start now, in the same order on every rank.
  for (size_t i = buckets_.size(); i-- > 0;)
    if (!buckets_[i].started) start_reduction(buckets_[i]);
  wait_all_started();
  if (packed_.defined()) {  // the reduced rows back in place; the rest is zero on every rank
    Tensor table = sparse_table();
    ops_for(table).zero(table);
    ops_for(table).embedding_backward(table, packed_, sparse_rows_, 0);
    packed_ = Tensor();
  }
}

double Optimizer::grad_norm_squared(int tp_rank) {
  settle_grads();
  // Σ g² over runs of adjacent counted segments, one reduction per run of the flat buffer rather than per
  // parameter, and on a GPU one wait for all of them (a shard has a run per bucket).
  std::vector<Tensor> runs;
  int64_t run_begin = 0, run_end = 0;
  const auto add_run = [&] {
    if (run_end != run_begin) runs.push_back(grads_.rows(run_begin, run_end));
  };
  for (const Segment& s : segments_) {
    const Parameter& p = *params_[s.param];
    if ((p.tp_duplicate && tp_rank != 0) || p.pipeline_copy) continue;
    if (s.flat_begin != run_end) {
      add_run();
      run_begin = s.flat_begin;
    }
    run_end = s.flat_begin + s.length;
  }
  add_run();
  Tensor sum = Tensor::from_vector<double>({ops_for(grads_).sum_squares(runs)}, {1});
  if (cfg_.distributed) group_.all_reduce(sum);
  return sum.data<double>()[0];
}

void Optimizer::clip(double norm, double max_norm) {
  grad_scale_ = 1.0;
  if (max_norm <= 0) return;
  grad_scale_ = std::min(1.0, max_norm / (norm + 1e-6));
}

void Optimizer::step(double lr) {
  settle_grads();
  ++steps_;
  Ops& ops = ops_for(values_);
  if (cfg_.overlap_step) {
    // The last step's updates were all awaited before this step's backward wrote the gradients they read; a
    // bucket that was not would have raced with it.
    for (const Bucket& b : buckets_)
      WEFT_CHECK(b.updated < 0, "optimizer: a bucket's overlapped update (parameters from ",
                 params_[b.first_param]->name, ") was not awaited before the next step's backward");
    ops.join_side();
    ops.use_side_queue(true);
  }
  // One call per bucket slice (its padding, zero throughout, stays zero); each bucket's updated values leave for
  // the other ranks while the next bucket steps.
  for (Bucket& b : buckets_) {
    const int64_t n = b.slice_end - b.slice_begin;
    Tensor w = b.in_shard(master_), m = b.in_shard(exp_avg_), v = b.in_shard(exp_avg_sq_);
    const Tensor g = grads_.rows(b.slice_begin, b.slice_end);
    Tensor value = values_.rows(b.slice_begin, b.slice_end);
    const AdamWParams h{.lr = lr, .beta1 = cfg_.beta1, .beta2 = cfg_.beta2, .eps = cfg_.eps,
                        .weight_decay = cfg_.weight_decay, .step = steps_, .grad_scale = grad_scale_,
                        .decayed = std::clamp<int64_t>(b.decay_end - b.slice_begin, 0, n)};
    ops.adamw(w, value, g, m, v, h);
    share_values(b);  // with overlap_step its all-gather follows the update on the side queue
    if (cfg_.overlap_step) b.updated = ops.side_mark();
  }
  if (cfg_.overlap_step) ops.use_side_queue(false);
  grad_scale_ = 1.0;
  if (!cfg_.overlap_param_gather) wait_all_started();
}

void Optimizer::share_values(Bucket& b) {
  if (!cfg_.distributed || group_.size() == 1) return;
  Tensor mine = values_.rows(b.slice_begin, b.slice_end);
  Tensor whole = values_.rows(b.begin, b.end);
  group_.start_all_gather(whole, mine);
  b.gathered = group_.started_mark();
}

void Optimizer::wait_all_started() {
  group_.wait_started();
  for (Bucket& b : buckets_) b.gathered = -1;
}

void Optimizer::await_bucket(Bucket& b) {
  if (b.gathered >= 0) group_.wait_started_until(b.gathered);
  if (b.updated >= 0) ops_for(values_).wait_side(b.updated);
  b.gathered = b.updated = -1;
}

void Optimizer::await_values(const std::vector<Parameter*>& params) {
  for (const Parameter* p : params) {
    const auto it = index_.find(p);
    WEFT_ASSERT(it != index_.end());
    await_bucket(buckets_[bucket_of_[it->second]]);
  }
}

void Optimizer::await_all_values() {
  for (Bucket& b : buckets_) await_bucket(b);
}

Tensor Optimizer::gather_flat(const Tensor& shard) {
  if (!cfg_.distributed || group_.size() == 1) return shard;
  Tensor flat = Tensor::empty({values_.numel()}, shard.dtype(), shard.device());
  for (const Bucket& b : buckets_) {
    Tensor mine = flat.rows(b.slice_begin, b.slice_end), whole = flat.rows(b.begin, b.end);
    ops_for(mine).convert(mine, b.in_shard(shard));
    group_.all_gather(whole, mine);
  }
  return flat;
}

Tensor& Optimizer::state(const std::string& kind) {
  if (kind == "master") return master_;
  if (kind == "exp_avg") return exp_avg_;
  WEFT_ASSERT(kind == "exp_avg_sq");
  return exp_avg_sq_;
}

Tensor Optimizer::fp32_masters() {
  if (!cfg_.split_master) return master_;
  const Tensor lows = master_.to(Device::cpu);
  Tensor out = Tensor::empty({master_.numel()}, DType::f32);
  for (const Bucket& b : buckets_) {
    const Tensor values = values_.rows(b.slice_begin, b.slice_end).to(Device::cpu);
    for (int64_t i = 0; i < values.numel(); ++i)
      out.data<float>()[b.at + i] = join_master(values.data<bf16>()[i], lows.data<uint16_t>()[b.at + i]);
  }
  return out.to(master_.device());
}

void Optimizer::set_fp32_masters(const Tensor& masters) {
  WEFT_ASSERT(cfg_.split_master && masters.device() == Device::cpu && masters.dtype() == DType::f32);
  Tensor lows = Tensor::empty({master_.numel()}, DType::u16);
  for (const Bucket& b : buckets_) {
    Tensor values = Tensor::empty({b.slice_end - b.slice_begin}, DType::bf16);
    for (int64_t i = 0; i < values.numel(); ++i)
      split_master(masters.data<float>()[b.at + i], values.data<bf16>()[i], lows.data<uint16_t>()[b.at + i]);
    Tensor dst = values_.rows(b.slice_begin, b.slice_end);
    ops_for(dst).copy_bytes(dst.data_ptr(), dst.device(), values.data_ptr(), Device::cpu, values.nbytes());
  }
  ops_for(master_).copy_bytes(master_.data_ptr(), master_.device(), lows.data_ptr(), Device::cpu, lows.nbytes());
}

std::vector<Tensor> Optimizer::gather_state(const std::string& kind) {
  const Tensor full = gather_flat(kind == "master" ? fp32_masters() : state(kind));
  std::vector<Tensor> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t n = params_[i]->value.numel();
    out.push_back(full.rows(offsets_[i], offsets_[i] + n).reshape(params_[i]->value.shape()));
  }
  return out;
}

void Optimizer::scatter_state(const std::string& kind, const std::vector<Tensor>& full) {
  WEFT_ASSERT(full.size() == params_.size());
  // Split masters are assembled in fp32 on the host first (padding zero), then split into the values and low halves.
  const bool split = kind == "master" && cfg_.split_master;
  Tensor shard = split ? Tensor::zeros({master_.numel()}, DType::f32) : state(kind);
  for (const Segment& s : segments_) {
    const int64_t within = s.flat_begin - offsets_[s.param];
    Tensor dst = shard.rows(s.at, s.at + s.length);
    const Tensor src = full[s.param].reshape({full[s.param].numel()}).rows(within, within + s.length);
    ops_for(dst).convert(dst, src.to(dst.device()));
  }
  if (kind != "master") return;
  if (split) set_fp32_masters(shard);
  for (Bucket& b : buckets_) {
    Tensor mine = values_.rows(b.slice_begin, b.slice_end);
    if (!split) ops_for(mine).convert(mine, b.in_shard(master_));
    share_values(b);
  }
  wait_all_started();
}

}  // namespace weft
