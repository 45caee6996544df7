// weft/src/cli/samples.cpp v1 — `weft samples DECK --num N --output FILE.jsonl`: the samples training consumes.
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "config/deck.h"
#include "train/setup.h"

namespace weft {

int cmd_samples(const Args& args, const MpiEnv& mpi) {
  Args rest;
  int64_t num = -1;
  std::string output, split = "train";
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&](const char* flag) {
      if (i + 1 >= args.size()) throw ConfigError(str("weft samples: ", flag, " needs a value"));
      return args[++i];
    };
    if (args[i] == "--num") {
      num = parse_count("weft samples: --num", value("--num"));
    } else if (args[i] == "--output") {
      output = value("--output");
    } else if (args[i] == "--split") {
      split = value("--split");
    } else {
      rest.push_back(args[i]);
    }
  }
  const char* usage = "weft samples DECK --num N --output FILE.jsonl [--split train|valid|test] [--section.key=value ...]";
  std::string deck;
  Args overrides;
  if (!parse_deck_args(rest, usage, deck, overrides, mpi)) return 0;
  if (num < 0 || output.empty()) throw ConfigError(str("usage: ", usage));
  const int split_index = split == "train" ? 0 : split == "valid" ? 1 : split == "test" ? 2 : -1;
  if (split_index < 0) throw ConfigError(str("weft samples: --split expects train, valid or test, got '", split, "'"));

  // The samples do not depend on the layout, so the deck's layout is checked as if the job ran at its size.
  Config probe = load_config(deck, overrides);
  const int64_t world = probe.parallel.tp * probe.parallel.pp * probe.parallel.cp * std::max<int64_t>(probe.parallel.dp, 1);
  const Config cfg = load_config_collectively(deck, overrides, static_cast<int>(world));
  if (mpi.rank() != 0) return 0;

  // Built for exactly the samples training asks of each split, since that count sets the epochs and so the order.
  const int64_t wanted[3] = {train_samples(cfg), valid_samples(cfg),
                             cfg.train.eval_iters * cfg.train.global_batch_size};
  const auto data = build_samples(cfg, split_index, wanted[split_index]);
  if (num > data->size())
    throw ConfigError(str("weft samples: --num ", num, " exceeds the ", data->size(), " ", split, " samples the deck builds"));
  const MicroBatches batches(*data, batch_options(cfg, 1, 0));
  std::ofstream out(output);
  if (!out) throw Error(str("weft samples: cannot write '", output, "'"));
  for (int64_t i = 0; i < num; ++i) {
    const Batch b = batches.samples(i, 1);
    const int32_t* tok = b.tokens.data<int32_t>();
    const int32_t* lab = b.labels.data<int32_t>();
    const float* mask = b.loss_mask.data<float>();
    const int64_t n = b.tokens_count();
    nlohmann::json rec;
    rec["tokens"] = std::vector<int32_t>(tok, tok + n);
    rec["labels"] = std::vector<int32_t>(lab, lab + n);
    rec["loss_mask"] = std::vector<float>(mask, mask + n);
    out << rec.dump() << "\n";
  }
  std::printf("weft samples: wrote %lld %s samples of %lld tokens to %s\n", (long long)num, split.c_str(),
              (long long)cfg.data.seq_length, output.c_str());
  return 0;
}

}  // namespace weft
