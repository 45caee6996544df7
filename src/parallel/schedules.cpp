// weft/src/parallel/schedules.cpp v5 — 1F1B and interleaved pipeline schedules (pp = 1: gradient accumulation).
#include "parallel/schedules.h"

#include <map>

#include "parallel/context_parallel.h"

namespace weft {
namespace {

// Σ mask over the micro-batch's tokens (of every cp rank under context parallelism), known before the forward.
double loss_tokens(const std::vector<double>& mask, Comm* cp) {
  Tensor tokens = Tensor::from_vector<double>({0.0}, {1});
  for (double m : mask) tokens.data<double>()[0] += m;
  if (cp && cp->size() > 1) cp->all_reduce(tokens);
  return tokens.data<double>()[0];
}

// Each token's weight in the backward: mask · grad_scale / tokens, in the model's loss dtype on its device.
Tensor token_weights(const std::vector<double>& mask, double grad_scale, double tokens, DType dtype,
                     Device device) {
  const double per_token = tokens > 0 ? grad_scale / tokens : 0.0;
  Tensor host = Tensor::empty({static_cast<int64_t>(mask.size())}, dtype);
  for (size_t t = 0; t < mask.size(); ++t) {
    if (dtype == DType::f64) host.data<double>()[t] = mask[t] * per_token;
    else host.data<float>()[t] = static_cast<float>(mask[t] * per_token);
  }
  return host.to(device);
}

// The micro-batch loss from its per-token losses (summed over cp ranks).
MicroBatchLoss reduce_loss(const Tensor& losses, const std::vector<double>& mask, double tokens, Comm* cp) {
  const std::vector<double> loss = losses.to_doubles();
  Tensor sum = Tensor::from_vector<double>({0.0}, {1});
  for (size_t t = 0; t < loss.size(); ++t) sum.data<double>()[0] += mask[t] * loss[t];
  if (cp && cp->size() > 1) cp->all_reduce(sum);
  return {sum.data<double>()[0], tokens};
}

// What one (chunk, micro-batch) keeps between its forward and backward.
struct InFlight {
  Batch host, batch;
  ModelSaved saved;
  Tensor row_scale;
};

}  // namespace

std::vector<std::vector<PipelineSchedule::Step>> PipelineSchedule::units(int rank, int pp, int vpp, int64_t count,
                                                                        bool forward_only) {
  const int64_t total = count * vpp;
  std::vector<std::vector<Step>> units;
  if (forward_only) {
    for (int64_t k = 0; k < total; ++k) units.push_back({{true, k}});
    return units;
  }
  int64_t warmup = vpp == 1 ? std::min<int64_t>(pp - rank - 1, count)
                            : (count == pp ? total : std::min<int64_t>((pp - rank - 1) * 2 + (vpp - 1) * pp, total));
  for (int64_t k = 0; k < warmup; ++k) units.push_back({{true, k}});
  for (int64_t i = 0; i < total - warmup; ++i) {
    if (vpp == 1) {
      units.push_back({{true, warmup + i}});
      units.push_back({{false, i}});
    } else {
      units.push_back({{true, warmup + i}, {false, i}});
    }
  }
  for (int64_t k = total - warmup; k < total; ++k) units.push_back({{false, k}});
  return units;
}

ScheduleResult PipelineSchedule::run(const std::function<Batch(int64_t)>& micro_batch, int64_t count,
                                     bool forward_only) const {
  const int pp_size = pp->size(), rank = pp->rank(), vpp = static_cast<int>(chunks.size());
  const int64_t group = int64_t(pp_size) * vpp;
  // Virtual micro-batch k → model chunk and micro-batch (Megatron's interleaving: groups of pp micro-batches
  // go through chunk 0, then chunk 1, ...; backwards run the chunks in reverse).
  auto chunk_of = [&](const Step& s) {
    const int c = static_cast<int>((s.k % group) / pp_size);
    return s.forward ? c : vpp - 1 - c;
  };
  auto micro_of = [&](const Step& s) { return (s.k / group) * pp_size + s.k % pp_size; };
  const int last_stage = pp_size * vpp - 1;
  const int prev_rank = (rank + pp_size - 1) % pp_size, next_rank = (rank + 1) % pp_size;

  std::map<std::pair<int, int64_t>, InFlight> flight;
  double loss_total = 0;
  std::vector<double> layer_totals(layer_loss_names.size(), 0.0);
  std::vector<int64_t> backwards_done(chunks.size(), 0);
  // The micro-batch of a step, split for this cp rank and moved to the device (once, at its forward).
  auto in_flight = [&](const Step& s) -> InFlight& {
    InFlight& f = flight[{chunk_of(s), micro_of(s)}];
    if (!f.batch.tokens.defined()) {
      f.host = context_parallel_split(micro_batch(micro_of(s)), cp ? cp->size() : 1, cp ? cp->rank() : 0);
      f.batch = f.host.to(chunks[chunk_of(s)]->context().device);
      f.saved.losses.backward_scale = forward_only ? 0.0 : 1.0 / double(count);  // as the micro-batch's loss
    }
    return f;
  };
  // A step's input from a neighbouring stage: activations for a forward past the first stage, their gradients
  // for a backward before the last; buffers are made when the receive is posted.
  auto receives = [&](const Step& s) {
    const int stage = chunk_of(s) * pp_size + rank;
    return s.forward ? stage != 0 : stage != last_stage;
  };
  // A buffer the size of the activations (or their gradients) that travel between stages for step s.
  auto activation_buffer = [&](const Step& s) {
    const GptModel& model = *chunks[chunk_of(s)];
    const int64_t t = in_flight(s).batch.tokens_count() / (sequence_parallel ? tp_size : 1);
    return Tensor::empty({t, model.spec().hidden}, model.context().dtype, model.context().device);
  };
  std::map<std::pair<bool, std::pair<int, int64_t>>, Tensor> inbox;
  // Steps run in units (see units()). After each unit one exchange posts its outputs together with the next
  // unit's inputs, as Megatron's batched p2p does: with sends that block until received, no rank then waits on a
  // peer that waits on it (checked by simulation for pp 2–8 without and pp 2–4 with interleaving).
  std::vector<std::pair<Tensor, int>> outbox;
  auto exchange = [&](const std::vector<Step>& next) {
    std::vector<std::pair<Tensor, int>> recvs;
    for (const Step& s : next) {
      if (!receives(s)) continue;
      Tensor buffer = activation_buffer(s);
      inbox[{s.forward, {chunk_of(s), micro_of(s)}}] = buffer;
      recvs.emplace_back(buffer, s.forward ? prev_rank : next_rank);
    }
    if (!outbox.empty() || !recvs.empty()) pp->exchange(outbox, recvs);
    outbox.clear();
  };
  auto take_input = [&](const Step& s) {
    auto it = inbox.find({s.forward, {chunk_of(s), micro_of(s)}});
    Tensor x = std::move(it->second);
    inbox.erase(it);
    return x;
  };

  // NCCL connects two ranks at their first exchange, and both must then ask for the same connections; the
  // schedule's exchanges are lopsided (a send one way, nothing back), so the first run connects each rank with
  // both ring neighbours in one symmetric exchange of activation-sized buffers.
  if (!ring_connected && pp_size > 1) {
    const Step first{true, 0};
    pp->exchange({{activation_buffer(first), next_rank}, {activation_buffer(first), prev_rank}},
                 {{activation_buffer(first), prev_rank}, {activation_buffer(first), next_rank}});
    ring_connected = true;
  }
  const std::vector<std::vector<Step>> plan = units(rank, pp_size, vpp, count, forward_only);
  if (!plan.empty()) exchange(plan[0]);
  for (size_t u = 0; u < plan.size(); ++u) {
    for (const Step& s : plan[u]) {
      const int c = chunk_of(s), stage = c * pp_size + rank;
      GptModel& model = *chunks[c];
      InFlight& f = in_flight(s);
      if (s.forward) {
        Tensor x = stage == 0 ? model.embed(f.batch) : take_input(s);
        x = model.forward_layers(x, f.batch, f.saved);
        for (size_t i = 0; i < layer_loss_names.size(); ++i) {
          const auto it = f.saved.losses.sums.find(layer_loss_names[i]);
          if (it != f.saved.losses.sums.end()) layer_totals[i] += it->second;
        }
        f.saved.losses.sums.clear();
        if (stage == last_stage) {
          // The backward's token weights are known before the loss runs, so it can run its backward fused.
          const std::vector<double> mask = f.host.loss_mask.to_doubles();
          const double tokens = loss_tokens(mask, cp);
          if (!forward_only)
            f.row_scale = token_weights(mask, 1.0 / double(count), tokens, stat_dtype(x.dtype()), x.device());
          const Tensor losses = model.loss(x, f.batch, f.saved, f.row_scale, loss_chunk_rows);
          loss_total += reduce_loss(losses, mask, tokens, cp).mean();
        } else {
          outbox.emplace_back(x, next_rank);
        }
        if (forward_only) flight.erase({c, micro_of(s)});
      } else {
        // A chunk's gradients are final after its last backward, which reports them as it finishes them.
        const GradsReady& ready = ++backwards_done[c] == count ? grads_ready : GradsReady{};
        Tensor dx = stage == last_stage ? model.loss_backward(f.batch, f.saved, f.row_scale, ready) : take_input(s);
        dx = model.backward_layers(dx, f.batch, f.saved, ready);
        if (stage == 0) model.embed_backward(dx, f.batch, ready);
        else outbox.emplace_back(dx, prev_rank);
        flight.erase({c, micro_of(s)});
      }
    }
    exchange(u + 1 < plan.size() ? plan[u + 1] : std::vector<Step>{});
  }
  // Only the last stage saw the losses, each stage its layers' own; the pipeline shares their means. The layers'
  // losses of context-parallel ranks are parts of one sum.
  Tensor layers = Tensor::from_vector(layer_totals, {static_cast<int64_t>(layer_totals.size())});
  if (cp && cp->size() > 1 && !layer_totals.empty()) cp->all_reduce(layers);
  layer_totals.assign(layers.data<double>(), layers.data<double>() + layers.numel());
  layer_totals.push_back(loss_total);
  Tensor total = Tensor::from_vector(layer_totals, {static_cast<int64_t>(layer_totals.size())});
  pp->all_reduce(total);
  ScheduleResult result;
  result.loss = total.data<double>()[layer_loss_names.size()] / double(count);
  for (size_t i = 0; i < layer_loss_names.size(); ++i)
    result.layer_losses[layer_loss_names[i]] = total.data<double>()[i] / double(count);
  return result;
}

}  // namespace weft
