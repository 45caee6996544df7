// weft/src/train/trainer.cpp v6 — the training loop.
#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>

#include "config/validate.h"
#include "model/moe.h"
#include "parallel/schedules.h"
#include "parallel/shared_gradients.h"
#include "train/checkpointing.h"
#include "train/memory_plan.h"
#include "train/setup.h"
#include "train/stop_signals.h"

namespace weft {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The mean of `value` over the ranks of `comm`.
double mean_over(Comm& comm, double value) {
  Tensor t = Tensor::from_vector<double>({value}, {1});
  comm.all_reduce(t);
  return t.data<double>()[0] / comm.size();
}

// The rows of p (a vocabulary shard of a word embedding) that the step's tokens on any rank of `group` select:
// sorted local row indices, or none when they are half the shard or more (reducing every row then costs as much).
// Collective over `group`, through MPI (host flags).
std::vector<int32_t> touched_rows(const Parameter& p, const std::vector<Batch>& batches, Comm& group) {
  const int64_t start = p.blocks.at(0).global_begin, valid = p.blocks.at(0).length;
  Tensor flags = Tensor::zeros({valid}, DType::f32);
  float* f = flags.data<float>();
  for (const Batch& b : batches) {
    const int32_t* ids = b.tokens.data<int32_t>();
    for (int64_t t = 0; t < b.tokens.numel(); ++t) {
      const int64_t r = int64_t(ids[t]) - start;
      if (r >= 0 && r < valid) f[r] = 1.f;
    }
  }
  group.all_reduce(flags, ReduceOp::max);
  std::vector<int32_t> rows;
  for (int64_t r = 0; r < valid; ++r)
    if (f[r] > 0) rows.push_back(static_cast<int32_t>(r));
  if (2 * static_cast<int64_t>(rows.size()) >= valid) rows.clear();
  return rows;
}

}  // namespace

Trainer::Trainer(const Config& cfg, const ProcessGrid& grid, Comms& comms)
    : cfg_(cfg),
      grid_(grid),
      comms_(comms),
      spec_(cfg.model.resolved()) {
  ctx_.tp = comms_.tp.get();
  ctx_.cp = comms_.cp.get();
  const bool gpu = cfg.train.precision == "bf16";
  ctx_.dtype = gpu ? DType::bf16 : DType::f32;
  ctx_.device = gpu ? Device::cuda : Device::cpu;
  ctx_.seed = static_cast<uint64_t>(cfg.train.seed);
  ctx_.sequence_parallel = cfg.parallel.sequence_parallel && grid.tp_size() > 1;
  ctx_.recompute = cfg.train.recompute == "full"        ? Recompute::full
                   : cfg.train.recompute == "selective" ? Recompute::selective
                                                        : Recompute::none;
  ctx_.deterministic = cfg.train.deterministic;
  ctx_.ep = comms_.expert_parallel();
  ctx_.moe = {.aux_loss_coeff = cfg.moe.aux_loss_coeff,
              .z_loss_coeff = cfg.moe.z_loss_coeff,
              .device_balance_coeff = cfg.moe.device_balance_loss_coeff,
              .comm_balance_coeff = cfg.moe.comm_balance_loss_coeff,
              .capacity_factor = cfg.moe.expert_capacity_factor,
              .drop_by_position = cfg.moe.token_drop_policy == "position",
              .pad_to_capacity = cfg.moe.pad_expert_input_to_capacity};
  const int vpp = static_cast<int>(cfg.parallel.vpp);
  for (int c = 0; c < vpp; ++c) {
    chunks_.push_back(std::make_unique<GptModel>(
        spec_, ctx_, StageLayout::of(spec_, grid.pp_rank(), grid.pp_size(), c, vpp, cfg.parallel.first_stage_layers,
                                     cfg.parallel.last_stage_layers)));
    for (Parameter* p : chunks_.back()->parameters()) params_.push_back(p);
    schedule_.chunks.push_back(chunks_.back().get());
  }
  schedule_.pp = comms_.pp.get();
  schedule_.sequence_parallel = ctx_.sequence_parallel;
  schedule_.tp_size = grid.tp_size();
  schedule_.cp = comms_.cp.get();
  if (spec_.has_experts()) schedule_.layer_loss_names = moe_loss_names(spec_);
  if (cfg.checkpoint.load.empty()) load_initial_weights(cfg, spec_, params_);  // before the optimizer copies masters
  std::vector<GroupSpec> groups = {{ParamGroup::dense, comms_.dp_cp.get(), comms_.mp.get()}};
  if (spec_.has_experts())
    groups.push_back({ParamGroup::expert, &comms_.expert_data_parallel(), &comms_.expert_model_parallel()});
  optimizer_ = std::make_unique<GroupedOptimizer>(
      params_,
      OptimizerConfig{.beta1 = cfg.train.adam_beta1,
                      .beta2 = cfg.train.adam_beta2,
                      .eps = cfg.train.adam_eps,
                      .weight_decay = cfg.train.weight_decay,
                      .distributed = cfg.parallel.distributed_optimizer,
                      .data_parallel = grid.dp_size(),
                      .bucket_elements = cfg.parallel.ddp_bucket_size,
                      .bf16_moments = cfg.train.adam_moments_dtype == "bf16",
                      .bf16_grads = cfg.train.grad_dtype == "bf16",
                      .split_master = cfg.train.master_weights == "split",
                      .overlap_param_gather = cfg.parallel.overlap_param_gather,
                      .overlap_step = cfg.train.overlap_optimizer},
      groups);
  comms_.dp_cp->count_waits(cfg.log.comm_wait);
  // The step's updates and all-gathers of updated values run on until the forward reaches their parameters.
  if (cfg.parallel.overlap_param_gather || cfg.train.overlap_optimizer)
    for (auto& chunk : chunks_)
      chunk->set_params_needed([this](const std::vector<Parameter*>& needed) { optimizer_->await_values(needed); });
  // Gradients leave for their reductions as the backward finishes them: sequence-parallel ones are summed over tp
  // at once, and buckets whose parameters are all done start their data-parallel reduction.
  if (cfg.parallel.overlap_grad_reduce)
    schedule_.grads_ready = [this](const std::vector<Parameter*>& done) {
      optimizer_->grads_ready(reduce_finished_gradients(done, *comms_.tp, spec_.tie_embeddings, grid_.pp_size()));
    };
  lr_ = LrSchedule{cfg.train.lr, cfg.train.min_lr, cfg.train.lr_warmup_iters,
                   cfg.train.lr_decay_iters ? cfg.train.lr_decay_iters : cfg.train.train_iters,
                   cfg.train.lr_decay_style};
  num_micro_batches_ = cfg.train.global_batch_size / (cfg.train.micro_batch_size * grid.dp_size());
  if (!cfg.checkpoint.load.empty()) start_iteration_ = resume_checkpoint(cfg, spec_, *optimizer_);
  // A run never goes back: it would save the loaded state under an earlier iteration (and move `latest` to it).
  if (start_iteration_ >= cfg.train.train_iters)
    throw ConfigError(grid.rank() != 0 ? ""
                                       : str(cfg.where("train.train_iters"), ": ", cfg.train.train_iters,
                                             ", but the checkpoint in ", cfg.checkpoint.load, " is at iteration ",
                                             start_iteration_, ": nothing is left to train, and weft does not save a "
                                             "checkpoint below the one it loaded; set it above ", start_iteration_));

  if (is_logger()) {
    const std::time_t now = std::time(nullptr);
    char started[32];
    std::strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    metrics_.open(cfg.log.dir,
                  {{"started", started},
                   {"deck", cfg.deck_path},
                   {"ranks", grid.world_size()},
                   {"resumed_from", cfg.checkpoint.load.empty() ? nlohmann::json(nullptr)
                                                                : nlohmann::json(cfg.checkpoint.load)},
                   {"start_iteration", start_iteration_}},
                  cfg.checkpoint.load.empty() ? -1 : start_iteration_, cfg.log.tensorboard);
  }
  const BatchOptions bopt = batch_options(cfg, grid.dp_size(), grid.dp_rank());
  train_data_ = build_samples(cfg, 0, train_samples(cfg));
  train_batches_ = std::make_unique<MicroBatches>(*train_data_, bopt);
  if (cfg.train.eval_iters > 0 && parse_split(cfg)[1] > 0) {
    valid_data_ = build_samples(cfg, 1, valid_samples(cfg));
    valid_batches_ = std::make_unique<MicroBatches>(*valid_data_, bopt);
  }
}

void Trainer::log_start() const {
  if (!is_logger()) return;
  const std::string experts =
      spec_.has_experts() ? str(", ", spec_.moe_layers(), " MoE layers of ", spec_.num_experts, " experts (top-",
                                spec_.moe_topk, spec_.moe_shared_ffn > 0 ? ", a shared expert" : "", ")")
                          : "";
  std::printf("weft: %s model, %lld layers, hidden %lld, %lld heads (%lld query groups), vocab %lld%s: %.2fM "
              "parameters\n",
              spec_.family.c_str(), (long long)spec_.num_layers, (long long)spec_.hidden, (long long)spec_.heads,
              (long long)spec_.groups, (long long)spec_.vocab, experts.c_str(), double(spec_.num_parameters()) / 1e6);
  std::printf("weft: %d ranks = tp %d · cp %d · pp %d · dp %d%s; %lld micro-batches of %lld × %lld tokens per step\n",
              grid_.world_size(), grid_.tp_size(), grid_.cp_size(), grid_.pp_size(), grid_.dp_size(),
              grid_.ep_size() > 1 ? str(" (experts: ep ", grid_.ep_size(), " · edp ", grid_.edp_size(), ")").c_str()
                                  : "",
              (long long)num_micro_batches_, (long long)cfg_.train.micro_batch_size, (long long)cfg_.data.seq_length);
  std::printf("weft: data %s: %lld train samples%s\n", cfg_.data.prefix.c_str(), (long long)train_data_->size(),
              valid_data_ ? str(", ", valid_data_->size(), " validation samples").c_str() : "");
  if (start_iteration_ > 0)
    std::printf("weft: resumed from %s at iteration %lld\n", cfg_.checkpoint.load.c_str(), (long long)start_iteration_);
  else if (cfg_.model_init != "random")
    std::printf("weft: weights from %s\n", cfg_.model_init.c_str());
  std::fflush(stdout);
}

Trainer::StepOutcome Trainer::train_step(int64_t iteration, double lr) {
  optimizer_->zero_grad();
  const int64_t consumed = iteration * cfg_.train.global_batch_size;
  std::vector<Batch> batches;
  for (int64_t m = 0; m < num_micro_batches_; ++m) batches.push_back(train_batches_->get(consumed, m));
  // An untied word embedding's gradient has rows only where the step's tokens are: only those are reduced.
  if (const Parameter* embedding = optimizer_->row_sparse_param(); embedding && comms_.dp_cp->size() > 1)
    optimizer_->set_sparse_rows(touched_rows(*embedding, batches, *comms_.dp_cp));
  StepOutcome out{.losses = schedule_.run([&](int64_t m) { return batches[m]; }, num_micro_batches_, false)};
  reduce_shared_gradients(optimizer_->unreported(), *comms_.tp, *comms_.embedding, spec_.tie_embeddings,
                          grid_.pp_size());
  optimizer_->reduce_gradients();
  out.grad_norm = optimizer_->grad_norm(grid_.tp_rank());
  out.losses.loss = mean_over(*comms_.dp, out.losses.loss);
  // The layers' losses as Megatron logs them: per MoE layer, averaged over the data-parallel replicas.
  for (auto& [name, value] : out.losses.layer_losses)
    value = mean_over(*comms_.dp, value) / double(spec_.moe_layers());
  // Both are the same on every rank (the norm is summed over all of them), so every rank decides alike.
  if (!std::isfinite(out.losses.loss) || !std::isfinite(out.grad_norm)) {
    if (cfg_.train.nan_policy != "skip") stop_on_non_finite(iteration + 1, out);
    out.skipped = true;
    return out;
  }
  optimizer_->clip(out.grad_norm, cfg_.train.clip_grad);
  optimizer_->step(lr);
  return out;
}

void Trainer::stop_on_non_finite(int64_t iteration, const StepOutcome& step) {
  // Each rank lists its parameters whose gradient is not finite, with their group; rank 0 gathers the lists.
  std::string mine;
  for (Parameter* p : optimizer_->parameters()) {
    prepare_grad(*p);
    if (std::isfinite(ops_for(p->grad).sum_squares(p->grad))) continue;
    mine += str(mine.empty() ? "" : ", ", p->name, p->group == ParamGroup::expert ? " (expert)" : "");
  }
  constexpr int64_t kWidth = 400;
  if (mine.size() > kWidth) mine = mine.substr(0, kWidth - 3) + "...";
  Tensor local = Tensor::zeros({kWidth}, DType::u8), all = Tensor::empty({kWidth * grid_.world_size()}, DType::u8);
  std::copy(mine.begin(), mine.end(), local.data<uint8_t>());
  comms_.world->all_gather(all, local);
  if (grid_.rank() != 0) {
    comms_.world->barrier();  // rank 0 takes the job down
    fail("unreachable: rank 0 did not stop the job");
  }
  std::string ranks;
  for (int r = 0; r < grid_.world_size(); ++r) {
    const char* text = reinterpret_cast<const char*>(all.data<uint8_t>() + r * kWidth);
    const std::string list(text, strnlen(text, kWidth));
    if (!list.empty()) ranks += str(ranks.empty() ? " on rank " : "; on rank ", r, ": ", list);
  }
  fail(str("iteration ", iteration, ": loss ", step.losses.loss, ", gradient norm ", step.grad_norm,
           " — not finite; stopped without updating the weights or saving (train.nan_policy = stop). Non-finite "
           "gradients", ranks.empty() ? " on no rank (the loss alone)" : ranks));
}

double Trainer::validation_loss(int64_t run) {
  if (!valid_batches_)
    throw ConfigError(grid_.rank() != 0 ? "" : str(cfg_.deck_path, ": no validation data: train.eval_iters = ",
                                                   cfg_.train.eval_iters, ", data.split = ", cfg_.data.split));
  return evaluate(run);
}

double Trainer::evaluate(int64_t run) {
  double total = 0;
  for (int64_t i = 0; i < cfg_.train.eval_iters; ++i) {
    const int64_t consumed = (run * cfg_.train.eval_iters + i) * cfg_.train.global_batch_size;
    total += schedule_.run([&](int64_t m) { return valid_batches_->get(consumed, m); }, num_micro_batches_, true).loss;
  }
  return mean_over(*comms_.dp, total / double(cfg_.train.eval_iters));
}

void Trainer::train() {
  log_start();
  const int64_t iters = cfg_.train.train_iters;
  const int64_t tokens_per_step = cfg_.train.global_batch_size * cfg_.data.seq_length;
  const auto start = Clock::now();
  auto window_start = start;
  double window_loss = 0;
  std::map<std::string, double> window_layer_losses;  // the MoE routers' losses, summed over the window
  int64_t window_iters = 0;
  // Validation runs consume the validation set in order; a resumed run continues where the saved one stood.
  int64_t eval_runs = cfg_.train.eval_interval > 0 ? start_iteration_ / cfg_.train.eval_interval : 0;

  auto validate = [&](int64_t iteration) {
    if (!valid_batches_) return;
    const double loss = evaluate(eval_runs++);
    if (!is_logger()) return;
    std::printf("validation at iteration %lld | loss %.6f | ppl %.3f\n", (long long)iteration, loss, std::exp(loss));
    std::fflush(stdout);
    metrics_.write({{"iteration", iteration}, {"val_loss", loss}});
  };

  int64_t skipped_in_a_row = 0;
  for (int64_t it = start_iteration_; it < iters; ++it) {
    const double lr = lr_.at(it);
    const StepOutcome step = train_step(it, lr);
    const int64_t done = it + 1;
    if (step.skipped) {
      WEFT_CHECK(++skipped_in_a_row <= cfg_.train.nan_skip_limit, "iteration ", done, ": ", skipped_in_a_row,
                 " steps in a row had a non-finite loss or gradient norm (train.nan_skip_limit = ",
                 cfg_.train.nan_skip_limit, "); stopped without saving");
      if (is_logger()) {
        std::printf("iteration %6lld/%lld | skipped: loss %g, grad norm %g (train.nan_policy = skip, %lld in a row)\n",
                    (long long)done, (long long)iters, step.losses.loss, step.grad_norm, (long long)skipped_in_a_row);
        std::fflush(stdout);
        metrics_.write({{"iteration", done}, {"skipped", true}, {"grad_norm", str(step.grad_norm)}});
      }
    } else {
      skipped_in_a_row = 0;
      window_loss += step.losses.loss;
      for (const auto& [name, value] : step.losses.layer_losses) window_layer_losses[name] += value;
      ++window_iters;
    }
    const double grad_norm = step.grad_norm;
    if (window_iters > 0 && (done % cfg_.log.interval == 0 || done == iters)) {
      const double window_s = seconds_since(window_start), elapsed = seconds_since(start);
      const double tokens_per_s = double(tokens_per_step * window_iters) / window_s;
      const double eta = elapsed / double(done - start_iteration_) * double(iters - done);
      const double mean_loss = window_loss / double(window_iters);
      // Megatron's model FLOPs per GPU (or per rank on the CPU backend).
      const double tflops = spec_.flops(cfg_.train.global_batch_size, cfg_.data.seq_length,
                                        spec_.padded_vocab(grid_.tp_size())) * double(window_iters) / window_s /
                            grid_.world_size() / 1e12;
      const double peak_gib = double(ops_for(ctx_.device).peak_memory()) / double(1 << 30);
      const double wait_ms = cfg_.log.comm_wait ? comms_.dp_cp->take_wait_ms() / double(window_iters) : 0;
      std::string layer_text;
      for (auto& [name, sum] : window_layer_losses) {
        sum /= double(window_iters);
        layer_text += str(" | ", name, " ", sum);
      }
      if (is_logger()) {
        std::printf("iteration %6lld/%lld | loss %.6f%s | lr %.4e | grad norm %.4f | tokens/s %.0f | TFLOP/s/rank %.1f"
                    "%s%s | elapsed %s | ETA %s\n",
                    (long long)done, (long long)iters, mean_loss, layer_text.c_str(), lr, grad_norm, tokens_per_s,
                    tflops,
                    ctx_.device == Device::cuda ? str(" | peak mem ", std::round(peak_gib * 10) / 10, " GiB").c_str() : "",
                    cfg_.log.comm_wait ? str(" | comm wait ", std::round(wait_ms * 100) / 100, " ms").c_str() : "",
                    format_duration(elapsed).c_str(), format_duration(eta).c_str());
        std::fflush(stdout);
        nlohmann::json line = {{"iteration", done},
                               {"loss", mean_loss},
                               {"lr", lr},
                               {"grad_norm", grad_norm},
                               {"tokens_per_s", tokens_per_s},
                               {"tflops_per_rank", tflops},
                               {"elapsed_s", elapsed},
                               {"consumed_samples", done * cfg_.train.global_batch_size}};
        line["peak_memory_gib"] = peak_gib;  // tensors (on GPUs the caching allocator's peak): what weft plan predicts
        if (ctx_.device == Device::cpu) line["peak_rss_gib"] = peak_resident_bytes() / double(1 << 30);
        if (cfg_.log.comm_wait) line["comm_wait_ms"] = wait_ms;
        for (const auto& [name, mean] : window_layer_losses) line[name] = mean;
        metrics_.write(line);
      }
      window_loss = 0;
      window_layer_losses.clear();
      window_iters = 0;
      window_start = Clock::now();
    }
    if (cfg_.train.eval_interval > 0 && done % cfg_.train.eval_interval == 0 && done != iters) {
      // Throughput counts training steps only (as Megatron's interval timer does): the window skips the validation.
      const auto validation_start = Clock::now();
      validate(done);
      window_start += Clock::now() - validation_start;
    }
    // A stop signal on any rank: every rank finishes this step, the job saves it and exits cleanly.
    Tensor signal = Tensor::from_vector<double>({double(stop_signal())}, {1});
    comms_.world->all_reduce(signal, ReduceOp::max);
    if (const int sig = static_cast<int>(signal.data<double>()[0]); sig != 0 && done != iters) {
      save(done);
      if (is_logger())
        std::printf("weft: %s: stopped after iteration %lld%s\n", signal_name(sig), (long long)done,
                    cfg_.checkpoint.save.empty() ? " (no checkpoint.save: nothing saved)"
                                                 : str(", saved; resume with --checkpoint.load=", cfg_.checkpoint.save)
                                                       .c_str());
      return;
    }
    const bool exiting = cfg_.train.exit_interval > 0 && done % cfg_.train.exit_interval == 0 && done != iters;
    const bool periodic = cfg_.checkpoint.save_interval > 0 && done % cfg_.checkpoint.save_interval == 0;
    if ((periodic || exiting) && done != iters) save(done);
    if (exiting) {
      if (is_logger()) std::printf("weft: exiting at iteration %lld (train.exit_interval)\n", (long long)done);
      return;
    }
  }
  validate(iters);
  save(iters);
}

void Trainer::save(int64_t iteration) {
  optimizer_->await_all_values();  // every value updated before a checkpoint reads them or the run ends
  if (cfg_.checkpoint.save.empty()) return;
  WEFT_CHECK(iteration > start_iteration_, "internal: a checkpoint of iteration ", iteration, " after resuming at ",
             start_iteration_);
  const auto t0 = Clock::now();
  save_checkpoint(cfg_, grid_, comms_, spec_, *optimizer_, iteration);
  if (is_logger()) {
    std::printf("weft: saved checkpoint iter_%07lld to %s in %.1f s\n", (long long)iteration,
                cfg_.checkpoint.save.c_str(), seconds_since(t0));
    std::fflush(stdout);
  }
}

}  // namespace weft
