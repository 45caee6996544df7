// weft/src/plot/chart.cpp v2 — axes, ticks, grid, curves and legend (wrapped into rows as wide as the chart).
#include "plot/chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace weft {
namespace {

constexpr Rgb kWhite{255, 255, 255}, kInk{40, 40, 40}, kGrid{225, 225, 225};
constexpr int kLeft = 100, kRight = 24, kTop = 30, kBottom = 36, kLegendRow = 22, kXLabel = 20;

struct Range {
  double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();
  void add(double v) {
    if (!std::isfinite(v)) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  bool empty() const { return lo > hi; }
};

// A tick value as text with as many decimals as the tick spacing needs.
std::string tick_label(double v, double step) {
  char buf[32];
  if (std::abs(v) < step * 1e-6) return "0";
  if (step >= 1 && std::abs(v) < 1e7) std::snprintf(buf, sizeof buf, "%.0f", v);
  else if (step >= 1e-3 && std::abs(v) < 1e7)
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(std::ceil(-std::log10(step) - 1e-9)), v);
  else {
    // As many mantissa digits as tell ticks `step` apart: 3.20e-02, 3.25e-02.
    const int digits = static_cast<int>(std::floor(std::log10(std::abs(v))) - std::floor(std::log10(step) + 1e-9));
    std::snprintf(buf, sizeof buf, "%.*e", std::clamp(digits, 1, 6), v);
  }
  return buf;
}

double tick_step(const std::vector<double>& ticks) { return ticks.size() > 1 ? ticks[1] - ticks[0] : 1.0; }

}  // namespace

Rgb series_color(size_t i) {
  static const Rgb palette[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
                                {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  return palette[i % 10];
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) {
    const double pad = lo != 0 ? std::abs(lo) * 0.1 : 1.0;
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / target, magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / magnitude;
  const double step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * magnitude;
  std::vector<double> ticks;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) ticks.push_back(v);
  return ticks;
}

Canvas draw_chart(const std::vector<Panel>& panels, const std::vector<std::pair<std::string, Rgb>>& legend,
                  const std::string& x_label, int width, int panel_height) {
  // Legend: a colour swatch and a label per entry, left to right, a new row where the next would pass the edge.
  std::vector<std::pair<int, int>> at;  // each entry's (x, row)
  int lx = kLeft, rows = 1;
  for (const auto& entry : legend) {
    const int w = 30 + Canvas::text_width(entry.first) + 28;
    if (lx > kLeft && lx + w > width - kRight) {
      lx = kLeft;
      ++rows;
    }
    at.emplace_back(lx, rows - 1);
    lx += w;
  }
  const int kLegend = 12 + rows * kLegendRow;
  Canvas c(width, kLegend + int(panels.size()) * panel_height + kXLabel, kWhite);
  for (size_t i = 0; i < legend.size(); ++i) {
    const int y = 8 + at[i].second * kLegendRow;
    c.fill_rect(at[i].first, y + 4, at[i].first + 24, y + 10, legend[i].second);
    c.text(at[i].first + 30, y, legend[i].first, kInk);
  }
  // Each panel's y range and ticks; the plots start right of the widest y label.
  struct YAxis {
    std::vector<double> ticks;
    double lo, hi;
  };
  std::vector<YAxis> y_axes;
  int left = kLeft;
  for (const Panel& p : panels) {
    Range ys;
    for (const Series& s : p.series)
      for (const auto& [x, y] : s.points) ys.add(y);
    if (ys.empty()) ys.add(0);
    const double pad = (ys.hi - ys.lo) * 0.05;
    YAxis a{nice_ticks(ys.lo - pad, ys.hi + pad), 0, 0};
    a.lo = std::min(ys.lo - pad, a.ticks.front());
    a.hi = std::max(ys.hi + pad, a.ticks.back());
    for (double v : a.ticks) left = std::max(left, Canvas::text_width(tick_label(v, tick_step(a.ticks))) + 16);
    y_axes.push_back(std::move(a));
  }
  const int right = width - kRight;
  Range xs;
  for (const Panel& p : panels)
    for (const Series& s : p.series)
      for (const auto& [x, y] : s.points) xs.add(x);
  if (xs.empty()) xs.add(0);
  // As many x ticks (up to 8) as leave room between their labels.
  std::vector<double> xt;
  for (int target = 8; target >= 2; --target) {
    xt = nice_ticks(xs.lo, xs.hi, target);
    int widest = 0;
    for (double v : xt) widest = std::max(widest, Canvas::text_width(tick_label(v, tick_step(xt))));
    if (int(xt.size()) * (widest + 16) <= right - left) break;
  }
  const double x_lo = std::min(xs.lo, xt.front()), x_hi = std::max(xs.hi, xt.back());

  for (size_t pi = 0; pi < panels.size(); ++pi) {
    const Panel& p = panels[pi];
    const int top = kLegend + int(pi) * panel_height + kTop, bottom = kLegend + int(pi + 1) * panel_height - kBottom;
    const std::vector<double>& yt = y_axes[pi].ticks;
    const double y_lo = y_axes[pi].lo, y_hi = y_axes[pi].hi;
    auto px = [&](double x) { return left + (x - x_lo) / (x_hi - x_lo) * (right - left); };
    auto py = [&](double y) { return bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top); };

    c.text(left, top - 22, p.title, kInk);
    for (double v : yt) {
      const int y = static_cast<int>(std::lround(py(v)));
      c.fill_rect(left, y, right, y + 1, kGrid);
      const std::string label = tick_label(v, tick_step(yt));
      c.text(left - 8 - Canvas::text_width(label), y - Canvas::text_height() / 2, label, kInk);
    }
    for (double v : xt) {
      const int x = static_cast<int>(std::lround(px(v)));
      c.fill_rect(x, top, x + 1, bottom, kGrid);
      const std::string label = tick_label(v, tick_step(xt));
      c.text(std::min(x - Canvas::text_width(label) / 2, width - 2 - Canvas::text_width(label)), bottom + 8, label,
             kInk);
    }
    c.fill_rect(left, top, left + 1, bottom + 1, kInk);  // the axes
    c.fill_rect(left, bottom, right, bottom + 1, kInk);
    for (const Series& s : p.series) {
      for (size_t i = 1; i < s.points.size(); ++i)
        c.line(px(s.points[i - 1].first), py(s.points[i - 1].second), px(s.points[i].first), py(s.points[i].second),
               s.color, s.markers ? 1.0 : 2.0);
      if (s.markers)
        for (const auto& [x, y] : s.points) {
          const int cx = static_cast<int>(std::lround(px(x))), cy = static_cast<int>(std::lround(py(y)));
          c.fill_rect(cx - 3, cy - 3, cx + 4, cy + 4, s.color);
        }
    }
    if (pi + 1 == panels.size())
      c.text(right - Canvas::text_width(x_label), bottom + 8 + Canvas::text_height() + 2, x_label, kInk);
  }
  return c;
}

}  // namespace weft
