// weft/src/parallel/tensor_parallel.cpp v4 — column/row-parallel linears, vocab-parallel embedding and loss.
#include "parallel/tensor_parallel.h"

#include <algorithm>

#include "ops/ops.h"

#include <cstring>

namespace weft {

Tensor gather_sequence(const Tensor& x, const LayerContext& ctx) {
  if (!ctx.sequence_parallel || ctx.tp_size() == 1) return x;
  Tensor full = Tensor::empty({x.size(0) * ctx.tp_size(), x.size(1)}, x.dtype(), x.device());
  ctx.tp->all_gather(full, x);
  return full;
}

Tensor reduce_sequence(Tensor& partial, const LayerContext& ctx) {
  if (ctx.tp_size() == 1) return partial;
  if (!ctx.sequence_parallel) {
    ctx.tp->all_reduce(partial);
    return partial;
  }
  WEFT_CHECK(partial.size(0) % ctx.tp_size() == 0, "sequence parallel: ", partial.size(0),
             " tokens do not split over tp = ", ctx.tp_size());
  Tensor part = Tensor::empty({partial.size(0) / ctx.tp_size(), partial.size(1)}, partial.dtype(), partial.device());
  ctx.tp->reduce_scatter(part, partial);
  return part;
}

// ---------------------------------------------------------------- column-parallel linear

ColumnParallelLinear::ColumnParallelLinear(const LayerContext& ctx, const std::string& name, int64_t in,
                                           int64_t out_global, std::vector<ShardBlock> blocks, bool bias,
                                           double init_std, int64_t out_local)
    : ctx_(&ctx) {
  if (out_local < 0) {
    out_local = 0;
    for (const ShardBlock& b : blocks) out_local += b.length;
  }
  weight = make_parameter(name + ".weight", {out_global, in}, {out_local, in}, 0, blocks, InitKind::normal, init_std,
                          ctx.dtype, ctx.device, ctx.seed);
  if (bias)
    this->bias = make_parameter(name + ".bias", {out_global}, {out_local}, 0, blocks, InitKind::zeros, 0, ctx.dtype,
                                ctx.device, ctx.seed);
}

ColumnParallelLinear::ColumnParallelLinear(const LayerContext& ctx, Parameter& shared_weight)
    : ctx_(&ctx), shared_(&shared_weight) {}

Tensor ColumnParallelLinear::forward(const Tensor& x, Tensor& saved_input) {
  saved_input = gather_sequence(x, *ctx_);
  return forward_local(saved_input);
}

Tensor ColumnParallelLinear::backward(const Tensor& dy, const Tensor& saved_input) {
  Tensor dx = Tensor::empty(saved_input.shape(), dy.dtype(), dy.device());
  backward_local(dx, dy, saved_input);
  return reduce_sequence(dx, *ctx_);
}

Tensor ColumnParallelLinear::forward_local(const Tensor& input) {
  Tensor y = Tensor::empty({input.size(0), w().value.size(0)}, input.dtype(), input.device());
  Ops& ops = ops_for(input);
  ops.gemm(y, input, false, w().value, true, 1.0, 0.0);
  if (bias.value.defined()) ops.bias_add(y, bias.value);
  return y;
}

void ColumnParallelLinear::backward_local(Tensor& dx, const Tensor& dy, const Tensor& input) {
  Ops& ops = ops_for(dy);
  ops.gemm(w().grad, dy, true, input, false, 1.0, grad_gemm_beta(w()));
  if (bias.value.defined()) {
    prepare_grad(bias);
    ops.bias_grad(bias.grad, dy);
  }
  ops.gemm(dx, dy, false, w().value, false, 1.0, 0.0);
}

std::vector<Parameter*> ColumnParallelLinear::parameters() {
  std::vector<Parameter*> out;
  if (!shared_) out.push_back(&weight);
  if (bias.value.defined()) out.push_back(&bias);
  return out;
}

// ---------------------------------------------------------------- row-parallel linear

RowParallelLinear::RowParallelLinear(const LayerContext& ctx, const std::string& name, int64_t in_global,
                                     int64_t out, double init_std)
    : ctx_(&ctx) {
  const int64_t in_local = in_global / ctx.tp_size();
  weight = make_parameter(name + ".weight", {out, in_global}, {out, in_local}, 1,
                          {{0, ctx.tp_rank() * in_local, in_local}}, InitKind::normal, init_std, ctx.dtype,
                          ctx.device, ctx.seed);
}

Tensor RowParallelLinear::forward(const Tensor& x, Tensor& saved_input, const Tensor& residual) {
  saved_input = x;
  Ops& ops = ops_for(x);
  Tensor y = Tensor::empty({x.size(0), weight.value.size(0)}, x.dtype(), x.device());
  const bool add_in_gemm = residual.defined() && !ctx_->sequence_parallel && ctx_->tp_rank() == 0;
  if (add_in_gemm) ops.gemm_add(y, x, false, weight.value, true, residual);
  else ops.gemm(y, x, false, weight.value, true, 1.0, 0.0);
  Tensor out = reduce_sequence(y, *ctx_);
  if (residual.defined() && ctx_->sequence_parallel) ops.add(out, residual, 1.0);
  return out;
}

Tensor RowParallelLinear::backward(const Tensor& dy, const Tensor& saved_input) {
  const Tensor dy_full = gather_sequence(dy, *ctx_);
  Ops& ops = ops_for(dy);
  ops.gemm(weight.grad, dy_full, true, saved_input, false, 1.0, grad_gemm_beta(weight));
  Tensor dx = Tensor::empty(saved_input.shape(), dy.dtype(), dy.device());
  ops.gemm(dx, dy_full, false, weight.value, false, 1.0, 0.0);
  return dx;
}

std::vector<double> gather_global(const Parameter& p, Comm& tp) {
  const int n = tp.size();
  Tensor local = Tensor::empty(p.value.shape(), DType::f64);
  cpu_ops().convert(local, p.value.to(Device::cpu));
  std::vector<double> global(static_cast<size_t>(numel_of(p.global_shape)), 0.0);
  if (p.shard_dim < 0) {
    const double* v = local.data<double>();
    std::copy(v, v + global.size(), global.begin());
    return global;
  }
  Tensor all = Tensor::empty({n * local.numel()}, DType::f64);
  tp.all_gather(all, local.reshape({local.numel()}));
  constexpr int kMaxBlocks = 4;
  WEFT_ASSERT(p.blocks.size() <= kMaxBlocks);
  std::vector<int64_t> mine(kMaxBlocks * 3, 0);
  for (size_t i = 0; i < p.blocks.size(); ++i) {
    mine[i * 3] = p.blocks[i].local_begin;
    mine[i * 3 + 1] = p.blocks[i].global_begin;
    mine[i * 3 + 2] = p.blocks[i].length;
  }
  Tensor blocks = Tensor::empty({n * kMaxBlocks * 3}, DType::i64);
  tp.all_gather(blocks, Tensor::from_vector(mine, {kMaxBlocks * 3}));
  const Shape& ls = p.value.shape();
  const int d = p.shard_dim;
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < d; ++i) outer *= ls[i];
  for (size_t i = d + 1; i < ls.size(); ++i) inner *= ls[i];
  const int64_t ldim = ls[d], gdim = p.global_shape[d];
  for (int r = 0; r < n; ++r) {
    const double* src = all.data<double>() + r * local.numel();
    const int64_t* b = blocks.data<int64_t>() + r * kMaxBlocks * 3;
    for (int i = 0; i < kMaxBlocks; ++i) {
      const int64_t lb = b[i * 3], gb = b[i * 3 + 1], len = b[i * 3 + 2];
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t j = 0; j < len; ++j)
          std::copy_n(src + (o * ldim + lb + j) * inner, inner, global.begin() + (o * gdim + gb + j) * inner);
    }
  }
  return global;
}


// ---------------------------------------------------------------- vocab-parallel embedding

VocabShard VocabShard::of(int64_t vocab, int64_t padded_vocab, int tp_rank, int tp_size) {
  VocabShard s;
  s.rows = padded_vocab / tp_size;
  s.start = tp_rank * s.rows;
  s.valid = std::max<int64_t>(0, std::min(s.rows, vocab - s.start));
  return s;
}

VocabParallelEmbedding::VocabParallelEmbedding(const LayerContext& ctx, int64_t vocab, int64_t padded_vocab,
                                               int64_t hidden, double init_std)
    : shard(VocabShard::of(vocab, padded_vocab, ctx.tp_rank(), ctx.tp_size())), ctx_(&ctx) {
  weight = make_parameter("embedding.word_embeddings.weight", {vocab, hidden}, {shard.rows, hidden}, 0,
                          shard.blocks(), InitKind::normal, init_std, ctx.dtype, ctx.device, ctx.seed);
}

Tensor VocabParallelEmbedding::forward(const Tensor& ids) {
  Tensor out = Tensor::empty({ids.numel(), weight.value.size(1)}, weight.value.dtype(), weight.value.device());
  ops_for(out).embedding_forward(out, ids, weight.value, shard.start);
  return reduce_sequence(out, *ctx_);
}

void VocabParallelEmbedding::backward(const Tensor& dy, const Tensor& ids) {
  const Tensor full = gather_sequence(dy, *ctx_);
  prepare_grad(weight);
  ops_for(full).embedding_backward(weight.grad, full, ids, shard.start);
}

// ---------------------------------------------------------------- vocab-parallel cross-entropy

Tensor vocab_parallel_cross_entropy(const LayerContext& ctx, const Tensor& logits, const Tensor& labels,
                                    const VocabShard& shard, CrossEntropySaved& saved) {
  Ops& ops = ops_for(logits);
  const int64_t t = logits.size(0);
  const DType sd = stat_dtype(logits.dtype());
  // sum_exp and the target logit travel together in one all-reduce.
  Tensor sums = Tensor::empty({2, t}, sd, logits.device());
  Tensor sum_exp = sums.rows(0, 1).reshape({t}), target = sums.rows(1, 2).reshape({t});
  saved.row_max = Tensor::empty({t}, sd, logits.device());
  ops.cross_entropy_stats(saved.row_max, sum_exp, target, logits, labels, shard.start, shard.valid);
  if (ctx.tp_size() > 1) {  // one shard's max is already the row's
    const Tensor shard_max = saved.row_max.clone();
    ctx.tp->all_reduce(saved.row_max, ReduceOp::max);
    ops.cross_entropy_rescale(sum_exp, shard_max, saved.row_max);
  }
  ctx.tp->all_reduce(sums);
  saved.sum_exp = sum_exp;
  Tensor loss = Tensor::empty({t}, sd, logits.device());
  ops.cross_entropy_loss(loss, saved.row_max, sum_exp, target);
  return loss;
}

void vocab_parallel_cross_entropy_backward(Tensor& logits, const Tensor& labels, const Tensor& row_scale,
                                           const VocabShard& shard, const CrossEntropySaved& saved) {
  ops_for(logits).cross_entropy_backward(logits, logits, saved.row_max, saved.sum_exp, labels, row_scale,
                                         shard.start, shard.valid);
}

Tensor output_cross_entropy_fused(const LayerContext& ctx, ColumnParallelLinear& output, const Tensor& x,
                                  const Tensor& labels, const Tensor& row_scale, const VocabShard& shard,
                                  int64_t chunk_rows, Tensor& dx) {
  const Tensor input = gather_sequence(x, ctx);
  const int64_t t = input.size(0);
  if (chunk_rows <= 0) {
    const int64_t row_bytes = output.w().value.size(0) * static_cast<int64_t>(dtype_size(input.dtype()));
    chunk_rows = std::max<int64_t>(1, kLossChunkBytes / row_bytes);
    // A multiple of 256 rows fills cuBLASLt's 128- and 256-row tiles (1,046 rows at vocab 128256 left the last
    // tile row mostly empty and sent the dgrad to split-K: 2.5 ms per 1.5B step).
    if (chunk_rows >= 256) chunk_rows -= chunk_rows % 256;
  }
  Tensor losses = Tensor::empty({t}, stat_dtype(input.dtype()), input.device());
  Tensor dinput = Tensor::empty(input.shape(), input.dtype(), input.device());
  for (int64_t lo = 0; lo < t; lo += chunk_rows) {
    const int64_t hi = std::min(t, lo + chunk_rows);
    const Tensor rows = input.rows(lo, hi), chunk_labels = labels.rows(lo, hi);
    Tensor logits = output.forward_local(rows);
    CrossEntropySaved saved;
    Tensor chunk_losses = losses.rows(lo, hi);
    ops_for(x).convert(chunk_losses, vocab_parallel_cross_entropy(ctx, logits, chunk_labels, shard, saved));
    vocab_parallel_cross_entropy_backward(logits, chunk_labels, row_scale.rows(lo, hi), shard, saved);
    Tensor dinput_rows = dinput.rows(lo, hi);
    output.backward_local(dinput_rows, logits, rows);
  }
  dx = reduce_sequence(dinput, ctx);
  return losses;
}

}  // namespace weft
