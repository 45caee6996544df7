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
  Batch b;
  b.rows = rows;
  b.seq = seq;
  b.tokens = Tensor::empty({t}, DType::i32);
  cpu_ops().convert(b.tokens, raw.reshape({t}));
  b.labels = Tensor::zeros({t}, DType::i32);
  b.loss_mask = Tensor::zeros({t}, DType::f32);
  b.positions = Tensor::empty({t}, DType::i32);
  b.cu_seqlens = Tensor::empty({rows + 1}, DType::i32);
  for (int64_t i = 0; i < t; ++i) {
    const int32_t id = b.tokens.data<int32_t>()[i];
    WEFT_CHECK(id >= 0 && id < spec.vocab, input, ": token id ", id, " at position ", i, " is outside the vocabulary (",
               spec.vocab, ")");
    b.positions.data<int32_t>()[i] = static_cast<int32_t>(i % seq);
    if (i % seq != seq - 1) {  // every position but the last predicts the next token
      b.labels.data<int32_t>()[i] = b.tokens.data<int32_t>()[i + 1];
      b.loss_mask.data<float>()[i] = 1.f;
    }
  }
  for (int64_t r = 0; r <= rows; ++r) b.cu_seqlens.data<int32_t>()[r] = static_cast<int32_t>(r * seq);
  b.max_seqlen = seq;

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
    // Gather the vocabulary shards: [tp, t, local] → [t, vocab] on rank 0.
    Comm& tp = *m.comms.tp;
    const Tensor local = saved.logits.to(Device::cpu);
    const int64_t cols = local.size(1);
    Tensor all = Tensor::empty({tp.size() * t * cols}, DType::f32);
    tp.all_gather(all, local.reshape({t * cols}));
    if (mpi.rank() == 0) {
      Tensor logits = Tensor::empty({rows, seq, spec.vocab}, DType::f32);
      for (int r = 0; r < tp.size(); ++r) {
        const VocabShard shard = VocabShard::of(spec.vocab, spec.padded_vocab(tp.size()), r, tp.size());
        for (int64_t i = 0; i < t; ++i)
          for (int64_t c = 0; c < shard.valid; ++c)
            logits.data<float>()[i * spec.vocab + shard.start + c] = all.data<float>()[(r * t + i) * cols + c];
      }
      write_npy(output, logits);
    }
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
