// weft/src/parallel/schedules.cpp v1 — 1F1B and interleaved pipeline schedules (pp = 1: gradient accumulation).
#include "parallel/schedules.h"

#include <map>
#include <memory>

#include "parallel/context_parallel.h"

namespace weft {
namespace {

// Reduces per-token losses to the micro-batch loss and, for the backward, each token's weight in it.
// Under context parallelism the sums run over the tokens of every cp rank.
MicroBatchLoss reduce_loss(const Tensor& losses, const Tensor& loss_mask, double grad_scale, Comm* cp,
                           Tensor* row_scale) {
  const std::vector<double> loss = losses.to_doubles(), mask = loss_mask.to_doubles();
  MicroBatchLoss out;
  for (size_t t = 0; t < loss.size(); ++t) {
    out.loss_sum += mask[t] * loss[t];
    out.tokens += mask[t];
  }
  if (cp && cp->size() > 1) {
    Tensor sums = Tensor::from_vector<double>({out.loss_sum, out.tokens}, {2});
    cp->all_reduce(sums);
    out.loss_sum = sums.data<double>()[0];
    out.tokens = sums.data<double>()[1];
  }
  if (row_scale) {
    const double per_token = out.tokens > 0 ? grad_scale / out.tokens : 0.0;
    Tensor host = Tensor::empty({static_cast<int64_t>(mask.size())}, losses.dtype());
    for (size_t t = 0; t < mask.size(); ++t) {
      if (host.dtype() == DType::f64) host.data<double>()[t] = mask[t] * per_token;
      else host.data<float>()[t] = static_cast<float>(mask[t] * per_token);
    }
    *row_scale = host.to(losses.device());
  }
  return out;
}

// What one (chunk, micro-batch) keeps between its forward and backward.
struct InFlight {
  Batch host, batch;
  ModelSaved saved;
  Tensor row_scale;
};

}  // namespace

std::vector<std::pair<bool, int64_t>> PipelineSchedule::order(int rank, int pp, int vpp, int64_t count,
                                                              bool forward_only) {
  const int64_t total = count * vpp;
  std::vector<std::pair<bool, int64_t>> steps;
  if (forward_only) {
    for (int64_t k = 0; k < total; ++k) steps.emplace_back(true, k);
    return steps;
  }
  int64_t warmup = vpp == 1 ? std::min<int64_t>(pp - rank - 1, count)
                            : (count == pp ? total : std::min<int64_t>((pp - rank - 1) * 2 + (vpp - 1) * pp, total));
  for (int64_t k = 0; k < warmup; ++k) steps.emplace_back(true, k);
  for (int64_t i = 0; i < total - warmup; ++i) {
    steps.emplace_back(true, warmup + i);
    steps.emplace_back(false, i);
  }
  for (int64_t k = total - warmup; k < total; ++k) steps.emplace_back(false, k);
  return steps;
}

double PipelineSchedule::run(const std::function<Batch(int64_t)>& micro_batch, int64_t count, bool forward_only) const {
  const int pp_size = pp->size(), rank = pp->rank(), vpp = static_cast<int>(chunks.size());
  const int64_t group = int64_t(pp_size) * vpp;
  // Virtual micro-batch k → model chunk and micro-batch (Megatron's interleaving: groups of pp micro-batches
  // go through chunk 0, then chunk 1, ...; backwards run the chunks in reverse).
  auto chunk_of = [&](int64_t k, bool forward) {
    const int c = static_cast<int>((k % group) / pp_size);
    return forward ? c : vpp - 1 - c;
  };
  auto micro_of = [&](int64_t k) { return (k / group) * pp_size + k % pp_size; };
  auto virtual_stage = [&](int chunk) { return chunk * pp_size + rank; };
  const int last_stage = pp_size * vpp - 1;
  // One tag per (micro-batch, receiving virtual stage, direction).
  auto tag = [&](int64_t micro, int stage, bool forward) {
    return static_cast<int>((micro * (last_stage + 1) + stage) * 2 + (forward ? 0 : 1));
  };
  auto prev_rank = [&](int /*chunk*/) { return (rank + pp_size - 1) % pp_size; };
  auto next_rank = [&](int /*chunk*/) { return (rank + 1) % pp_size; };

  std::map<std::pair<int, int64_t>, InFlight> flight;
  std::vector<std::unique_ptr<SendRequest>> sends;
  double loss_total = 0;

  auto hidden_for = [&](const GptModel& m, const Batch& b) {
    const int64_t t = b.tokens_count() / (sequence_parallel ? tp_size : 1);
    return Tensor::empty({t, m.spec().hidden}, m.context().dtype, m.context().device);
  };

  for (const auto& [forward, k] : order(rank, pp_size, vpp, count, forward_only)) {
    const int c = chunk_of(k, forward);
    const int64_t m = micro_of(k);
    GptModel& model = *chunks[c];
    const int stage = virtual_stage(c);
    if (forward) {
      InFlight& f = flight[{c, m}];
      f.host = context_parallel_split(micro_batch(m), cp ? cp->size() : 1, cp ? cp->rank() : 0);
      f.batch = f.host.to(model.context().device);
      Tensor x;
      if (stage == 0) {
        x = model.embed(f.batch);
      } else {
        x = hidden_for(model, f.batch);
        pp->recv(x, prev_rank(c), tag(m, stage, true));
      }
      x = model.forward_layers(x, f.batch, f.saved);
      if (stage == last_stage) {
        const Tensor losses = model.loss(x, f.batch, f.saved);
        const MicroBatchLoss l =
            reduce_loss(losses, f.host.loss_mask, 1.0 / double(count), cp, forward_only ? nullptr : &f.row_scale);
        loss_total += l.mean();
      } else {
        sends.push_back(pp->isend(x, next_rank(c), tag(m, stage + 1, true)));
      }
      if (forward_only) flight.erase({c, m});
    } else {
      InFlight& f = flight.at({c, m});
      Tensor dx;
      if (stage == last_stage) {
        dx = model.loss_backward(f.batch, f.saved, f.row_scale);
      } else {
        dx = hidden_for(model, f.batch);
        pp->recv(dx, next_rank(c), tag(m, stage, false));
      }
      dx = model.backward_layers(dx, f.batch, f.saved);
      if (stage == 0) model.embed_backward(dx, f.batch);
      else sends.push_back(pp->isend(dx, prev_rank(c), tag(m, stage - 1, false)));
      flight.erase({c, m});
    }
  }
  for (auto& s : sends) s->wait();
  // Only the last stage saw the losses; the pipeline shares their mean.
  Tensor total = Tensor::from_vector<double>({loss_total}, {1});
  pp->all_reduce(total);
  return total.data<double>()[0] / double(count);
}

}  // namespace weft
