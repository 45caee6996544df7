// weft/src/data/batches.cpp v1 — samples → token/label/mask/position tensors.
#include "data/batches.h"

#include <algorithm>
#include <vector>

#include "util/error.h"

namespace weft {

Batch MicroBatches::get(int64_t consumed, int64_t micro) const {
  const int64_t first = consumed + micro * opt_.micro_batch_size * opt_.dp_size + opt_.dp_rank * opt_.micro_batch_size;
  return samples(first, opt_.micro_batch_size);
}

Batch MicroBatches::samples(int64_t first, int64_t rows) const {
  const int64_t S = src_->seq_length();
  Batch b;
  b.rows = rows;
  b.seq = S;
  b.tokens = Tensor::empty({rows * S}, DType::i32);
  b.labels = Tensor::empty({rows * S}, DType::i32);
  b.loss_mask = Tensor::empty({rows * S}, DType::f32);
  b.positions = Tensor::empty({rows * S}, DType::i32);
  std::vector<int32_t> cu;
  SampleRow row;
  for (int64_t r = 0; r < rows; ++r) {
    WEFT_CHECK(first + r < src_->size(), "the dataset has ", src_->size(), " samples; sample ", first + r,
               " was asked for (more train/eval iterations than the data holds?)");
    src_->row(first + r, row);
    std::vector<int32_t> starts = row.starts;
    int32_t position_base = 0;
    for (int64_t t = 0; t < S; ++t) {
      const int64_t at = r * S + t;
      for (int32_t id : {row.inputs[t], row.labels[t]})
        WEFT_CHECK(id >= 0 && id < opt_.vocab_size, "sample ", first + r, " holds token id ", id,
                   ", outside model.vocab_size = ", opt_.vocab_size, " (data.prefix made with another tokenizer?)");
      const bool eod = opt_.eod >= 0 && row.inputs[t] == opt_.eod;
      b.tokens.data<int32_t>()[at] = row.inputs[t];
      b.labels.data<int32_t>()[at] = row.labels[t];
      b.loss_mask.data<float>()[at] = (opt_.eod_mask_loss && eod) ? 0.f : row.loss_mask[t];
      b.positions.data<int32_t>()[at] = row.positions[t] - position_base;
      // Megatron resets after the EOD token: the next position starts a new document.
      if (eod && t + 1 < S) {
        if (opt_.reset_position_ids) position_base = row.positions[t + 1];
        if (opt_.reset_attention_mask) starts.push_back(static_cast<int32_t>(t + 1));
      }
    }
    std::sort(starts.begin(), starts.end());
    starts.erase(std::unique(starts.begin(), starts.end()), starts.end());
    for (int32_t s : starts) cu.push_back(static_cast<int32_t>(r * S + s));
  }
  cu.push_back(static_cast<int32_t>(rows * S));
  for (size_t i = 1; i < cu.size(); ++i) b.max_seqlen = std::max<int64_t>(b.max_seqlen, cu[i] - cu[i - 1]);
  b.cu_seqlens = Tensor::from_vector(cu, {static_cast<int64_t>(cu.size())});
  return b;
}

}  // namespace weft
