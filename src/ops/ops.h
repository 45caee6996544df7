// weft/src/ops/ops.h v14 — the op list: every kernel the model, the loss and the optimizer need.
//
// One interface, two implementations: ops/cpu (plain C++, f32 and f64; the reference) and cuda/ (bf16 storage,
// fp32 accumulation). Layers reach an implementation only through ops_for(tensor), which picks it by device.
// Conventions: 2-D tensors are row-major [rows, cols]; activations are [tokens, features] with tokens = batch·seq
// flattened; "+=" in a doc line means the op accumulates into that output.
#pragma once
#include <cstdint>
#include <limits>
#include <vector>

#include "tensor/tensor.h"

namespace weft {

struct AttentionParams {
  int64_t num_heads = 0;     // query heads in q
  int64_t num_kv_heads = 0;  // key/value heads in k, v (GQA: num_heads is a multiple)
  int64_t head_dim = 0;      // of queries and keys
  int64_t window = 0;        // > 0: query i sees key j only if i - j < window (sliding window); 0: unlimited
  double scale = 1.0;        // softmax scale, usually 1/sqrt(head_dim)
  int64_t max_seqlen = 0;    // longest segment in cu_seqlens (0: unknown; kernels then assume all tokens)
  bool causal = true;        // false: every query sees every key of its segment (no window); context parallelism
                             // needs it for key blocks that lie wholly before the queries
  bool deterministic = false;  // the backward gives the same bits every run (GPU: two passes, no reordered sums)
  int64_t v_head_dim = 0;      // of values and the output; 0: head_dim (latent attention: 128 against 192)
};

struct RouterParams {
  int64_t topk = 1;
  bool pre_softmax = false;  // weights = softmax over all experts at the chosen ones; false: softmax of the top-k logits
  int64_t num_groups = 0;    // > 0: experts in this many equal groups, chosen only from the group_topk groups whose
  int64_t group_topk = 0;    //   highest logit is highest (DeepSeek-V2's group_limited_greedy)
  double scaling = 1.0;      // the weights times this (DeepSeek's routed_scaling_factor)
};

struct AdamWParams {
  double lr = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  int64_t step = 1;         // 1-based, for bias correction
  double grad_scale = 1.0;  // the gradient is used times this (gradient clipping, folded into the step)
  // Weight decay applies to the first `decayed` elements only: the optimizer lays out each bucket's decayed
  // parameters first, so that one call steps the whole bucket.
  int64_t decayed = std::numeric_limits<int64_t>::max();
};

class Ops {
 public:
  virtual ~Ops() = default;

  // ---- memory
  virtual void* allocate(size_t bytes) = 0;                       // device memory, uninitialised
  virtual void deallocate(void* ptr) = 0;                         // frees what allocate returned
  virtual void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) = 0;
  virtual void zero(Tensor& t) = 0;                               // t = 0
  virtual void synchronize() = 0;                                 // waits for queued work
  virtual size_t peak_memory() { return 0; }                      // most bytes of tensors held at once

  // ---- a side queue: device work that may run beside the work queued after it (GPUs: a second stream of lower
  // priority; the CPU runs everything in order, and these do nothing there)
  virtual void use_side_queue(bool /*on*/) {}  // later work goes to the side queue (behind all queued so far), or back
  virtual int side_mark() { return -1; }       // names the side work queued so far (-1: nothing to wait for)
  virtual void wait_side(int /*mark*/) {}      // the main queue's later work waits for the marked side work
  virtual void join_side() {}                  // the main queue's later work waits for all side work; marks expire

  // ---- elementwise and reductions
  virtual void convert(Tensor& dst, const Tensor& src) = 0;       // dst = src in dst's dtype (same shape)
  virtual void add(Tensor& y, const Tensor& x, double alpha) = 0; // y += alpha·x
  virtual void scale(Tensor& y, double alpha) = 0;                // y *= alpha
  virtual void sigmoid(Tensor& y, const Tensor& x) = 0;           // y = 1 / (1 + e^-x)
  virtual void sigmoid_backward(Tensor& dx, const Tensor& dy, const Tensor& y) = 0;  // dx = dy·y·(1 - y)
  // Σ x² over all the tensors in double, each tensor's sum added in order (on GPUs one wait for all of them).
  virtual double sum_squares(const std::vector<Tensor>& xs) = 0;
  double sum_squares(const Tensor& x) { return sum_squares(std::vector<Tensor>{x}); }

  // ---- dense algebra
  // c = alpha·op(a)·op(b) + beta·c with op(m) = m or mᵀ; all 2-D row-major.
  virtual void gemm(Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, double alpha,
                    double beta) = 0;
  // d = op(a)·op(b) + residual (d's shape and dtype, not d itself): a residual connection added where the product is
  // written, rounded once, instead of in a pass of its own.
  virtual void gemm_add(Tensor& d, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                        const Tensor& residual) = 0;
  virtual void bias_add(Tensor& y, const Tensor& bias) = 0;       // y[r, :] += bias
  virtual void bias_grad(Tensor& dbias, const Tensor& dy) = 0;    // dbias += Σ_r dy[r, :]

  // ---- normalisation
  // y = x / rms(x) · w per row; rstd[r] = 1/sqrt(mean(x[r]²) + eps) saved in fp32.
  virtual void rmsnorm_forward(Tensor& y, Tensor& rstd, const Tensor& x, const Tensor& w, double eps) = 0;
  // dx (+)= ∂L/∂x (accumulates when `accumulate`), dw += ∂L/∂w.
  virtual void rmsnorm_backward(Tensor& dx, Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                                const Tensor& rstd, bool accumulate) = 0;

  // ---- rotary position embedding (rotate-half layout, as HF and Megatron)
  // x [tokens, heads, head_dim] rotated in place by angle positions[t]·inv_freq; cos/sin [max_pos, head_dim/2].
  // inverse = true rotates by the negative angle: the backward of the forward rotation.
  virtual void rope(Tensor& x, const Tensor& positions, const Tensor& cos, const Tensor& sin, bool inverse) = 0;

  // ---- attention
  // qkv [tokens, groups·(q_per_group + 2)·head_dim] (Megatron: per query group its q heads, then k, then v)
  // → q [tokens, groups·q_per_group, head_dim], k, v [tokens, groups, head_dim], q and k then rotated as rope
  // does, in one pass.
  virtual void qkv_split(Tensor& q, Tensor& k, Tensor& v, const Tensor& qkv, const Tensor& positions,
                         const Tensor& cos, const Tensor& sin) = 0;
  // The backward of qkv_split: dqkv = interleave(dq and dk rotated back, dv); dq and dk stay as they are.
  virtual void qkv_merge(Tensor& dqkv, const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& positions,
                         const Tensor& cos, const Tensor& sin) = 0;
  // Latent attention's heads (DeepSeek-V2) from its projections: q [t, H·(dn+dr)] (per head dn plain, then dr
  // rotated dims), kv [t, H·(dn+dv)] (per head dn key, then dv value dims) and k_rope [t, dr] (the key's rotated dims,
  // shared by the heads) → q_heads, k_heads [t, H, dn+dr] and v_heads [t, H, dv], the rotated dims turned by RoPE
  // (cos/sin [positions, dr/2]) at `positions`.
  virtual void mla_split(Tensor& q_heads, Tensor& k_heads, Tensor& v_heads, const Tensor& q, const Tensor& kv,
                         const Tensor& k_rope, const Tensor& positions, const Tensor& cos, const Tensor& sin) = 0;
  // The backward of mla_split: dq, dkv and dk_rope (summed over the heads) overwritten.
  virtual void mla_merge(Tensor& dq, Tensor& dkv, Tensor& dk_rope, const Tensor& dq_heads, const Tensor& dk_heads,
                         const Tensor& dv_heads, const Tensor& positions, const Tensor& cos, const Tensor& sin) = 0;
  // Causal softmax(q·kᵀ·scale)·v within each segment [cu_seqlens[s], cu_seqlens[s+1]) of the token axis;
  // out [tokens, heads, head_dim]; lse [heads, tokens] = log Σ exp(scores), fp32, kept for the backward.
  virtual void attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& cu_seqlens, const AttentionParams& p) = 0;
  // dq, dk, dv (overwritten) from dout, recomputing probabilities from lse.
  virtual void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q,
                                  const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                                  const Tensor& cu_seqlens, const AttentionParams& p) = 0;
  // Generation's attention over cached keys: queries [tq, H, D] in segments q_cu and keys, values [tk, Hk, D] in
  // segments k_cu (as many); the n queries of a segment are the last n of its m keys' tokens, so its i-th query sees
  // the segment's keys 0..m−n+i. out [tq, H, v dims] (overwritten); no statistics are kept (no backward).
  virtual void attention_with_cache(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& q_cu, const Tensor& k_cu, const AttentionParams& p) = 0;
  // Folds a second attention result over other keys into (out, lse), as if both key sets had been one:
  // lse' = log(e^lse + e^part_lse), out' = out·e^(lse − lse') + part_out·e^(part_lse − lse').
  virtual void attention_merge(Tensor& out, Tensor& lse, const Tensor& part_out, const Tensor& part_lse) = 0;

  // ---- MLP
  // out [t, f] = silu(in[t, :f]) · in[t, f:] for in [t, 2f] (gate then up, as Megatron's fc1).
  virtual void swiglu_forward(Tensor& out, const Tensor& in) = 0;
  // din [t, 2f] (overwritten) from dout [t, f].
  virtual void swiglu_backward(Tensor& din, const Tensor& dout, const Tensor& in) = 0;

  // ---- mixture of experts: routing, dispatch order, expert GEMMs (Megatron-Core's router, permute, grouped GEMM)
  // probs [t, k] and experts [t, k] (i32): each token's k experts of highest logit (ties: the lower index first),
  // from logits [t, E] (stat dtype), and their weights: the softmax of those k logits, or with p.pre_softmax the
  // softmax over all E, taken at them. probs in the logits' dtype.
  virtual void moe_route(Tensor& probs, Tensor& experts, const Tensor& logits, const RouterParams& p) = 0;
  // The auxiliary losses' statistics (overwritten, the logits' dtype): score_sum [E] = Σ_t softmax(logits_t),
  // counts [E] = tokens whose experts include e, z_sum [1] = Σ_t logsumexp(logits_t)².
  virtual void moe_router_stats(Tensor& score_sum, Tensor& counts, Tensor& z_sum, const Tensor& logits,
                                const Tensor& experts) = 0;
  // dlogits [t, E] (overwritten) of Σ_{t,j} dprobs[t,j]·probs[t,j] (through moe_route's probs) plus
  // Σ_t Σ_e aux_weight[e]·softmax(logits_t)_e (aux_weight [E], the logits' dtype) plus z_scale·Σ_t logsumexp(logits_t)².
  virtual void moe_route_backward(Tensor& dlogits, const Tensor& dprobs, const Tensor& probs, const Tensor& experts,
                                  const Tensor& logits, const Tensor& aux_weight, double z_scale,
                                  const RouterParams& p) = 0;
  // The dispatch order of the (token, choice) pairs with experts[t, j] >= 0 (-1: dropped): grouped by expert, tokens
  // ascending within an expert. rows [t, k] (i32) = each pair's row in that order, -1 for dropped pairs; counts
  // (host, num_experts) = rows per expert. With pad > 0 every expert owns exactly pad rows, its pairs first (at most
  // pad of them), padding rows after them that no pair maps to.
  virtual void moe_dispatch_plan(Tensor& rows, std::vector<int64_t>& counts, const Tensor& experts,
                                 int64_t num_experts, int64_t pad) = 0;
  // out[rows[t, j]] = in[t] for every pair with rows[t, j] >= 0; out's other rows are left as they are.
  virtual void moe_permute(Tensor& out, const Tensor& in, const Tensor& rows) = 0;
  // out[t] = Σ_j in[rows[t, j]] over the pairs with rows[t, j] >= 0 (0 where none), summed in fp32 and rounded once:
  // the experts' outputs combined per token, and the backward of moe_permute.
  virtual void moe_unpermute(Tensor& out, const Tensor& in, const Tensor& rows) = 0;
  // Per-pair values between token order and dispatch order: to_rows: out[rows[t, j]] = in[t, j] (out [R]; rows no
  // pair maps to are left as they are); otherwise out[t, j] = in[rows[t, j]], 0 for dropped pairs (out [t, k]).
  virtual void moe_pair_values(Tensor& out, const Tensor& in, const Tensor& rows, bool to_rows) = 0;
  // The experts' SwiGLU with each row's routing weight applied before fc2 (as Megatron's experts apply it):
  // out [r, f] = silu(in[r, :f])·in[r, f:]·scale[r] (scale fp32 [r]).
  virtual void moe_swiglu_forward(Tensor& out, const Tensor& in, const Tensor& scale) = 0;
  // din [r, 2f] and dscale [r] (fp32; both overwritten) from dout [r, f].
  virtual void moe_swiglu_backward(Tensor& din, Tensor& dscale, const Tensor& dout, const Tensor& in,
                                   const Tensor& scale) = 0;
  // One GEMM per group of consecutive rows: c[g] = a[g]·op(b[g]) for the rows[g] rows of group g (op: bᵀ when
  // trans_b; b[g] 2-D row-major); c overwritten. The default runs gemm group by group.
  virtual void grouped_gemm(Tensor& c, const Tensor& a, const std::vector<Tensor>& b, bool trans_b,
                            const std::vector<int64_t>& rows);
  // The weight gradients of grouped_gemm with trans_b: db[g] = dc[g]ᵀ·a[g] + beta[g]·db[g] over group g's rows
  // (a group of no rows: db[g] = beta[g]·db[g]). The default runs gemm group by group.
  virtual void grouped_gemm_wgrad(std::vector<Tensor>& db, const Tensor& dc, const Tensor& a,
                                  const std::vector<int64_t>& rows, const std::vector<double>& beta);

  // ---- embedding (vocab-parallel: this shard holds rows [vocab_start, vocab_start + table rows))
  // out[t] = table[ids[t] - vocab_start], or 0 where ids[t] is outside the shard.
  virtual void embedding_forward(Tensor& out, const Tensor& ids, const Tensor& table, int64_t vocab_start) = 0;
  // dtable[ids[t] - vocab_start] += dout[t] for ids inside the shard.
  virtual void embedding_backward(Tensor& dtable, const Tensor& dout, const Tensor& ids, int64_t vocab_start) = 0;

  // ---- cross-entropy over a vocab shard: logits [t, cols]; only the first `valid_cols` columns are real
  // vocabulary (the rest is TP padding and takes no probability). Labels are global ids.
  // One pass over the logits: row_max[t] = the largest of the shard's valid logits, sum_exp[t] = Σ exp(logit −
  // row_max[t]), target_logit[t] = logits[t, label − vocab_start] or 0 if the label is not on this shard. All fp32 [t].
  virtual void cross_entropy_stats(Tensor& row_max, Tensor& sum_exp, Tensor& target_logit, const Tensor& logits,
                                   const Tensor& labels, int64_t vocab_start, int64_t valid_cols) = 0;
  // sum_exp[t] ·= exp(shard_max[t] − row_max[t]): a shard's Σexp moved onto the max over all shards.
  virtual void cross_entropy_rescale(Tensor& sum_exp, const Tensor& shard_max, const Tensor& row_max) = 0;
  // loss[t] = log(sum_exp[t]) + row_max[t] − target_logit[t].
  virtual void cross_entropy_loss(Tensor& loss, const Tensor& row_max, const Tensor& sum_exp,
                                  const Tensor& target_logit) = 0;
  // dlogits[t] = row_scale[t]·(softmax(logits[t]) − onehot(label)); dlogits may be logits itself (in place).
  virtual void cross_entropy_backward(Tensor& dlogits, const Tensor& logits, const Tensor& row_max,
                                      const Tensor& sum_exp, const Tensor& labels, const Tensor& row_scale,
                                      int64_t vocab_start, int64_t valid_cols) = 0;

  // ---- optimizer
  // One AdamW step (decoupled decay, bias correction) on fp32 master weights `param` with moments m, v in the
  // masters' dtype or both in bf16; `value` (the model's working copy) then holds the updated param in its dtype.
  // GPUs also take split masters (optim/split_master.h): `param` u16, the low halves of the masters whose rounded
  // upper halves are the bf16 `value`.
  virtual void adamw(Tensor& param, Tensor& value, const Tensor& grad, Tensor& m, Tensor& v,
                     const AdamWParams& p) = 0;
};

// Writes host values (any numeric dtype, same number of elements) into dst's own memory, converting to dst's dtype:
// dst keeps its storage, so views into a larger buffer stay views.
void write_into(Tensor& dst, const Tensor& host_values);

// The implementation for tensors on `device` (throws if weft was built without it).
Ops& ops_for(Device device);
inline Ops& ops_for(const Tensor& t) { return ops_for(t.device()); }
// Installs the implementation for `device`; called once at start-up by each backend.
void register_ops(Device device, Ops* ops);
// The CPU reference implementation.
Ops& cpu_ops();

}  // namespace weft
