// weft/src/train/metrics.h v1 — what a run reports: one console line per log interval and metrics.jsonl.
#pragma once
#include <nlohmann/json.hpp>
#include <fstream>
#include <string>

namespace weft {

class MetricsLog {
 public:
  // Opens <dir>/metrics.jsonl (truncated when `fresh`, else appended); dir empty or !enabled: writes nothing.
  MetricsLog(const std::string& dir, bool enabled, bool fresh);
  // Appends one JSON object as a line and flushes, so a killed run keeps every line it logged.
  void write(const nlohmann::json& record);

 private:
  std::ofstream out_;
};

// "1:02:03" for 3723 seconds.
std::string format_duration(double seconds);

}  // namespace weft
