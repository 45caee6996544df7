// weft/src/cli/forward.cpp v1 — `weft forward`: logits of token ids under a checkpoint, and their loss.
#include <cstdio>

#include "cli/cli.h"
#include "cli/model_loading.h"
#include "io/npy.h"
#include "ops/ops.h"

namespace weft {

int cmd_forward(const Args& args, const MpiEnv& mpi) {
  const char* usage = "weft forward --model DIR --input ids.npy --output logits.npy [--ep N]";
  std::string model_dir, input, output;
  int ep = 1;
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&]() {
      if (i + 1 >= args.size()) throw ConfigError(str("weft forward: ", args[i], " needs a value"));
      return args[++i];
    };
    if (args[i] == "--model") model_dir = value();
    else if (args[i] == "--input") input = value();
    else if (args[i] == "--output") output = value();
    else if (args[i] == "--ep") ep = static_cast<int>(parse_count("weft forward: --ep", value()));
    else if (args[i] == "--help" || args[i] == "-h") {
      if (mpi.rank() == 0) std::printf("usage: %s\n", usage);
      return 0;
    } else throw ConfigError(str("weft forward: unknown argument '", args[i], "'; usage: ", usage));
  }
  if (model_dir.empty() || input.empty()) throw ConfigError(str("usage: ", usage));

  LoadedModel m = load_model(WeightSource::parse(model_dir), mpi.size(), mpi.rank(), ep);
  const ModelSpec& spec = m.model->spec();
  const Tensor raw = read_npy(input);
  WEFT_CHECK(raw.ndim() == 2 && (raw.dtype() == DType::i32 || raw.dtype() == DType::i64), input,
             ": expected integer token ids of shape [batch, seq], got ", raw.describe());
  const int64_t rows = raw.size(0), seq = raw.size(1), t = rows * seq;
  WEFT_CHECK(seq <= spec.max_positions, input, ": ", seq, " tokens exceed max_position_embeddings ", spec.max_positions);
  const std::vector<double> ids = raw.to_doubles();
  std::vector<Sequence> seqs(static_cast<size_t>(rows));
  for (int64_t i = 0; i < t; ++i) {
    const int64_t id = static_cast<int64_t>(ids[static_cast<size_t>(i)]);
    WEFT_CHECK(id >= 0 && id < spec.vocab, input, ": token id ", id, " at position ", i, " is outside the vocabulary (",
               spec.vocab, ")");
    Sequence& s = seqs[static_cast<size_t>(i / seq)];
    s.tokens.push_back(static_cast<int32_t>(id));
    if (i % seq) s.labels.push_back(static_cast<int32_t>(id)), s.loss_mask.push_back(1.f);  // predicted by the one before
  }
  for (Sequence& s : seqs) s.labels.push_back(0), s.loss_mask.push_back(0.f);  // the last token predicts nothing
  const Batch b = sequences_batch(seqs);
  ModelSaved saved;
  const Tensor hidden = m.model->forward_layers(m.model->embed(b), b, saved);
  const Tensor losses = m.model->loss(hidden, b, saved);
  double sum = 0, count = 0;
  const std::vector<double> loss = losses.to_doubles(), mask = b.loss_mask.to_doubles();
  for (int64_t i = 0; i < t; ++i) {
    sum += mask[i] * loss[i];
    count += mask[i];
  }

  if (!output.empty()) {
    const Tensor logits = gather_vocab(m, saved.logits);
    if (mpi.rank() == 0) write_npy(output, logits.reshape({rows, seq, spec.vocab}));
  }
  // An MoE model's routers: their losses' mean over the MoE layers (Megatron's form, without coefficients).
  std::string router;
  for (const auto& [name, total] : saved.losses.sums) router += str(" | ", name, " ", total / double(spec.moe_layers()));
  if (mpi.rank() == 0)
    std::printf("weft forward: %lld × %lld tokens, mean next-token loss %.6f%s\n", (long long)rows, (long long)seq,
                count > 0 ? sum / count : 0.0, router.c_str());
  return 0;
}

}  // namespace weft
