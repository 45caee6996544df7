// weft/src/parallel/schedules.h v5 — running the micro-batches of one global batch through a (pipelined) model.
//
// One executor serves every layout: with one pipeline stage it is plain gradient accumulation (forward then
// backward, micro-batch by micro-batch); with pp stages it is Megatron's 1F1B; with vpp model chunks per stage
// it is Megatron's interleaved schedule. Activations and their gradients travel between stages in batched
// point-to-point exchanges, one after each unit of work. Under context parallelism
// each rank runs its part of every micro-batch and the loss is reduced over the cp group.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "data/batch.h"
#include "dist/comm.h"
#include "model/gpt_model.h"

namespace weft {

// What a run of micro-batches gives, the same on every rank of the pipeline: the mean of the micro-batch losses, and
// for each of the losses the layers add (LayerLosses; layer_loss_names), the mean over the micro-batches of its sum
// over the model's layers and the context-parallel ranks.
struct ScheduleResult {
  double loss = 0;
  std::map<std::string, double> layer_losses;
};

// The loss of one micro-batch, Megatron style: Σ mask·loss / Σ mask over its tokens (on every cp rank).
struct MicroBatchLoss {
  double loss_sum = 0;  // Σ mask·loss
  double tokens = 0;    // Σ mask
  double mean() const { return tokens > 0 ? loss_sum / tokens : 0.0; }
};

struct PipelineSchedule {
  Comm* pp = nullptr;                // the pipeline group (size 1: no pipelining)
  std::vector<GptModel*> chunks;     // this rank's model chunks, in virtual-stage order (vpp of them)
  bool sequence_parallel = false;    // activations between stages hold tokens / tp
  int tp_size = 1;
  Comm* cp = nullptr;                // context-parallel group: each micro-batch is split over it (null: none)
  mutable bool ring_connected = false;  // the pipeline ranks have exchanged with both neighbours once
  GradsReady grads_ready;            // told the parameters each chunk's last backward finishes (unset: nobody)
  int64_t loss_chunk_rows = 0;       // tokens per chunk of the fused output layer and loss (0: by bytes of logits)
  std::vector<std::string> layer_loss_names;  // the losses the model's layers add (every rank the same list)

  // Forward and (unless forward_only) backward of micro-batches 0..count-1 (whole ones: the schedule takes this
  // rank's context-parallel part). Gradients accumulate as those of the mean of the micro-batch losses plus the
  // losses the layers add (each micro-batch's weighted as its loss is).
  ScheduleResult run(const std::function<Batch(int64_t)>& micro_batch, int64_t count, bool forward_only) const;

  // One forward or backward of virtual micro-batch k.
  struct Step {
    bool forward;
    int64_t k;
  };
  // The steps a pipeline rank runs, in units that communicate once after they finish, as Megatron pairs its
  // transfers: in 1F1B every step is a unit (a steady forward's output leaves together with the receive of the
  // backward that follows it, so the next stage works while this one runs its next forward); in the interleaved
  // schedule the units are the warm-up forwards, the steady (forward, backward) pairs and the cool-down backwards.
  static std::vector<std::vector<Step>> units(int pp_rank, int pp_size, int vpp, int64_t count, bool forward_only);
};

}  // namespace weft
