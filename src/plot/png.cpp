// weft/src/plot/png.cpp v1 — the PNG container: signature, IHDR, one zlib IDAT, IEND, each chunk CRC-32 checked.
#include "plot/png.h"

#include <zlib.h>

#include "io/atomic_file.h"
#include "util/error.h"

namespace weft {
namespace {

void put_u32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));  // PNG is big endian
}

void put_chunk(std::string& out, const char type[4], const std::string& data) {
  put_u32(out, static_cast<uint32_t>(data.size()));
  const std::string body = std::string(type, 4) + data;
  out += body;
  put_u32(out, static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()), body.size())));
}

}  // namespace

void write_png(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb) {
  WEFT_ASSERT(width > 0 && height > 0 && rgb.size() == size_t(width) * size_t(height) * 3);
  // Each row starts with its filter type; 0 = none, which zlib compresses well enough for flat-coloured plots.
  const size_t row = size_t(width) * 3;
  std::string raw;
  raw.reserve((row + 1) * size_t(height));
  for (int y = 0; y < height; ++y) {
    raw.push_back('\0');
    raw.append(reinterpret_cast<const char*>(rgb.data() + size_t(y) * row), row);
  }
  uLongf packed_size = compressBound(raw.size());
  std::string packed(packed_size, '\0');
  WEFT_CHECK(compress2(reinterpret_cast<Bytef*>(packed.data()), &packed_size,
                       reinterpret_cast<const Bytef*>(raw.data()), raw.size(), Z_BEST_COMPRESSION) == Z_OK,
             path, ": zlib could not compress the image");
  packed.resize(packed_size);

  std::string header;
  put_u32(header, static_cast<uint32_t>(width));
  put_u32(header, static_cast<uint32_t>(height));
  header += std::string{8, 2, 0, 0, 0};  // 8 bits per channel, RGB, deflate, adaptive filtering, no interlace
  std::string png = "\x89PNG\r\n\x1a\n";
  put_chunk(png, "IHDR", header);
  put_chunk(png, "IDAT", packed);
  put_chunk(png, "IEND", "");
  write_text_atomically(path, png);
}

}  // namespace weft
