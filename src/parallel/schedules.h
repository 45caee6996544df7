// weft/src/parallel/schedules.h v1 — running the micro-batches of one global batch through the model.
#pragma once
#include <cstdint>
#include <functional>

#include "data/batch.h"
#include "model/gpt_model.h"

namespace weft {

// The loss of one micro-batch, Megatron style: Σ mask·loss / Σ mask over its tokens.
struct MicroBatchLoss {
  double loss_sum = 0;  // Σ mask·loss
  double tokens = 0;    // Σ mask
  double mean() const { return tokens > 0 ? loss_sum / tokens : 0.0; }
};

// Forward and (unless forward_only) backward of micro-batches 0..count-1 on a model that is not pipelined.
// Gradients accumulate in the parameters as those of mean_m(micro-batch mean loss). Returns that mean.
double forward_backward_no_pipelining(GptModel& model, const std::function<Batch(int64_t)>& micro_batch,
                                      int64_t count, bool forward_only);

}  // namespace weft
