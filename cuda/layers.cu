// weft/cuda/layers.cu v11 — CUDA kernels for RMSNorm, RoPE, the QKV layout, SwiGLU and the embedding.
#include <cub/device/device_radix_sort.cuh>

#include "common.cuh"
#include "cuda_ops.h"

namespace weft {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// ---------------------------------------------------------------- RMSNorm

// One block per row, V columns per access.
template <typename T, int V>
__global__ void rmsnorm_fwd_kernel(T* y, float* rstd, const T* x, const T* w, int64_t h, float eps) {
  const int64_t r = blockIdx.x;
  const T* xr = x + r * h;
  float ss = 0.f;
  for (int64_t i = threadIdx.x * V; i < h; i += blockDim.x * V) {
    const Pack<T, V> xp = load_pack<T, V>(xr + i);
    #pragma unroll
    for (int j = 0; j < V; ++j) ss += to_f(xp.v[j]) * to_f(xp.v[j]);
  }
  ss = block_sum(ss);
  const float inv = rsqrtf(ss / float(h) + eps);
  if (threadIdx.x == 0) rstd[r] = inv;
  for (int64_t i = threadIdx.x * V; i < h; i += blockDim.x * V) {
    const Pack<T, V> xp = load_pack<T, V>(xr + i), wp = load_pack<T, V>(w + i);
    Pack<T, V> yp;
    #pragma unroll
    for (int j = 0; j < V; ++j) yp.v[j] = from_f<T>(to_f(xp.v[j]) * inv * to_f(wp.v[j]));
    store_pack(y + r * h + i, yp);
  }
}

// One pack of a row's backward at column i: dx = rs·dy·w − c·x (added to what dx holds when accumulating; dx
// points at the pack), and the pack's dw terms dy·x·rs into dw_acc.
template <typename T, int V>
__device__ __forceinline__ void rmsnorm_bwd_pack(T* dx, float* dw_acc, const Pack<T, V>& xp, const Pack<T, V>& gp,
                                                 const Pack<T, V>& wp, float rs, float c, int64_t i, int64_t h,
                                                 bool accumulate) {
  Pack<T, V> dp;
  if (accumulate) dp = load_pack<T, V>(dx);
  #pragma unroll
  for (int j = 0; j < V; ++j) {
    const float xv = to_f(xp.v[j]), gv = to_f(gp.v[j]);
    float d = rs * gv * to_f(wp.v[j]) - c * xv;
    if (accumulate) d += to_f(dp.v[j]);
    dp.v[j] = from_f<T>(d);
    dw_acc[j * (h / V) + i / V] += gv * xv * rs;
  }
  store_pack(dx, dp);
}

// The block's dw from shared memory into its row of partial, in column order.
template <int V>
__device__ __forceinline__ void store_dw_partial(float* partial, const float* dw_acc, int64_t h) {
  __syncthreads();
  for (int64_t i = threadIdx.x; i < h; i += blockDim.x)
    partial[blockIdx.x * h + i] = dw_acc[(i % V) * (h / V) + i / V];
}

// Each block walks a strided set of rows, V columns per access; its share of dw collects in shared memory and is
// written to partial[block, :] for a second kernel to sum (deterministic, no atomics). Shared memory holds column
// i at (i mod V)·(h / V) + i / V, so a warp's V accumulations each touch 32 consecutive words (no bank conflicts).
template <typename T, int V>
__global__ void rmsnorm_bwd_kernel(T* dx, float* partial, const T* dy, const T* x, const T* w, const float* rstd,
                                   int64_t rows, int64_t h, bool accumulate) {
  extern __shared__ float dw_acc[];
  for (int64_t i = threadIdx.x; i < h; i += blockDim.x) dw_acc[i] = 0.f;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * h;
    const T* gr = dy + r * h;
    const float rs = rstd[r];
    float dot = 0.f;
    for (int64_t i = threadIdx.x * V; i < h; i += blockDim.x * V) {
      const Pack<T, V> xp = load_pack<T, V>(xr + i), gp = load_pack<T, V>(gr + i), wp = load_pack<T, V>(w + i);
      #pragma unroll
      for (int j = 0; j < V; ++j) dot += to_f(gp.v[j]) * to_f(wp.v[j]) * to_f(xp.v[j]);
    }
    dot = block_sum(dot);
    const float c = rs * rs * rs * dot / float(h);
    for (int64_t i = threadIdx.x * V; i < h; i += blockDim.x * V) {
      const Pack<T, V> xp = load_pack<T, V>(xr + i), gp = load_pack<T, V>(gr + i), wp = load_pack<T, V>(w + i);
      rmsnorm_bwd_pack(dx + r * h + i, dw_acc, xp, gp, wp, rs, c, i, h, accumulate);
    }
  }
  store_dw_partial<V>(partial, dw_acc, h);
}

// rmsnorm_bwd_kernel for rows of at most kPacks packs per thread: w stays in registers for the block's rows, and
// the next row's x and dy load while the block sums the current row's dot product.
template <typename T, int V, int kPacks>
__global__ void rmsnorm_bwd_rows_kernel(T* dx, float* partial, const T* dy, const T* x, const T* w,
                                        const float* rstd, int64_t rows, int64_t h, bool accumulate) {
  extern __shared__ float dw_acc[];
  for (int64_t i = threadIdx.x; i < h; i += blockDim.x) dw_acc[i] = 0.f;
  Pack<T, V> wp[kPacks], xp[kPacks], gp[kPacks];
  const auto col = [&](int k) { return (threadIdx.x + int64_t(k) * blockDim.x) * V; };
  #pragma unroll
  for (int k = 0; k < kPacks; ++k)
    if (col(k) < h) wp[k] = load_pack<T, V>(w + col(k));
  const auto load_row = [&](int64_t r) {
    #pragma unroll
    for (int k = 0; k < kPacks; ++k)
      if (col(k) < h) {
        xp[k] = load_pack<T, V>(x + r * h + col(k));
        gp[k] = load_pack<T, V>(dy + r * h + col(k));
      }
  };
  int64_t r = blockIdx.x;
  if (r < rows) load_row(r);
  for (; r < rows; r += gridDim.x) {
    const float rs = rstd[r];
    float dot = 0.f;
    Pack<T, V> xc[kPacks], gc[kPacks];
    #pragma unroll
    for (int k = 0; k < kPacks; ++k) {
      xc[k] = xp[k];
      gc[k] = gp[k];
      if (col(k) < h)
        #pragma unroll
        for (int j = 0; j < V; ++j) dot += to_f(gc[k].v[j]) * to_f(wp[k].v[j]) * to_f(xc[k].v[j]);
    }
    if (r + gridDim.x < rows) load_row(r + gridDim.x);
    dot = block_sum(dot);
    const float c = rs * rs * rs * dot / float(h);
    #pragma unroll
    for (int k = 0; k < kPacks; ++k) {
      const int64_t i = col(k);
      if (i < h) rmsnorm_bwd_pack(dx + r * h + i, dw_acc, xc[k], gc[k], wp[k], rs, c, i, h, accumulate);
    }
  }
  store_dw_partial<V>(partial, dw_acc, h);
}

// out[c] += Σ_b partial[b, c] for 16 columns per block: 32 rows of threads each sum every 32nd partial row (64-byte
// reads, four in flight), then the 32 sums add in a fixed order, so the result does not depend on scheduling. With
// 32 columns × 8 rows of threads and one load in flight, 64 blocks summed 8 MB of partials at 0.5 TB/s (ncu, H200).
// out is a gradient, fp32 or bf16 (train.grad_dtype): the sum is fp32 and rounds once.
constexpr int kSumColumns = 16, kSumRows = 32, kSumsInFlight = 4;
template <typename O>
__global__ void column_sum_kernel(O* out, const float* partial, int blocks, int64_t h) {
  __shared__ float sums[kSumRows][kSumColumns + 1];
  const int64_t c = blockIdx.x * int64_t(kSumColumns) + threadIdx.x;
  float s = 0.f;
  if (c < h)
    for (int b = threadIdx.y; b < blocks; b += kSumsInFlight * kSumRows) {
      float v[kSumsInFlight];
      #pragma unroll
      for (int k = 0; k < kSumsInFlight; ++k) {
        const int row = b + k * kSumRows;
        v[k] = row < blocks ? partial[row * h + c] : 0.f;
      }
      #pragma unroll
      for (int k = 0; k < kSumsInFlight; ++k) s += v[k];
    }
  sums[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y != 0 || c >= h) return;
  for (int r = 1; r < kSumRows; ++r) s += sums[r][threadIdx.x];
  out[c] = from_f<O>(to_f(out[c]) + s);
}

// db's share of a block of rows, one thread per column, into partial[block row, :] for column_sum_kernel.
template <typename T>
__global__ void bias_grad_kernel(float* partial, const T* dy, int64_t rows, int64_t cols, int64_t rows_per_block) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= cols) return;
  const int64_t r0 = blockIdx.y * rows_per_block, r1 = min(rows, r0 + rows_per_block);
  float s = 0.f;
  for (int64_t r = r0; r < r1; ++r) s += to_f(dy[r * cols + c]);
  partial[blockIdx.y * cols + c] = s;
}

// ---------------------------------------------------------------- RoPE

// Rotates V pairs (lo[e], hi[e]) by the angles whose cos and sin start at `cos` and `sin` (sign −1: backwards).
template <typename T, int V>
__device__ __forceinline__ void rotate_pairs(Pack<T, V>& lo, Pack<T, V>& hi, const T* cos, const T* sin, float sign) {
  const Pack<T, V> cp = load_pack<T, V>(cos), sp = load_pack<T, V>(sin);
  #pragma unroll
  for (int e = 0; e < V; ++e) {
    const float c = to_f(cp.v[e]), s = sign * to_f(sp.v[e]), x1 = to_f(lo.v[e]), x2 = to_f(hi.v[e]);
    lo.v[e] = from_f<T>(x1 * c - x2 * s);
    hi.v[e] = from_f<T>(x2 * c + x1 * s);
  }
}

// Thread i rotates the V pairs (j, j + half) from j = (i·V) mod half of one head.
template <typename T, int V>
__global__ void rope_kernel(T* x, const int32_t* pos, const T* cos, const T* sin, int64_t tokens, int64_t heads,
                            int64_t dim, float sign) {
  const int64_t half = dim / 2;
  const int64_t i = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * V;
  if (i >= tokens * heads * half) return;
  const int64_t j = i % half, th = i / half, t = th / heads;
  T* head = x + th * dim;
  const int64_t angle = int64_t(pos[t]) * half + j;
  Pack<T, V> lo = load_pack<T, V>(head + j), hi = load_pack<T, V>(head + j + half);
  rotate_pairs(lo, hi, cos + angle, sin + angle, sign);
  store_pack(head + j, lo);
  store_pack(head + j + half, hi);
}

// ---------------------------------------------------------------- QKV layout

// The fused [tokens, groups·(qpg + 2)·dim] tensor ↔ q, k, v, with RoPE on q and k on the way (split: rotate by
// `sign` = +1 after the move; merge: by −1, the backward): thread i moves the V pairs (j, j + half) from
// j = (i·V) mod half of one head, so a rotation's two halves meet in one thread.
template <typename T, int V, bool kSplit>
__global__ void qkv_rope_kernel(T* fused, T* q, T* k, T* v, const int32_t* pos, const T* cos, const T* sin,
                                int64_t tokens, int64_t groups, int64_t qpg, int64_t dim, float sign) {
  const int64_t half = dim / 2;
  const int64_t i = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * V;
  if (i >= tokens * groups * (qpg + 2) * half) return;
  const int64_t j = i % half, head = i / half;  // head: (token, group, slot) in the fused order
  const int64_t slot = head % (qpg + 2), tg = head / (qpg + 2), t = tg / groups;
  T* packed = fused + head * dim;
  T* alone = slot < qpg ? q + (tg * qpg + slot) * dim : (slot == qpg ? k : v) + tg * dim;
  const T* src = kSplit ? packed : alone;
  T* dst = kSplit ? alone : packed;
  Pack<T, V> lo = load_pack<T, V>(src + j), hi = load_pack<T, V>(src + j + half);
  if (slot <= qpg) {
    const int64_t angle = int64_t(pos[t]) * half + j;
    rotate_pairs(lo, hi, cos + angle, sin + angle, sign);
  }
  store_pack(dst + j, lo);
  store_pack(dst + j + half, hi);
}

// ---------------------------------------------------------------- SwiGLU

// Thread i: outputs [i·V, i·V + V) of out [rows, f], each row times scale[r] when given (MoE experts' routing
// weights).
template <typename T, int V>
__global__ void swiglu_fwd_kernel(T* out, const T* in, const float* scale, int64_t rows, int64_t f) {
  const int64_t i = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * V;
  if (i >= rows * f) return;
  const int64_t r = i / f, c = i % f;
  const float w = scale ? scale[r] : 1.f;
  const Pack<T, V> gp = load_pack<T, V>(in + r * 2 * f + c), up = load_pack<T, V>(in + r * 2 * f + f + c);
  Pack<T, V> op;
  #pragma unroll
  for (int e = 0; e < V; ++e) {
    const float g = to_f(gp.v[e]);
    op.v[e] = from_f<T>(g / (1.f + __expf(-g)) * to_f(up.v[e]) * w);
  }
  store_pack(out + i, op);
}

template <typename T, int V>
__global__ void swiglu_bwd_kernel(T* din, const T* dout, const T* in, int64_t rows, int64_t f) {
  const int64_t i = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * V;
  if (i >= rows * f) return;
  const int64_t r = i / f, c = i % f;
  Pack<T, V> gp = load_pack<T, V>(in + r * 2 * f + c), up = load_pack<T, V>(in + r * 2 * f + f + c);
  const Pack<T, V> dp = load_pack<T, V>(dout + i);
  #pragma unroll
  for (int e = 0; e < V; ++e) {
    const float g = to_f(gp.v[e]), u = to_f(up.v[e]), d = to_f(dp.v[e]);
    const float sig = 1.f / (1.f + __expf(-g));
    gp.v[e] = from_f<T>(d * u * sig * (1.f + g * (1.f - sig)));
    up.v[e] = from_f<T>(d * g * sig);
  }
  store_pack(din + r * 2 * f + c, gp);
  store_pack(din + r * 2 * f + f + c, up);
}

// ---------------------------------------------------------------- embedding

template <typename T>
__global__ void embedding_fwd_kernel(T* out, const int32_t* ids, const T* table, int64_t rows, int64_t h,
                                     int64_t start) {
  const int64_t t = blockIdx.x;
  const int64_t r = int64_t(ids[t]) - start;
  for (int64_t i = threadIdx.x; i < h; i += blockDim.x)
    out[t * h + i] = (r >= 0 && r < rows) ? table[r * h + i] : from_f<T>(0.f);
}

// The rows of dtable sum their tokens' gradients in token order, so the result does not depend on scheduling:
// the ids come sorted (stably, with their token positions), and the block at the start of each run of one id
// adds that run's rows, in fp32 whatever the gradient's dtype G.
template <typename G, typename T>
__global__ void embedding_bwd_kernel(G* dtable, const T* dout, const int32_t* sorted_ids, const int32_t* order,
                                     int64_t tokens, int64_t rows, int64_t h, int64_t start) {
  const int64_t first = blockIdx.x;
  const int32_t id = sorted_ids[first];
  if (first > 0 && sorted_ids[first - 1] == id) return;  // inside a run: its first block adds it
  const int64_t r = int64_t(id) - start;
  if (r < 0 || r >= rows) return;  // another rank's share of the vocabulary
  int64_t end = first + 1;
  while (end < tokens && sorted_ids[end] == id) ++end;
  for (int64_t i = threadIdx.x; i < h; i += blockDim.x) {
    float s = to_f(dtable[r * h + i]);
    for (int64_t t = first; t < end; ++t) s += to_f(dout[int64_t(order[t]) * h + i]);
    dtable[r * h + i] = from_f<G>(s);
  }
}

__global__ void iota_kernel(int32_t* out, int64_t n) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = static_cast<int32_t>(i);
}

}  // namespace
}  // namespace cuda

using namespace cuda;

namespace {

// grad[c] += Σ_b partial[b, c] over `blocks` rows of h partial sums, grad fp32 or bf16.
void add_column_sums(Tensor& grad, const Tensor& partial, int blocks, int64_t h) {
  dispatch_storage(grad, [&](auto tag_O) {
    using O = typename decltype(tag_O)::type;
    column_sum_kernel<<<blocks_for(h, kSumColumns), dim3(kSumColumns, kSumRows), 0, stream()>>>(
        ptr<O>(grad), ptr<float>(partial), blocks, h);
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void CudaOps::rmsnorm_forward(Tensor& y, Tensor& rstd, const Tensor& x, const Tensor& w, double eps) {
  const int64_t h = w.numel(), rows = x.numel() / h;
  WEFT_CHECK(rstd.dtype() == DType::f32 && rstd.numel() == rows && w.dtype() == x.dtype(),
             "rmsnorm_forward: bad tensors x ", x.describe(), " w ", w.describe(), " rstd ", rstd.describe());
  if (rows == 0) return;
  dispatch_storage(x, [&](auto tag_T) {
    using T = typename decltype(tag_T)::type;
    with_pack<kPack<T>>(packs_fit<T>(h, {y.data_ptr(), x.data_ptr(), w.data_ptr()}), [&](auto v) {
      rmsnorm_fwd_kernel<T, v><<<rows, kThreads, 0, stream()>>>(ptr<T>(y), ptr<float>(rstd), ptr<T>(x), ptr<T>(w),
                                                                 h, static_cast<float>(eps));
    });
  });
  CUDA_CHECK_LAUNCH();
}

void CudaOps::rmsnorm_backward(Tensor& dx, Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                               const Tensor& rstd, bool accumulate) {
  const int64_t h = w.numel(), rows = x.numel() / h;
  if (rows == 0) return;
  int blocks = 0;
  Tensor partial;
  dispatch_storage(x, [&](auto tag_T) {
    using T = typename decltype(tag_T)::type;
    const bool fits = packs_fit<T>(h, {dx.data_ptr(), dy.data_ptr(), x.data_ptr(), w.data_ptr()});
    constexpr int V = kPack<T>;
    // dw of the block's rows collects in h floats of shared memory: past 48 KiB (hidden 12288) it must be asked for.
    const auto launch = [&](auto kernel, bool resident) {
      allow_dynamic_smem(kernel, h * sizeof(float), "rmsnorm_backward (hidden size)");
      // Enough blocks to fill every SM's threads (8 × 256 on an H200's 132 SMs), each summing ≈ rows / 1024 rows'
      // dw; the register-held rows' kernel as many as fit at once.
      blocks = static_cast<int>(std::min<int64_t>(rows, 1024));
      if (resident) {
        int per_sm = 0;
        CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, h * sizeof(float)));
        blocks = static_cast<int>(std::min<int64_t>(rows, int64_t(sm_count()) * std::max(per_sm, 1)));
      }
      partial = Tensor::empty({blocks, h}, DType::f32, Device::cuda);
      kernel<<<blocks, kThreads, h * sizeof(float), stream()>>>(ptr<T>(dx), ptr<float>(partial), ptr<T>(dy),
                                                                ptr<T>(x), ptr<T>(w), ptr<float>(rstd), rows, h,
                                                                accumulate);
    };
    if (fits && h <= kThreads * V) launch(rmsnorm_bwd_rows_kernel<T, V, 1>, true);
    else if (fits && h <= 2 * kThreads * V) launch(rmsnorm_bwd_rows_kernel<T, V, 2>, true);
    else with_pack<V>(fits, [&](auto v) { launch(rmsnorm_bwd_kernel<T, v>, false); });
  });
  CUDA_CHECK_LAUNCH();
  add_column_sums(dw, partial, blocks, h);
}

void CudaOps::rope(Tensor& x, const Tensor& positions, const Tensor& cos, const Tensor& sin, bool inverse) {
  WEFT_CHECK(x.ndim() == 3 && cos.dtype() == x.dtype(), "rope: expected x [t, heads, dim] and tables of its dtype");
  const int64_t tokens = x.size(0), heads = x.size(1), dim = x.size(2), n = tokens * heads * dim / 2;
  if (n == 0) return;
  dispatch_storage(x, [&](auto tag_T) {
    using T = typename decltype(tag_T)::type;
    with_pack<kPack<T>>(packs_fit<T>(dim / 2, {x.data_ptr(), cos.data_ptr(), sin.data_ptr()}), [&](auto v) {
      rope_kernel<T, v><<<blocks_for(n / v, kThreads), kThreads, 0, stream()>>>(
          ptr<T>(x), ptr<int32_t>(positions), ptr<T>(cos), ptr<T>(sin), tokens, heads, dim, inverse ? -1.f : 1.f);
    });
  });
  CUDA_CHECK_LAUNCH();
}

namespace {

// qkv_split (kSplit) and qkv_merge: the fused tensor and q, k, v are the source or the destination.
template <bool kSplit>
void move_qkv(const Tensor& fused, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& positions,
              const Tensor& cos, const Tensor& sin) {
  const int64_t tokens = q.size(0), groups = k.size(1), qpg = q.size(1) / groups, dim = q.size(2);
  const int64_t n = tokens * groups * (qpg + 2) * dim / 2;
  WEFT_CHECK(fused.numel() == 2 * n && q.size(1) == groups * qpg && v.shape() == k.shape() && dim % 2 == 0 &&
                 cos.dtype() == fused.dtype() && sin.dtype() == fused.dtype(),
             "qkv_", kSplit ? "split" : "merge", ": ", fused.describe(), " does not match q ", q.describe(), ", k ",
             k.describe(), " and RoPE tables ", cos.describe());
  if (n == 0) return;
  dispatch_storage(fused, [&](auto tag_T) {
    using T = typename decltype(tag_T)::type;
    const bool fits = packs_fit<T>(dim / 2, {fused.data_ptr(), q.data_ptr(), k.data_ptr(), v.data_ptr(),
                                             cos.data_ptr(), sin.data_ptr()});
    with_pack<kPack<T>>(fits, [&](auto w) {
      qkv_rope_kernel<T, w, kSplit><<<blocks_for(n / w, kThreads), kThreads, 0, stream()>>>(
          ptr<T>(fused), ptr<T>(q), ptr<T>(k), ptr<T>(v), ptr<int32_t>(positions), ptr<T>(cos), ptr<T>(sin),
          tokens, groups, qpg, dim, kSplit ? 1.f : -1.f);
    });
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void CudaOps::qkv_split(Tensor& q, Tensor& k, Tensor& v, const Tensor& qkv, const Tensor& positions,
                        const Tensor& cos, const Tensor& sin) {
  move_qkv<true>(qkv, q, k, v, positions, cos, sin);
}

void CudaOps::qkv_merge(Tensor& dqkv, const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& positions,
                        const Tensor& cos, const Tensor& sin) {
  move_qkv<false>(dqkv, dq, dk, dv, positions, cos, sin);
}

namespace {

void launch_swiglu_forward(Tensor& out, const Tensor& in, const float* scale) {
  const int64_t f = out.size(-1), rows = out.numel() / f;
  WEFT_CHECK(in.numel() == 2 * out.numel(), "swiglu_forward: in ", in.describe(), " must be twice out ",
             out.describe());
  if (rows == 0) return;
  dispatch_storage(in, [&](auto tag_T) {
    using T = typename decltype(tag_T)::type;
    with_pack<kPack<T>>(packs_fit<T>(f, {out.data_ptr(), in.data_ptr()}), [&](auto v) {
      swiglu_fwd_kernel<T, v><<<blocks_for(out.numel() / v, kThreads), kThreads, 0, stream()>>>(
          ptr<T>(out), ptr<T>(in), scale, rows, f);
    });
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void CudaOps::swiglu_forward(Tensor& out, const Tensor& in) { launch_swiglu_forward(out, in, nullptr); }

void CudaOps::moe_swiglu_forward(Tensor& out, const Tensor& in, const Tensor& scale) {
  WEFT_CHECK(scale.dtype() == DType::f32 && scale.numel() * out.size(-1) == out.numel(), "moe_swiglu_forward: scale ",
             scale.describe(), " for ", out.describe());
  launch_swiglu_forward(out, in, ptr<float>(scale));
}

void CudaOps::swiglu_backward(Tensor& din, const Tensor& dout, const Tensor& in) {
  const int64_t f = dout.size(-1), rows = dout.numel() / f;
  dispatch_storage(in, [&](auto tag_T) {
    using T = typename decltype(tag_T)::type;
    with_pack<kPack<T>>(packs_fit<T>(f, {din.data_ptr(), dout.data_ptr(), in.data_ptr()}), [&](auto v) {
      swiglu_bwd_kernel<T, v><<<blocks_for(dout.numel() / v, kThreads), kThreads, 0, stream()>>>(
          ptr<T>(din), ptr<T>(dout), ptr<T>(in), rows, f);
    });
  });
  CUDA_CHECK_LAUNCH();
}

void CudaOps::embedding_forward(Tensor& out, const Tensor& ids, const Tensor& table, int64_t vocab_start) {
  const int64_t tokens = ids.numel(), h = table.size(1);
  if (tokens == 0) return;
  dispatch_storage(table, [&](auto tag_T) {
    using T = typename decltype(tag_T)::type;
    embedding_fwd_kernel<<<tokens, kThreads, 0, stream()>>>(ptr<T>(out), ptr<int32_t>(ids), ptr<T>(table),
                                                            table.size(0), h, vocab_start);
  });
  CUDA_CHECK_LAUNCH();
}

void CudaOps::bias_grad(Tensor& dbias, const Tensor& dy) {
  const int64_t cols = dbias.numel(), rows = dy.numel() / cols;
  WEFT_CHECK(rows * cols == dy.numel(), "bias_grad: dbias ", dbias.describe(), " does not tile ", dy.describe());
  if (rows == 0) return;
  const int64_t per_block = 256;
  const int row_blocks = static_cast<int>((rows + per_block - 1) / per_block);
  Tensor partial = Tensor::empty({row_blocks, cols}, DType::f32, Device::cuda);
  dispatch_storage(dy, [&](auto tag_T) {
    using T = typename decltype(tag_T)::type;
    bias_grad_kernel<<<dim3(blocks_for(cols, kThreads), row_blocks), kThreads, 0, stream()>>>(
        ptr<float>(partial), ptr<T>(dy), rows, cols, per_block);
  });
  CUDA_CHECK_LAUNCH();
  add_column_sums(dbias, partial, row_blocks, cols);
}

void CudaOps::embedding_backward(Tensor& dtable, const Tensor& dout, const Tensor& ids, int64_t vocab_start) {
  const int64_t tokens = ids.numel(), h = dtable.size(1);
  WEFT_CHECK(ids.dtype() == DType::i32, "embedding_backward: ids must be i32, got ", ids.describe());
  if (tokens == 0) return;
  Tensor positions = Tensor::empty({tokens}, DType::i32, Device::cuda);
  Tensor sorted_ids = Tensor::empty({tokens}, DType::i32, Device::cuda);
  Tensor order = Tensor::empty({tokens}, DType::i32, Device::cuda);
  iota_kernel<<<blocks_for(tokens, kThreads), kThreads, 0, stream()>>>(ptr<int32_t>(positions), tokens);
  CUDA_CHECK_LAUNCH();
  size_t scratch_bytes = 0;
  const int n = static_cast<int>(tokens);
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, scratch_bytes, ptr<int32_t>(ids), ptr<int32_t>(sorted_ids),
                                             ptr<int32_t>(positions), ptr<int32_t>(order), n, 0, 32, stream()));
  Tensor scratch = Tensor::empty({static_cast<int64_t>(scratch_bytes) + 1}, DType::u8, Device::cuda);
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(scratch.data_ptr(), scratch_bytes, ptr<int32_t>(ids),
                                             ptr<int32_t>(sorted_ids), ptr<int32_t>(positions), ptr<int32_t>(order), n,
                                             0, 32, stream()));
  dispatch_storage(dtable, [&](auto tag_G) {
    dispatch_storage(dout, [&](auto tag_T) {
      using G = typename decltype(tag_G)::type;
      using T = typename decltype(tag_T)::type;
      embedding_bwd_kernel<<<tokens, kThreads, 0, stream()>>>(ptr<G>(dtable), ptr<T>(dout), ptr<int32_t>(sorted_ids),
                                                              ptr<int32_t>(order), tokens, dtable.size(0), h,
                                                              vocab_start);
    });
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace weft
