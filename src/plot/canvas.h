// weft/src/plot/canvas.h v1 — an RGB raster with the few primitives a line chart needs: rectangles, antialiased
// lines and text in a built-in 5×7 pixel font.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace weft {

struct Rgb {
  uint8_t r, g, b;
};

class Canvas {
 public:
  Canvas(int width, int height, Rgb background);
  int width() const { return width_; }
  int height() const { return height_; }
  const std::vector<uint8_t>& pixels() const { return rgb_; }  // rows top first, 3 bytes a pixel

  void fill_rect(int x0, int y0, int x1, int y1, Rgb c);  // [x0, x1) × [y0, y1), clipped
  // An antialiased line `width` pixels wide (1 or more) between two points in pixel coordinates.
  void line(double x0, double y0, double x1, double y1, Rgb c, double width = 1.0);
  // ASCII text (other bytes draw as '?') with its top-left corner at (x, y), each font pixel `scale` pixels square.
  void text(int x, int y, const std::string& s, Rgb c, int scale = 2);
  static int text_width(const std::string& s, int scale = 2);
  static int text_height(int scale = 2) { return 7 * scale; }

 private:
  void blend(int x, int y, Rgb c, double alpha);  // alpha in [0, 1], clipped to the canvas
  int width_, height_;
  std::vector<uint8_t> rgb_;
};

}  // namespace weft
