// weft/src/model/latent_attention.cpp v1 — multi-head latent attention's forward and backward (see the header).
#include "model/latent_attention.h"

#include <cmath>

#include "parallel/context_parallel.h"

namespace weft {
namespace {

// DeepSeek's q_a_layernorm and kv_a_layernorm keep RMSNorm's default epsilon whatever rms_norm_eps says.
constexpr double kLatentNormEps = 1e-6;

// The column-parallel rows of `per_head` dims for each of this rank's heads.
std::vector<ShardBlock> head_blocks(const ModelSpec& s, const LayerContext& ctx, int64_t per_head) {
  const int64_t rows = s.heads / ctx.tp_size() * per_head;
  return {{0, ctx.tp_rank() * rows, rows}};
}

Parameter duplicated(const LayerContext& ctx, const std::string& name, int64_t rows, int64_t cols, double std) {
  Parameter p = make_parameter(name, {rows, cols}, {rows, cols}, -1, {}, InitKind::normal, std, ctx.dtype,
                               ctx.device, ctx.seed);
  p.tp_duplicate = ctx.tp_size() > 1;  // its gradient comes from sums over every rank's heads: the same on each
  return p;
}

}  // namespace

LatentAttention::LatentAttention(const LayerContext& ctx, const ModelSpec& spec, int64_t layer, const RopeTables& rope)
    : kv_down(duplicated(ctx, layer_name(layer, "self_attention.linear_kv_down_proj.weight"),
                         spec.kv_lora_rank + spec.qk_rope_head_dim, spec.hidden, spec.init_std)),
      kv_norm(ctx, layer_name(layer, "self_attention.kv_layernorm.weight"), spec.kv_lora_rank, kLatentNormEps),
      kv_up(ctx, layer_name(layer, "self_attention.linear_kv_up_proj"), spec.kv_lora_rank,
            spec.heads * (spec.qk_nope_head_dim + spec.v_head_dim),
            head_blocks(spec, ctx, spec.qk_nope_head_dim + spec.v_head_dim), false, spec.init_std),
      proj(ctx, layer_name(layer, "self_attention.linear_proj"), spec.heads * spec.v_head_dim, spec.hidden,
           spec.init_std / std::sqrt(2.0 * double(spec.num_layers))),
      kv_rank_(spec.kv_lora_rank),
      rope_dim_(spec.qk_rope_head_dim),
      layer_(layer),
      ctx_(&ctx),
      rope_(&rope) {
  // The latents' norms see the whole sequence on every rank, their gradients already summed: never reduced over tp.
  kv_norm.weight.sequence_parallel = false;
  const int64_t d = spec.qk_nope_head_dim + spec.qk_rope_head_dim;
  if (spec.q_lora_rank > 0) {
    q_down = duplicated(ctx, layer_name(layer, "self_attention.linear_q_down_proj.weight"), spec.q_lora_rank,
                        spec.hidden, spec.init_std);
    q_norm = std::make_unique<RMSNorm>(ctx, layer_name(layer, "self_attention.q_layernorm.weight"), spec.q_lora_rank,
                                       kLatentNormEps);
    q_norm->weight.sequence_parallel = false;
    q_up = std::make_unique<ColumnParallelLinear>(ctx, layer_name(layer, "self_attention.linear_q_up_proj"),
                                                  spec.q_lora_rank, spec.heads * d, head_blocks(spec, ctx, d), false,
                                                  spec.init_std);
  } else {
    q_up = std::make_unique<ColumnParallelLinear>(ctx, layer_name(layer, "self_attention.linear_q_proj"), spec.hidden,
                                                  spec.heads * d, head_blocks(spec, ctx, d), false, spec.init_std);
  }
  params_.num_heads = params_.num_kv_heads = spec.heads / ctx.tp_size();
  params_.head_dim = d;
  params_.v_head_dim = spec.v_head_dim;
  params_.scale = spec.softmax_scale();
  params_.deterministic = ctx.deterministic;
}

Tensor LatentAttention::forward(const Tensor& x, const Tensor& residual, const Batch& batch, LayerLosses&,
                                std::unique_ptr<SlotSaved>& saved) {
  auto owned = std::make_unique<Saved>();
  Saved& s = *owned;
  saved = std::move(owned);
  Ops& ops = ops_for(x);
  // Under sequence parallelism every rank runs the down projections on the whole gathered sequence.
  s.input = gather_sequence(x, *ctx_);
  const int64_t t = s.input.size(0), heads = params_.num_heads;
  Tensor q;
  if (q_norm) {
    s.q_latent = Tensor::empty({t, q_down.value.size(0)}, x.dtype(), x.device());
    ops.gemm(s.q_latent, s.input, false, q_down.value, true, 1.0, 0.0);
    s.q_normed = q_norm->forward(s.q_latent, s.q_rstd);
    q = q_up->forward_local(s.q_normed);
  } else {
    q = q_up->forward_local(s.input);
  }
  s.kv_latent = Tensor::empty({t, kv_rank_}, x.dtype(), x.device());
  Tensor k_rope = Tensor::empty({t, rope_dim_}, x.dtype(), x.device());
  ops.gemm(s.kv_latent, s.input, false, kv_down.value.rows(0, kv_rank_), true, 1.0, 0.0);
  ops.gemm(k_rope, s.input, false, kv_down.value.rows(kv_rank_, kv_rank_ + rope_dim_), true, 1.0, 0.0);
  s.kv_normed = kv_norm.forward(s.kv_latent, s.kv_rstd);
  const Tensor kv = kv_up.forward_local(s.kv_normed);
  if (batch.cache) return forward_cached(q, kv, k_rope, residual, batch, s);

  s.q_heads = Tensor::empty({t, heads, params_.head_dim}, x.dtype(), x.device());
  s.k_heads = Tensor::empty({t, heads, params_.head_dim}, x.dtype(), x.device());
  s.v_heads = Tensor::empty({t, heads, params_.v_head_dim}, x.dtype(), x.device());
  ops.mla_split(s.q_heads, s.k_heads, s.v_heads, q, kv, k_rope, batch.positions, rope_->cos, rope_->sin);
  s.out = Tensor::empty({t, heads, params_.v_head_dim}, x.dtype(), x.device());
  s.lse = Tensor::empty({heads, t}, stat_dtype(x.dtype()), x.device());
  AttentionParams p = params_;
  p.max_seqlen = batch.max_seqlen;
  context_parallel_attention_forward(ctx_->cp, s.out, s.lse, s.q_heads, s.k_heads, s.v_heads, batch, p);
  Tensor unused;
  return proj.forward(s.out.reshape({t, heads * params_.v_head_dim}), unused, residual);
}

Tensor LatentAttention::forward_cached(const Tensor& q, const Tensor& kv, const Tensor& k_rope, const Tensor& residual,
                                       const Batch& batch, Saved& s) {
  Ops& ops = ops_for(q);
  const int64_t t = q.size(0), heads = params_.num_heads, d = params_.head_dim, dv = params_.v_head_dim;
  s.q_heads = Tensor::empty({t, heads, d}, q.dtype(), q.device());
  Tensor k_new = Tensor::empty({t, heads, d}, q.dtype(), q.device()), v_new = Tensor::empty({t, heads, dv}, q.dtype(), q.device());
  ops.mla_split(s.q_heads, k_new, v_new, q, kv, k_rope, batch.positions, rope_->cos, rope_->sin);
  // The cache per sequence: the normed latents and the unrotated key dims of its tokens so far.
  const CachedRows cached = extend_cache(*batch.cache, layer_, batch, s.kv_normed, k_rope);
  const int64_t total = cached.first.size(0);
  // Every cached token's keys and values (their queries are not used).
  const Tensor kv_all = kv_up.forward_local(cached.first);
  Tensor unused_q = Tensor::empty({total, heads, d}, q.dtype(), q.device());
  s.k_heads = Tensor::empty({total, heads, d}, q.dtype(), q.device());
  s.v_heads = Tensor::empty({total, heads, dv}, q.dtype(), q.device());
  ops.mla_split(unused_q, s.k_heads, s.v_heads, Tensor::zeros({total, heads * d}, q.dtype(), q.device()), kv_all,
                cached.second, cached.positions, rope_->cos, rope_->sin);
  s.out = Tensor::empty({t, heads, dv}, q.dtype(), q.device());
  ops.attention_with_cache(s.out, s.q_heads, s.k_heads, s.v_heads, batch.cu_seqlens, cached.cu, params_);
  Tensor unused;
  return proj.forward(s.out.reshape({t, heads * dv}), unused, residual);
}

Tensor LatentAttention::backward(const Tensor& dy, const Batch& batch, SlotSaved& saved) {
  Saved& s = static_cast<Saved&>(saved);
  Ops& ops = ops_for(dy);
  Comm& tp = *ctx_->tp;
  const int64_t t = s.q_heads.size(0), heads = params_.num_heads;
  const Tensor dout = proj.backward(dy, s.out.reshape({t, heads * params_.v_head_dim})).reshape(s.out.shape());
  Tensor dqh = Tensor::empty(s.q_heads.shape(), dy.dtype(), dy.device());
  Tensor dkh = Tensor::empty(s.k_heads.shape(), dy.dtype(), dy.device());
  Tensor dvh = Tensor::empty(s.v_heads.shape(), dy.dtype(), dy.device());
  AttentionParams p = params_;
  p.max_seqlen = batch.max_seqlen;
  context_parallel_attention_backward(ctx_->cp, dqh, dkh, dvh, dout, s.q_heads, s.k_heads, s.v_heads, s.out, s.lse,
                                      batch, p);
  Tensor dq = Tensor::empty({t, heads * params_.head_dim}, dy.dtype(), dy.device());
  Tensor dkv = Tensor::empty({t, kv_up.weight.value.size(0)}, dy.dtype(), dy.device());
  Tensor dk_rope = Tensor::empty({t, rope_dim_}, dy.dtype(), dy.device());
  ops.mla_merge(dq, dkv, dk_rope, dqh, dkh, dvh, batch.positions, rope_->cos, rope_->sin);

  // The latents' gradients from this rank's heads, summed over the ranks: then every rank back-propagates the same
  // through the norms and down projections.
  Tensor dkv_normed = Tensor::empty(s.kv_normed.shape(), dy.dtype(), dy.device());
  kv_up.backward_local(dkv_normed, dkv, s.kv_normed);
  tp.all_reduce(dkv_normed);
  tp.all_reduce(dk_rope);
  Tensor dkv_latent = Tensor::zeros(s.kv_latent.shape(), dy.dtype(), dy.device());
  kv_norm.backward(dkv_latent, dkv_normed, s.kv_latent, s.kv_rstd);

  const Tensor& x = s.input;
  Tensor dx = Tensor::empty(x.shape(), dy.dtype(), dy.device());
  const double kv_beta = grad_gemm_beta(kv_down);  // once: both row ranges of the one gradient
  Tensor latent_grad = kv_down.grad.rows(0, kv_rank_), rope_grad = kv_down.grad.rows(kv_rank_, kv_rank_ + rope_dim_);
  ops.gemm(latent_grad, dkv_latent, true, x, false, 1.0, kv_beta);
  ops.gemm(rope_grad, dk_rope, true, x, false, 1.0, kv_beta);
  ops.gemm(dx, dkv_latent, false, kv_down.value.rows(0, kv_rank_), false, 1.0, 0.0);
  ops.gemm(dx, dk_rope, false, kv_down.value.rows(kv_rank_, kv_rank_ + rope_dim_), false, 1.0, 1.0);
  if (q_norm) {
    Tensor dq_normed = Tensor::empty(s.q_normed.shape(), dy.dtype(), dy.device());
    q_up->backward_local(dq_normed, dq, s.q_normed);
    tp.all_reduce(dq_normed);
    Tensor dq_latent = Tensor::zeros(s.q_latent.shape(), dy.dtype(), dy.device());
    q_norm->backward(dq_latent, dq_normed, s.q_latent, s.q_rstd);
    ops.gemm(q_down.grad, dq_latent, true, x, false, 1.0, grad_gemm_beta(q_down));
    ops.gemm(dx, dq_latent, false, q_down.value, false, 1.0, 1.0);
  } else {
    Tensor dx_q = Tensor::empty(x.shape(), dy.dtype(), dy.device());
    q_up->backward_local(dx_q, dq, x);
    tp.all_reduce(dx_q);
    ops.add(dx, dx_q, 1.0);
  }
  if (!ctx_->sequence_parallel || tp.size() == 1) return dx;
  // dx is whole and the same on every rank: each keeps the rows of its part of the sequence.
  const int64_t local = t / tp.size();
  return dx.rows(tp.rank() * local, (tp.rank() + 1) * local).clone();
}

std::vector<Parameter*> LatentAttention::parameters() {
  std::vector<Parameter*> out;
  if (q_norm) out = {&q_down, &q_norm->weight};
  for (Parameter* p : q_up->parameters()) out.push_back(p);
  out.push_back(&kv_down);
  out.push_back(&kv_norm.weight);
  for (Parameter* p : kv_up.parameters()) out.push_back(p);
  out.push_back(&proj.weight);
  return out;
}

}  // namespace weft
