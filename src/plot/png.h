// weft/src/plot/png.h v1 — writes 8-bit RGB images as PNG files (zlib-compressed, through a temporary and a rename).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace weft {

// Writes `rgb` (height rows of width × 3 bytes, top row first) to `path`. Errors name the file.
void write_png(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb);

}  // namespace weft
