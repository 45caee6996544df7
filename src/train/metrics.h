// weft/src/train/metrics.h v2 — what a run reports: one console line per log interval and metrics.jsonl.
#pragma once
#include <nlohmann/json.hpp>
#include <fstream>
#include <string>

namespace weft {

// <dir>/metrics.jsonl: every run appends to it, starting with a line {"run": header}; a run that resumes at
// iteration N first drops the lines of iterations after N (which the run it resumes logged after its last
// checkpoint and will log again), so no iteration appears twice.
class MetricsLog {
 public:
  MetricsLog() = default;
  // Opens the file (dir empty: writes nothing); resume_iteration < 0 for a fresh run. Errors name the file.
  void open(const std::string& dir, const nlohmann::json& header, int64_t resume_iteration);
  // Appends one JSON object as a line and flushes, so a killed run keeps every line it logged.
  void write(const nlohmann::json& record);

 private:
  std::ofstream out_;
};

// "1:02:03" for 3723 seconds.
std::string format_duration(double seconds);

}  // namespace weft
