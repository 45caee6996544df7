// weft/src/train/metrics.cpp v1 — metrics.jsonl and duration formatting.
#include "train/metrics.h"

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "util/error.h"

namespace weft {

MetricsLog::MetricsLog(const std::string& dir, bool enabled, bool fresh) {
  if (!enabled || dir.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  WEFT_CHECK(!ec, "log.dir '", dir, "': cannot create: ", ec.message());
  const std::string path = dir + "/metrics.jsonl";
  out_.open(path, fresh ? std::ios::trunc : std::ios::app);
  WEFT_CHECK(out_.good(), "log.dir: cannot write '", path, "'");
}

void MetricsLog::write(const nlohmann::json& record) {
  if (!out_.is_open()) return;
  out_ << record.dump() << "\n";
  out_.flush();
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) seconds = 0;
  const long s = std::lround(seconds);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

}  // namespace weft
