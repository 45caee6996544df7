// weft/src/model/gpt_model.h v4 — the decoder-only language model held by one rank: its pipeline stage's layers,
// plus the embedding on the first stage and final norm, output layer and loss on the last.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "model/layers.h"

namespace weft {

// Everything one micro-batch keeps between its forward and backward on this stage.
struct ModelSaved {
  std::vector<DecoderLayerSaved> layers;
  LayerLosses losses;  // what this stage's layers add to the objective (MoE routers' losses)
  Tensor final_input, final_rstd, head_input, logits;
  CrossEntropySaved ce;
  Tensor head_grad;  // ∂loss/∂(final norm output), when the loss ran fused with its backward
};

// Told which parameters' gradients a backward has just finished (so their reduction can start).
using GradsReady = std::function<void(const std::vector<Parameter*>&)>;
// Told which parameters a forward is about to read (so that their updated values can arrive first).
using ParamsNeeded = std::function<void(const std::vector<Parameter*>&)>;

// Which part of the model a rank holds.
struct StageLayout {
  int64_t first_layer = 0, end_layer = 0;  // global layer indices [first, end)
  bool has_embedding = true, has_head = true;
  static StageLayout whole(const ModelSpec& spec) { return {0, spec.num_layers, true, true}; }
  // Model chunk `chunk` of pipeline rank `rank`: virtual stage chunk·pp + rank of pp·vpp. Layers split evenly,
  // or the first and last stages take first_layers / last_layers (when > 0; vpp = 1) and the others split the rest.
  static StageLayout of(const ModelSpec& spec, int rank, int pp, int chunk, int vpp, int64_t first_layers,
                        int64_t last_layers);
};

class GptModel {
 public:
  GptModel(const ModelSpec& spec, const LayerContext& ctx, const StageLayout& stage);
  GptModel(const GptModel&) = delete;
  GptModel& operator=(const GptModel&) = delete;

  // tokens → hidden states [t, hidden] (t/tp rows under sequence parallelism). First stage.
  Tensor embed(const Batch& batch);
  // The backwards report the parameters they finish to `ready` when it is set.
  void embed_backward(const Tensor& dx, const Batch& batch, const GradsReady& ready = {});
  // This stage's decoder layers.
  Tensor forward_layers(Tensor x, const Batch& batch, ModelSaved& s);
  Tensor backward_layers(Tensor dx, const Batch& batch, ModelSaved& s, const GradsReady& ready = {});
  // hidden → per-token cross-entropy [t] (stat dtype). Last stage. Given the backward's row_scale, the output
  // layer and the loss run with their backward chunk by chunk (output_cross_entropy_fused; chunk_rows 0: by
  // bytes), so the logits never exist whole; without it the logits stay for loss_backward.
  Tensor loss(const Tensor& x, const Batch& batch, ModelSaved& s, const Tensor& row_scale = {},
              int64_t chunk_rows = 0);
  // The backward of Σ_t row_scale[t]·loss[t] (the row_scale loss was given, if any): returns ∂/∂hidden.
  Tensor loss_backward(const Batch& batch, ModelSaved& s, const Tensor& row_scale, const GradsReady& ready = {});
  // hidden → logits over this rank's vocabulary shard [t, local vocab] (no loss). Last stage.
  Tensor logits(const Tensor& x);

  // Every parameter this rank holds, in a fixed order (the same order on ranks of equal layout).
  std::vector<Parameter*> parameters();
  // From now on the forwards tell `needed` which parameters they are about to read: the embedding's, each layer's,
  // the head's (the final norm, the output layer, a tied embedding).
  void set_params_needed(ParamsNeeded needed) { needed_ = std::move(needed); }
  const ModelSpec& spec() const { return spec_; }
  const StageLayout& stage() const { return stage_; }
  const VocabShard& vocab_shard() const { return shard_; }
  const LayerContext& context() const { return ctx_; }

 private:
  ModelSpec spec_;
  LayerContext ctx_;
  StageLayout stage_;
  VocabShard shard_;
  RopeTables rope_;
  std::unique_ptr<VocabParallelEmbedding> embedding_;
  std::vector<std::unique_ptr<DecoderLayer>> layers_;
  std::unique_ptr<RMSNorm> final_norm_;
  std::unique_ptr<ColumnParallelLinear> output_;
  ParamsNeeded needed_;
  void need(const std::vector<Parameter*>& params) const {
    if (needed_) needed_(params);
  }
  void need_head();
};

}  // namespace weft
