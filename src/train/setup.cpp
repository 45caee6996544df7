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
    return std::make_unique<MockSamples>(num_samples, c.data.seq_length, c.model.vocab_size,
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
  b.vocab_size = c.model.vocab_size;
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
  if (c.model.init == "random") return;
  WeightSource src;
  ModelSpec spec;
  try {
    src = WeightSource::parse(c.model.init);
    spec = spec_of(src);
  } catch (const ConfigError&) {
    throw;
  } catch (const Error& e) {
    throw ConfigError(str(c.where("model.init"), ": ", e.what()));
  }
  ModelConfig from = model_config_of(spec);
  from.init = c.model.init;
  from.make_vocab_size_divisible_by = c.model.make_vocab_size_divisible_by;
  from.init_method_std = c.model.init_method_std;
  const ModelConfig& deck = c.model;
  auto agree = [&](const char* key, double deck_value, double source_value) {
    if (c.origin.count(key) && std::abs(deck_value - source_value) > 1e-12 * std::max(1.0, std::abs(source_value)))
      throw ConfigError(str(c.where(key), ": ", deck_value, ", but ", c.model.init, " says ", source_value));
  };
  agree("model.num_layers", deck.num_layers, from.num_layers);
  agree("model.hidden_size", deck.hidden_size, from.hidden_size);
  agree("model.ffn_hidden_size", deck.ffn_hidden_size, from.ffn_hidden_size);
  agree("model.num_attention_heads", deck.num_attention_heads, from.num_attention_heads);
  agree("model.num_query_groups", deck.num_query_groups, from.num_query_groups);
  agree("model.kv_channels", deck.kv_channels, from.kv_channels);
  agree("model.vocab_size", deck.vocab_size, from.vocab_size);
  agree("model.max_position_embeddings", deck.max_position_embeddings, from.max_position_embeddings);
  agree("model.rope_theta", deck.rope_theta, from.rope_theta);
  agree("model.norm_epsilon", deck.norm_epsilon, from.norm_epsilon);
  agree("model.qkv_bias", deck.qkv_bias, from.qkv_bias);
  agree("model.tie_embeddings", deck.tie_embeddings, from.tie_embeddings);
  agree("model.sliding_window", deck.sliding_window, from.sliding_window);
  agree("model.rope_scaling.factor", deck.rope_scaling.factor, from.rope_scaling.factor);
  if (c.origin.count("model.rope_scaling.type") && deck.rope_scaling.type != from.rope_scaling.type)
    throw ConfigError(str(c.where("model.rope_scaling.type"), ": ", deck.rope_scaling.type, ", but ", c.model.init,
                          " says ", from.rope_scaling.type));
  if (c.origin.count("model.family") && deck.family != from.family)
    throw ConfigError(str(c.where("model.family"), ": ", deck.family, ", but ", c.model.init, " says ", from.family));
  c.model = from;
}

}  // namespace weft
