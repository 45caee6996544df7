// weft/src/data/batches.cpp v1 — samples → token/label/mask/position tensors.
#include "data/batches.h"

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
  b.cu_seqlens = Tensor::empty({rows + 1}, DType::i32);
  std::vector<int32_t> window(static_cast<size_t>(S + 1));
  for (int64_t r = 0; r < rows; ++r) {
    WEFT_CHECK(first + r < src_->size(), "the dataset has ", src_->size(), " samples; sample ", first + r,
               " was asked for (more train/eval iterations than the data holds?)");
    src_->sample(first + r, window.data());
    for (int64_t t = 0; t < S; ++t) {
      const int64_t at = r * S + t;
      for (int32_t id : {window[t], window[t + 1]})
        WEFT_CHECK(id >= 0 && id < opt_.vocab_size, "sample ", first + r, " holds token id ", id,
                   ", outside model.vocab_size = ", opt_.vocab_size, " (data.prefix made with another tokenizer?)");
      b.tokens.data<int32_t>()[at] = window[t];
      b.labels.data<int32_t>()[at] = window[t + 1];
      b.loss_mask.data<float>()[at] = (opt_.eod_mask_loss && window[t] == opt_.eod) ? 0.f : 1.f;
      b.positions.data<int32_t>()[at] = static_cast<int32_t>(t);
    }
    b.cu_seqlens.data<int32_t>()[r] = static_cast<int32_t>(r * S);
  }
  b.cu_seqlens.data<int32_t>()[rows] = static_cast<int32_t>(rows * S);
  return b;
}

}  // namespace weft
