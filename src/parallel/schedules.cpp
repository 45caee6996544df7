// weft/src/parallel/schedules.cpp v1 — the no-pipelining schedule.
#include "parallel/schedules.h"

#include <vector>

namespace weft {
namespace {

// Reduces per-token losses to the micro-batch loss and, for the backward, each token's weight in it.
MicroBatchLoss reduce_loss(const Tensor& losses, const Tensor& loss_mask, double grad_scale, Tensor* row_scale) {
  const std::vector<double> loss = losses.to_doubles(), mask = loss_mask.to_doubles();
  MicroBatchLoss out;
  for (size_t t = 0; t < loss.size(); ++t) {
    out.loss_sum += mask[t] * loss[t];
    out.tokens += mask[t];
  }
  if (row_scale) {
    const double per_token = out.tokens > 0 ? grad_scale / out.tokens : 0.0;
    Tensor host = Tensor::empty({static_cast<int64_t>(mask.size())}, losses.dtype());
    for (size_t t = 0; t < mask.size(); ++t) {
      if (host.dtype() == DType::f64) host.data<double>()[t] = mask[t] * per_token;
      else host.data<float>()[t] = static_cast<float>(mask[t] * per_token);
    }
    *row_scale = host.to(losses.device());
  }
  return out;
}

}  // namespace

double forward_backward_no_pipelining(GptModel& model, const std::function<Batch(int64_t)>& micro_batch,
                                      int64_t count, bool forward_only) {
  double total = 0;
  for (int64_t m = 0; m < count; ++m) {
    const Batch host = micro_batch(m);
    const Batch batch = host.to(model.context().device);
    ModelSaved saved;
    Tensor x = model.forward_layers(model.embed(batch), batch, saved);
    const Tensor losses = model.loss(x, batch, saved);
    Tensor row_scale;
    const MicroBatchLoss loss =
        reduce_loss(losses, host.loss_mask, 1.0 / double(count), forward_only ? nullptr : &row_scale);
    total += loss.mean();
    if (forward_only) continue;
    Tensor dx = model.loss_backward(batch, saved, row_scale);
    dx = model.backward_layers(dx, batch, saved);
    model.embed_backward(dx, batch);
  }
  return total / double(count);
}

}  // namespace weft
