// weft/src/train/metrics.h v3 — what a run reports: one console line per log interval, metrics.jsonl and, with
// log.tensorboard, a TensorBoard event file beside it.
#pragma once
#include <nlohmann/json.hpp>
#include <fstream>
#include <string>

#include "train/tensorboard.h"

namespace weft {

// <dir>/metrics.jsonl: every run appends to it, starting with a line {"run": header}; a run that resumes at
// iteration N first drops the lines of iterations after N (which the run it resumes logged after its last
// checkpoint and will log again), so no iteration appears twice.
class MetricsLog {
 public:
  MetricsLog() = default;
  // Opens the file (dir empty: writes nothing); resume_iteration < 0 for a fresh run; tensorboard: an event file
  // too. Errors name the file.
  void open(const std::string& dir, const nlohmann::json& header, int64_t resume_iteration, bool tensorboard);
  // Appends one JSON object as a line and flushes, so a killed run keeps every line it logged; the event file gets
  // its numbers at its iteration, as "train/<key>" ("validation/loss" for val_loss).
  void write(const nlohmann::json& record);

 private:
  std::ofstream out_;
  EventFileWriter events_;
};

// "1:02:03" for 3723 seconds.
std::string format_duration(double seconds);

}  // namespace weft
