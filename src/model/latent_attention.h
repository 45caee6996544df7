// weft/src/model/latent_attention.h v1 — multi-head latent attention (DeepSeek-V2), an attention slot.
//
// Keys and values come from a latent of kv_lora_rank dims (linear_kv_down_proj, then kv_layernorm, then the
// column-parallel linear_kv_up_proj to each head's qk_nope_head_dim key and v_head_dim value dims); the key's
// qk_rope_head_dim rotated dims come from the same down projection, one for all heads. Queries come from a latent of
// q_lora_rank dims (linear_q_down_proj, q_layernorm, linear_q_up_proj) or straight from the hidden state
// (linear_q_proj). The down projections and their norms are whole on every tensor-parallel rank and run on the whole
// sequence (gathered first under sequence parallelism), fed the gradients summed over the ranks' heads, so their
// gradients agree on every rank. Context parallelism is the ring attention's, as for GQA. Names follow Megatron-Core's
// MLA.
#pragma once
#include "model/layers.h"

namespace weft {

class LatentAttention final : public LayerSlot {
 public:
  LatentAttention(const LayerContext& ctx, const ModelSpec& spec, int64_t layer, const RopeTables& rope);
  Tensor forward(const Tensor& x, const Tensor& residual, const Batch& batch, LayerLosses& losses,
                 std::unique_ptr<SlotSaved>& saved) override;
  Tensor backward(const Tensor& dy, const Batch& batch, SlotSaved& saved) override;
  std::vector<Parameter*> parameters() override;

  struct Saved : SlotSaved {
    Tensor input, q_latent, q_rstd, q_normed, kv_latent, kv_rstd, kv_normed, q_heads, k_heads, v_heads, out, lse;
  };
  Parameter q_down, kv_down;     // [q_lora_rank, h] (when q_lora_rank > 0), [kv_lora_rank + qk_rope_head_dim, h]
  std::unique_ptr<RMSNorm> q_norm;
  RMSNorm kv_norm;
  std::unique_ptr<ColumnParallelLinear> q_up;  // from the query latent, or (q_lora_rank = 0) from the hidden state
  ColumnParallelLinear kv_up;
  RowParallelLinear proj;

 private:
  // Generation: the new tokens' queries against every cached token's keys and values, rebuilt from the cache, which
  // keeps the normed latent and the unrotated key dims (as DeepSeek-V2's cache does) and takes the new tokens'.
  Tensor forward_cached(const Tensor& q, const Tensor& kv, const Tensor& k_rope, const Tensor& residual,
                        const Batch& batch, Saved& s);
  AttentionParams params_;
  int64_t kv_rank_, rope_dim_, layer_;
  const LayerContext* ctx_;
  const RopeTables* rope_;
};

}  // namespace weft
