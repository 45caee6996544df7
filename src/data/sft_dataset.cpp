// weft/src/data/sft_dataset.cpp v1 — SFT chats → packed rows.
#include "data/sft_dataset.h"

#include <numeric>

#include "data/gpt_dataset.h"
#include "data/numpy_random.h"
#include "util/error.h"

namespace weft {

SftSamples::SftSamples(const std::string& prefix, const std::vector<double>& fractions, int split, int64_t num_rows,
                       const SftOptions& opt)
    : tokens_(std::make_unique<IndexedDataset>(prefix)),
      mask_(std::make_unique<IndexedDataset>(prefix + "_loss_mask")),
      opt_(opt) {
  WEFT_CHECK(mask_->num_sequences() == tokens_->num_sequences(), prefix, "_loss_mask has ", mask_->num_sequences(),
             " sequences, ", prefix, " has ", tokens_->num_sequences(), " (made by different preprocess runs?)");
  for (int64_t s = 0; s < tokens_->num_sequences(); ++s)
    WEFT_CHECK(mask_->sequence_length(s) == tokens_->sequence_length(s), prefix, ": chat ", s,
               " has a loss mask of a different length");
  const std::vector<int32_t> chats = split_sequences(*tokens_, fractions, split);
  WEFT_CHECK(!chats.empty(), "data.split gives this split no chats of ", prefix);
  NumpyRandomState rng(opt.seed);
  const int64_t capacity = opt.seq_length;  // positions per row; a chat of n tokens fills n - 1 of them
  int64_t used = capacity;
  for (int epoch = 0; static_cast<int64_t>(rows_.size()) < num_rows || (num_rows == 0 && epoch == 0); ++epoch) {
    std::vector<int32_t> order = chats;
    if (opt.shuffle) rng.shuffle(order);
    for (int32_t chat : order) {
      const int64_t need = std::min<int64_t>(tokens_->sequence_length(chat) - 1, capacity);
      if (need <= 0) continue;  // a one-token chat predicts nothing
      if (epoch == 0 && tokens_->sequence_length(chat) - 1 > capacity) ++truncated_;
      if (!opt.pack || used + need > capacity) {
        rows_.emplace_back();
        used = 0;
      }
      rows_.back().push_back(chat);
      used += need;
    }
    WEFT_CHECK(!rows_.empty(), prefix, ": no chat of this split has two or more tokens");
  }
}

void SftSamples::row(int64_t i, SampleRow& out) const {
  WEFT_CHECK(i >= 0 && i < size(), "SFT row ", i, " is past the ", size(), " rows built");
  const int64_t S = opt_.seq_length;
  out.resize(S);
  std::vector<int32_t> ids, mask;
  int64_t at = 0;
  for (int32_t chat : rows_[i]) {
    const int64_t n = std::min<int64_t>(tokens_->sequence_length(chat), S + 1);
    ids.resize(n);
    mask.resize(n);
    tokens_->read(chat, 0, n, ids.data());
    mask_->read(chat, 0, n, mask.data());
    out.starts.push_back(static_cast<int32_t>(at));
    for (int64_t t = 0; t + 1 < n; ++t, ++at) {
      out.inputs[at] = ids[t];
      out.labels[at] = ids[t + 1];
      out.loss_mask[at] = mask[t + 1] ? 1.f : 0.f;  // a position counts when the token it predicts is the assistant's
      out.positions[at] = static_cast<int32_t>(t);
    }
  }
  if (at < S) {  // padding: its own segment, no loss
    out.starts.push_back(static_cast<int32_t>(at));
    for (int64_t t = at; t < S; ++t) {
      out.inputs[t] = out.labels[t] = opt_.pad_id;
      out.positions[t] = static_cast<int32_t>(t - at);
    }
  }
}

}  // namespace weft
