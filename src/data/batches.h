// weft/src/data/batches.h v1 — micro-batches in Megatron's pretraining-sampler order.
//
// A global batch is the next global_batch_size samples; its micro-batch m gives data-parallel rank r the
// samples consumed + m·mbs·dp + r·mbs + [0, mbs) (MegatronPretrainingSampler).
#pragma once
#include <cstdint>

#include "data/batch.h"
#include "data/sample_source.h"

namespace weft {

struct BatchOptions {
  int64_t micro_batch_size = 1;
  int64_t dp_size = 1, dp_rank = 0;
  int32_t eod = -1;             // end-of-document id (-1: none)
  bool eod_mask_loss = false;   // Megatron: no loss where the input token is EOD
  bool reset_position_ids = false;    // Megatron: positions restart after each EOD
  bool reset_attention_mask = false;  // Megatron: attention does not cross an EOD
  int64_t vocab_size = 0;       // ids must lie below this
};

class MicroBatches {
 public:
  MicroBatches(const SampleSource& source, const BatchOptions& opt) : src_(&source), opt_(opt) {}
  // Micro-batch `micro` of this rank, in the global batch that starts after `consumed` samples.
  Batch get(int64_t consumed, int64_t micro) const;
  // The tokens, labels and masks of samples [first, first + rows) as one batch (what `weft samples` prints).
  Batch samples(int64_t first, int64_t rows) const;

 private:
  const SampleSource* src_;
  BatchOptions opt_;
};

}  // namespace weft
