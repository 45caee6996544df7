// weft/src/data/batch.h v3 — one micro-batch as the model consumes it, and a batch of whole sequences side by side.
#pragma once
#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace weft {

struct KvCache;  // model/layers.h

// rows samples of seq tokens, flattened to tokens = rows·seq. Attention never crosses a boundary in cu_seqlens
// (row ends always are boundaries; packed documents add more).
struct Batch {
  int64_t rows = 0, seq = 0;
  Tensor tokens;      // i32 [tokens]
  Tensor labels;      // i32 [tokens], the next token
  Tensor loss_mask;   // f32 [tokens], 1 where the token's loss counts
  Tensor positions;   // i32 [tokens], RoPE positions
  Tensor cu_seqlens;  // i32 [segments + 1], attention segment bounds over the flattened tokens
  int64_t max_seqlen = 0;  // the longest segment (kernels size their grids by it)
  int cp = 1;  // > 1: this rank's part of a context-parallel split (parallel/context_parallel.h): tokens are
               // [early chunk of each row | late chunk of each row] and cu_seqlens bounds the chunks of one half
  KvCache* cache = nullptr;  // generation: each segment holds only its sequence's new tokens, the rest are cached

  int64_t tokens_count() const { return rows * seq; }
  // The same batch with every tensor on `device`.
  Batch to(Device device) const {
    Batch b = *this;
    b.tokens = tokens.to(device);
    b.labels = labels.to(device);
    b.loss_mask = loss_mask.to(device);
    b.positions = positions.to(device);
    b.cu_seqlens = cu_seqlens.to(device);
    return b;
  }
};

// One sequence of a batch that forward, eval and generate run: its input ids, the label and loss weight of each
// (both empty: no loss), and the position of its first token (a KV cache's next position when decoding).
struct Sequence {
  std::vector<int32_t> tokens, labels;
  std::vector<float> loss_mask;
  int32_t first_position = 0;
};

// The sequences as the segments of one batch (a row each; seq is their common length, 0 when they differ).
Batch sequences_batch(const std::vector<Sequence>& seqs);

}  // namespace weft
