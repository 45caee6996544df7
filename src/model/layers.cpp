// weft/src/model/layers.cpp v8 — RMSNorm, self-attention, SwiGLU MLP, the slot tables and the decoder layer.
#include "model/layers.h"

#include <cmath>

#include "model/latent_attention.h"
#include "model/moe.h"
#include "parallel/context_parallel.h"

namespace weft {

std::string layer_name(int64_t layer, const std::string& rest) { return str("decoder.layers.", layer, ".", rest); }


RopeTables RopeTables::build(const ModelSpec& spec, DType dtype, Device device) {
  const std::vector<double> inv = rope_inv_freq(spec);
  const int64_t half = static_cast<int64_t>(inv.size()), n = spec.max_positions;
  // YaRN scales the rotated dims' magnitude (DeepSeek's cos/sin cache does); 1 for factor 1 or mscale = mscale_all_dim.
  const RopeScaling& r = spec.rope_scaling;
  const double mscale =
      r.type == "yarn" ? yarn_mscale(r.factor, r.mscale) / yarn_mscale(r.factor, r.mscale_all_dim) : 1.0;
  Tensor c = Tensor::empty({n, half}, DType::f64), s = Tensor::empty({n, half}, DType::f64);
  for (int64_t p = 0; p < n; ++p)
    for (int64_t i = 0; i < half; ++i) {
      c.data<double>()[p * half + i] = std::cos(double(p) * inv[i]) * mscale;
      s.data<double>()[p * half + i] = std::sin(double(p) * inv[i]) * mscale;
    }
  RopeTables t{Tensor::empty({n, half}, dtype), Tensor::empty({n, half}, dtype)};
  cpu_ops().convert(t.cos, c);
  cpu_ops().convert(t.sin, s);
  t.cos = t.cos.to(device);
  t.sin = t.sin.to(device);
  return t;
}

// ---------------------------------------------------------------- RMSNorm

RMSNorm::RMSNorm(const LayerContext& ctx, const std::string& name, int64_t hidden, double eps) : eps_(eps) {
  weight = make_parameter(name, {hidden}, {hidden}, -1, {}, InitKind::ones, 0, ctx.dtype, ctx.device, ctx.seed);
  weight.tp_duplicate = ctx.tp_size() > 1;
  weight.sequence_parallel = ctx.sequence_parallel && ctx.tp_size() > 1;
}

Tensor RMSNorm::forward(const Tensor& x, Tensor& rstd) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  rstd = Tensor::empty({x.size(0)}, stat_dtype(x.dtype()), x.device());
  ops_for(x).rmsnorm_forward(y, rstd, x, weight.value, eps_);
  return y;
}

void RMSNorm::backward(Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& rstd) {
  prepare_grad(weight);
  ops_for(x).rmsnorm_backward(dx, weight.grad, dy, x, weight.value, rstd, true);
}

// ---------------------------------------------------------------- self-attention

namespace {

std::vector<ShardBlock> qkv_blocks(const ModelSpec& s, const LayerContext& ctx) {
  const int64_t local_groups = s.groups / ctx.tp_size();
  const int64_t rows = local_groups * (s.q_per_group() + 2) * s.head_dim;
  return {{0, ctx.tp_rank() * rows, rows}};
}

}  // namespace

SelfAttention::SelfAttention(const LayerContext& ctx, const ModelSpec& spec, int64_t layer, const RopeTables& rope)
    : qkv(ctx, layer_name(layer, "self_attention.linear_qkv"), spec.hidden,
          (spec.heads + 2 * spec.groups) * spec.head_dim, qkv_blocks(spec, ctx), spec.qkv_bias, spec.init_std),
      proj(ctx, layer_name(layer, "self_attention.linear_proj"), spec.heads * spec.head_dim, spec.hidden,
           spec.init_std / std::sqrt(2.0 * double(spec.num_layers))),
      rope_(&rope),
      cp_(ctx.cp),
      layer_(layer) {
  params_.num_heads = spec.heads / ctx.tp_size();
  params_.num_kv_heads = spec.groups / ctx.tp_size();
  params_.head_dim = spec.head_dim;
  params_.window = spec.sliding_window;
  params_.scale = spec.softmax_scale();
  params_.deterministic = ctx.deterministic;
}

AttentionParams SelfAttention::with_seqlen(const Batch& batch) const {
  AttentionParams p = params_;
  p.max_seqlen = batch.max_seqlen;
  return p;
}

Tensor SelfAttention::forward(const Tensor& x, const Tensor& residual, const Batch& batch, LayerLosses&,
                              std::unique_ptr<SlotSaved>& saved) {
  auto owned = std::make_unique<Saved>();
  Saved& s = *owned;
  saved = std::move(owned);
  if (batch.cache) return forward_cached(x, residual, batch, s);
  Ops& ops = ops_for(x);
  const Tensor mixed = qkv.forward(x, s.qkv_input);
  const int64_t t = mixed.size(0), d = params_.head_dim;
  s.q = Tensor::empty({t, params_.num_heads, d}, x.dtype(), x.device());
  s.k = Tensor::empty({t, params_.num_kv_heads, d}, x.dtype(), x.device());
  s.v = Tensor::empty({t, params_.num_kv_heads, d}, x.dtype(), x.device());
  ops.qkv_split(s.q, s.k, s.v, mixed, batch.positions, rope_->cos, rope_->sin);
  s.out = Tensor::empty(s.q.shape(), x.dtype(), x.device());
  s.lse = Tensor::empty({params_.num_heads, t}, stat_dtype(x.dtype()), x.device());
  context_parallel_attention_forward(cp_, s.out, s.lse, s.q, s.k, s.v, batch, with_seqlen(batch));
  Tensor unused;
  return proj.forward(s.out.reshape({t, params_.num_heads * d}), unused, residual);
}

namespace {

// Appends `fresh`'s rows to `store` (rows of the same shape; an undefined store starts empty).
void append_rows(Tensor& store, const Tensor& fresh) {
  const int64_t old = store.defined() ? store.size(0) : 0;
  Shape shape = fresh.shape();
  shape[0] += old;
  Tensor grown = Tensor::empty(shape, fresh.dtype(), fresh.device());
  if (old > 0) {
    Tensor head = grown.rows(0, old);
    write_into(head, store);
  }
  Tensor tail = grown.rows(old, shape[0]);
  write_into(tail, fresh);
  store = grown;
}

// All rows of the sequences `ids` in `stores`, one after another (rows bounded by `cu`).
Tensor side_by_side(const std::vector<std::pair<Tensor, Tensor>>& stores, const std::vector<int64_t>& ids,
                    const std::vector<int32_t>& cu, bool second) {
  const Tensor& like = second ? stores[size_t(ids[0])].second : stores[size_t(ids[0])].first;
  Shape shape = like.shape();
  shape[0] = cu.back();
  Tensor all = Tensor::empty(shape, like.dtype(), like.device());
  for (size_t seg = 0; seg < ids.size(); ++seg) {
    Tensor dst = all.rows(cu[seg], cu[seg + 1]);
    write_into(dst, second ? stores[size_t(ids[seg])].second : stores[size_t(ids[seg])].first);
  }
  return all;
}

}  // namespace

CachedRows extend_cache(KvCache& cache, int64_t layer, const Batch& batch, const Tensor& first, const Tensor& second) {
  auto& stores = cache.layers[layer];
  const std::vector<double> cu = batch.cu_seqlens.to_doubles();
  const std::vector<int64_t>& ids = cache.sequence_of_segment;
  WEFT_CHECK(ids.size() + 1 == cu.size(), "KV cache: ", cu.size() - 1, " segments for ", ids.size(), " sequences");
  std::vector<int32_t> k_cu = {0}, positions;
  for (size_t seg = 0; seg < ids.size(); ++seg) {
    const size_t id = static_cast<size_t>(ids[seg]);
    if (stores.size() <= id) stores.resize(id + 1);
    append_rows(stores[id].first, first.rows(int64_t(cu[seg]), int64_t(cu[seg + 1])));
    append_rows(stores[id].second, second.rows(int64_t(cu[seg]), int64_t(cu[seg + 1])));
    const int32_t len = static_cast<int32_t>(stores[id].first.size(0));
    for (int32_t p = 0; p < len; ++p) positions.push_back(p);
    k_cu.push_back(k_cu.back() + len);
  }
  return {side_by_side(stores, ids, k_cu, false), side_by_side(stores, ids, k_cu, true),
          Tensor::from_vector(k_cu, {int64_t(k_cu.size())}), Tensor::from_vector(positions, {k_cu.back()})};
}

Tensor SelfAttention::forward_cached(const Tensor& x, const Tensor& residual, const Batch& batch, Saved& s) {
  Ops& ops = ops_for(x);
  const Tensor mixed = qkv.forward(x, s.qkv_input);
  const int64_t t = mixed.size(0), d = params_.head_dim, hk = params_.num_kv_heads;
  s.q = Tensor::empty({t, params_.num_heads, d}, x.dtype(), x.device());
  Tensor kk = Tensor::empty({t, hk, d}, x.dtype(), x.device()), vv = Tensor::empty({t, hk, d}, x.dtype(), x.device());
  ops.qkv_split(s.q, kk, vv, mixed, batch.positions, rope_->cos, rope_->sin);
  // Each segment's new keys and values appended to its sequence's, then all of them side by side.
  const CachedRows cached = extend_cache(*batch.cache, layer_, batch, kk, vv);
  s.out = Tensor::empty(s.q.shape(), x.dtype(), x.device());
  ops.attention_with_cache(s.out, s.q, cached.first, cached.second, batch.cu_seqlens, cached.cu, params_);
  Tensor unused;
  return proj.forward(s.out.reshape({t, params_.num_heads * d}), unused, residual);
}

Tensor SelfAttention::backward(const Tensor& dy, const Batch& batch, SlotSaved& saved) {
  Saved& s = static_cast<Saved&>(saved);
  Ops& ops = ops_for(dy);
  const int64_t t = s.q.size(0);
  const Tensor dout = proj.backward(dy, s.out.reshape({t, params_.num_heads * params_.head_dim}))
                          .reshape(s.out.shape());
  Tensor dq = Tensor::empty(s.q.shape(), dy.dtype(), dy.device());
  Tensor dk = Tensor::empty(s.k.shape(), dy.dtype(), dy.device());
  Tensor dv = Tensor::empty(s.v.shape(), dy.dtype(), dy.device());
  context_parallel_attention_backward(cp_, dq, dk, dv, dout, s.q, s.k, s.v, s.out, s.lse, batch, with_seqlen(batch));
  Tensor dmixed = Tensor::empty({t, qkv.weight.value.size(0)}, dy.dtype(), dy.device());
  ops.qkv_merge(dmixed, dq, dk, dv, batch.positions, rope_->cos, rope_->sin);
  return qkv.backward(dmixed, s.qkv_input);
}

std::vector<Parameter*> SelfAttention::parameters() {
  std::vector<Parameter*> out = qkv.parameters();
  out.push_back(&proj.weight);
  return out;
}

// ---------------------------------------------------------------- SwiGLU MLP

namespace {

std::vector<ShardBlock> fc1_blocks(int64_t ffn, const LayerContext& ctx) {
  const int64_t local = ffn / ctx.tp_size(), r = ctx.tp_rank();
  return {{0, r * local, local}, {local, ffn + r * local, local}};
}

Tensor swiglu(const Tensor& fc1_out) {
  Tensor act = Tensor::empty({fc1_out.size(0), fc1_out.size(1) / 2}, fc1_out.dtype(), fc1_out.device());
  ops_for(fc1_out).swiglu_forward(act, fc1_out);
  return act;
}

}  // namespace

SwiGluMlp::SwiGluMlp(const LayerContext& ctx, const std::string& name, int64_t hidden, int64_t ffn, double init_std,
                     double output_std)
    : fc1(ctx, name + ".linear_fc1", hidden, 2 * ffn, fc1_blocks(ffn, ctx), false, init_std),
      fc2(ctx, name + ".linear_fc2", ffn, hidden, output_std),
      keep_activation_(ctx.recompute != Recompute::selective) {}  // full recomputation drops the whole layer

Tensor SwiGluMlp::forward(const Tensor& x, const Tensor& residual, const Batch&, LayerLosses&,
                          std::unique_ptr<SlotSaved>& saved) {
  auto owned = std::make_unique<Saved>();
  Saved& s = *owned;
  saved = std::move(owned);
  s.fc1_out = fc1.forward(x, s.fc1_input);
  s.fc2_input = swiglu(s.fc1_out);
  Tensor unused;
  Tensor out = fc2.forward(s.fc2_input, unused, residual);
  if (!keep_activation_) s.fc2_input = Tensor();
  return out;
}

Tensor SwiGluMlp::backward(const Tensor& dy, const Batch&, SlotSaved& saved) {
  Saved& s = static_cast<Saved&>(saved);
  if (!s.fc2_input.defined()) s.fc2_input = swiglu(s.fc1_out);
  const Tensor dact = fc2.backward(dy, s.fc2_input);
  Tensor dfc1 = Tensor::empty(s.fc1_out.shape(), dy.dtype(), dy.device());
  ops_for(dy).swiglu_backward(dfc1, dact, s.fc1_out);
  return fc1.backward(dfc1, s.fc1_input);
}

std::vector<Parameter*> SwiGluMlp::parameters() { return {&fc1.weight, &fc2.weight}; }

std::unique_ptr<LayerSlot> make_mlp(const LayerContext& ctx, const ModelSpec& spec, int64_t layer) {
  using Make = std::unique_ptr<LayerSlot> (*)(const LayerContext&, const ModelSpec&, int64_t);
  static const std::map<MlpKind, Make> slots = {
      {MlpKind::dense,
       [](const LayerContext& c, const ModelSpec& s, int64_t l) -> std::unique_ptr<LayerSlot> {
         return std::make_unique<SwiGluMlp>(c, layer_name(l, "mlp"), s.hidden, s.ffn, s.init_std,
                                            s.init_std / std::sqrt(2.0 * double(s.num_layers)));
       }},
      {MlpKind::moe,
       [](const LayerContext& c, const ModelSpec& s, int64_t l) -> std::unique_ptr<LayerSlot> {
         return std::make_unique<MoeLayer>(c, s, l);
       }},
  };
  return slots.at(spec.mlp_kind(layer))(ctx, spec, layer);
}

std::unique_ptr<LayerSlot> make_attention(const LayerContext& ctx, const ModelSpec& spec, int64_t layer,
                                          const RopeTables& rope) {
  if (spec.latent_attention()) return std::make_unique<LatentAttention>(ctx, spec, layer, rope);
  return std::make_unique<SelfAttention>(ctx, spec, layer, rope);
}

// ---------------------------------------------------------------- decoder layer

DecoderLayer::DecoderLayer(const LayerContext& ctx, const ModelSpec& spec, int64_t layer, const RopeTables& rope)
    : input_norm(ctx, layer_name(layer, "input_layernorm.weight"), spec.hidden, spec.norm_eps),
      attention(make_attention(ctx, spec, layer, rope)),
      mlp_norm(ctx, layer_name(layer, "pre_mlp_layernorm.weight"), spec.hidden, spec.norm_eps),
      mlp(make_mlp(ctx, spec, layer)),
      recompute_layer_(ctx.recompute == Recompute::full) {}

Tensor DecoderLayer::forward(const Tensor& x, const Batch& batch, DecoderLayerSaved& s, LayerLosses& losses) {
  Tensor out = forward_saving_all(x, batch, s, losses);
  if (recompute_layer_) {
    s = DecoderLayerSaved{};
    s.input = x;
    s.losses_scale = losses.backward_scale;
  }
  return out;
}

Tensor DecoderLayer::forward_saving_all(const Tensor& x, const Batch& batch, DecoderLayerSaved& s,
                                        LayerLosses& losses) {
  s.input = x;
  const Tensor n1 = input_norm.forward(x, s.rstd1);
  s.mid = attention->forward(n1, x, batch, losses, s.attention);  // x + attention
  const Tensor n2 = mlp_norm.forward(s.mid, s.rstd2);
  return mlp->forward(n2, s.mid, batch, losses, s.mlp);  // s.mid + mlp
}

Tensor DecoderLayer::backward(Tensor dy, const Batch& batch, DecoderLayerSaved& s) {
  // The rerun issues the same collectives (sequence-parallel gathers, ring attention, expert dispatch) on every
  // rank of the group; its losses were counted by the first forward already.
  if (recompute_layer_) {
    LayerLosses rerun{.backward_scale = s.losses_scale, .sums = {}};
    forward_saving_all(s.input, batch, s, rerun);
  }
  // dy flows straight through both residual connections; each branch adds its input gradient to it.
  const Tensor dn2 = mlp->backward(dy, batch, *s.mlp);
  mlp_norm.backward(dy, dn2, s.mid, s.rstd2);
  const Tensor dn1 = attention->backward(dy, batch, *s.attention);
  input_norm.backward(dy, dn1, s.input, s.rstd1);
  s = DecoderLayerSaved{};  // activations are freed as soon as the backward has consumed them
  return dy;
}

std::vector<Parameter*> DecoderLayer::parameters() {
  std::vector<Parameter*> out{&input_norm.weight};
  for (Parameter* p : attention->parameters()) out.push_back(p);
  out.push_back(&mlp_norm.weight);
  for (Parameter* p : mlp->parameters()) out.push_back(p);
  return out;
}

}  // namespace weft
