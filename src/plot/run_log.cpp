// weft/src/plot/run_log.cpp v1 — reading metrics.jsonl (see run_log.h).
#include "plot/run_log.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "util/error.h"

namespace weft {
namespace fs = std::filesystem;

RunLog read_run_log(const std::string& run, const std::string& who) {
  const fs::path path = fs::is_directory(run) ? fs::path(run) / "metrics.jsonl" : fs::path(run);
  std::ifstream in(path);
  if (!in) throw ConfigError(str(who, ": ", run, ": no ", path.string(), " (a log.dir or its metrics.jsonl)"));
  RunLog log;
  log.label = (fs::is_directory(run) ? fs::path(run) : path.parent_path()).lexically_normal().filename().string();
  if (log.label.empty() || log.label == ".") log.label = fs::absolute(path).parent_path().filename().string();
  size_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      throw ConfigError(str(who, ": ", path.string(), ":", line_no, ": not a JSON object"));
    if (!j.contains("iteration") || !j["iteration"].is_number_integer()) continue;  // a run header
    const int64_t it = j["iteration"].get<int64_t>();
    for (const auto& [key, value] : j.items())
      if (key != "iteration" && value.is_number()) log.values[key][it] = value.get<double>();
  }
  return log;
}

}  // namespace weft
