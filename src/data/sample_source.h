// weft/src/data/sample_source.h v1 — what a dataset hands the batcher: fixed-length training rows.
#pragma once
#include <cstdint>
#include <vector>

namespace weft {

// One row of seq_length positions: input ids, the ids to predict, which predictions count, RoPE positions, and
// the offsets where an attention segment (a document or a packed sample) starts — attention never crosses one.
struct SampleRow {
  std::vector<int32_t> inputs, labels, positions, starts;
  std::vector<float> loss_mask;
  void resize(int64_t seq) {
    inputs.assign(seq, 0);
    labels.assign(seq, 0);
    positions.assign(seq, 0);
    loss_mask.assign(seq, 0.f);
    starts.clear();
  }
};

class SampleSource {
 public:
  virtual ~SampleSource() = default;
  virtual int64_t size() const = 0;
  virtual int64_t seq_length() const = 0;
  virtual void row(int64_t i, SampleRow& out) const = 0;
};

}  // namespace weft
