// weft/src/data/gpt_dataset.h v1 — training samples in Megatron's GPTDataset order, and blends of several.
//
// A sample is seq_length + 1 consecutive tokens of the (shuffled) concatenation of the split's sequences;
// neighbouring samples share one token. The document, sample and shuffle indices are built exactly as
// megatron/core/datasets/gpt_dataset.py does, so the same prefix, split and seed give the same samples in the
// same order.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/indexed_dataset.h"
#include "data/sample_source.h"

namespace weft {

struct GptDatasetOptions {
  int64_t seq_length = 0;
  uint32_t seed = 0;
  bool shuffle = true;  // false: no document or sample shuffle; samples are consecutive windows
};

class GptDataset {
 public:
  // Megatron builds a GPTDataset per blended prefix with this much more than its share of samples.
  static constexpr double kBlendSurplus = 0.005;

  // The samples drawn from `sequences` (a split of `data`), enough for at least `num_samples`.
  GptDataset(std::shared_ptr<const IndexedDataset> data, std::vector<int32_t> sequences, int64_t num_samples,
             const GptDatasetOptions& opt);
  int64_t size() const { return static_cast<int64_t>(shuffle_index_.size()); }
  int64_t seq_length() const { return opt_.seq_length; }
  // The seq_length + 1 tokens of sample i.
  void sample(int64_t i, int32_t* out) const;
  const IndexedDataset& data() const { return *data_; }

 private:
  std::shared_ptr<const IndexedDataset> data_;
  GptDatasetOptions opt_;
  std::vector<int32_t> document_index_;
  std::vector<int64_t> sample_index_;  // [samples + 1][2]: (position in document_index_, token offset)
  std::vector<int64_t> shuffle_index_;
};

// data.prefix parsed: one path without a weight, or a weight before every path (normalised to sum 1).
struct Blend {
  std::vector<std::string> paths;
  std::vector<double> weights;  // empty: a single unweighted prefix
  static Blend parse(const std::string& prefix);
};

// One split (train/valid/test) of data.prefix as BlendedMegatronDatasetBuilder builds it: a single unweighted
// prefix is its GPTDataset; weighted prefixes are interleaved by Megatron's blending indices.
class BlendedSamples final : public SampleSource {
 public:
  // `split` is 0, 1, 2 for train, valid, test; `fractions` the normalised data.split.
  BlendedSamples(const Blend& blend, const std::vector<double>& fractions, int split, int64_t num_samples,
                 const GptDatasetOptions& opt);
  int64_t size() const override { return static_cast<int64_t>(dataset_index_.size()); }
  int64_t seq_length() const override { return seq_length_; }
  // The seq_length + 1 tokens of sample i.
  void sample(int64_t i, int32_t* out) const;
  // Sample i as a row: inputs = tokens[:-1], labels = tokens[1:], every prediction counts, one segment.
  void row(int64_t i, SampleRow& out) const override;
  // The datasets being blended (for vocabulary checks and messages).
  const std::vector<std::unique_ptr<GptDataset>>& parts() const { return parts_; }

 private:
  int64_t seq_length_;
  std::vector<std::unique_ptr<GptDataset>> parts_;
  std::vector<int16_t> dataset_index_;
  std::vector<int64_t> dataset_sample_index_;
};

// The sequences of `data` that fall in split `split` of `fractions` (Megatron's rounding).
std::vector<int32_t> split_sequences(const IndexedDataset& data, const std::vector<double>& fractions, int split);

}  // namespace weft
