// weft/src/cli/plot.cpp v2 — `weft plot RUN...`: the curves of one or several runs' metrics.jsonl as one PNG.
#include <cstdio>
#include <map>
#include <set>

#include "cli/cli.h"
#include "plot/chart.h"
#include "plot/png.h"
#include "plot/run_log.h"

namespace weft {
namespace {

std::vector<std::pair<double, double>> points(const std::map<int64_t, double>& values) {
  std::vector<std::pair<double, double>> out;
  for (const auto& [it, v] : values) out.emplace_back(double(it), v);
  return out;
}

}  // namespace

int cmd_plot(const Args& args, const MpiEnv& mpi) {
  const char* usage = "weft plot RUN... [--output FILE.png] [--keys loss,lr,tokens_per_s] [--width PIXELS]";
  std::vector<std::string> runs, keys = {"loss", "lr", "tokens_per_s"};
  std::string output = "plot.png";
  int64_t width = 1000;
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&]() {
      if (i + 1 >= args.size()) throw ConfigError(str("weft plot: ", args[i], " needs a value"));
      return args[++i];
    };
    if (args[i] == "--output") output = value();
    else if (args[i] == "--width") width = parse_count("weft plot: --width", value());
    else if (args[i] == "--keys") {
      keys.clear();
      std::string list = value();
      for (size_t b = 0, e; b <= list.size(); b = e + 1) {
        e = std::min(list.find(',', b), list.size());
        if (e > b) keys.push_back(list.substr(b, e - b));
      }
    } else if (args[i] == "--help" || args[i] == "-h") {
      std::printf("usage: %s\n  one panel per key (default loss, lr, tokens_per_s) over the iterations, a colour per "
                  "run (a log.dir or a metrics.jsonl); the loss panel marks validation losses with squares\n", usage);
      return 0;
    } else if (args[i].rfind("--", 0) == 0) {
      throw ConfigError(str("weft plot: unknown option '", args[i], "'; usage: ", usage));
    } else {
      runs.push_back(args[i]);
    }
  }
  if (runs.empty() || keys.empty()) throw ConfigError(str("usage: ", usage));
  WEFT_CHECK(width >= 400 && width <= 8000, "weft plot: --width ", width, " is outside 400..8000");
  if (mpi.rank() != 0) return 0;

  std::vector<RunLog> logs;
  for (const std::string& r : runs) logs.push_back(read_run_log(r, "weft plot"));
  std::vector<Panel> panels;
  for (const std::string& key : keys) {
    Panel panel{key, {}};
    bool validation = false;
    for (size_t r = 0; r < logs.size(); ++r) {
      if (logs[r].values.count(key)) panel.series.push_back({series_color(r), points(logs[r].values[key])});
      if (key == "loss" && logs[r].values.count("val_loss")) {
        panel.series.push_back({series_color(r), points(logs[r].values["val_loss"]), true});
        validation = true;
      }
    }
    if (panel.series.empty()) {
      std::set<std::string> present;
      for (const RunLog& l : logs)
        for (const auto& [k, v] : l.values) present.insert(k);
      std::string list;
      for (const std::string& k : present) list += (list.empty() ? "" : ", ") + k;
      throw ConfigError(str("weft plot: no run logs '", key, "'; they log: ", list));
    }
    if (validation) panel.title += " (squares: validation)";
    panels.push_back(std::move(panel));
  }
  std::vector<std::pair<std::string, Rgb>> legend;
  for (size_t r = 0; r < logs.size(); ++r) legend.emplace_back(logs[r].label, series_color(r));
  const Canvas chart = draw_chart(panels, legend, "iteration", static_cast<int>(width), 260);
  write_png(output, chart.width(), chart.height(), chart.pixels());
  std::printf("weft plot: %s (%d × %d): %zu run%s, %s\n", output.c_str(), chart.width(), chart.height(), logs.size(),
              logs.size() > 1 ? "s" : "", [&] {
                std::string k;
                for (const std::string& key : keys) k += (k.empty() ? "" : ", ") + key;
                return k;
              }().c_str());
  return 0;
}

}  // namespace weft
