// weft/src/parallel/expert_dispatch.h v1 — moving routed tokens to their experts and the experts' outputs back
// (Megatron-Core's all-to-all token dispatcher), and capacity-based token dropping.
//
// Each (token, choice) pair that was not dropped becomes one row of its expert's input. This rank orders its pairs
// by expert (tokens ascending within one), sends expert e's rows to the expert-parallel rank that holds e (rank r
// holds experts [r·E/ep, (r+1)·E/ep)) in one all-to-all, and regroups what it receives by local expert: its
// experts then see their rows contiguous, source rank by source rank. The combine runs the same path backwards and
// sums each token's rows. ep = 1 is the same code without the exchange. Counts cross to the host once per plan (the
// all-to-all needs them there).
#pragma once
#include <vector>

#include "dist/comm.h"
#include "tensor/tensor.h"

namespace weft {

class ExpertDispatcher {
 public:
  // `ep` the expert-parallel group (null or size 1: every expert on this rank).
  ExpertDispatcher(Comm* ep, int64_t num_experts);
  int64_t local_experts() const { return local_; }
  int64_t first_expert() const { return first_; }

  // What one micro-batch's dispatch needs again for its combine and its backward.
  struct Plan {
    Tensor rows;                      // i32 [t, k] on the device: each pair's row in this rank's send order, -1 dropped
    std::vector<int64_t> send;        // rows sent to each expert, all E, in send order
    std::vector<int64_t> recv;        // [source rank][local expert]: rows received (ep × local experts)
    std::vector<int64_t> local_rows;  // rows of each local expert after regrouping
    Tensor regroup;                   // i32 [received rows, 1]: each received row's place grouped by local expert
                                      // (undefined when ep = 1: nothing to regroup)
    int64_t received = 0;             // Σ local_rows
    int64_t pad = 0;                  // > 0: every expert's rows from this rank padded to this many
  };
  // The plan for experts [t, k] (i32; -1: dropped); with pad > 0 every expert gets exactly pad rows from this rank.
  Plan plan(const Tensor& experts, int64_t pad) const;
  // x [t, h] → this rank's experts' rows [received, h], grouped by local expert (padding rows zero). Also the
  // backward of combine.
  Tensor dispatch(const Tensor& x, const Plan& plan) const;
  // rows [received, h] → per token [t, h], the sum of the token's rows. Also the backward of dispatch.
  Tensor combine(const Tensor& y, const Plan& plan) const;
  // Per-pair values [t, k] (the routing weights) → per row [received, 1] (padding rows 0), and back (a dropped
  // pair's value 0).
  Tensor dispatch_pairs(const Tensor& v, const Plan& plan) const;
  Tensor combine_pairs(const Tensor& v, const Plan& plan) const;

 private:
  // Rows in send order [Σ send, cols] ↔ rows grouped by local expert [received, cols], through the all-to-all.
  Tensor exchange_forward(const Tensor& sent, const Plan& plan) const;
  Tensor exchange_backward(const Tensor& grouped, const Plan& plan) const;
  Comm* ep_;
  int ep_size_ = 1, ep_rank_ = 0;
  int64_t experts_, local_, first_;
};

// Megatron's token dropping (apply_router_token_dropping) for one micro-batch on this rank: each expert keeps at
// most capacity = ceil(tokens·k / E · factor) of the pairs routed to it (drop_by_position: the first ones in token
// order; otherwise those of highest probability, ties to the earlier token); the others become -1. Host tensors:
// experts, probs [t, k]. Returns the capacity.
int64_t drop_over_capacity(Tensor& experts, const Tensor& probs, int64_t num_experts, double factor,
                           bool drop_by_position);

}  // namespace weft
