// weft/src/sweep/results.h v1 — a sweep's results: one row per point from its metrics.jsonl and exit status, as a
// CSV, a markdown table and two plots in the sweep folder.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "sweep/sweep.h"

namespace weft {

struct PointResult {
  int status = -1;          // the run's exit code; -1: no run has ended
  int64_t iterations = 0;   // the last training iteration logged
  std::optional<double> final_loss, final_val_loss, best_val_loss;
  // Medians over the steady log windows (all but the first, which holds the start-up), and the largest peak.
  std::optional<double> tokens_per_s, tflops_per_rank, peak_memory_gib;
};

// Point i's row; a point without a metrics.jsonl has only its status.
PointResult point_result(const Sweep& s, size_t i);

// Writes results.csv and results.md (one row per point, its settings and results), loss.png (every point's loss
// curve) and throughput.png (tokens/s and model TFLOP/s per rank against the first swept key, a line per setting of
// the others) into the sweep folder. Returns the markdown table.
std::string write_results(const Sweep& s);

}  // namespace weft
