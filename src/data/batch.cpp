// weft/src/data/batch.cpp v1 — whole sequences side by side as one batch's attention segments.
#include "data/batch.h"

#include <algorithm>

#include "util/error.h"

namespace weft {

Batch sequences_batch(const std::vector<Sequence>& seqs) {
  std::vector<int32_t> tokens, labels, positions, cu = {0};
  std::vector<float> mask;
  Batch b;
  b.rows = static_cast<int64_t>(seqs.size());
  b.seq = seqs.empty() ? 0 : static_cast<int64_t>(seqs.front().tokens.size());
  for (const Sequence& s : seqs) {
    const bool with_loss = !s.labels.empty();
    WEFT_ASSERT(!with_loss || (s.labels.size() == s.tokens.size() && s.loss_mask.size() == s.tokens.size()));
    for (size_t i = 0; i < s.tokens.size(); ++i) {
      tokens.push_back(s.tokens[i]);
      labels.push_back(with_loss ? s.labels[i] : 0);
      mask.push_back(with_loss ? s.loss_mask[i] : 0.f);
      positions.push_back(s.first_position + static_cast<int32_t>(i));
    }
    cu.push_back(static_cast<int32_t>(tokens.size()));
    if (static_cast<int64_t>(s.tokens.size()) != b.seq) b.seq = 0;
    b.max_seqlen = std::max<int64_t>(b.max_seqlen, static_cast<int64_t>(s.tokens.size()));
  }
  const int64_t t = static_cast<int64_t>(tokens.size());
  b.tokens = Tensor::from_vector(tokens, {t});
  b.labels = Tensor::from_vector(labels, {t});
  b.loss_mask = Tensor::from_vector(mask, {t});
  b.positions = Tensor::from_vector(positions, {t});
  b.cu_seqlens = Tensor::from_vector(cu, {static_cast<int64_t>(cu.size())});
  return b;
}

}  // namespace weft
