// weft/cuda/latent_attention.cu v1 — latent attention's head layout on the GPU (DeepSeek-V2): queries, keys and
// values of every head gathered from the projections with RoPE on the rotated dims, and the backward. One thread
// per output element; the rotated pairs read their partner and the position's cos/sin. Twin of
// src/ops/cpu/latent_attention.cpp.
#include "common.cuh"
#include "cuda_ops.h"

namespace weft {
namespace cuda {
namespace {

constexpr int kThreads = 256;

struct MlaDims {
  int64_t tokens, heads, nope, rope, value;
};

// The rotation of element i (of n rotated dims, pairs (i, i + n/2)) at angle cos c, sin s; sign -1: its transpose.
__device__ __forceinline__ float rotated(const float* pair_first, const float* pair_second, int64_t i, int64_t half,
                                         float c, float s, float sign) {
  return i < half ? pair_first[0] * c - pair_second[0] * sign * s : pair_second[0] * c + pair_first[0] * sign * s;
}

template <typename T>
__device__ __forceinline__ float rope_element(const T* x, int64_t i, int64_t n, const T* cos_row, const T* sin_row,
                                              float sign) {
  const int64_t half = n / 2, j = i < half ? i : i - half;
  const float a = to_f(x[j]), b = to_f(x[j + half]);
  return rotated(&a, &b, i, half, to_f(cos_row[j]), to_f(sin_row[j]), sign);
}

// q_heads, k_heads [t, H, dn+dr] and v_heads [t, H, dv] from q, kv, k_rope (mla_split).
template <typename T>
__global__ void mla_split_kernel(T* qh, T* kh, T* vh, const T* q, const T* kv, const T* kr, const int32_t* pos,
                                 const T* cos, const T* sin, MlaDims m, int64_t table_rows) {
  const int64_t d = m.nope + m.rope, w = m.nope + m.value, per_head = d + m.value;
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (idx >= m.tokens * m.heads * per_head) return;
  const int64_t th = idx / per_head, e = idx % per_head, t = th / m.heads;
  const int64_t p = min(max(int64_t(pos[t]), int64_t(0)), table_rows - 1);
  const T* c = cos + p * (m.rope / 2);
  const T* s = sin + p * (m.rope / 2);
  if (e < d) {
    const T* qs = q + th * d;
    qh[th * d + e] = e < m.nope ? qs[e] : from_f<T>(rope_element(qs + m.nope, e - m.nope, m.rope, c, s, 1.f));
    kh[th * d + e] = e < m.nope ? kv[th * w + e]
                                : from_f<T>(rope_element(kr + t * m.rope, e - m.nope, m.rope, c, s, 1.f));
  } else {
    vh[th * m.value + (e - d)] = kv[th * w + m.nope + (e - d)];
  }
}

// dq, dkv from the heads' gradients (mla_merge), one thread per element of dq and dkv.
template <typename T>
__global__ void mla_merge_heads_kernel(T* dq, T* dkv, const T* gq, const T* gk, const T* gv, const int32_t* pos,
                                       const T* cos, const T* sin, MlaDims m, int64_t table_rows) {
  const int64_t d = m.nope + m.rope, w = m.nope + m.value, per_head = d + w;
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (idx >= m.tokens * m.heads * per_head) return;
  const int64_t th = idx / per_head, e = idx % per_head, t = th / m.heads;
  const int64_t p = min(max(int64_t(pos[t]), int64_t(0)), table_rows - 1);
  if (e < d) {
    const T* g = gq + th * d;
    dq[th * d + e] = e < m.nope ? g[e]
                                : from_f<T>(rope_element(g + m.nope, e - m.nope, m.rope, cos + p * (m.rope / 2),
                                                         sin + p * (m.rope / 2), -1.f));
  } else {
    const int64_t f = e - d;
    dkv[th * w + f] = f < m.nope ? gk[th * d + f] : gv[th * m.value + (f - m.nope)];
  }
}

// dk_rope [t, dr]: the heads' rotated key gradients summed in fp32, then rotated back.
template <typename T>
__global__ void mla_merge_rope_kernel(T* dkr, const T* gk, const int32_t* pos, const T* cos, const T* sin, MlaDims m,
                                      int64_t table_rows) {
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (idx >= m.tokens * m.rope) return;
  const int64_t t = idx / m.rope, i = idx % m.rope, half = m.rope / 2, j = i < half ? i : i - half;
  const int64_t d = m.nope + m.rope;
  float a = 0, b = 0;  // the pair (j, j + half), summed over the heads
  for (int64_t h = 0; h < m.heads; ++h) {
    const T* g = gk + (t * m.heads + h) * d + m.nope;
    a += to_f(g[j]);
    b += to_f(g[j + half]);
  }
  const int64_t p = min(max(int64_t(pos[t]), int64_t(0)), table_rows - 1);
  dkr[idx] = from_f<T>(rotated(&a, &b, i, half, to_f(cos[p * half + j]), to_f(sin[p * half + j]), -1.f));
}

MlaDims mla_dims(const Tensor& heads, const Tensor& values, const Tensor& q, const Tensor& kv, const Tensor& k_rope,
                 const Tensor& positions, const Tensor& cos, const char* op) {
  WEFT_CHECK(heads.ndim() == 3 && values.ndim() == 3 && k_rope.ndim() == 2, op, ": expected heads [t, H, d] and ",
             "k_rope [t, dr], got ", heads.describe(), ", ", values.describe(), ", ", k_rope.describe());
  const MlaDims m{heads.size(0), heads.size(1), heads.size(2) - k_rope.size(1), k_rope.size(1), values.size(2)};
  WEFT_CHECK(m.nope > 0 && m.rope % 2 == 0 && q.numel() == m.tokens * m.heads * (m.nope + m.rope) &&
                 kv.numel() == m.tokens * m.heads * (m.nope + m.value) && k_rope.size(0) == m.tokens &&
                 positions.numel() == m.tokens && cos.size(1) == m.rope / 2 && cos.dtype() == q.dtype(),
             op, ": q ", q.describe(), ", kv ", kv.describe(), ", k_rope ", k_rope.describe(), ", cos ",
             cos.describe(), " do not match heads ", heads.describe(), " and values ", values.describe());
  return m;
}

}  // namespace
}  // namespace cuda

using namespace cuda;

void CudaOps::mla_split(Tensor& q_heads, Tensor& k_heads, Tensor& v_heads, const Tensor& q, const Tensor& kv,
                        const Tensor& k_rope, const Tensor& positions, const Tensor& cos, const Tensor& sin) {
  const MlaDims m = mla_dims(q_heads, v_heads, q, kv, k_rope, positions, cos, "mla_split");
  const int64_t n = m.tokens * m.heads * (m.nope + m.rope + m.value);
  if (n == 0) return;
  dispatch_storage(q, [&](auto tag_T) {
    using T = typename decltype(tag_T)::type;
    mla_split_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(
        ptr<T>(q_heads), ptr<T>(k_heads), ptr<T>(v_heads), ptr<T>(q), ptr<T>(kv), ptr<T>(k_rope),
        ptr<int32_t>(positions), ptr<T>(cos), ptr<T>(sin), m, cos.size(0));
  });
  CUDA_CHECK_LAUNCH();
}

void CudaOps::mla_merge(Tensor& dq, Tensor& dkv, Tensor& dk_rope, const Tensor& dq_heads, const Tensor& dk_heads,
                        const Tensor& dv_heads, const Tensor& positions, const Tensor& cos, const Tensor& sin) {
  const MlaDims m = mla_dims(dq_heads, dv_heads, dq, dkv, dk_rope, positions, cos, "mla_merge");
  const int64_t n = m.tokens * m.heads * (2 * m.nope + m.rope + m.value);
  if (n == 0) return;
  dispatch_storage(dq, [&](auto tag_T) {
    using T = typename decltype(tag_T)::type;
    mla_merge_heads_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(
        ptr<T>(dq), ptr<T>(dkv), ptr<T>(dq_heads), ptr<T>(dk_heads), ptr<T>(dv_heads), ptr<int32_t>(positions),
        ptr<T>(cos), ptr<T>(sin), m, cos.size(0));
    mla_merge_rope_kernel<T><<<blocks_for(m.tokens * m.rope, kThreads), kThreads, 0, stream()>>>(
        ptr<T>(dk_rope), ptr<T>(dk_heads), ptr<int32_t>(positions), ptr<T>(cos), ptr<T>(sin), m, cos.size(0));
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace weft
