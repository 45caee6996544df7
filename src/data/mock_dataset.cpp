// weft/src/data/mock_dataset.cpp v1 — counter-based random tokens.
#include "data/mock_dataset.h"

namespace weft {

void MockSamples::row(int64_t i, SampleRow& out) const {
  auto token = [&](int64_t t) {
    uint64_t x = seed_ ^ (static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ULL) ^ (static_cast<uint64_t>(t) << 32);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return static_cast<int32_t>((x ^ (x >> 31)) % static_cast<uint64_t>(vocab_));
  };
  out.resize(seq_);
  for (int64_t t = 0; t < seq_; ++t) {
    out.inputs[t] = token(t);
    out.labels[t] = token(t + 1);
    out.positions[t] = static_cast<int32_t>(t);
    out.loss_mask[t] = 1.f;
  }
  out.starts = {0};
}

}  // namespace weft
