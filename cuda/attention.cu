// weft/cuda/attention.cu v4 — GQA attention (causal or full) with sliding windows and document segments.
//
// Two implementations behind the op: flash attention on tensor cores (cuda/flash_attention.cu) for bf16 and head
// dims 64 and 128, and simple warp-per-row reference kernels here that handle every other shape.
// WEFT_ATTENTION=reference forces the simple kernels (for A/B checks).
#include <cstdlib>

#include "attention_kernels.h"
#include "common.cuh"
#include "cuda_ops.h"

namespace weft {
namespace cuda {
namespace {

__device__ __forceinline__ int find_segment(const int32_t* cu, int count, int64_t token) {
  int lo = 0, hi = count - 1;  // the segment s with cu[s] <= token < cu[s + 1]
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (cu[mid] <= token) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// ---------------------------------------------------------------- reference kernels (one warp per row)

constexpr int kMaxDimPerLane = 8;  // head_dim ≤ 256

// Σ_d x[d]·y[d] over a row held `per` elements per lane.
__device__ __forceinline__ float row_dot(const float* x, const float* y, int per) {
  float s = 0.f;
  for (int e = 0; e < per; ++e) s += x[e] * y[e];
  return warp_sum(s);
}

// Row `at` of a [tokens·heads, dim] tensor into `per` registers per lane (zeros past dim).
template <typename T>
__device__ __forceinline__ void load_row(float* dst, const T* src, int64_t at, int dim, int per, int lane) {
  for (int e = 0; e < per; ++e) {
    const int d = lane + 32 * e;
    dst[e] = d < dim ? to_f(src[at * dim + d]) : 0.f;
  }
}

// The registers of load_row back into row `at`.
template <typename T>
__device__ __forceinline__ void store_row(T* dst, const float* src, int64_t at, int dim, int per, int lane) {
  for (int e = 0; e < per; ++e) {
    const int d = lane + 32 * e;
    if (d < dim) dst[at * dim + d] = from_f<T>(src[e]);
  }
}

template <typename T>
__global__ void ref_fwd_kernel(T* out, float* lse, const T* q, const T* k, const T* v, Segments seg, int64_t tokens,
                               int heads, int kv_heads, int dim, int64_t window, bool causal, float scale) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int h = blockIdx.y, lane = threadIdx.x & 31, hk = h / (heads / kv_heads);
  if (i >= tokens) return;
  const int s = find_segment(seg.cu, seg.count, i);
  const int64_t j0 = window > 0 ? max(int64_t(seg.cu[s]), i - window + 1) : int64_t(seg.cu[s]);
  const int64_t j1 = causal ? i : int64_t(seg.cu[s + 1]) - 1;
  const int per = (dim + 31) / 32;
  float qd[kMaxDimPerLane], kd[kMaxDimPerLane], vd[kMaxDimPerLane], acc[kMaxDimPerLane] = {};
  load_row(qd, q, i * heads + h, dim, per, lane);
  float m = -INFINITY, l = 0.f;
  for (int64_t j = j0; j <= j1; ++j) {
    load_row(kd, k, j * kv_heads + hk, dim, per, lane);
    load_row(vd, v, j * kv_heads + hk, dim, per, lane);
    const float sc = row_dot(qd, kd, per) * scale;
    const float m_new = fmaxf(m, sc), corr = __expf(m - m_new), p = __expf(sc - m_new);
    l = l * corr + p;
    for (int e = 0; e < per; ++e) acc[e] = acc[e] * corr + p * vd[e];
    m = m_new;
  }
  for (int e = 0; e < per; ++e) acc[e] /= l;
  store_row(out, acc, i * heads + h, dim, per, lane);
  if (lane == 0) lse[int64_t(h) * tokens + i] = m + logf(l);
}

// The reference backward runs two passes without atomics, so it is deterministic: dq with one warp per query
// (walking the keys it sees), then dk and dv with one warp per key (walking every query of its group that sees it).

template <typename T>
__global__ void ref_bwd_dq_kernel(T* dq, const T* dout, const T* q, const T* k, const T* v, const T* out,
                                  const float* lse, Segments seg, int64_t tokens, int heads, int kv_heads, int dim,
                                  int64_t window, bool causal, float scale) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int h = blockIdx.y, lane = threadIdx.x & 31, hk = h / (heads / kv_heads);
  if (i >= tokens) return;
  const int s = find_segment(seg.cu, seg.count, i);
  const int64_t j0 = window > 0 ? max(int64_t(seg.cu[s]), i - window + 1) : int64_t(seg.cu[s]);
  const int64_t j1 = causal ? i : int64_t(seg.cu[s + 1]) - 1;
  const int per = (dim + 31) / 32;
  float qd[kMaxDimPerLane], gd[kMaxDimPerLane], od[kMaxDimPerLane], kd[kMaxDimPerLane], vd[kMaxDimPerLane];
  float dqd[kMaxDimPerLane] = {};
  load_row(qd, q, i * heads + h, dim, per, lane);
  load_row(gd, dout, i * heads + h, dim, per, lane);
  load_row(od, out, i * heads + h, dim, per, lane);
  const float delta = row_dot(gd, od, per), l = lse[int64_t(h) * tokens + i];
  for (int64_t j = j0; j <= j1; ++j) {
    load_row(kd, k, j * kv_heads + hk, dim, per, lane);
    load_row(vd, v, j * kv_heads + hk, dim, per, lane);
    const float p = __expf(row_dot(qd, kd, per) * scale - l);
    const float ds = p * (row_dot(gd, vd, per) - delta) * scale;
    for (int e = 0; e < per; ++e) dqd[e] += ds * kd[e];
  }
  store_row(dq, dqd, i * heads + h, dim, per, lane);
}

template <typename T>
__global__ void ref_bwd_dkv_kernel(T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* out,
                                   const float* lse, Segments seg, int64_t tokens, int heads, int kv_heads, int dim,
                                   int64_t window, bool causal, float scale) {
  const int64_t j = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int hk = blockIdx.y, lane = threadIdx.x & 31, group = heads / kv_heads;
  if (j >= tokens) return;
  const int s = find_segment(seg.cu, seg.count, j);
  const int64_t i0 = causal ? j : int64_t(seg.cu[s]);
  const int64_t i1 = window > 0 ? min(int64_t(seg.cu[s + 1]), j + window) : int64_t(seg.cu[s + 1]);  // exclusive
  const int per = (dim + 31) / 32;
  float kd[kMaxDimPerLane], vd[kMaxDimPerLane], qd[kMaxDimPerLane], gd[kMaxDimPerLane], od[kMaxDimPerLane];
  float dkd[kMaxDimPerLane] = {}, dvd[kMaxDimPerLane] = {};
  load_row(kd, k, j * kv_heads + hk, dim, per, lane);
  load_row(vd, v, j * kv_heads + hk, dim, per, lane);
  for (int h = hk * group; h < (hk + 1) * group; ++h)
    for (int64_t i = i0; i < i1; ++i) {
      load_row(qd, q, i * heads + h, dim, per, lane);
      load_row(gd, dout, i * heads + h, dim, per, lane);
      load_row(od, out, i * heads + h, dim, per, lane);
      const float p = __expf(row_dot(qd, kd, per) * scale - lse[int64_t(h) * tokens + i]);
      const float ds = p * (row_dot(gd, vd, per) - row_dot(gd, od, per)) * scale;
      for (int e = 0; e < per; ++e) {
        dkd[e] += ds * qd[e];
        dvd[e] += p * gd[e];
      }
    }
  store_row(dk, dkd, j * kv_heads + hk, dim, per, lane);
  store_row(dv, dvd, j * kv_heads + hk, dim, per, lane);
}

// One warp per (token, head): rescales both partial outputs to the merged log-sum-exp.
template <typename T>
__global__ void attention_merge_kernel(T* out, float* lse, const T* part_out, const float* part_lse, int64_t tokens,
                                       int heads, int dim) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int h = blockIdx.y, lane = threadIdx.x & 31;
  if (i >= tokens) return;
  const float a = lse[int64_t(h) * tokens + i], b = part_lse[int64_t(h) * tokens + i];
  const float m = fmaxf(a, b), merged = m + logf(__expf(a - m) + __expf(b - m));
  const float wa = __expf(a - merged), wb = __expf(b - merged);
  for (int d = lane; d < dim; d += 32) {
    const int64_t at = (i * heads + h) * int64_t(dim) + d;
    out[at] = from_f<T>(wa * to_f(out[at]) + wb * to_f(part_out[at]));
  }
  if (lane == 0) lse[int64_t(h) * tokens + i] = merged;
}

bool reference_forced() {
  static const bool forced = [] {
    const char* e = std::getenv("WEFT_ATTENTION");
    return e && std::string(e) == "reference";
  }();
  return forced;
}

}  // namespace
}  // namespace cuda

using namespace cuda;

void CudaOps::attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                                const Tensor& cu_seqlens, const AttentionParams& p) {
  const int64_t tokens = q.size(0);
  WEFT_CHECK(p.v_head_dim == 0 || p.v_head_dim == p.head_dim, "CUDA attention: values of ", p.v_head_dim,
             " dims beside queries and keys of ", p.head_dim, " (latent attention) are not in the GPU kernels yet");
  WEFT_CHECK(lse.dtype() == DType::f32 && cu_seqlens.device() == Device::cuda && p.head_dim <= 32 * kMaxDimPerLane,
             "CUDA attention_forward: lse must be f32, cu_seqlens on the GPU, head_dim ≤ 256");
  WEFT_CHECK(p.causal || p.window == 0, "attention: a sliding window needs the causal mask");
  if (tokens == 0) return;
  const Segments seg{ptr<int32_t>(cu_seqlens), static_cast<int>(cu_seqlens.numel() - 1)};
  const int64_t max_seqlen = p.max_seqlen > 0 ? p.max_seqlen : tokens;
  if (flash_attention_supports(q, p) && !reference_forced())
    return flash_attention_forward(out, lse, q, k, v, seg, p, tokens, max_seqlen);
  const dim3 grid(blocks_for(tokens, 4), static_cast<unsigned>(p.num_heads));
  dispatch_storage(q, [&](auto tag_T) {
    using T = typename decltype(tag_T)::type;
    ref_fwd_kernel<<<grid, 128, 0, stream()>>>(ptr<T>(out), ptr<float>(lse), ptr<T>(q), ptr<T>(k), ptr<T>(v), seg,
                                               tokens, static_cast<int>(p.num_heads), static_cast<int>(p.num_kv_heads),
                                               static_cast<int>(p.head_dim), p.window, p.causal,
                                               static_cast<float>(p.scale));
  });
  CUDA_CHECK_LAUNCH();
}

void CudaOps::attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q,
                                 const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                                 const Tensor& cu_seqlens, const AttentionParams& p) {
  const int64_t tokens = q.size(0);
  if (tokens == 0) return;
  const Segments seg{ptr<int32_t>(cu_seqlens), static_cast<int>(cu_seqlens.numel() - 1)};
  const int64_t max_seqlen = p.max_seqlen > 0 ? p.max_seqlen : tokens;
  if (flash_attention_supports(q, p) && !reference_forced())
    return flash_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, seg, p, tokens, max_seqlen);
  const int heads = static_cast<int>(p.num_heads), kv_heads = static_cast<int>(p.num_kv_heads);
  dispatch_storage(q, [&](auto tag_T) {
    using T = typename decltype(tag_T)::type;
    ref_bwd_dq_kernel<<<dim3(blocks_for(tokens, 4), heads), 128, 0, stream()>>>(
        ptr<T>(dq), ptr<T>(dout), ptr<T>(q), ptr<T>(k), ptr<T>(v), ptr<T>(out), ptr<float>(lse), seg, tokens, heads,
        kv_heads, static_cast<int>(p.head_dim), p.window, p.causal, static_cast<float>(p.scale));
    CUDA_CHECK_LAUNCH();
    ref_bwd_dkv_kernel<<<dim3(blocks_for(tokens, 4), kv_heads), 128, 0, stream()>>>(
        ptr<T>(dk), ptr<T>(dv), ptr<T>(dout), ptr<T>(q), ptr<T>(k), ptr<T>(v), ptr<T>(out), ptr<float>(lse), seg,
        tokens, heads, kv_heads, static_cast<int>(p.head_dim), p.window, p.causal, static_cast<float>(p.scale));
  });
  CUDA_CHECK_LAUNCH();
}

void CudaOps::attention_merge(Tensor& out, Tensor& lse, const Tensor& part_out, const Tensor& part_lse) {
  WEFT_CHECK(part_out.shape() == out.shape() && part_lse.shape() == lse.shape() && out.ndim() == 3 &&
                 lse.numel() == out.size(0) * out.size(1) && lse.dtype() == DType::f32,
             "attention_merge: expected out [t, heads, d] and f32 lse [heads, t] twice, got ", out.describe(), ", ",
             lse.describe(), ", ", part_out.describe(), ", ", part_lse.describe());
  const int64_t tokens = out.size(0);
  if (tokens == 0) return;
  const dim3 grid(blocks_for(tokens, 4), static_cast<unsigned>(out.size(1)));
  dispatch_storage(out, [&](auto tag_T) {
    using T = typename decltype(tag_T)::type;
    attention_merge_kernel<<<grid, 128, 0, stream()>>>(ptr<T>(out), ptr<float>(lse), ptr<T>(part_out),
                                                       ptr<float>(part_lse), tokens, static_cast<int>(out.size(1)),
                                                       static_cast<int>(out.size(2)));
  });
  CUDA_CHECK_LAUNCH();
}

void CudaOps::attention_with_cache(Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                   const AttentionParams&) {
  fail("attention over a KV cache is not on the GPU yet: weft generate runs on the CPU backend");
}

}  // namespace weft
