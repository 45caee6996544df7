// weft/test/fuzz/safetensors_fuzz.cpp v1 — a safetensors file's header and the reads of every tensor it declares.
#include <vector>

#include "fuzz_util.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = weft::fuzz::as_file(data, size, ".safetensors");
  weft::fuzz::expect_clean([&] {
    const weft::SafetensorsFile f(path);
    for (const auto& [name, info] : f.tensors()) {
      if (info.shape.size() > 2) continue;
      const int64_t rows = info.shape.size() == 2 ? info.shape[0] : 1;
      const int64_t cols = info.shape.empty() ? 1 : info.shape.back();
      if (rows * cols > (int64_t(1) << 20)) continue;
      std::vector<double> out(static_cast<size_t>(rows * cols));
      f.read_block(name, 0, rows, 0, cols, out.data());
    }
  });
  return 0;
}
