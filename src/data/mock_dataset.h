// weft/src/data/mock_dataset.h v1 — random tokens for benchmarks and smoke tests (data.mock = true).
#pragma once
#include <cstdint>

#include "data/sample_source.h"

namespace weft {

// Sample i, position t holds a token drawn from (seed, i, t) alone, uniformly below `vocab`.
class MockSamples final : public SampleSource {
 public:
  MockSamples(int64_t num_samples, int64_t seq_length, int64_t vocab, uint64_t seed)
      : n_(num_samples), seq_(seq_length), vocab_(vocab), seed_(seed) {}
  int64_t size() const override { return n_; }
  int64_t seq_length() const override { return seq_; }
  void row(int64_t i, SampleRow& out) const override;

 private:
  int64_t n_, seq_, vocab_;
  uint64_t seed_;
};

}  // namespace weft
