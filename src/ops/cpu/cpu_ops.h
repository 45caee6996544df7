// weft/src/ops/cpu/cpu_ops.h v9 — the CPU reference implementation of the op list (f32 and f64).
//
// Plain loops, written to be read and trusted; gemm is blocked so that small models train at a useful speed.
// Every op accepts f32 or f64 floating tensors (all floating operands of one call share a dtype, except the
// per-row statistics, which follow stat_dtype) and int32 index tensors.
#pragma once
#include <atomic>

#include "ops/ops.h"

namespace weft {

class CpuOps final : public Ops {
 public:
  void* allocate(size_t bytes) override;
  void deallocate(void* ptr) override;
  size_t peak_memory() override { return peak_.load(); }
  void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) override;
  void zero(Tensor& t) override;
  void synchronize() override {}

  void convert(Tensor& dst, const Tensor& src) override;
  void add(Tensor& y, const Tensor& x, double alpha) override;
  void scale(Tensor& y, double alpha) override;
  void sigmoid(Tensor& y, const Tensor& x) override;
  void sigmoid_backward(Tensor& dx, const Tensor& dy, const Tensor& y) override;
  double sum_squares(const std::vector<Tensor>& xs) override;
  using Ops::sum_squares;

  void gemm(Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, double alpha,
            double beta) override;
  void gemm_add(Tensor& d, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                const Tensor& residual) override;
  void bias_add(Tensor& y, const Tensor& bias) override;
  void bias_grad(Tensor& dbias, const Tensor& dy) override;

  void rmsnorm_forward(Tensor& y, Tensor& rstd, const Tensor& x, const Tensor& w, double eps) override;
  void rmsnorm_backward(Tensor& dx, Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                        const Tensor& rstd, bool accumulate) override;
  void rope(Tensor& x, const Tensor& positions, const Tensor& cos, const Tensor& sin, bool inverse) override;

  void qkv_split(Tensor& q, Tensor& k, Tensor& v, const Tensor& qkv, const Tensor& positions, const Tensor& cos,
                 const Tensor& sin) override;
  void qkv_merge(Tensor& dqkv, const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& positions,
                 const Tensor& cos, const Tensor& sin) override;
  void mla_split(Tensor& q_heads, Tensor& k_heads, Tensor& v_heads, const Tensor& q, const Tensor& kv,
                 const Tensor& k_rope, const Tensor& positions, const Tensor& cos, const Tensor& sin) override;
  void mla_merge(Tensor& dq, Tensor& dkv, Tensor& dk_rope, const Tensor& dq_heads, const Tensor& dk_heads,
                 const Tensor& dv_heads, const Tensor& positions, const Tensor& cos, const Tensor& sin) override;
  void attention_with_cache(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_cu,
                            const Tensor& k_cu, const AttentionParams& p) override;
  void attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& cu_seqlens, const AttentionParams& p) override;
  void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q,
                          const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          const Tensor& cu_seqlens, const AttentionParams& p) override;
  void attention_merge(Tensor& out, Tensor& lse, const Tensor& part_out, const Tensor& part_lse) override;

  void swiglu_forward(Tensor& out, const Tensor& in) override;
  void swiglu_backward(Tensor& din, const Tensor& dout, const Tensor& in) override;

  void moe_route(Tensor& probs, Tensor& experts, const Tensor& logits, const RouterParams& p) override;
  void moe_router_stats(Tensor& score_sum, Tensor& counts, Tensor& z_sum, const Tensor& logits,
                        const Tensor& experts) override;
  void moe_route_backward(Tensor& dlogits, const Tensor& dprobs, const Tensor& probs, const Tensor& experts,
                          const Tensor& logits, const Tensor& aux_weight, double z_scale,
                          const RouterParams& p) override;
  void moe_dispatch_plan(Tensor& rows, std::vector<int64_t>& counts, const Tensor& experts, int64_t num_experts,
                         int64_t pad) override;
  void moe_permute(Tensor& out, const Tensor& in, const Tensor& rows) override;
  void moe_unpermute(Tensor& out, const Tensor& in, const Tensor& rows) override;
  void moe_pair_values(Tensor& out, const Tensor& in, const Tensor& rows, bool to_rows) override;
  void moe_swiglu_forward(Tensor& out, const Tensor& in, const Tensor& scale) override;
  void moe_swiglu_backward(Tensor& din, Tensor& dscale, const Tensor& dout, const Tensor& in,
                           const Tensor& scale) override;

  void embedding_forward(Tensor& out, const Tensor& ids, const Tensor& table, int64_t vocab_start) override;
  void embedding_backward(Tensor& dtable, const Tensor& dout, const Tensor& ids, int64_t vocab_start) override;

  void cross_entropy_stats(Tensor& row_max, Tensor& sum_exp, Tensor& target_logit, const Tensor& logits,
                           const Tensor& labels, int64_t vocab_start, int64_t valid_cols) override;
  void cross_entropy_rescale(Tensor& sum_exp, const Tensor& shard_max, const Tensor& row_max) override;
  void cross_entropy_loss(Tensor& loss, const Tensor& row_max, const Tensor& sum_exp,
                          const Tensor& target_logit) override;
  void cross_entropy_backward(Tensor& dlogits, const Tensor& logits, const Tensor& row_max, const Tensor& sum_exp,
                              const Tensor& labels, const Tensor& row_scale, int64_t vocab_start,
                              int64_t valid_cols) override;

  void adamw(Tensor& param, Tensor& value, const Tensor& grad, Tensor& m, Tensor& v,
             const AdamWParams& p) override;
 private:
  std::atomic<size_t> in_use_{0}, peak_{0};  // bytes of live tensors, their most at once
};

// Calls f.template operator()<T>() with T = float or double per the tensor's dtype.
template <typename F>
decltype(auto) dispatch_float(const Tensor& t, F&& f) {
  switch (t.dtype()) {
    case DType::f32: return f.template operator()<float>();
    case DType::f64: return f.template operator()<double>();
    default: fail(str("CPU op: expected an f32 or f64 tensor, got ", t.describe()));
  }
}

// Row-major blocked C = alpha·op(A)·op(B) + beta·C (cpu/gemm.cpp).
template <typename T>
void cpu_gemm(int64_t m, int64_t n, int64_t k, T alpha, const T* a, bool trans_a, const T* b, bool trans_b,
              T beta, T* c);

}  // namespace weft
