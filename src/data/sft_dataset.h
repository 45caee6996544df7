// weft/src/data/sft_dataset.h v1 — supervised fine-tuning samples, packed into fixed-length rows.
//
// `weft preprocess --sft` writes PREFIX (one document per chat) and PREFIX_loss_mask (1 on assistant tokens).
// Chats are drawn in a shuffled order (numpy RandomState(seed), reshuffled each epoch) and packed greedily: a row
// takes whole chats while they fit; each chat keeps its own positions (restarting at 0) and its own attention
// segment; the rest of a row is padding that takes no loss. A chat longer than a row is truncated (and counted).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/indexed_dataset.h"
#include "data/sample_source.h"

namespace weft {

struct SftOptions {
  int64_t seq_length = 0;
  uint32_t seed = 0;
  bool shuffle = true;
  bool pack = true;       // false: one chat per row
  int32_t pad_id = 0;     // id written into padding (masked out)
};

class SftSamples final : public SampleSource {
 public:
  // Rows from split `split` (0/1/2) of `fractions` of the chats under `prefix`, at least `num_rows` of them.
  SftSamples(const std::string& prefix, const std::vector<double>& fractions, int split, int64_t num_rows,
             const SftOptions& opt);
  int64_t size() const override { return static_cast<int64_t>(rows_.size()); }
  int64_t seq_length() const override { return opt_.seq_length; }
  void row(int64_t i, SampleRow& out) const override;
  int64_t truncated() const { return truncated_; }

 private:
  std::unique_ptr<IndexedDataset> tokens_, mask_;
  SftOptions opt_;
  std::vector<std::vector<int32_t>> rows_;  // the chats (sequence indices) packed into each row
  int64_t truncated_ = 0;
};

}  // namespace weft
