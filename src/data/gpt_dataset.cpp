// weft/src/data/gpt_dataset.cpp v1 — Megatron's GPTDataset indices and blending, reproduced exactly.
#include "data/gpt_dataset.h"

#include <cmath>
#include <numeric>
#include <sstream>

#include "data/numpy_random.h"
#include "util/error.h"

namespace weft {
namespace {

// Megatron's _build_document_index: the split's sequences once per epoch, shuffled as one array.
std::vector<int32_t> document_index(const std::vector<int32_t>& sequences, int64_t epochs, NumpyRandomState* rng) {
  std::vector<int32_t> out;
  out.reserve(sequences.size() * static_cast<size_t>(epochs));
  for (int64_t e = 0; e < epochs; ++e) out.insert(out.end(), sequences.begin(), sequences.end());
  if (rng) rng->shuffle(out);
  return out;
}

// Megatron's _build_shuffle_index: [0, n) shuffled, then [n, total) shuffled separately.
std::vector<int64_t> shuffle_index(int64_t n, int64_t total, NumpyRandomState* rng) {
  std::vector<int64_t> first(static_cast<size_t>(n));
  std::iota(first.begin(), first.end(), 0);
  if (rng) rng->shuffle(first);
  if (n == total) return first;
  std::vector<int64_t> last(static_cast<size_t>(total - n));
  std::iota(last.begin(), last.end(), n);
  if (rng) rng->shuffle(last);
  first.insert(first.end(), last.begin(), last.end());
  return first;
}

}  // namespace

GptDataset::GptDataset(std::shared_ptr<const IndexedDataset> data, std::vector<int32_t> sequences,
                       int64_t num_samples, const GptDatasetOptions& opt)
    : data_(std::move(data)), opt_(opt) {
  const int64_t S = opt.seq_length;
  WEFT_CHECK(!sequences.empty(), data_->prefix(), ": the split holds no sequences");
  int64_t tokens_per_epoch = 0;
  for (int32_t s : sequences) tokens_per_epoch += data_->sequence_length(s);
  WEFT_CHECK(tokens_per_epoch > 1, data_->prefix(), ": the split holds ", tokens_per_epoch, " tokens");
  // _get_num_epochs: enough epochs for num_samples windows of S + 1 tokens sharing one token.
  int64_t epochs = 1;
  for (int64_t tokens = tokens_per_epoch; tokens < num_samples * S + 1; tokens += tokens_per_epoch) ++epochs;

  // Megatron shuffles the last epoch on its own when it contributes under 80% of an epoch's samples.
  bool separate_final_epoch = false;
  int64_t samples_before_final = 0;
  if (epochs > 1 && opt.shuffle) {
    samples_before_final = ((epochs - 1) * tokens_per_epoch - 1) / S;
    const int64_t from_final = num_samples - samples_before_final;
    const int64_t per_epoch = (tokens_per_epoch - 1) / S;
    WEFT_ASSERT(from_final >= 0 && from_final <= per_epoch + 1);
    separate_final_epoch = from_final < static_cast<int64_t>(0.80 * double(per_epoch));
  }

  NumpyRandomState rng_state(opt.seed);
  NumpyRandomState* rng = opt.shuffle ? &rng_state : nullptr;
  if (separate_final_epoch) {
    document_index_ = document_index(sequences, epochs - 1, rng);
    const std::vector<int32_t> last = document_index(sequences, 1, rng);
    document_index_.insert(document_index_.end(), last.begin(), last.end());
  } else {
    document_index_ = document_index(sequences, epochs, rng);
  }

  // helpers.cpp build_sample_idx (drop_last_partial_sequence, add_extra_token_to_sequence).
  const int64_t samples = (epochs * tokens_per_epoch - 1) / S;
  sample_index_.assign(static_cast<size_t>(2 * (samples + 1)), 0);
  int64_t doc = 0, offset = 0;
  for (int64_t k = 1; k <= samples; ++k) {
    int64_t remaining = S + 1;
    while (remaining != 0) {
      const int64_t doc_len = data_->sequence_length(document_index_[doc]) - offset;
      remaining -= doc_len;
      if (remaining <= 0) {
        offset += remaining + doc_len - 1;
        remaining = 0;
      } else {
        if (doc == static_cast<int64_t>(document_index_.size()) - 1) {
          WEFT_ASSERT(k == samples);
          offset = data_->sequence_length(document_index_[doc]) - 1;
          break;
        }
        ++doc;
        offset = 0;
      }
    }
    sample_index_[2 * k] = doc;
    sample_index_[2 * k + 1] = offset;
  }

  shuffle_index_ = separate_final_epoch ? shuffle_index(samples_before_final, samples, rng)
                                        : shuffle_index(samples, samples, rng);
}

void GptDataset::sample(int64_t i, int32_t* out) const {
  WEFT_CHECK(i >= 0 && i < size(), data_->prefix(), ": sample ", i, " out of range (", size(), " samples)");
  const int64_t idx = shuffle_index_[i];
  const int64_t doc_beg = sample_index_[2 * idx], off_beg = sample_index_[2 * idx + 1];
  const int64_t doc_end = sample_index_[2 * idx + 2], off_end = sample_index_[2 * idx + 3];
  int64_t n = 0;
  for (int64_t d = doc_beg; d <= doc_end; ++d) {
    const int32_t seq = document_index_[d];
    const int64_t from = d == doc_beg ? off_beg : 0;
    const int64_t to = d == doc_end ? off_end + 1 : data_->sequence_length(seq);
    data_->read(seq, from, to - from, out + n);
    n += to - from;
  }
  WEFT_ASSERT(n == opt_.seq_length + 1);
}

// ---------------------------------------------------------------- splits and blends

std::vector<int32_t> split_sequences(const IndexedDataset& data, const std::vector<double>& fractions, int split) {
  double begin = 0;
  for (int s = 0; s < split; ++s) begin += fractions[s];
  const double end = begin + fractions[split];
  const double n = static_cast<double>(data.num_sequences());
  // Python's round() rounds halves to even, as nearbyint does in the default rounding mode.
  const int64_t b = static_cast<int64_t>(std::nearbyint(begin * n)), e = static_cast<int64_t>(std::nearbyint(end * n));
  std::vector<int32_t> out;
  for (int64_t i = b; i < e; ++i) out.push_back(static_cast<int32_t>(i));
  return out;
}

Blend Blend::parse(const std::string& prefix) {
  std::istringstream in(prefix);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  WEFT_CHECK(!words.empty(), "data.prefix is empty: give a dataset prefix (PATH for PATH.bin/PATH.idx)");
  Blend b;
  if (words.size() == 1) {
    b.paths = words;
    return b;
  }
  WEFT_CHECK(words.size() % 2 == 0, "data.prefix: expected 'W1 PATH1 W2 PATH2 ...' (a weight before every path), "
             "got '", prefix, "'");
  double sum = 0;
  for (size_t i = 0; i < words.size(); i += 2) {
    char* end = nullptr;
    const double w = std::strtod(words[i].c_str(), &end);
    WEFT_CHECK(end && *end == 0 && w >= 0, "data.prefix: '", words[i], "' is not a weight (expected a number before ",
               words[i + 1], ")");
    b.weights.push_back(w);
    b.paths.push_back(words[i + 1]);
    sum += w;
  }
  WEFT_CHECK(sum > 0, "data.prefix: the weights sum to zero");
  for (double& w : b.weights) w /= sum;
  return b;
}

BlendedSamples::BlendedSamples(const Blend& blend, const std::vector<double>& fractions, int split,
                               int64_t num_samples, const GptDatasetOptions& opt)
    : seq_length_(opt.seq_length) {
  static const char* kSplitName[3] = {"train", "valid", "test"};
  auto build = [&](const std::string& path, int64_t samples) {
    auto data = std::make_shared<const IndexedDataset>(path);
    std::vector<int32_t> seqs = split_sequences(*data, fractions, split);
    WEFT_CHECK(!seqs.empty(), "data.split gives the ", kSplitName[split], " split no sequences of ", path, " (",
               data->num_sequences(), " sequences)");
    return std::make_unique<GptDataset>(std::move(data), std::move(seqs), samples, opt);
  };
  if (blend.weights.empty()) {
    parts_.push_back(build(blend.paths[0], num_samples));
    dataset_index_.assign(static_cast<size_t>(parts_[0]->size()), 0);
    dataset_sample_index_.resize(dataset_index_.size());
    std::iota(dataset_sample_index_.begin(), dataset_sample_index_.end(), 0);
    return;
  }
  int64_t size = 0;
  for (size_t d = 0; d < blend.paths.size(); ++d) {
    const int64_t target = static_cast<int64_t>(std::ceil(double(num_samples) * blend.weights[d]));
    size += target;
    const auto buffer = static_cast<int64_t>(std::ceil(double(target) * (1 + GptDataset::kBlendSurplus)));
    parts_.push_back(build(blend.paths[d], buffer));
  }
  // helpers.cpp build_blending_indices: each sample goes to the dataset furthest behind its weight.
  std::vector<int64_t> taken(parts_.size(), 0);
  for (int64_t i = 0; i < size; ++i) {
    const double at = std::max(double(i), 1.0);
    size_t best = 0;
    double best_err = blend.weights[0] * at - double(taken[0]);
    for (size_t d = 1; d < parts_.size(); ++d) {
      const double err = blend.weights[d] * at - double(taken[d]);
      if (err > best_err) best_err = err, best = d;
    }
    dataset_index_.push_back(static_cast<int16_t>(best));
    dataset_sample_index_.push_back(taken[best]++);
  }
  for (size_t d = 0; d < parts_.size(); ++d)
    WEFT_CHECK(taken[d] <= parts_[d]->size(), blend.paths[d], ": the blend needs ", taken[d], " samples, only ",
               parts_[d]->size(), " built");
}

void BlendedSamples::sample(int64_t i, int32_t* out) const {
  WEFT_CHECK(i >= 0 && i < size(), "sample ", i, " is past the ", size(), " samples of the dataset");
  parts_[dataset_index_[i]]->sample(dataset_sample_index_[i], out);
}

void BlendedSamples::row(int64_t i, SampleRow& out) const {
  const int64_t S = seq_length_;
  std::vector<int32_t> window(static_cast<size_t>(S + 1));
  sample(i, window.data());
  out.resize(S);
  for (int64_t t = 0; t < S; ++t) {
    out.inputs[t] = window[t];
    out.labels[t] = window[t + 1];
    out.positions[t] = static_cast<int32_t>(t);
    out.loss_mask[t] = 1.f;
  }
  out.starts = {0};
}

}  // namespace weft
