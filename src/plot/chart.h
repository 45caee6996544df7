// weft/src/plot/chart.h v1 — line charts of training curves: panels stacked over one shared x axis, a legend on top.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "plot/canvas.h"

namespace weft {

struct Series {
  Rgb color;
  std::vector<std::pair<double, double>> points;  // (x, y), in x order
  bool markers = false;                           // squares at the points as well as the line
};

struct Panel {
  std::string title;
  std::vector<Series> series;
};

// The panels, each `panel_height` pixels, under a legend of (label, colour) entries, x labelled `x_label`.
Canvas draw_chart(const std::vector<Panel>& panels, const std::vector<std::pair<std::string, Rgb>>& legend,
                  const std::string& x_label, int width, int panel_height);

// The i-th colour of a ten-colour palette that stays distinguishable on white.
Rgb series_color(size_t i);

// About `target` round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int target = 5);

}  // namespace weft
