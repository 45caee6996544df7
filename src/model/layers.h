// weft/src/model/layers.h v3 — the decoder's layers, each with its forward and backward side by side.
//
// A layer's forward fills a *Saved struct with exactly the tensors its backward reads; the struct is the one
// place that says what the layer keeps alive between the passes (and what recomputation would rebuild).
#pragma once
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

struct AttentionSaved {
  Tensor qkv_input, q, k, v, out, lse;
};

// Self-attention: fused QKV (column-parallel, Megatron's per-group interleave), RoPE, causal GQA attention with
// optional sliding window and document boundaries (a ring over the cp group under context parallelism), output
// projection (row-parallel).
class SelfAttention {
 public:
  SelfAttention(const LayerContext& ctx, const ModelSpec& spec, int64_t layer, const RopeTables& rope);
  // residual + attention(x): the output projection adds the residual connection (RowParallelLinear::forward).
  Tensor forward(const Tensor& x, const Tensor& residual, const Batch& batch, AttentionSaved& s);
  Tensor backward(const Tensor& dy, const Batch& batch, AttentionSaved& s);
  std::vector<Parameter*> parameters();

  ColumnParallelLinear qkv;
  RowParallelLinear proj;

 private:
  AttentionParams with_seqlen(const Batch& batch) const;
  AttentionParams params_;
  const RopeTables* rope_;
  Comm* cp_;  // context-parallel group (null: none)
};

struct MlpSaved {
  Tensor fc1_input, fc1_out, fc2_input;
};

// SwiGLU MLP: fc1 = [gate; up] (column-parallel, each rank its slice of both), silu(gate)·up, fc2 (row-parallel).
class SwiGluMlp {
 public:
  SwiGluMlp(const LayerContext& ctx, const ModelSpec& spec, int64_t layer);
  // residual + mlp(x), fc2 adding the residual connection. Under selective recomputation s.fc2_input is dropped
  // here and rebuilt by backward.
  Tensor forward(const Tensor& x, const Tensor& residual, MlpSaved& s);
  Tensor backward(const Tensor& dy, MlpSaved& s);
  std::vector<Parameter*> parameters();

  ColumnParallelLinear fc1;
  RowParallelLinear fc2;

 private:
  bool keep_activation_;
};

struct DecoderLayerSaved {
  Tensor input, rstd1, mid, rstd2;
  AttentionSaved attention;
  MlpSaved mlp;
};

// Pre-norm residual block: h = x + attn(norm(x)); out = h + mlp(norm(h)).
class DecoderLayer {
 public:
  DecoderLayer(const LayerContext& ctx, const ModelSpec& spec, int64_t layer, const RopeTables& rope);
  // Under full recomputation s keeps only the input; backward reruns the forward from it first.
  Tensor forward(const Tensor& x, const Batch& batch, DecoderLayerSaved& s);
  // dy is consumed (reused as a buffer); returns dx.
  Tensor backward(Tensor dy, const Batch& batch, DecoderLayerSaved& s);
  std::vector<Parameter*> parameters();

  RMSNorm input_norm;
  SelfAttention attention;
  RMSNorm mlp_norm;
  SwiGluMlp mlp;

 private:
  Tensor forward_saving_all(const Tensor& x, const Batch& batch, DecoderLayerSaved& s);
  bool recompute_layer_;
};

}  // namespace weft
