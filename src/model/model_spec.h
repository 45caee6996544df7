// weft/src/model/model_spec.h v3 — the shapes and options of a decoder-only model, independent of layout.
//
// Every field is declared once, in model/model_fields.cpp (deck key, type, default, doc, config.json key, checks);
// the deck schema, checkpoint metadata and the HF config map read that table. A deck fills a ModelSpec as written
// (0 may mean "derive it"); resolved() derives those defaults.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace weft {

struct RopeScaling {
  std::string type = "none";  // none | linear | llama3 | yarn
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
  // YaRN (DeepSeek-V2): the rotations below beta_slow turns over the original context are interpolated, those above
  // beta_fast kept, a ramp between; cos/sin scale by mscale(factor, mscale) / mscale(factor, mscale_all_dim) and,
  // with mscale_all_dim, the softmax scale by mscale(factor, mscale_all_dim)².
  double beta_fast = 32, beta_slow = 1, mscale = 1, mscale_all_dim = 0;
};

// YaRN's magnitude correction 0.1·m·ln(factor) + 1 (1 for factor ≤ 1).
double yarn_mscale(double factor, double m);

// What the MLP slot of a decoder layer holds.
enum class MlpKind { dense, moe };

struct ModelSpec {
  std::string family = "llama";
  int64_t num_layers = 0, hidden = 0, ffn = 0, heads = 0, groups = 0, head_dim = 0;
  int64_t vocab = 0, vocab_multiple = 128, max_positions = 0;
  double rope_theta = 10000;
  RopeScaling rope_scaling;
  double norm_eps = 1e-5;
  bool qkv_bias = false, tie_embeddings = false;
  int64_t sliding_window = 0;
  double init_std = 0.02;

  // Mixture of experts (num_experts = 0: every MLP is dense).
  int64_t num_experts = 0;
  int64_t moe_ffn = 0;           // each routed expert's SwiGLU width
  int64_t moe_topk = 2;          // experts per token
  bool moe_pre_softmax = false;  // softmax over all experts, then top-k (no renormalisation); false: the softmax of
                                 // the top-k logits (= top-k of the softmax renormalised)
  int64_t moe_shared_ffn = 0;    // width of the shared expert every token also goes through (0: none)
  bool moe_shared_gate = false;  // the shared expert's output scaled by sigmoid(x·g) (Qwen-MoE)
  int64_t decoder_sparse_step = 1;        // layer l is MoE when (l + 1) % step == 0 (HF's Qwen-MoE rule)
  std::vector<int64_t> mlp_only_layers;  // layers that stay dense whatever the step
  int64_t first_k_dense_replace = 0;     // the first k layers stay dense (DeepSeek)
  int64_t moe_layer_freq = 1;            // and of the others, those with l % freq == 0 are MoE (DeepSeek)
  int64_t moe_num_groups = 0;            // > 0: experts in this many groups; a token's experts come from the
  int64_t moe_group_topk = 0;            //   moe_group_topk groups with the highest best score (DeepSeek-V2)
  double moe_topk_scaling = 1.0;         // the routing weights times this (DeepSeek's routed_scaling_factor)

  // Multi-head latent attention (kv_lora_rank > 0, DeepSeek-V2): keys and values from a compressed latent of
  // kv_lora_rank (normed), queries from one of q_lora_rank (0: straight from the hidden state); each head's query and
  // key are qk_nope_head_dim plain and qk_rope_head_dim rotated dimensions (the rotated part of the key shared by
  // all heads), its value v_head_dim.
  int64_t q_lora_rank = 0, kv_lora_rank = 0, qk_nope_head_dim = 0, qk_rope_head_dim = 0, v_head_dim = 0;

  // groups = heads and head_dim = hidden / heads where the deck left them 0.
  ModelSpec resolved() const;
  int64_t q_per_group() const { return heads / groups; }
  bool latent_attention() const { return kv_lora_rank > 0; }
  int64_t rope_dim() const { return latent_attention() ? qk_rope_head_dim : head_dim; }  // rotated dims per head
  int64_t value_dim() const { return latent_attention() ? v_head_dim : head_dim; }      // value dims per head
  // The softmax scale: 1/sqrt(query dims), YaRN's correction included.
  double softmax_scale() const;
  MlpKind mlp_kind(int64_t layer) const;
  bool has_experts() const { return num_experts > 0; }
  int64_t moe_layers() const;  // layers whose MLP is a mixture of experts
  // Rows of the embedding / output matrices: vocab padded to a multiple of vocab_multiple·tp.
  int64_t padded_vocab(int64_t tp) const;
  // Parameter count (unpadded vocabulary, every expert), for FLOP and memory estimates.
  int64_t num_parameters() const;
  // Megatron's model FLOPs (num_floating_point_operations) for `samples` causal rows of `seq` tokens, forward and
  // backward, with the output layer over `padded_vocab` rows; MoE layers count the experts a token is routed to and
  // the shared expert, not the router.
  double flops(int64_t samples, int64_t seq, int64_t padded_vocab) const;
};

// RoPE inverse frequencies, one per pair of the head dimension, with the spec's scaling applied
// (linear: divided by the factor; llama3: Meta's wavelength-dependent blend), as HF computes them.
std::vector<double> rope_inv_freq(const ModelSpec& spec);

}  // namespace weft
