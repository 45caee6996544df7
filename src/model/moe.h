// weft/src/model/moe.h v2 — the mixture-of-experts MLP slot: router, token dispatch, experts, shared expert.
//
// Megatron-Core's split (moe/router.py, token_dispatcher.py, experts.py): the router maps each token to its top-k
// experts and weights (model.moe_router_pre_softmax picks Qwen-MoE's or Mixtral's form), the dispatcher
// (parallel/expert_dispatch.h) brings each routed token to its expert, on this rank or another of the expert-parallel
// group, and the experts — SwiGLU MLPs, each split over the tensor-parallel ranks like a dense MLP — run as one
// grouped GEMM per projection with the routing weight applied to the SwiGLU output before fc2. A shared expert
// (Qwen-MoE), scaled by sigmoid(x·g) when gated, adds to the routed output.
//
// Tensor parallelism: every tp rank routes all of the layer's tokens (gathered under sequence parallelism) the same
// way and computes its slice of every expert; the partial outputs are summed over tp as a row-parallel linear's are.
// The router's load-balancing loss (Switch/GShard form as Megatron computes it: E/(k·T²)·Σ_e tokens_e·Σ_t p_te,
// token counts summed over the context-parallel ranks) and z-loss (mean logsumexp², ST-MoE) are logged through
// LayerLosses and, with their coefficients (moe.aux_loss_coeff, moe.z_loss_coeff), added to the objective; with
// expert groups so are DeepSeek-V2's device- and communication-balance losses (moe.device_balance_loss_coeff,
// moe.comm_balance_loss_coeff).
#pragma once
#include <memory>
#include <vector>

#include "model/layers.h"
#include "parallel/expert_dispatch.h"

namespace weft {

// The losses an MoE layer of `spec` adds to LayerLosses, without their coefficients: the load-balancing loss and the
// z-loss (Megatron's names) and, when the router has expert groups, DeepSeek-V2's device- and communication-balance
// losses.
std::vector<std::string> moe_loss_names(const ModelSpec& spec);

// DeepSeek-V2's balance losses over D expert groups (its devices) for T tokens, each routed to k experts of at most M
// groups: with f_e = E/(k·T)·count_e and P_g = Σ_{e in g} score_sum_e / T, device = Σ_g mean_{e in g}(f_e)·P_g and
// comm = Σ_g D/(M·T)·reached_g·P_g (reached_g: tokens with an expert in g). The weights are each loss's derivative by
// score_sum_e.
struct GroupBalance {
  double device = 0, comm = 0;
  std::vector<double> device_weight, comm_weight;
};
GroupBalance group_balance(const std::vector<double>& score_sum, const std::vector<double>& counts,
                           const std::vector<double>& reached, int64_t topk, int64_t group_topk, double tokens);

class MoeLayer final : public LayerSlot {
 public:
  MoeLayer(const LayerContext& ctx, const ModelSpec& spec, int64_t layer);
  Tensor forward(const Tensor& x, const Tensor& residual, const Batch& batch, LayerLosses& losses,
                 std::unique_ptr<SlotSaved>& saved) override;
  Tensor backward(const Tensor& dy, const Batch& batch, SlotSaved& saved) override;
  std::vector<Parameter*> parameters() override;

  struct Saved : SlotSaved {
    Tensor input;                  // the layer's tokens [t, h] (gathered over tp under sequence parallelism)
    Tensor logits, probs, experts;  // router logits [t, E], weights and experts [t, k] (before any dropping)
    Tensor aux_weight;             // [E]: ∂(scaled load-balancing loss)/∂softmax(logits); undefined when off
    double z_scale = 0;            // ∂(scaled z-loss)/∂Σ_t logsumexp²
    ExpertDispatcher::Plan plan;
    Tensor expert_input, row_probs, fc1_out, act;  // the local experts' rows; act dropped under selective
    Tensor shared_fc1, shared_act, gate;           // the shared expert; gate = sigmoid(x·g) [t, 1]
  };

  Parameter router;                             // [E, h], on every rank
  std::vector<std::unique_ptr<SwiGluMlp>> experts;  // this rank's experts, by global index from first_expert
  std::unique_ptr<SwiGluMlp> shared;             // the shared expert (null: none)
  Parameter shared_gate;                         // [1, h] (undefined: no gate)

 private:
  void route_losses(Saved& s, LayerLosses& losses) const;
  void shared_forward(Saved& s, Tensor& y) const;
  void shared_backward(Saved& s, const Tensor& dy, Tensor& dx);
  std::vector<Tensor> expert_weights(bool fc1) const;
  // DeepSeek's group losses: adds their values to `losses` and their gradients by Σ_t softmax to `weight`.
  void group_losses(const Saved& s, const std::vector<double>& score_sum, const std::vector<double>& counts,
                    double tokens, LayerLosses& losses, std::vector<double>& weight) const;
  const LayerContext* ctx_;
  int64_t num_experts_;
  RouterParams route_;
  ExpertDispatcher dispatcher_;
  bool keep_activation_;
};

}  // namespace weft
