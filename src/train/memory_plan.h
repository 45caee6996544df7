// weft/src/train/memory_plan.h v1 — what a run will hold per rank, worked out from the deck before anything is
// allocated: weights, gradients, optimizer state, the activations the schedule keeps (for each recompute mode) and
// the largest short-lived buffers, per pipeline stage; and an estimate of the step time.
//
// The counts follow what the code allocates: the optimizer's flat value and gradient buffers and its (sharded)
// masters and moments, each slot's Saved struct (model/layers.h, model/moe.h) for every micro-batch the pipeline
// schedule keeps in flight (PipelineSchedule::units), the fused output layer's logits chunk. MoE layers are counted
// at balanced routing (each rank's experts receive top-k rows per token). On GPUs the total is what the caching
// allocator reports as its peak; the CUDA context, NCCL's buffers and cuBLASLt's workspace come on top. On the CPU a
// process's resident memory adds the code and libraries it runs (the baseline, measured).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"
#include "model/model_spec.h"

namespace weft {

// One pipeline rank's share (every tp/cp/dp/ep rank of a stage holds the same amounts), in bytes.
struct StageMemory {
  int pp_rank = 0;
  int64_t parameters = 0;        // elements this rank holds (its tensor-parallel shards, its experts)
  double weights = 0, gradients = 0, optimizer = 0;
  double activations[3] = {};    // by recompute mode: none, selective, full
  double transients[3] = {};     // the largest short-lived buffers on top, by recompute mode
  double total(int recompute) const {
    return weights + gradients + optimizer + activations[recompute] + transients[recompute];
  }
};

struct MemoryPlan {
  std::vector<StageMemory> stages;
  int recompute = 0;  // the deck's mode: 0 none, 1 selective, 2 full
  bool gpu = false;
  int world = 1, dp = 1;
  bool distributed_optimizer = false;
  double step_flops_per_rank = 0;  // Megatron's model FLOPs of one step, per rank
  double bubble = 1;               // the pipeline's idle share: step time = compute time × bubble
  // The stage that needs the most under the deck's recompute mode.
  const StageMemory& largest() const;
  double peak() const { return largest().total(recompute); }
  // One line for the start of a run: the largest stage's total and its parts.
  std::string summary() const;
  // The full table `weft plan` prints: every stage, every recompute mode, the step time at `flops_per_second`.
  std::string table(double flops_per_second, const std::string& rate_source) const;
};

// The plan for `cfg` (validated, model resolved) on `world` ranks.
MemoryPlan plan_memory(const Config& cfg, int world);

// GEMM throughput of the CPU backend on this machine, measured on a matrix product of the model's MLP shape (one
// thread pool, as training runs it); FLOP/s.
double measure_cpu_gemm_rate(const ModelSpec& spec, int64_t tp);

// This process's resident memory now, and the most it has held (bytes).
double resident_bytes();
double peak_resident_bytes();
// Memory the host can still give (MemAvailable of /proc/meminfo; bytes).
double host_available_bytes();

// Stops the run before anything is allocated when the plan does not fit: on GPUs its peak against the device's free
// memory, on the CPU (its peak plus `baseline`, the process's resident memory now) times the ranks on this host
// against the host's available memory. A ConfigError saying what would help, thrown by every rank (`rank` 0 says it).
void check_plan_fits(const MemoryPlan& plan, double device_free, double baseline, int ranks_on_host, int rank);

}  // namespace weft
