// weft/cuda/attention_kernels.h v1 — what cuda/attention.cu (the op, the reference kernels) needs from
// cuda/flash_attention.cu (the tensor-core kernels).
#pragma once
#include <cstdint>

#include "ops/ops.h"

namespace weft::cuda {

// The segments of a packed batch: cu_seqlens on the GPU (count + 1 offsets).
struct Segments {
  const int32_t* cu;
  int count;
};

// Whether the flash kernels take these tensors: bf16, head dim 64 or 128.
bool flash_attention_supports(const Tensor& q, const AttentionParams& p);
// out, lse = attention(q, k, v) over `tokens` tokens whose longest segment has max_seqlen tokens.
void flash_attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v, Segments seg,
                             const AttentionParams& p, int64_t tokens, int64_t max_seqlen);
// dq, dk, dv from dout and the forward's out and lse: one pass that adds dQ up in L2 in scheduling order, or with
// p.deterministic two passes that give the same bits on every call.
void flash_attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q, const Tensor& k,
                              const Tensor& v, const Tensor& out, const Tensor& lse, Segments seg,
                              const AttentionParams& p, int64_t tokens, int64_t max_seqlen);

}  // namespace weft::cuda
