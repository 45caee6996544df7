// weft/src/model/layers.h v5 — the decoder's layers, each with its forward and backward side by side.
//
// A decoder layer is assembled from two slots chosen by the model spec: attention (self-attention) and MLP (dense
// SwiGLU, or a mixture of experts in model/moe.h), as Megatron-Core's layer specs do; make_mlp is the table that
// maps a layer's MlpKind to its slot. A slot's forward fills its own saved struct with exactly the tensors its
// backward reads: the one place that says what the slot keeps alive between the passes (and what recomputation
// would rebuild).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/batch.h"
#include "model/model_spec.h"
#include "ops/ops.h"
#include "parallel/tensor_parallel.h"

namespace weft {

// cos/sin of position·inv_freq for every position, [max_positions, head_dim/2], in the model's dtype.
struct RopeTables {
  Tensor cos, sin;
  static RopeTables build(const ModelSpec& spec, DType dtype, Device device);
};

// Losses that layers add to the objective (the MoE routers' load-balancing and z-losses), for one micro-batch on
// this rank. The schedule sets backward_scale, the weight the objective gives the micro-batch's losses, before the
// forward; each layer adds its losses' values without their coefficients (summed by name, for the log) and scales
// its losses' gradients by backward_scale in its backward.
struct LayerLosses {
  double backward_scale = 1.0;
  std::map<std::string, double> sums;
  void add(const std::string& name, double value) { sums[name] += value; }
};

// Generation's keys and values so far: a batch with a cache holds only each sequence's new tokens, one segment per
// sequence, and the attention slots append their keys and values here and attend over all of them (no backward).
struct KvCache {
  std::vector<int64_t> sequence_of_segment;  // the cached sequence each segment of the batch continues
  // layer → per sequence: keys and values [length, kv heads, head dim]
  std::map<int64_t, std::vector<std::pair<Tensor, Tensor>>> layers;
};

// What a batch's sequences hold in a layer's cache once its new rows are in: two per-token tensors (keys and values,
// or latent attention's latents and rotated dims) of every cached token, sequence after sequence, with the sequences'
// bounds (i32 [segments + 1]) and each token's position in its sequence.
struct CachedRows {
  Tensor first, second, cu, positions;
};
// Appends each segment's rows of `first` and `second` (the batch's new tokens) to its sequence's entries in `layer`'s
// cache and returns all of those sequences' rows.
CachedRows extend_cache(KvCache& cache, int64_t layer, const Batch& batch, const Tensor& first, const Tensor& second);

// What a slot keeps between its forward and backward; each slot derives its own.
struct SlotSaved {
  virtual ~SlotSaved() = default;
};

// A part of a decoder layer that maps its normed input to a residual branch.
class LayerSlot {
 public:
  virtual ~LayerSlot() = default;
  // residual + branch(x); allocates `saved` with what the backward reads.
  virtual Tensor forward(const Tensor& x, const Tensor& residual, const Batch& batch, LayerLosses& losses,
                         std::unique_ptr<SlotSaved>& saved) = 0;
  // ∂L/∂x from dy = ∂L/∂(output); accumulates the parameters' gradients.
  virtual Tensor backward(const Tensor& dy, const Batch& batch, SlotSaved& saved) = 0;
  virtual std::vector<Parameter*> parameters() = 0;
};

class RMSNorm {
 public:
  RMSNorm(const LayerContext& ctx, const std::string& name, int64_t hidden, double eps);
  // y = x / rms(x) · w; rstd kept for the backward.
  Tensor forward(const Tensor& x, Tensor& rstd);
  // dx += ∂L/∂x; accumulates dw.
  void backward(Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& rstd);
  Parameter weight;

 private:
  double eps_;
};

// Self-attention: fused QKV (column-parallel, Megatron's per-group interleave), RoPE, causal GQA attention with
// optional sliding window and document boundaries (a ring over the cp group under context parallelism), output
// projection (row-parallel) adding the residual connection.
class SelfAttention final : public LayerSlot {
 public:
  SelfAttention(const LayerContext& ctx, const ModelSpec& spec, int64_t layer, const RopeTables& rope);
  Tensor forward(const Tensor& x, const Tensor& residual, const Batch& batch, LayerLosses& losses,
                 std::unique_ptr<SlotSaved>& saved) override;
  Tensor backward(const Tensor& dy, const Batch& batch, SlotSaved& saved) override;
  std::vector<Parameter*> parameters() override;

  struct Saved : SlotSaved {
    Tensor qkv_input, q, k, v, out, lse;
  };
  ColumnParallelLinear qkv;
  RowParallelLinear proj;

 private:
  AttentionParams with_seqlen(const Batch& batch) const;
  // forward over the batch's new tokens and the keys and values batch.cache holds, which it extends.
  Tensor forward_cached(const Tensor& x, const Tensor& residual, const Batch& batch, Saved& s);
  AttentionParams params_;
  const RopeTables* rope_;
  Comm* cp_;  // context-parallel group (null: none)
  int64_t layer_;
};

// SwiGLU MLP: fc1 = [gate; up] (column-parallel, each rank its slice of both), silu(gate)·up, fc2 (row-parallel)
// adding the residual connection. `name` is its parameters' prefix ("decoder.layers.3.mlp").
class SwiGluMlp final : public LayerSlot {
 public:
  SwiGluMlp(const LayerContext& ctx, const std::string& name, int64_t hidden, int64_t ffn, double init_std,
            double output_std);
  // Under selective recomputation the SwiGLU output is dropped here and rebuilt by backward.
  Tensor forward(const Tensor& x, const Tensor& residual, const Batch& batch, LayerLosses& losses,
                 std::unique_ptr<SlotSaved>& saved) override;
  Tensor backward(const Tensor& dy, const Batch& batch, SlotSaved& saved) override;
  std::vector<Parameter*> parameters() override;

  struct Saved : SlotSaved {
    Tensor fc1_input, fc1_out, fc2_input;
  };
  ColumnParallelLinear fc1;
  RowParallelLinear fc2;

 private:
  bool keep_activation_;
};

// The attention slot of `layer`: GQA self-attention, or latent attention (model/latent_attention.h) when the spec
// has kv_lora_rank.
std::unique_ptr<LayerSlot> make_attention(const LayerContext& ctx, const ModelSpec& spec, int64_t layer,
                                          const RopeTables& rope);

// The MLP slot of `layer`: the dense SwiGLU or a mixture of experts, as spec.mlp_kind(layer) says.
std::unique_ptr<LayerSlot> make_mlp(const LayerContext& ctx, const ModelSpec& spec, int64_t layer);

struct DecoderLayerSaved {
  Tensor input, rstd1, mid, rstd2;
  std::unique_ptr<SlotSaved> attention, mlp;
  double losses_scale = 1.0;  // the layer losses' backward scale, for a full recomputation's rerun
};

// Pre-norm residual block: h = x + attn(norm(x)); out = h + mlp(norm(h)).
class DecoderLayer {
 public:
  DecoderLayer(const LayerContext& ctx, const ModelSpec& spec, int64_t layer, const RopeTables& rope);
  // Under full recomputation s keeps only the input (and the losses' backward scale); backward reruns the forward
  // from it first.
  Tensor forward(const Tensor& x, const Batch& batch, DecoderLayerSaved& s, LayerLosses& losses);
  // dy is consumed (reused as a buffer); returns dx.
  Tensor backward(Tensor dy, const Batch& batch, DecoderLayerSaved& s);
  std::vector<Parameter*> parameters();

  RMSNorm input_norm;
  std::unique_ptr<LayerSlot> attention;
  RMSNorm mlp_norm;
  std::unique_ptr<LayerSlot> mlp;

 private:
  Tensor forward_saving_all(const Tensor& x, const Batch& batch, DecoderLayerSaved& s, LayerLosses& losses);
  bool recompute_layer_;
};

// "decoder.layers.<layer>.<rest>": the name of a layer's parameter.
std::string layer_name(int64_t layer, const std::string& rest);

}  // namespace weft
