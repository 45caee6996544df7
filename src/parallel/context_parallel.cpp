// weft/src/parallel/context_parallel.cpp v1 — the load-balanced sequence split and ring attention.
//
// Rank r holds query halves lo = chunk r and hi = chunk 2P−1−r (P = cp ranks). The block of rank j holds key
// halves j and 2P−1−j. What the queries see of it:
//   j = r: lo sees lo causally; hi sees lo fully and hi causally.
//   j < r: both query halves see the block's lo fully, its hi not at all (it lies after them).
//   j > r: lo sees nothing; hi sees both of the block's halves fully.
#include "parallel/context_parallel.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace weft {
namespace {

// Views of the early and late halves of a token-major tensor.
Tensor half_of(const Tensor& t, int which) {
  const int64_t n = t.size(0) / 2;
  return t.rows(which * n, (which + 1) * n);
}

// lse [heads, tokens] in this layout is [2][heads, tokens / 2]: a view of one half's statistics.
Tensor lse_half(const Tensor& lse, int64_t heads, int which) {
  const int64_t n = lse.numel() / (2 * heads);
  return lse.reshape({2, heads * n}).rows(which, which + 1).reshape({heads, n});
}

// One unit of ring work: query half qh attends to key half kh of the current block, masked or not.
struct Pair {
  int qh, kh;
  bool causal;
};

std::vector<Pair> pairs_for(int r, int j) {
  if (j == r) return {{0, 0, true}, {1, 0, false}, {1, 1, true}};
  if (j < r) return {{0, 0, false}, {1, 0, false}};
  return {{1, 0, false}, {1, 1, false}};
}

template <typename T>
void copy_range(Tensor& dst, int64_t at, const Tensor& src, int64_t from, int64_t n) {
  std::copy(src.data<T>() + from, src.data<T>() + from + n, dst.data<T>() + at);
}

// Two tensors that travel the ring together (keys and values, or their gradients), and the buffers the next
// rank's arrive in.
struct RingPair {
  Tensor a, b, a_next, b_next;
  RingPair(Tensor first, Tensor second)
      : a(std::move(first)), b(std::move(second)), a_next(Tensor::empty(a.shape(), a.dtype(), a.device())),
        b_next(Tensor::empty(b.shape(), b.dtype(), b.device())) {}
  // Passes the pair to the next rank and takes the previous rank's.
  void shift(Comm& cp) {
    const int size = cp.size(), next = (cp.rank() + 1) % size, prev = (cp.rank() + size - 1) % size;
    cp.send_recv(a, next, a_next, prev);
    cp.send_recv(b, next, b_next, prev);
    std::swap(a, a_next);
    std::swap(b, b_next);
  }
};

// Walks the ring: at each step calls work(pair, params) for every piece of attention this rank's queries owe the
// key/value block it holds, passes the block on, then calls after_step().
template <typename Work, typename AfterStep>
void around_the_ring(Comm& cp, RingPair& kv, const AttentionParams& p, Work&& work, AfterStep&& after_step) {
  const int size = cp.size(), r = cp.rank();
  for (int step = 0; step < size; ++step) {
    for (const Pair& w : pairs_for(r, (r - step + size) % size)) {
      AttentionParams pw = p;
      pw.causal = w.causal;
      work(w, pw);
    }
    if (step + 1 < size) kv.shift(cp);
    after_step();
  }
}

void check_split(const Comm* cp, const Batch& batch) {
  WEFT_CHECK(batch.cp == cp->size(), "context parallelism: the batch was split for cp = ", batch.cp,
             " but the cp group has ", cp->size(), " ranks");
}

}  // namespace

Batch context_parallel_split(const Batch& full, int cp, int rank) {
  if (cp == 1) return full;
  WEFT_CHECK(full.seq % (2 * cp) == 0, "context parallelism: sequence length ", full.seq, " is not a multiple of ",
             "2·cp = ", 2 * cp);
  WEFT_CHECK(full.cu_seqlens.numel() == full.rows + 1, "context parallelism: the batch has attention segments ",
             "inside its rows (packed documents), which ring attention does not split");
  const int64_t c = full.seq / (2 * cp), rows = full.rows;
  Batch b;
  b.rows = rows;
  b.seq = full.seq / cp;
  b.cp = cp;
  b.max_seqlen = c;
  const int64_t n = rows * b.seq;
  b.tokens = Tensor::empty({n}, DType::i32);
  b.labels = Tensor::empty({n}, DType::i32);
  b.loss_mask = Tensor::empty({n}, full.loss_mask.dtype());
  b.positions = Tensor::empty({n}, DType::i32);
  int64_t at = 0;
  for (int half = 0; half < 2; ++half) {
    const int64_t chunk = half == 0 ? rank : 2 * cp - 1 - rank;
    for (int64_t row = 0; row < rows; ++row, at += c) {
      const int64_t from = row * full.seq + chunk * c;
      copy_range<int32_t>(b.tokens, at, full.tokens, from, c);
      copy_range<int32_t>(b.labels, at, full.labels, from, c);
      copy_range<int32_t>(b.positions, at, full.positions, from, c);
      copy_range<float>(b.loss_mask, at, full.loss_mask, from, c);
    }
  }
  std::vector<int32_t> cu(static_cast<size_t>(rows + 1));
  for (int64_t row = 0; row <= rows; ++row) cu[row] = static_cast<int32_t>(row * c);
  b.cu_seqlens = Tensor::from_vector(cu, {rows + 1});
  return b;
}

void context_parallel_attention_forward(Comm* cp, Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k,
                                        const Tensor& v, const Batch& batch, const AttentionParams& p) {
  Ops& ops = ops_for(q);
  if (!cp || cp->size() == 1) return ops.attention_forward(out, lse, q, k, v, batch.cu_seqlens, p);
  check_split(cp, batch);
  const int64_t half = q.size(0) / 2, H = p.num_heads;
  Tensor part_out = Tensor::empty(half_of(out, 0).shape(), out.dtype(), out.device());
  Tensor part_lse = Tensor::empty({H, half}, lse.dtype(), lse.device());
  std::vector<bool> started(2, false);
  RingPair kv(k.clone(), v.clone());
  around_the_ring(*cp, kv, p, [&](const Pair& w, const AttentionParams& pw) {
    Tensor o = half_of(out, w.qh), l = lse_half(lse, H, w.qh);
    const Tensor qh = half_of(q, w.qh), kh = half_of(kv.a, w.kh), vh = half_of(kv.b, w.kh);
    if (!started[w.qh]) {
      ops.attention_forward(o, l, qh, kh, vh, batch.cu_seqlens, pw);
      started[w.qh] = true;
    } else {
      ops.attention_forward(part_out, part_lse, qh, kh, vh, batch.cu_seqlens, pw);
      ops.attention_merge(o, l, part_out, part_lse);
    }
  }, [] {});
}

void context_parallel_attention_backward(Comm* cp, Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout,
                                         const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                         const Tensor& lse, const Batch& batch, const AttentionParams& p) {
  Ops& ops = ops_for(q);
  if (!cp || cp->size() == 1)
    return ops.attention_backward(dq, dk, dv, dout, q, k, v, out, lse, batch.cu_seqlens, p);
  check_split(cp, batch);
  const int64_t H = p.num_heads;
  const DType acc = stat_dtype(q.dtype());
  // Gradients add up over ring steps in fp32; the key/value ones travel with their block.
  Tensor dq_acc = Tensor::zeros(q.shape(), acc, q.device());
  RingPair dkv(Tensor::zeros(k.shape(), acc, k.device()), Tensor::zeros(v.shape(), acc, v.device()));
  Tensor part_dq = Tensor::empty(half_of(q, 0).shape(), q.dtype(), q.device());
  Tensor part_dk = Tensor::empty(half_of(k, 0).shape(), k.dtype(), k.device());
  Tensor part_dv = Tensor::empty(half_of(v, 0).shape(), v.dtype(), v.device());
  RingPair kv(k.clone(), v.clone());
  around_the_ring(*cp, kv, p, [&](const Pair& w, const AttentionParams& pw) {
    // With the final out and lse, each block's backward is exact for its share of the probabilities.
    ops.attention_backward(part_dq, part_dk, part_dv, half_of(dout, w.qh), half_of(q, w.qh), half_of(kv.a, w.kh),
                           half_of(kv.b, w.kh), half_of(out, w.qh), lse_half(lse, H, w.qh), batch.cu_seqlens, pw);
    Tensor dqh = half_of(dq_acc, w.qh), dkh = half_of(dkv.a, w.kh), dvh = half_of(dkv.b, w.kh);
    ops.add(dqh, part_dq, 1.0);
    ops.add(dkh, part_dk, 1.0);
    ops.add(dvh, part_dv, 1.0);
  }, [&] {
    dkv.shift(*cp);  // the block's gradients go on with it; after the last step they reach their owner
  });
  ops.convert(dq, dq_acc);
  ops.convert(dk, dkv.a);
  ops.convert(dv, dkv.b);
}

}  // namespace weft
