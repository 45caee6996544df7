// weft/src/train/trainer.h v2 — the training loop: micro-batches, gradient reduction, clipping, AdamW, logging,
// validation.
#pragma once
#include <memory>

#include "config/config.h"
#include "data/batches.h"
#include "dist/process_grid.h"
#include "model/gpt_model.h"
#include "optim/grouped_optimizer.h"
#include "optim/lr_schedule.h"
#include "parallel/schedules.h"
#include "train/metrics.h"

namespace weft {

class Trainer {
 public:
  Trainer(const Config& cfg, const ProcessGrid& grid, Comms& comms);
  // Runs from the start (or the resumed iteration) to train.train_iters, validating every train.eval_interval
  // steps, saving every checkpoint.save_interval steps and at the end, stopping early at train.exit_interval.
  void train();
  // The loss of the run-th validation (the samples training's run-th validation reads) under the current weights; the
  // same on every rank. A ConfigError when the deck has no validation (train.eval_iters or the split's share is 0).
  double validation_loss(int64_t run);

 private:
  // One optimizer step's outcome, the same on every rank.
  struct StepOutcome {
    ScheduleResult losses;
    double grad_norm = 0;
    bool skipped = false;  // non-finite loss or gradient norm under train.nan_policy = skip: no update
  };
  StepOutcome train_step(int64_t iteration, double lr);
  // Stops the job over a non-finite loss or gradient norm: names the ranks and parameters whose gradients are not
  // finite (collective over the world; rank 0 raises the error, which takes the job down).
  [[noreturn]] void stop_on_non_finite(int64_t iteration, const StepOutcome& step);
  double evaluate(int64_t run);
  void save(int64_t iteration);
  void log_start() const;
  bool is_logger() const { return grid_.rank() == 0; }

  const Config& cfg_;
  const ProcessGrid& grid_;
  Comms& comms_;
  ModelSpec spec_;
  LayerContext ctx_;
  std::vector<std::unique_ptr<GptModel>> chunks_;  // this rank's model chunks (vpp of them)
  PipelineSchedule schedule_;
  std::vector<Parameter*> params_;
  std::unique_ptr<GroupedOptimizer> optimizer_;
  LrSchedule lr_;
  std::unique_ptr<SampleSource> train_data_, valid_data_;
  std::unique_ptr<MicroBatches> train_batches_, valid_batches_;
  MetricsLog metrics_;
  int64_t num_micro_batches_ = 1;
  int64_t start_iteration_ = 0;  // > 0 when resumed from a checkpoint
};

}  // namespace weft
