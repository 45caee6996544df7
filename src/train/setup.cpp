// weft/src/train/setup.cpp v1 — Config → data, layout and batch options.
#include "train/setup.h"

#include <cmath>

#include "config/validate.h"
#include "data/mock_dataset.h"
#include "data/sft_dataset.h"
#include "io/model_io.h"
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

std::unique_ptr<SampleSource> build_samples(const Config& c, int split, int64_t num_samples) {
  if (c.data.mock)
    return std::make_unique<MockSamples>(num_samples, c.data.seq_length, c.model.vocab,
                                         static_cast<uint64_t>(c.train.seed) * 3 + static_cast<uint64_t>(split));
  if (c.data.sft) {
    const Blend blend = Blend::parse(c.data.prefix);
    WEFT_CHECK(blend.paths.size() == 1, c.where("data.prefix"), ": data.sft takes one prefix");
    const int32_t eod = eod_token(c);
    return std::make_unique<SftSamples>(blend.paths[0], parse_split(c), split, num_samples,
                                        SftOptions{c.data.seq_length, static_cast<uint32_t>(c.train.seed),
                                                   c.data.shuffle, c.data.pack, eod >= 0 ? eod : 0});
  }
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
  b.reset_position_ids = c.data.reset_position_ids;
  b.reset_attention_mask = c.data.reset_attention_mask;
  b.vocab_size = c.model.vocab;
  for (const char* key : {"data.eod_mask_loss", "data.reset_position_ids", "data.reset_attention_mask"})
    WEFT_CHECK(b.eod >= 0 || c.values.find(key) == c.values.end() || c.values.at(key) == "false", c.where(key),
               ": needs an EOD id (set data.eod_token or data.tokenizer)");
  return b;
}

ParallelSizes parallel_sizes(const Config& c) {
  return {static_cast<int>(c.parallel.tp), static_cast<int>(c.parallel.cp), static_cast<int>(c.parallel.ep),
          static_cast<int>(c.parallel.pp)};
}

}  // namespace weft

namespace weft {

void resolve_model(Config& c) {
  if (c.model_init == "random") return;
  ModelSpec from;
  try {
    from = spec_of(WeightSource::parse(c.model_init));
  } catch (const ConfigError&) {
    throw;
  } catch (const Error& e) {
    throw ConfigError(str(c.where("model.init"), ": ", e.what()));
  }
  // The weights fix the shape: a key the deck sets must say what they say. The others are the deck's to choose.
  for (const ModelField& f : model_fields()) {
    const std::string key = f.deck_key();
    if (!f.shapes_weights) f.set(from, f.get(c.model));
    else if (c.origin.count(key) && f.get(c.model) != f.get(from))
      throw ConfigError(str(c.where(key), ": ", f.text(c.model), ", but ", c.model_init, " says ", f.text(from)));
  }
  c.model = from;
}

}  // namespace weft
