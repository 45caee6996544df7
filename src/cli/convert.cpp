// weft/src/cli/convert.cpp v1 — `weft convert`: HF ↔ native checkpoints, without training.
#include <filesystem>

#include "cli/cli.h"
#include "cli/model_loading.h"
#include "io/checkpoint.h"

namespace weft {
namespace {

size_t parse_size(const std::string& text) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (const std::exception&) {
    throw ConfigError(str("weft convert: --shard-size expects a size such as 5GB, got '", text, "'"));
  }
  const std::string unit = text.substr(pos);
  const double scale = unit.empty() || unit == "B" ? 1 : unit == "KB" ? 1e3 : unit == "MB" ? 1e6 : unit == "GB" ? 1e9
                     : -1;
  if (scale < 0 || v <= 0) throw ConfigError(str("weft convert: --shard-size: unknown size '", text, "'"));
  return static_cast<size_t>(v * scale);
}

}  // namespace

int cmd_convert(const Args& args, const MpiEnv& mpi) {
  const char* usage =
      "weft convert --from DIR --to DIR --format hf|native [--dtype bf16|f32] [--shard-size 5GB] [--tokenizer DIR]";
  std::string from, to, format, dtype = "bf16", shard = "5GB", tokenizer;
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&]() {
      if (i + 1 >= args.size()) throw ConfigError(str("weft convert: ", args[i], " needs a value"));
      return args[++i];
    };
    if (args[i] == "--from") from = value();
    else if (args[i] == "--to") to = value();
    else if (args[i] == "--format") format = value();
    else if (args[i] == "--dtype") dtype = value();
    else if (args[i] == "--shard-size") shard = value();
    else if (args[i] == "--tokenizer") tokenizer = value();
    else if (args[i] == "--help" || args[i] == "-h") {
      if (mpi.rank() == 0) std::printf("usage: %s\n", usage);
      return 0;
    } else throw ConfigError(str("weft convert: unknown argument '", args[i], "'; usage: ", usage));
  }
  if (from.empty() || to.empty() || (format != "hf" && format != "native")) throw ConfigError(str("usage: ", usage));
  if (dtype != "bf16" && dtype != "f32") throw ConfigError(str("weft convert: --dtype expects bf16 or f32"));
  const WeightSource src = WeightSource::parse(from);
  LoadedModel m = load_model(src, mpi.size(), mpi.rank());
  if (format == "hf") {
    if (tokenizer.empty() && src.kind == WeightSource::hf) tokenizer = src.dir;
    export_hf(*m.model, to, dtype == "bf16" ? DType::bf16 : DType::f32, parse_size(shard), tokenizer);
  } else {
    CheckpointWriter writer(to, 0, *m.comms.world);
    writer.write_shard(str("shard_tp", m.grid->tp_rank(), "_pp0.h5"), model_tensors(m.model->parameters()));
    writer.commit({{"format", "weft-checkpoint"},
                   {"version", kCheckpointFormatVersion},
                   {"iteration", 0},
                   {"consumed_samples", 0},
                   {"converted_from", from},
                   {"layout", {{"tp", mpi.size()}, {"pp", 1}, {"dp", 1}, {"cp", 1}}},
                   {"model", spec_to_json(m.model->spec())}});
  }
  if (mpi.rank() == 0) std::printf("weft convert: %s → %s (%s)\n", from.c_str(), to.c_str(), format.c_str());
  return 0;
}

}  // namespace weft
