// weft/src/train/metrics.cpp v3 — metrics.jsonl, its TensorBoard twin and duration formatting.
#include "train/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "util/error.h"

namespace weft {

void MetricsLog::open(const std::string& dir, const nlohmann::json& header, int64_t resume_iteration,
                      bool tensorboard) {
  if (dir.empty()) return;
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  WEFT_CHECK(!ec, "log.dir '", dir, "': cannot create: ", ec.message());
  const std::string path = dir + "/metrics.jsonl";
  if (resume_iteration >= 0 && fs::exists(path)) {
    // Rewritten through a rename, so a crash here leaves the old file whole.
    std::ifstream in(path);
    std::ofstream kept(path + ".tmp", std::ios::trunc);
    for (std::string line; std::getline(in, line);) {
      const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.contains("iteration") && j["iteration"].is_number() &&
          j["iteration"].get<int64_t>() > resume_iteration)
        continue;
      kept << line << "\n";
    }
    kept.close();
    WEFT_CHECK(kept.good(), "log.dir: cannot write '", path, ".tmp'");
    fs::rename(path + ".tmp", path, ec);
    WEFT_CHECK(!ec, "log.dir: cannot replace '", path, "': ", ec.message());
  }
  out_.open(path, std::ios::app);
  WEFT_CHECK(out_.good(), "log.dir: cannot write '", path, "'");
  write({{"run", header}});
  if (tensorboard) events_.open(dir, std::max<int64_t>(resume_iteration, 0) + 1);
}

void MetricsLog::write(const nlohmann::json& record) {
  if (!out_.is_open()) return;
  out_ << record.dump() << "\n";
  out_.flush();
  if (!events_.is_open() || !record.contains("iteration")) return;
  std::vector<std::pair<std::string, double>> scalars;
  for (const auto& [key, value] : record.items())
    if (key != "iteration" && value.is_number())
      scalars.emplace_back(key == "val_loss" ? "validation/loss" : "train/" + key, value.get<double>());
  if (!scalars.empty()) events_.scalars(record["iteration"].get<int64_t>(), scalars);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) seconds = 0;
  const long s = std::lround(seconds);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

}  // namespace weft
