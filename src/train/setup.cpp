// weft/src/train/setup.cpp v1 — Config → data, layout and batch options.
#include "train/setup.h"

#include "config/validate.h"
#include "tokenizer/tokenizer.h"

namespace weft {

int64_t train_samples(const Config& c) { return c.train.train_iters * c.train.global_batch_size; }

int64_t valid_samples(const Config& c) {
  if (c.train.eval_interval == 0) return c.train.eval_iters * c.train.global_batch_size;
  return (c.train.train_iters / c.train.eval_interval + 1) * c.train.eval_iters * c.train.global_batch_size;
}

int32_t eod_token(const Config& c) {
  if (c.data.eod_token >= 0) return static_cast<int32_t>(c.data.eod_token);
  if (!c.data.tokenizer.empty()) return load_tokenizer(c.data.tokenizer)->eod();
  return -1;
}

std::unique_ptr<BlendedSamples> build_samples(const Config& c, int split, int64_t num_samples) {
  GptDatasetOptions opt;
  opt.seq_length = c.data.seq_length;
  opt.seed = static_cast<uint32_t>(c.train.seed);
  opt.shuffle = c.data.shuffle;
  return std::make_unique<BlendedSamples>(Blend::parse(c.data.prefix), parse_split(c), split, num_samples, opt);
}

BatchOptions batch_options(const Config& c, int64_t dp_size, int64_t dp_rank) {
  BatchOptions b;
  b.micro_batch_size = c.train.micro_batch_size;
  b.dp_size = dp_size;
  b.dp_rank = dp_rank;
  b.eod = eod_token(c);
  b.eod_mask_loss = c.data.eod_mask_loss;
  b.vocab_size = c.model.vocab_size;
  WEFT_CHECK(!b.eod_mask_loss || b.eod >= 0, c.where("data.eod_mask_loss"),
             ": needs an EOD id (set data.eod_token or data.tokenizer)");
  return b;
}

ParallelSizes parallel_sizes(const Config& c) {
  return {static_cast<int>(c.parallel.tp), static_cast<int>(c.parallel.cp), static_cast<int>(c.parallel.ep),
          static_cast<int>(c.parallel.pp)};
}

}  // namespace weft
