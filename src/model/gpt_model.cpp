// weft/src/model/gpt_model.cpp v4 — assembling a stage of the decoder and running its pieces.
#include "model/gpt_model.h"

namespace weft {

StageLayout StageLayout::of(const ModelSpec& spec, int rank, int pp, int chunk, int vpp, int64_t first_layers,
                             int64_t last_layers) {
  const int stages = pp * vpp, stage = chunk * pp + rank;
  std::vector<int64_t> sizes(static_cast<size_t>(stages), 0);
  int64_t rest = spec.num_layers, even_stages = stages;
  if (first_layers > 0) sizes.front() = first_layers, rest -= first_layers, --even_stages;
  if (last_layers > 0 && stages > 1) sizes.back() = last_layers, rest -= last_layers, --even_stages;
  for (int s = 0; s < stages; ++s) {
    const bool fixed = (s == 0 && first_layers > 0) || (s == stages - 1 && stages > 1 && last_layers > 0);
    if (!fixed) sizes[s] = even_stages > 0 ? rest / even_stages : 0;
  }
  StageLayout l;
  for (int s = 0; s < stage; ++s) l.first_layer += sizes[s];
  l.end_layer = l.first_layer + sizes[stage];
  l.has_embedding = stage == 0;
  l.has_head = stage == stages - 1;
  return l;
}

GptModel::GptModel(const ModelSpec& spec, const LayerContext& ctx, const StageLayout& stage)
    : spec_(spec),
      ctx_(ctx),
      stage_(stage),
      shard_(VocabShard::of(spec.vocab, spec.padded_vocab(ctx.tp_size()), ctx.tp_rank(), ctx.tp_size())),
      rope_(RopeTables::build(spec, ctx.dtype, ctx.device)) {
  const int64_t padded = spec.padded_vocab(ctx_.tp_size());
  // A tied output layer needs the embedding on its stage (pipelines keep a second copy there, kept equal by
  // reducing their gradients together).
  if (stage.has_embedding || (stage.has_head && spec.tie_embeddings)) {
    embedding_ = std::make_unique<VocabParallelEmbedding>(ctx_, spec.vocab, padded, spec.hidden, spec.init_std);
    embedding_->weight.pipeline_copy = !stage.has_embedding;
    embedding_->weight.row_sparse_grad = !spec.tie_embeddings;  // tied, the output layer's dense gradient adds in
  }
  for (int64_t l = stage.first_layer; l < stage.end_layer; ++l)
    layers_.push_back(std::make_unique<DecoderLayer>(ctx_, spec, l, rope_));
  if (stage.has_head) {
    final_norm_ = std::make_unique<RMSNorm>(ctx_, "decoder.final_layernorm.weight", spec.hidden, spec.norm_eps);
    if (spec.tie_embeddings)
      output_ = std::make_unique<ColumnParallelLinear>(ctx_, embedding_->weight);
    else
      output_ = std::make_unique<ColumnParallelLinear>(ctx_, "output_layer", spec.hidden, spec.vocab, shard_.blocks(),
                                                       false, spec.init_std, shard_.rows);
  }
}

Tensor GptModel::embed(const Batch& batch) {
  WEFT_ASSERT(stage_.has_embedding);
  need({&embedding_->weight});
  return embedding_->forward(batch.tokens);
}

void GptModel::embed_backward(const Tensor& dx, const Batch& batch, const GradsReady& ready) {
  embedding_->backward(dx, batch.tokens);
  if (ready) ready({&embedding_->weight});
}

Tensor GptModel::forward_layers(Tensor x, const Batch& batch, ModelSaved& s) {
  s.layers.resize(layers_.size());
  for (size_t i = 0; i < layers_.size(); ++i) {
    need(layers_[i]->parameters());
    x = layers_[i]->forward(x, batch, s.layers[i], s.losses);
  }
  return x;
}

Tensor GptModel::backward_layers(Tensor dx, const Batch& batch, ModelSaved& s, const GradsReady& ready) {
  for (size_t i = layers_.size(); i-- > 0;) {
    dx = layers_[i]->backward(dx, batch, s.layers[i]);
    if (ready) ready(layers_[i]->parameters());
  }
  return dx;
}

void GptModel::need_head() {
  if (!needed_) return;
  std::vector<Parameter*> head{&final_norm_->weight};
  for (Parameter* p : output_->parameters()) head.push_back(p);
  if (spec_.tie_embeddings) head.push_back(&embedding_->weight);
  needed_(head);
}

Tensor GptModel::logits(const Tensor& x) {
  need_head();
  Tensor rstd, input;
  const Tensor normed = final_norm_->forward(x, rstd);
  return output_->forward(normed, input);
}

Tensor GptModel::loss(const Tensor& x, const Batch& batch, ModelSaved& s, const Tensor& row_scale,
                      int64_t chunk_rows) {
  WEFT_ASSERT(stage_.has_head);
  need_head();
  s.final_input = x;
  const Tensor normed = final_norm_->forward(x, s.final_rstd);
  if (row_scale.defined())
    return output_cross_entropy_fused(ctx_, *output_, normed, batch.labels, row_scale, shard_, chunk_rows,
                                      s.head_grad);
  s.logits = output_->forward(normed, s.head_input);
  return vocab_parallel_cross_entropy(ctx_, s.logits, batch.labels, shard_, s.ce);
}

Tensor GptModel::loss_backward(const Batch& batch, ModelSaved& s, const Tensor& row_scale, const GradsReady& ready) {
  if (!s.head_grad.defined()) {
    vocab_parallel_cross_entropy_backward(s.logits, batch.labels, row_scale, shard_, s.ce);
    s.head_grad = output_->backward(s.logits, s.head_input);
  }
  const Tensor& dnormed = s.head_grad;
  Tensor dx = Tensor::zeros(s.final_input.shape(), s.final_input.dtype(), s.final_input.device());
  final_norm_->backward(dx, dnormed, s.final_input, s.final_rstd);
  if (ready) {
    std::vector<Parameter*> done = output_->parameters();
    done.push_back(&final_norm_->weight);
    if (embedding_ && !stage_.has_embedding) done.push_back(&embedding_->weight);  // the last stage's tied copy
    ready(done);
  }
  s.logits = s.head_input = s.final_input = s.head_grad = Tensor();
  return dx;
}

std::vector<Parameter*> GptModel::parameters() {
  std::vector<Parameter*> out;
  if (embedding_) out.push_back(&embedding_->weight);
  for (auto& l : layers_)
    for (Parameter* p : l->parameters()) out.push_back(p);
  if (final_norm_) out.push_back(&final_norm_->weight);
  if (output_)
    for (Parameter* p : output_->parameters()) out.push_back(p);
  return out;
}

}  // namespace weft
