// weft/src/plot/run_log.h v1 — a run's metrics.jsonl read back: every numeric key by iteration.
#pragma once
#include <cstdint>
#include <map>
#include <string>

namespace weft {

struct RunLog {
  std::string label;  // the log dir's name
  // key → iteration → value; where an iteration repeats (runs appended to one log dir) the last line wins.
  std::map<std::string, std::map<int64_t, double>> values;
};

// Reads `run` (a log.dir, or its metrics.jsonl); a ConfigError naming `who` and the file when it is missing or a
// line is not a JSON object. Lines without an integer "iteration" (the run headers) are skipped.
RunLog read_run_log(const std::string& run, const std::string& who);

}  // namespace weft
