// weft/src/parallel/context_parallel.h v1 — context parallelism: each sequence split over cp ranks, attention
// computed as a ring.
//
// The split is Megatron's load-balanced one: a sequence is cut into 2·cp chunks and cp rank r keeps chunks r and
// 2·cp−1−r, so under the causal mask every rank does the same attention work. A rank orders its tokens as
// [the early chunk of every row | the late chunk of every row]: each half is then one contiguous block, and
// attention between two halves is one op call with one segment per row.
//
// Ring attention: key/value blocks travel around the cp ring; at step i a rank holds the block of rank r − i and
// its queries attend to the parts of it they can see (everything before them: no mask; their own chunk: causal),
// the partial results merged by log-sum-exp. The backward sends key/value gradients around with the blocks; a
// last shift brings each block's gradient home. Every rank's queries see earlier chunks only, so all the work
// per step is one of three fixed patterns (see the .cpp). cp = 1 is plain causal attention on the batch.
#pragma once
#include "data/batch.h"
#include "dist/comm.h"
#include "ops/ops.h"

namespace weft {

// The part of a full micro-batch (on the host) that rank `rank` of `cp` context-parallel ranks keeps; the
// batch itself when cp = 1. Needs seq divisible by 2·cp and no segments but rows.
Batch context_parallel_split(const Batch& full, int cp, int rank);

// Causal attention of this rank's queries over the whole sequence (every rank of `cp` calls it together); out and
// lse as Ops::attention_forward. cp may be null (one rank).
void context_parallel_attention_forward(Comm* cp, Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k,
                                        const Tensor& v, const Batch& batch, const AttentionParams& p);
// Its backward: dq, dk, dv (overwritten) for this rank's tokens.
void context_parallel_attention_backward(Comm* cp, Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout,
                                         const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                         const Tensor& lse, const Batch& batch, const AttentionParams& p);

}  // namespace weft
