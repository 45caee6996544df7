// weft/src/train/memory_plan.cpp v2 — counting bytes the way the model, the optimizer and the schedule allocate them.
#include "train/memory_plan.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>

#include "dist/process_grid.h"
#include "io/atomic_file.h"
#include "model/gpt_model.h"
#include "ops/ops.h"
#include "parallel/schedules.h"
#include "parallel/tensor_parallel.h"
#include "train/setup.h"

namespace weft {
namespace {

enum Mode { kNone = 0, kSelective = 1, kFull = 2 };
const char* const kModeNames[] = {"none", "selective", "full"};

struct Layout {
  int tp, cp, pp, vpp, dp, ep, edp;
  bool sp;
};

// Bytes per element: compute values `a`, statistics (norms' rstd, the attention's lse, router logits) `f`.
struct Widths {
  double a, f;
};

// Elements of a layer's attention parameters on one rank.
int64_t attention_parameters(const ModelSpec& s, const Layout& l) {
  const int64_t h = s.hidden, heads = s.heads / l.tp;
  if (!s.latent_attention()) {
    const int64_t qkv_rows = (s.heads + 2 * s.groups) * s.head_dim / l.tp;
    return qkv_rows * h + (s.qkv_bias ? qkv_rows : 0) + heads * s.head_dim * h;
  }
  const int64_t q = s.q_lora_rank > 0 ? s.q_lora_rank * (h + 1) + heads * s.head_dim * s.q_lora_rank
                                      : heads * s.head_dim * h;
  return q + (s.kv_lora_rank + s.qk_rope_head_dim) * h + s.kv_lora_rank +
         heads * (s.qk_nope_head_dim + s.v_head_dim) * s.kv_lora_rank + heads * s.v_head_dim * h;
}

// What the attention slot saves for one micro-batch of T tokens, and the gradients its backward holds at once.
double attention_saved(const ModelSpec& s, const Layout& l, double T, Widths w) {
  const double heads = double(s.heads / l.tp), h = double(s.hidden);
  if (!s.latent_attention()) {
    const double hq = heads * double(s.head_dim), hkv = double(s.groups / l.tp * s.head_dim);
    return T * h * w.a + 2 * T * hq * w.a + 2 * T * hkv * w.a + T * heads * w.f;  // input, q, out, k, v, lse
  }
  const double qr = double(s.q_lora_rank), kr = double(s.kv_lora_rank), d = double(s.head_dim),
               dv = double(s.v_head_dim);
  return T * (h + 2 * qr + 2 * kr + heads * (2 * d + 2 * dv)) * w.a + T * (heads + 2) * w.f;
}
double attention_backward_transient(const ModelSpec& s, const Layout& l, double T, Widths w) {
  const double heads = double(s.heads / l.tp), h = double(s.hidden);
  if (!s.latent_attention()) {
    const double hq = heads * double(s.head_dim), hkv = double(s.groups / l.tp * s.head_dim);
    return T * (2 * hq + 2 * hkv + (hq + 2 * hkv) + h) * w.a;  // dout, dq, dk, dv, dmixed, dx
  }
  const double d = double(s.head_dim), dv = double(s.v_head_dim), dn = double(s.qk_nope_head_dim);
  // dout, dq/dk/dv of the heads, dq, dkv, the latents' gradients, dx
  return T * (heads * (2 * dv + 3 * d + dn + dv) + 2 * double(s.kv_lora_rank + s.q_lora_rank) + h) * w.a;
}

// Elements of a decoder layer's parameters on one rank: {dense, expert}.
std::pair<int64_t, int64_t> layer_parameters(const ModelSpec& s, int64_t layer, const Layout& l) {
  int64_t dense = 2 * s.hidden + attention_parameters(s, l);
  int64_t expert = 0;
  if (s.mlp_kind(layer) == MlpKind::dense) {
    dense += 3 * s.hidden * s.ffn / l.tp;
  } else {
    dense += s.num_experts * s.hidden + 3 * s.hidden * s.moe_shared_ffn / l.tp + (s.moe_shared_gate ? s.hidden : 0);
    expert += s.num_experts / l.ep * 3 * s.hidden * s.moe_ffn / l.tp;
  }
  return {dense, expert};
}

// What a layer's forward leaves saved for its backward, for one micro-batch of T local tokens (model/layers.h's
// DecoderLayerSaved and its slots' Saved structs).
double layer_activations(const ModelSpec& s, int64_t layer, const Layout& l, double T, Mode mode, Widths w) {
  const double Tsp = l.sp ? T / l.tp : T, h = double(s.hidden);
  if (mode == kFull) return Tsp * h * w.a;  // the layer's input alone
  double bytes = 2 * Tsp * h * w.a + 2 * Tsp * w.f;  // input, mid, rstd1, rstd2
  bytes += attention_saved(s, l, T, w);
  const bool keep_act = mode == kNone;
  if (s.mlp_kind(layer) == MlpKind::dense) {
    const double f = double(s.ffn / l.tp);
    return bytes + T * h * w.a + T * 2 * f * w.a + (keep_act ? T * f * w.a : 0);
  }
  const double rows = T * double(s.moe_topk), f = double(s.moe_ffn / l.tp), fs = double(s.moe_shared_ffn / l.tp);
  bytes += T * h * w.a + T * double(s.num_experts) * w.f + T * double(s.moe_topk) * (w.f + 4);  // input, router
  bytes += rows * h * w.a + rows * w.f + rows * 2 * f * w.a + (keep_act ? rows * f * w.a : 0);  // routed experts
  if (fs > 0) bytes += T * 2 * fs * w.a + (keep_act ? T * fs * w.a : 0) + (s.moe_shared_gate ? T * w.a : 0);
  return bytes;
}

// The buffers a layer's backward holds beyond its saved activations: the incoming gradient and the larger of its
// two slots' gradient temporaries; a full recomputation first rebuilds everything the layer saves.
double layer_backward_transient(const ModelSpec& s, int64_t layer, const Layout& l, double T, Mode mode, Widths w) {
  const double Tsp = l.sp ? T / l.tp : T, h = double(s.hidden);
  const double attention = attention_backward_transient(s, l, T, w);
  double rows = T, f = double(s.ffn / l.tp);
  if (s.mlp_kind(layer) == MlpKind::moe) rows = T * double(s.moe_topk), f = double(s.moe_ffn / l.tp);
  const double mlp = rows * (f + 2 * f + h) * w.a + (mode == kSelective ? rows * f * w.a : 0);  // dact, dfc1, dx
  double bytes = Tsp * h * w.a + std::max(attention, mlp);
  if (mode == kFull) bytes += layer_activations(s, layer, l, T, kNone, w) - layer_activations(s, layer, l, T, kFull, w);
  return bytes;
}

// The fused output layer and loss (output_cross_entropy_fused): one chunk of logits, the input gradient, the
// gathered input under sequence parallelism, the per-token losses.
double loss_transient(const ModelSpec& s, const Layout& l, double T, Widths w) {
  const double vocab = double(s.padded_vocab(l.tp) / l.tp), h = double(s.hidden);
  int64_t chunk = std::max<int64_t>(1, int64_t(kLossChunkBytes / (vocab * w.a)));
  if (chunk >= 256) chunk -= chunk % 256;
  const double rows = std::min(T, double(chunk));
  return rows * vocab * w.a + T * h * w.a * (l.sp ? 2 : 1) + (l.sp ? T / l.tp : T) * h * w.a + T * w.f + 2 * rows * w.f;
}

// The largest sum over the schedule of the activations its in-flight micro-batches hold, given one micro-batch's
// activations per model chunk (PipelineSchedule::units walked step by step).
double scheduled_activations(const std::vector<double>& per_micro_batch, int rank, const Layout& l, int64_t count) {
  const int group = l.pp * l.vpp;
  std::vector<int64_t> live(per_micro_batch.size(), 0);
  double peak = 0;
  for (const auto& unit : PipelineSchedule::units(rank, l.pp, l.vpp, count, false))
    for (const PipelineSchedule::Step& step : unit) {
      const int c = static_cast<int>((step.k % group) / l.pp), chunk = step.forward ? c : l.vpp - 1 - c;
      live[chunk] += step.forward ? 1 : -1;
      double sum = 0;
      for (size_t i = 0; i < live.size(); ++i) sum += double(live[i]) * per_micro_batch[i];
      peak = std::max(peak, sum);
    }
  return peak;
}

StageMemory plan_stage(const Config& cfg, const ModelSpec& s, const Layout& l, int rank, Widths w) {
  StageMemory m;
  m.pp_rank = rank;
  const double T = double(cfg.train.micro_batch_size * cfg.data.seq_length) / l.cp;
  const double Tsp = l.sp ? T / l.tp : T, h = double(s.hidden);
  const int64_t vocab_rows = s.padded_vocab(l.tp) / l.tp;
  const int64_t count = cfg.train.global_batch_size / (cfg.train.micro_batch_size * l.dp);
  int64_t dense = 0, expert = 0;
  std::vector<double> per_micro_batch[3];
  for (int c = 0; c < l.vpp; ++c) {
    const StageLayout stage = StageLayout::of(s, rank, l.pp, c, l.vpp, cfg.parallel.first_stage_layers,
                                              cfg.parallel.last_stage_layers);
    if (stage.has_embedding) dense += vocab_rows * s.hidden;
    if (stage.has_head) dense += s.hidden + (s.tie_embeddings && stage.has_embedding ? 0 : vocab_rows * s.hidden);
    double chunk_bytes[3] = {}, transient[3] = {};
    for (int64_t layer = stage.first_layer; layer < stage.end_layer; ++layer) {
      const auto [d, e] = layer_parameters(s, layer, l);
      dense += d;
      expert += e;
      for (Mode mode : {kNone, kSelective, kFull}) {
        chunk_bytes[mode] += layer_activations(s, layer, l, T, mode, w);
        transient[mode] = std::max(transient[mode], layer_backward_transient(s, layer, l, T, mode, w));
      }
    }
    for (Mode mode : {kNone, kSelective, kFull}) {
      // The head keeps the last layer's output and the loss's input gradient until its backward.
      if (stage.has_head) {
        chunk_bytes[mode] += 2 * Tsp * h * w.a + Tsp * w.f;
        transient[mode] = std::max(transient[mode], loss_transient(s, l, T, w));
      }
      per_micro_batch[mode].push_back(chunk_bytes[mode]);
      m.transients[mode] = std::max(m.transients[mode], transient[mode]);
    }
  }
  for (Mode mode : {kNone, kSelective, kFull})
    m.activations[mode] = scheduled_activations(per_micro_batch[mode], rank, l, count);

  m.parameters = dense + expert;
  const bool gpu = cfg.train.precision == "bf16";
  const double grad = gpu && cfg.train.grad_dtype == "bf16" ? 2 : w.f;
  const double master = gpu && cfg.train.master_weights == "split" ? 2 : w.f;
  const double moments = 2 * (gpu && cfg.train.adam_moments_dtype == "bf16" ? 2 : w.f);
  const bool sharded = cfg.parallel.distributed_optimizer;
  m.weights = double(m.parameters) * w.a;
  m.gradients = double(m.parameters) * grad;
  m.optimizer = (double(dense) / (sharded ? l.dp * l.cp : 1) + double(expert) / (sharded ? l.edp : 1)) *
                (master + moments);
  return m;
}

}  // namespace

const StageMemory& MemoryPlan::largest() const {
  return *std::max_element(stages.begin(), stages.end(), [&](const StageMemory& a, const StageMemory& b) {
    return a.total(recompute) < b.total(recompute);
  });
}

std::string MemoryPlan::summary() const {
  const StageMemory& m = largest();
  const bool small = m.total(recompute) < double(1ull << 30);
  auto part = [&](double bytes) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%.2f", bytes / double(small ? 1ull << 20 : 1ull << 30));
    return std::string(buf);
  };
  return str("memory plan: ", bytes_text(int64_t(m.total(recompute))), " per ", gpu ? "GPU" : "rank",
             stages.size() > 1 ? str(" at pipeline stage ", m.pp_rank) : "", " (", small ? "MiB" : "GiB",
             ": weights ", part(m.weights), ", gradients ", part(m.gradients), ", optimizer ", part(m.optimizer),
             ", activations ", part(m.activations[recompute]), " with train.recompute = ", kModeNames[recompute],
             ", transient ", part(m.transients[recompute]),
             gpu ? "; the CUDA context and NCCL's buffers come on top)" : ")");
}

std::string MemoryPlan::table(double flops_per_second, const std::string& rate_source) const {
  const bool small = peak() < double(1ull << 30);
  const double unit = small ? double(1ull << 20) : double(1ull << 30);
  std::string out = str("per rank, ", small ? "MiB" : "GiB",
                        gpu ? " (the caching allocator's peak; the CUDA context, NCCL's buffers and cuBLASLt's "
                              "workspace come on top)"
                            : " (without the process's baseline)",
                        "\n");
  char line[256];
  std::snprintf(line, sizeof line, "%-6s %10s %8s %9s %9s | %-26s | %-26s\n", "stage", "parameters", "weights",
                "gradients", "optimizer", "activations none/sel/full", "total none/sel/full");
  out += line;
  for (const StageMemory& m : stages) {
    char acts[64], totals[64];
    std::snprintf(acts, sizeof acts, "%.2f / %.2f / %.2f", m.activations[0] / unit, m.activations[1] / unit,
                  m.activations[2] / unit);
    std::snprintf(totals, sizeof totals, "%.2f / %.2f / %.2f", m.total(0) / unit, m.total(1) / unit,
                  m.total(2) / unit);
    std::snprintf(line, sizeof line, "%-6d %9.3fB %8.2f %9.2f %9.2f | %-26s | %-26s\n", m.pp_rank,
                  double(m.parameters) / 1e9, m.weights / unit, m.gradients / unit, m.optimizer / unit, acts, totals);
    out += line;
  }
  out += str("totals include the largest short-lived buffers (the output layer's logits chunk, a layer's backward); "
             "with the deck's train.recompute = ", kModeNames[recompute], ": ", bytes_text(int64_t(peak())),
             " per rank\n");
  const double hardware = step_flops_per_rank * (recompute == kFull ? 4.0 / 3.0 : 1.0);
  std::snprintf(line, sizeof line, "step: %.3g TFLOP per rank%s, about %.3g s at %.3g TFLOP/s (%s)%s\n",
                hardware / 1e12, recompute == kFull ? " (with the recomputed forward)" : "",
                hardware / flops_per_second * bubble, flops_per_second / 1e12, rate_source.c_str(),
                bubble > 1.0001 ? str(", with the pipeline's idle share × ", bubble).c_str() : "");
  out += line;
  return out;
}

MemoryPlan plan_memory(const Config& cfg, int world) {
  const ModelSpec s = cfg.model.resolved();
  const ProcessGrid grid(world, 0, parallel_sizes(cfg));
  const Layout l{grid.tp_size(), grid.cp_size(), grid.pp_size(), static_cast<int>(cfg.parallel.vpp),
                 grid.dp_size(), grid.ep_size(), grid.edp_size(),
                 cfg.parallel.sequence_parallel && grid.tp_size() > 1};
  MemoryPlan plan;
  plan.gpu = cfg.train.precision == "bf16";
  plan.world = world;
  plan.dp = l.dp;
  plan.distributed_optimizer = cfg.parallel.distributed_optimizer;
  plan.recompute = cfg.train.recompute == "full" ? kFull : cfg.train.recompute == "selective" ? kSelective : kNone;
  const Widths w = plan.gpu ? Widths{2, 4} : Widths{4, 4};
  for (int r = 0; r < l.pp; ++r) plan.stages.push_back(plan_stage(cfg, s, l, r, w));
  plan.step_flops_per_rank =
      s.flops(cfg.train.global_batch_size, cfg.data.seq_length, s.padded_vocab(l.tp)) / double(world);
  const double m = double(cfg.train.global_batch_size / (cfg.train.micro_batch_size * l.dp));
  plan.bubble = (m + double(l.pp - 1) / double(l.vpp)) / m;
  return plan;
}

double resident_bytes() {
  std::ifstream in("/proc/self/statm");
  double pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * double(::sysconf(_SC_PAGESIZE));
}

double peak_resident_bytes() {
  struct rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) * 1024.0;  // Linux reports KiB
}

double host_available_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  double kib = 0;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024.0;
  return double(::sysconf(_SC_AVPHYS_PAGES)) * double(::sysconf(_SC_PAGESIZE));
}

void check_plan_fits(const MemoryPlan& plan, double device_free, double baseline, int ranks_on_host, int rank) {
  const StageMemory& m = plan.largest();
  const double need = plan.gpu ? plan.peak() : (plan.peak() + baseline) * ranks_on_host;
  const double have = plan.gpu ? device_free : host_available_bytes();
  if (need <= have) return;
  std::string help = "a smaller train.micro_batch_size";
  if (plan.recompute != kFull)
    help += str(", train.recompute = full (", bytes_text(int64_t(m.total(kFull))), " per rank)");
  if (!plan.distributed_optimizer && plan.dp > 1) help += ", parallel.distributed_optimizer = true";
  help += ", more tensor or pipeline parallelism";
  const std::string where =
      plan.gpu ? std::string("the GPU has ")
               : str("with ", bytes_text(int64_t(baseline)), " of code and libraries per process and ", ranks_on_host,
                     ranks_on_host > 1 ? " ranks" : " rank", " on this host it needs ", bytes_text(int64_t(need)),
                     "; the host has ");
  throw ConfigError(rank != 0 ? "" : str("this run does not fit: ", plan.summary(), "; ", where,
                                         bytes_text(int64_t(have)), " free. What would help: ", help,
                                         " (weft plan DECK prints every stage and recompute mode)"));
}

double measure_cpu_gemm_rate(const ModelSpec& spec, int64_t tp) {
  const int64_t rows = 256, k = spec.hidden, n = std::max<int64_t>(1, 2 * spec.ffn / tp);
  const Tensor a = Tensor::zeros({rows, k}, DType::f32), b = Tensor::zeros({n, k}, DType::f32);
  Tensor c = Tensor::empty({rows, n}, DType::f32);
  Ops& ops = cpu_ops();
  ops.gemm(c, a, false, b, true, 1.0, 0.0);  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  int reps = 0;
  double seconds = 0;
  while (seconds < 0.2 && reps < 50) {
    ops.gemm(c, a, false, b, true, 1.0, 0.0);
    ++reps;
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return 2.0 * double(rows * k * n) * reps / seconds;
}

}  // namespace weft
