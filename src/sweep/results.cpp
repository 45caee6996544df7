// weft/src/sweep/results.cpp v1 — collecting a sweep's results (see results.h).
#include "sweep/results.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "plot/chart.h"
#include "plot/png.h"
#include "plot/run_log.h"
#include "util/error.h"

namespace weft {
namespace fs = std::filesystem;

namespace {

std::optional<double> median_of_steady(const std::map<int64_t, double>& windows) {
  std::vector<double> v;
  for (const auto& [it, value] : windows) v.push_back(value);
  if (v.empty()) return std::nullopt;
  if (v.size() > 1) v.erase(v.begin());
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// The shortest text that reads back as the same double (what metrics.jsonl holds), or "" when absent.
std::string exact(const std::optional<double>& v) { return v ? nlohmann::json(*v).dump() : ""; }

std::string fixed(const std::optional<double>& v, int decimals) {
  if (!v) return "–";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, *v);
  return buf;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string status_text(int status) {
  return status < 0 ? "not finished" : status == 0 ? "ok" : str("exit ", status);
}

bool numeric(const std::string& text, double& out) {
  try {
    size_t used = 0;
    out = std::stod(text, &used);
    return used == text.size();
  } catch (const std::exception&) {
    return false;
  }
}

std::vector<std::pair<double, double>> curve(const std::map<int64_t, double>& values) {
  std::vector<std::pair<double, double>> out;
  for (const auto& [it, v] : values) out.emplace_back(double(it), v);
  return out;
}

void plot_losses(const Sweep& s, const std::vector<RunLog>& logs) {
  Panel panel{"loss (squares: validation)", {}};
  std::vector<std::pair<std::string, Rgb>> legend;
  for (size_t i = 0; i < logs.size(); ++i) {
    legend.emplace_back(s.label(i), series_color(i));
    auto& values = logs[i].values;
    if (values.count("loss")) panel.series.push_back({series_color(i), curve(values.at("loss"))});
    if (values.count("val_loss")) panel.series.push_back({series_color(i), curve(values.at("val_loss")), true});
  }
  if (panel.series.empty()) return;
  const Canvas chart = draw_chart({panel}, legend, "iteration", 1000, 320);
  write_png((fs::path(s.dir) / "loss.png").string(), chart.width(), chart.height(), chart.pixels());
}

// Throughput against the first swept key when its values are numbers (else against the point's index), one line
// per setting of the other keys.
void plot_throughput(const Sweep& s, const std::vector<PointResult>& rows) {
  bool by_key = !s.keys.empty();
  std::vector<double> x(s.points.size());
  for (size_t i = 0; i < s.points.size(); ++i)
    if (!by_key || !numeric(s.points[i][0].second, x[i])) by_key = false;
  std::map<std::string, std::vector<size_t>> lines;  // the other keys' settings → the points on that line
  for (size_t i = 0; i < s.points.size(); ++i) {
    if (!by_key) x[i] = double(i);
    std::string rest;
    for (size_t k = by_key ? 1 : s.keys.size(); k < s.keys.size(); ++k)
      rest += str(rest.empty() ? "" : " ", s.keys[k].substr(s.keys[k].rfind('.') + 1), "=", s.points[i][k].second);
    lines[rest].push_back(i);
  }
  Panel tokens{"tokens/s (median of the steady log windows)", {}}, tflops{"model TFLOP/s per rank", {}};
  std::vector<std::pair<std::string, Rgb>> legend;
  size_t color = 0;
  for (auto& [rest, members] : lines) {
    std::sort(members.begin(), members.end(), [&](size_t a, size_t b) { return x[a] < x[b]; });
    Series t{series_color(color), {}, true}, f{series_color(color), {}, true};
    for (size_t i : members) {
      if (rows[i].tokens_per_s) t.points.emplace_back(x[i], *rows[i].tokens_per_s);
      if (rows[i].tflops_per_rank) f.points.emplace_back(x[i], *rows[i].tflops_per_rank);
    }
    if (t.points.empty()) continue;
    legend.emplace_back(rest.empty() ? "all points" : rest, series_color(color++));
    tokens.series.push_back(std::move(t));
    tflops.series.push_back(std::move(f));
  }
  if (tokens.series.empty()) return;
  const Canvas chart = draw_chart({tokens, tflops}, legend, by_key ? s.keys[0] : "point", 1000, 260);
  write_png((fs::path(s.dir) / "throughput.png").string(), chart.width(), chart.height(), chart.pixels());
}

}  // namespace

PointResult point_result(const Sweep& s, size_t i) {
  PointResult r;
  r.status = point_status(s, i);
  if (!fs::exists(fs::path(s.point_dir(i)) / "metrics.jsonl")) return r;
  const RunLog log = read_run_log(s.point_dir(i), "weft sweep");
  auto series = [&](const char* key) -> const std::map<int64_t, double>* {
    auto it = log.values.find(key);
    return it == log.values.end() || it->second.empty() ? nullptr : &it->second;
  };
  if (auto* loss = series("loss")) {
    r.iterations = loss->rbegin()->first;
    r.final_loss = loss->rbegin()->second;
  }
  if (auto* val = series("val_loss")) {
    r.final_val_loss = val->rbegin()->second;
    for (const auto& [it, v] : *val) r.best_val_loss = r.best_val_loss ? std::min(*r.best_val_loss, v) : v;
  }
  if (auto* t = series("tokens_per_s")) r.tokens_per_s = median_of_steady(*t);
  if (auto* f = series("tflops_per_rank")) r.tflops_per_rank = median_of_steady(*f);
  if (auto* m = series("peak_memory_gib"))
    for (const auto& [it, v] : *m) r.peak_memory_gib = r.peak_memory_gib ? std::max(*r.peak_memory_gib, v) : v;
  return r;
}

std::string write_results(const Sweep& s) {
  std::vector<PointResult> rows;
  std::vector<RunLog> logs;
  for (size_t i = 0; i < s.points.size(); ++i) {
    rows.push_back(point_result(s, i));
    const bool logged = fs::exists(fs::path(s.point_dir(i)) / "metrics.jsonl");
    logs.push_back(logged ? read_run_log(s.point_dir(i), "weft sweep") : RunLog{});
  }

  std::string csv = "point,dir";
  for (const std::string& k : s.keys) csv += str(",", csv_field(k));
  csv += ",status,iterations,final_loss,final_val_loss,best_val_loss,tokens_per_s,tflops_per_rank,peak_memory_gib\n";
  std::string md = "| point |";
  for (const std::string& k : s.keys) md += str(" ", k, " |");
  md += " status | iterations | final loss | final val loss | best val loss | tokens/s | TFLOP/s/rank | peak GiB |\n|";
  for (size_t c = 0; c < s.keys.size() + 9; ++c) md += c == 0 || c > s.keys.size() + 1 ? "---:|" : "---|";
  md += "\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const PointResult& r = rows[i];
    csv += str(i, ",", csv_field(fs::path(s.point_dir(i)).filename().string()));
    md += str("| ", i, " |");
    for (const auto& kv : s.points[i]) {
      csv += str(",", csv_field(kv.second));
      md += str(" ", kv.second, " |");
    }
    csv += str(",", r.status < 0 ? "" : str(r.status), ",", r.iterations, ",", exact(r.final_loss), ",",
               exact(r.final_val_loss), ",", exact(r.best_val_loss), ",", exact(r.tokens_per_s), ",",
               exact(r.tflops_per_rank), ",", exact(r.peak_memory_gib), "\n");
    md += str(" ", status_text(r.status), " | ", r.iterations, " | ", fixed(r.final_loss, 4), " | ",
              fixed(r.final_val_loss, 4), " | ", fixed(r.best_val_loss, 4), " | ", fixed(r.tokens_per_s, 0), " | ",
              fixed(r.tflops_per_rank, 2), " | ", fixed(r.peak_memory_gib, 3), " |\n");
  }
  write_text_atomically((fs::path(s.dir) / "results.csv").string(), csv);
  write_text_atomically((fs::path(s.dir) / "results.md").string(), md);
  plot_losses(s, logs);
  plot_throughput(s, rows);
  return md;
}

}  // namespace weft
