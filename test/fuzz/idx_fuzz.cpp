// weft/test/fuzz/idx_fuzz.cpp v1 — a Megatron .idx against a fixed .bin: the index's validation and token reads.
#include <vector>

#include "data/indexed_dataset.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string idx = weft::fuzz::as_file(data, size, ".idx");
  const std::string prefix = idx.substr(0, idx.size() - 4);
  static const bool bin_written = [&] {  // 64 bytes of tokens beside every index
    std::vector<uint8_t> bytes(64);
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i);
    weft::fuzz::as_file(bytes.data(), bytes.size(), ".bin");
    return true;
  }();
  (void)bin_written;
  weft::fuzz::expect_clean([&] {
    const weft::IndexedDataset d(prefix);
    std::vector<int32_t> out;
    for (int64_t s = 0; s < d.num_sequences() && s < 64; ++s) {
      out.resize(static_cast<size_t>(d.sequence_length(s)));
      d.read(s, 0, d.sequence_length(s), out.data());
    }
  });
  return 0;
}
