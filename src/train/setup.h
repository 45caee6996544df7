// weft/src/train/setup.h v1 — turning a validated Config into the pieces a run needs.
#pragma once
#include <memory>

#include "config/config.h"
#include "data/batches.h"
#include "data/gpt_dataset.h"
#include "dist/process_grid.h"
#include "model/model_spec.h"

namespace weft {

// Samples the trainer draws: train_iters·global_batch_size; validation: (train_iters / eval_interval + 1) runs of
// eval_iters global batches (Megatron's get_train_valid_test_num_samples).
int64_t train_samples(const Config& c);
int64_t valid_samples(const Config& c);

// The end-of-document id: data.eod_token if set, else data.tokenizer's; -1 if neither says.
int32_t eod_token(const Config& c);

// The samples of split 0/1/2 (train/valid/test) of data.prefix, enough for `num_samples`: Megatron's GPTDataset
// (or a blend), or packed SFT chats when data.sft is set.
std::unique_ptr<SampleSource> build_samples(const Config& c, int split, int64_t num_samples);

// How this rank cuts samples into micro-batches.
BatchOptions batch_options(const Config& c, int64_t dp_size, int64_t dp_rank);

ParallelSizes parallel_sizes(const Config& c);

// When model.init names HF or native weights, fills [model] from their config; model keys the deck sets anyway
// must agree with it (ConfigError naming the key otherwise).
void resolve_model(Config& c);

}  // namespace weft
