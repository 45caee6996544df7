// weft/src/io/npy.cpp v1 — the .npy header: magic, version, a Python dict literal with descr/fortran_order/shape.
#include "io/npy.h"

#include <cstring>
#include <fstream>
#include <regex>

#include "util/error.h"

namespace weft {

Tensor read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  WEFT_CHECK(in, "cannot open '", path, "'");
  char magic[8];
  in.read(magic, 8);
  WEFT_CHECK(in && std::memcmp(magic, "\x93NUMPY", 6) == 0, path, ": not a .npy file");
  uint32_t header_len = 0;
  if (magic[6] == 1) {
    uint16_t n = 0;
    in.read(reinterpret_cast<char*>(&n), 2);
    header_len = n;
  } else {
    in.read(reinterpret_cast<char*>(&header_len), 4);
  }
  std::string header(header_len, '\0');
  in.read(header.data(), header_len);
  WEFT_CHECK(in, path, ": truncated header");
  std::smatch m;
  WEFT_CHECK(std::regex_search(header, m, std::regex(R"('descr':\s*'([<|>])([a-z])(\d+)')")), path,
             ": header has no descr");
  const std::string order = m[1], kind = m[2], bytes = m[3];
  WEFT_CHECK(order != ">", path, ": big-endian arrays are not supported");
  DType dt;
  if (kind == "i" && bytes == "4") dt = DType::i32;
  else if (kind == "i" && bytes == "8") dt = DType::i64;
  else if (kind == "f" && bytes == "4") dt = DType::f32;
  else if (kind == "f" && bytes == "8") dt = DType::f64;
  else fail(str(path, ": dtype ", kind, bytes, " is not supported (expected int32, int64, float32 or float64)"));
  WEFT_CHECK(header.find("'fortran_order': False") != std::string::npos, path, ": Fortran-order arrays are not supported");
  WEFT_CHECK(std::regex_search(header, m, std::regex(R"('shape':\s*\(([^)]*)\))")), path, ": header has no shape");
  Shape shape;
  const std::string dims = m[1];
  static const std::regex digits(R"(\d+)");
  for (std::sregex_iterator it(dims.begin(), dims.end(), digits), end; it != end; ++it)
    shape.push_back(std::stoll(it->str()));
  Tensor t = Tensor::empty(shape, dt);
  in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  WEFT_CHECK(in, path, ": holds fewer than the ", t.numel(), " elements its header promises");
  return t;
}

void write_npy(const std::string& path, const Tensor& t) {
  const char* descr = t.dtype() == DType::f32 ? "<f4" : t.dtype() == DType::f64 ? "<f8" : t.dtype() == DType::i32 ? "<i4"
                    : t.dtype() == DType::i64 ? "<i8" : nullptr;
  WEFT_CHECK(descr, "write_npy: cannot store ", t.describe());
  std::string shape;
  for (int64_t d : t.shape()) shape += std::to_string(d) + ", ";
  if (t.ndim() > 1) shape.resize(shape.size() - 1);
  std::string header = str("{'descr': '", descr, "', 'fortran_order': False, 'shape': (", shape, "), }");
  header.resize((header.size() + 10 + 1 + 63) / 64 * 64 - 10 - 1, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  WEFT_CHECK(out, "cannot write '", path, "'");
  const uint16_t n = static_cast<uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  out.write(reinterpret_cast<const char*>(&n), 2);
  out << header;
  const Tensor h = t.to(Device::cpu);
  out.write(static_cast<const char*>(h.data_ptr()), static_cast<std::streamsize>(h.nbytes()));
  WEFT_CHECK(out, "cannot write '", path, "'");
}

}  // namespace weft
