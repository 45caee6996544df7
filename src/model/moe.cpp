// weft/src/model/moe.cpp v2 — the MoE layer's forward and backward.
#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace weft {
namespace {

Tensor empty_like_rows(int64_t rows, int64_t cols, const Tensor& like, DType dtype) {
  return Tensor::empty({rows, cols}, dtype, like.device());
}

}  // namespace

std::vector<std::string> moe_loss_names(const ModelSpec& spec) {
  std::vector<std::string> names = {"load_balancing_loss", "z_loss"};
  if (spec.moe_num_groups > 0) names.insert(names.end(), {"device_balance_loss", "comm_balance_loss"});
  return names;
}

GroupBalance group_balance(const std::vector<double>& score_sum, const std::vector<double>& counts,
                           const std::vector<double>& reached, int64_t topk, int64_t group_topk, double tokens) {
  const int64_t E = static_cast<int64_t>(score_sum.size()), D = static_cast<int64_t>(reached.size()), n = E / D;
  GroupBalance b;
  b.device_weight.assign(static_cast<size_t>(E), 0.0);
  b.comm_weight.assign(static_cast<size_t>(E), 0.0);
  for (int64_t g = 0; g < D; ++g) {
    double f_mean = 0, p = 0;
    for (int64_t e = g * n; e < (g + 1) * n; ++e) {
      f_mean += double(E) / (double(topk) * tokens) * counts[e] / double(n);
      p += score_sum[e] / tokens;
    }
    const double f_comm = double(D) / (double(group_topk) * tokens) * reached[g];
    b.device += f_mean * p;
    b.comm += f_comm * p;
    for (int64_t e = g * n; e < (g + 1) * n; ++e) {
      b.device_weight[e] = f_mean / tokens;
      b.comm_weight[e] = f_comm / tokens;
    }
  }
  return b;
}

MoeLayer::MoeLayer(const LayerContext& ctx, const ModelSpec& spec, int64_t layer)
    : ctx_(&ctx),
      num_experts_(spec.num_experts),
      route_{.topk = spec.moe_topk,
             .pre_softmax = spec.moe_pre_softmax,
             .num_groups = spec.moe_num_groups,
             .group_topk = spec.moe_group_topk,
             .scaling = spec.moe_topk_scaling},
      dispatcher_(ctx.ep, spec.num_experts),
      keep_activation_(ctx.recompute != Recompute::selective) {
  const std::string name = layer_name(layer, "mlp");
  const int64_t h = spec.hidden;
  const double output_std = spec.init_std / std::sqrt(2.0 * double(spec.num_layers));
  router = make_parameter(name + ".router.weight", {num_experts_, h}, {num_experts_, h}, -1, {}, InitKind::normal,
                          spec.init_std, ctx.dtype, ctx.device, ctx.seed);
  router.tp_duplicate = ctx.tp_size() > 1;  // every tp rank routes the same tokens: the same gradient
  for (int64_t e = 0; e < dispatcher_.local_experts(); ++e) {
    experts.push_back(std::make_unique<SwiGluMlp>(ctx, str(name, ".experts.local_experts.", dispatcher_.first_expert() + e),
                                                  h, spec.moe_ffn, spec.init_std, output_std));
    for (Parameter* p : experts.back()->parameters()) p->group = ParamGroup::expert;
  }
  if (spec.moe_shared_ffn > 0)
    shared = std::make_unique<SwiGluMlp>(ctx, name + ".shared_experts", h, spec.moe_shared_ffn, spec.init_std,
                                         output_std);
  if (spec.moe_shared_gate) {
    shared_gate = make_parameter(name + ".shared_experts.gate_weight", {1, h}, {1, h}, -1, {}, InitKind::normal,
                                 spec.init_std, ctx.dtype, ctx.device, ctx.seed);
    shared_gate.tp_duplicate = ctx.tp_size() > 1;
  }
}

std::vector<Tensor> MoeLayer::expert_weights(bool fc1) const {
  std::vector<Tensor> out;
  for (const auto& e : experts) out.push_back(fc1 ? e->fc1.weight.value : e->fc2.weight.value);
  return out;
}

void MoeLayer::route_losses(Saved& s, LayerLosses& losses) const {
  const LayerContext& c = *ctx_;
  const int64_t t = s.logits.size(0), E = num_experts_;
  const DType sd = s.logits.dtype();
  Tensor stats = Tensor::empty({2 * E + 1}, sd, s.logits.device());
  Tensor score_sum = stats.rows(0, E), counts = stats.rows(E, 2 * E), z_sum = stats.rows(2 * E, 2 * E + 1);
  ops_for(stats).moe_router_stats(score_sum, counts, z_sum, s.logits, s.experts);
  const std::vector<double> host = stats.to_doubles();
  // The balance is over the whole sequence: token counts summed over the context-parallel ranks (every tp rank
  // already routes all of the layer's tokens); each cp rank's loss holds its own tokens' probabilities.
  Tensor global = Tensor::from_vector(std::vector<double>(host.begin() + E, host.begin() + 2 * E), {E});
  const int cp = c.cp ? c.cp->size() : 1;
  if (cp > 1) c.cp->all_reduce(global);
  const double tokens = double(t) * cp, k = double(route_.topk);
  const double norm = double(E) / (k * tokens * tokens);
  double aux = 0;
  for (int64_t e = 0; e < E; ++e) aux += host[e] * global.data<double>()[e];
  losses.add("load_balancing_loss", norm * aux);
  losses.add("z_loss", host[2 * E] / tokens);
  std::vector<double> w(static_cast<size_t>(E), 0.0);  // ∂(the scaled balance losses)/∂Σ_t softmax(logits_t)
  for (int64_t e = 0; e < E; ++e) w[e] = c.moe.aux_loss_coeff * norm * global.data<double>()[e];
  if (route_.num_groups > 0)
    group_losses(s, {host.begin(), host.begin() + E}, global.to_doubles(), tokens, losses, w);
  const double scale = losses.backward_scale;
  if (std::any_of(w.begin(), w.end(), [](double v) { return v != 0; })) {
    for (double& v : w) v *= scale;
    s.aux_weight = Tensor::empty({E}, sd, s.logits.device());
    write_into(s.aux_weight, Tensor::from_vector(w, {E}));
  }
  s.z_scale = c.moe.z_loss_coeff / tokens * scale;
}

void MoeLayer::group_losses(const Saved& s, const std::vector<double>& score_sum, const std::vector<double>& counts,
                            double tokens, LayerLosses& losses, std::vector<double>& weight) const {
  const LayerContext& c = *ctx_;
  // The tokens that reach each group, summed over the context-parallel ranks as the counts are.
  const int64_t D = route_.num_groups, size = num_experts_ / D, k = route_.topk;
  const std::vector<double> chosen = s.experts.to_doubles();
  std::vector<double> reached(static_cast<size_t>(D), 0.0);
  for (size_t t = 0; t < chosen.size() / size_t(k); ++t) {
    std::vector<bool> hit(static_cast<size_t>(D), false);
    for (int64_t j = 0; j < k; ++j) hit[static_cast<size_t>(int64_t(chosen[t * k + j]) / size)] = true;
    for (int64_t g = 0; g < D; ++g) reached[g] += hit[g];
  }
  if (c.cp && c.cp->size() > 1) {
    Tensor r = Tensor::from_vector(reached, {D});
    c.cp->all_reduce(r);
    reached = r.to_doubles();
  }
  const GroupBalance b = group_balance(score_sum, counts, reached, k, route_.group_topk, tokens);
  losses.add("device_balance_loss", b.device);
  losses.add("comm_balance_loss", b.comm);
  for (int64_t e = 0; e < num_experts_; ++e)
    weight[e] += c.moe.device_balance_coeff * b.device_weight[e] + c.moe.comm_balance_coeff * b.comm_weight[e];
}

Tensor MoeLayer::forward(const Tensor& x, const Tensor& residual, const Batch&, LayerLosses& losses,
                         std::unique_ptr<SlotSaved>& saved) {
  auto owned = std::make_unique<Saved>();
  Saved& s = *owned;
  saved = std::move(owned);
  const LayerContext& c = *ctx_;
  Ops& ops = ops_for(x);
  const DType sd = stat_dtype(x.dtype());
  s.input = gather_sequence(x, c);
  const int64_t t = s.input.size(0), k = route_.topk;
  s.logits = empty_like_rows(t, num_experts_, x, sd);
  ops.gemm(s.logits, s.input, false, router.value, true, 1.0, 0.0);
  s.probs = empty_like_rows(t, k, x, sd);
  s.experts = empty_like_rows(t, k, x, DType::i32);
  ops.moe_route(s.probs, s.experts, s.logits, route_);
  route_losses(s, losses);

  Tensor dispatched = s.experts;
  int64_t pad = 0;
  if (c.moe.capacity_factor > 0) {
    Tensor kept = s.experts.to(Device::cpu, true);
    const int64_t capacity = drop_over_capacity(kept, s.probs.to(Device::cpu), num_experts_, c.moe.capacity_factor,
                                                c.moe.drop_by_position);
    if (c.moe.pad_to_capacity) pad = capacity;
    dispatched = kept.to(x.device());
  }
  s.plan = dispatcher_.plan(dispatched, pad);
  s.expert_input = dispatcher_.dispatch(s.input, s.plan);
  s.row_probs = dispatcher_.dispatch_pairs(s.probs, s.plan);
  const int64_t rows = s.plan.received;
  const int64_t width = experts.empty() ? 0 : experts.front()->fc2.weight.value.size(1);
  s.fc1_out = empty_like_rows(rows, 2 * width, x, x.dtype());
  ops.grouped_gemm(s.fc1_out, s.expert_input, expert_weights(true), true, s.plan.local_rows);
  s.act = empty_like_rows(rows, width, x, x.dtype());
  ops.moe_swiglu_forward(s.act, s.fc1_out, s.row_probs);
  Tensor expert_out = empty_like_rows(rows, s.input.size(1), x, x.dtype());
  ops.grouped_gemm(expert_out, s.act, expert_weights(false), true, s.plan.local_rows);
  if (!keep_activation_) s.act = Tensor();
  Tensor y = dispatcher_.combine(expert_out, s.plan);  // partial over tp
  if (shared) shared_forward(s, y);
  // The partial sums over tp, with the residual connection: added once (tp rank 0) before an all-reduce, or after
  // the reduce-scatter of sequence parallelism (as RowParallelLinear does).
  const bool after = c.sequence_parallel && c.tp_size() > 1;
  if (!after && c.tp_rank() == 0) ops.add(y, residual, 1.0);
  Tensor out = reduce_sequence(y, c);
  if (after) ops.add(out, residual, 1.0);
  return out;
}

void MoeLayer::shared_forward(Saved& s, Tensor& y) const {
  Ops& ops = ops_for(y);
  s.shared_fc1 = shared->fc1.forward_local(s.input);
  s.shared_act = empty_like_rows(s.input.size(0), s.shared_fc1.size(1) / 2, y, y.dtype());
  if (shared_gate.value.defined()) {
    Tensor logit = empty_like_rows(s.input.size(0), 1, y, stat_dtype(y.dtype()));
    ops.gemm(logit, s.input, false, shared_gate.value, true, 1.0, 0.0);
    s.gate = Tensor::empty(logit.shape(), logit.dtype(), y.device());
    ops.sigmoid(s.gate, logit);
    ops.moe_swiglu_forward(s.shared_act, s.shared_fc1, s.gate);
  } else {
    ops.swiglu_forward(s.shared_act, s.shared_fc1);
  }
  ops.gemm(y, s.shared_act, false, shared->fc2.weight.value, true, 1.0, 1.0);
  if (!keep_activation_) s.shared_act = Tensor();
}

Tensor MoeLayer::backward(const Tensor& dy, const Batch&, SlotSaved& saved) {
  Saved& s = static_cast<Saved&>(saved);
  const LayerContext& c = *ctx_;
  Ops& ops = ops_for(dy);
  const DType sd = stat_dtype(dy.dtype());
  const Tensor dy_full = gather_sequence(dy, c);
  const std::vector<int64_t>& rows = s.plan.local_rows;
  // The experts, from their rows of dy.
  const Tensor drows = dispatcher_.dispatch(dy_full, s.plan);
  if (!s.act.defined()) {
    s.act = Tensor::empty({s.fc1_out.size(0), s.fc1_out.size(1) / 2}, dy.dtype(), dy.device());
    ops.moe_swiglu_forward(s.act, s.fc1_out, s.row_probs);
  }
  std::vector<Tensor> grads;
  std::vector<double> betas;
  auto expert_grads = [&](bool fc1) {
    grads.clear();
    betas.clear();
    for (auto& e : experts) {
      Parameter& p = fc1 ? e->fc1.weight : e->fc2.weight;
      betas.push_back(grad_gemm_beta(p));
      grads.push_back(p.grad);
    }
  };
  expert_grads(false);
  ops.grouped_gemm_wgrad(grads, drows, s.act, rows, betas);
  Tensor dact = Tensor::empty(s.act.shape(), dy.dtype(), dy.device());
  ops.grouped_gemm(dact, drows, expert_weights(false), false, rows);
  Tensor dfc1 = Tensor::empty(s.fc1_out.shape(), dy.dtype(), dy.device());
  Tensor drow_probs = Tensor::empty(s.row_probs.shape(), sd, dy.device());
  ops.moe_swiglu_backward(dfc1, drow_probs, dact, s.fc1_out, s.row_probs);
  if (c.tp_size() > 1) c.tp->all_reduce(drow_probs);  // each tp rank saw its slice of the experts' width
  expert_grads(true);
  ops.grouped_gemm_wgrad(grads, dfc1, s.expert_input, rows, betas);
  Tensor dinput_rows = Tensor::empty(s.expert_input.shape(), dy.dtype(), dy.device());
  ops.grouped_gemm(dinput_rows, dfc1, expert_weights(true), false, rows);
  Tensor dx = dispatcher_.combine(dinput_rows, s.plan);  // partial over tp
  const Tensor dprobs = dispatcher_.combine_pairs(drow_probs, s.plan);
  if (shared) shared_backward(s, dy_full, dx);

  // The router: the routing weights' gradient and the auxiliary losses' through the logits.
  Tensor dlogits = Tensor::empty(s.logits.shape(), sd, dy.device());
  ops.moe_route_backward(dlogits, dprobs, s.probs, s.experts, s.logits, s.aux_weight, s.z_scale, route_);
  Tensor dlogits_act = Tensor::empty(s.logits.shape(), dy.dtype(), dy.device());
  ops.convert(dlogits_act, dlogits);
  ops.gemm(router.grad, dlogits_act, true, s.input, false, 1.0, grad_gemm_beta(router));
  if (c.tp_rank() == 0) ops.gemm(dx, dlogits_act, false, router.value, false, 1.0, 1.0);  // the same on every rank
  return reduce_sequence(dx, c);
}

void MoeLayer::shared_backward(Saved& s, const Tensor& dy, Tensor& dx) {
  const LayerContext& c = *ctx_;
  Ops& ops = ops_for(dy);
  const bool gated = shared_gate.value.defined();
  if (!s.shared_act.defined()) {
    s.shared_act = Tensor::empty({s.shared_fc1.size(0), s.shared_fc1.size(1) / 2}, dy.dtype(), dy.device());
    if (gated) ops.moe_swiglu_forward(s.shared_act, s.shared_fc1, s.gate);
    else ops.swiglu_forward(s.shared_act, s.shared_fc1);
  }
  Parameter& w2 = shared->fc2.weight;
  ops.gemm(w2.grad, dy, true, s.shared_act, false, 1.0, grad_gemm_beta(w2));
  Tensor dact = Tensor::empty(s.shared_act.shape(), dy.dtype(), dy.device());
  ops.gemm(dact, dy, false, w2.value, false, 1.0, 0.0);
  Tensor dfc1 = Tensor::empty(s.shared_fc1.shape(), dy.dtype(), dy.device());
  if (gated) {
    Tensor dgate = Tensor::empty(s.gate.shape(), s.gate.dtype(), dy.device());
    ops.moe_swiglu_backward(dfc1, dgate, dact, s.shared_fc1, s.gate);
    if (c.tp_size() > 1) c.tp->all_reduce(dgate);
    Tensor dlogit = Tensor::empty(s.gate.shape(), s.gate.dtype(), dy.device());
    ops.sigmoid_backward(dlogit, dgate, s.gate);
    Tensor dlogit_act = Tensor::empty(s.gate.shape(), dy.dtype(), dy.device());
    ops.convert(dlogit_act, dlogit);
    ops.gemm(shared_gate.grad, dlogit_act, true, s.input, false, 1.0, grad_gemm_beta(shared_gate));
    if (c.tp_rank() == 0) ops.gemm(dx, dlogit_act, false, shared_gate.value, false, 1.0, 1.0);
  } else {
    ops.swiglu_backward(dfc1, dact, s.shared_fc1);
  }
  Parameter& w1 = shared->fc1.weight;
  ops.gemm(w1.grad, dfc1, true, s.input, false, 1.0, grad_gemm_beta(w1));
  ops.gemm(dx, dfc1, false, w1.value, false, 1.0, 1.0);
}

std::vector<Parameter*> MoeLayer::parameters() {
  std::vector<Parameter*> out{&router};
  for (auto& e : experts)
    for (Parameter* p : e->parameters()) out.push_back(p);
  if (shared)
    for (Parameter* p : shared->parameters()) out.push_back(p);
  if (shared_gate.value.defined()) out.push_back(&shared_gate);
  return out;
}

}  // namespace weft
