// weft/cuda/moe.cu v2 — the mixture-of-experts ops on the GPU: routing, its statistics and backward, the dispatch
// order (a stable CUB radix sort by expert), row permutation, the experts' scaled SwiGLU, and sigmoid.
//
// Every kernel has its reference twin in src/ops/cpu/moe.cpp (routing) or cpu_ops.cpp (SwiGLU, sigmoid);
// test/gpu/moe_gpu_test.cpp compares them. Routing runs in fp32 from fp32 logits: one warp per token, the top-k
// chosen by k rounds of a warp arg-max (ties to the lower expert, as the CPU's). Sums that reach the log or the
// gradients are summed in a fixed order (no float atomics), so a rerun gives the same bits.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>

#include "common.cuh"
#include "cuda_ops.h"

namespace weft {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxTopk = 16;  // routing keeps the chosen experts in registers

// The warp's arg-max of (value, index) pairs: the larger value, ties to the lower index.
__device__ __forceinline__ void warp_argmax(float& v, int& i) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, i, o);
    if (ov > v || (ov == v && oi < i)) v = ov, i = oi;
  }
}

// Max and Σ exp(l − max) of one token's logits, on every lane of the warp.
__device__ __forceinline__ void row_softmax_stats(const float* l, int experts, float& m, float& sum) {
  const int lane = threadIdx.x & 31;
  m = -INFINITY;
  for (int e = lane; e < experts; e += 32) m = fmaxf(m, l[e]);
  m = warp_max(m);
  sum = 0.f;
  for (int e = lane; e < experts; e += 32) sum += __expf(l[e] - m);
  sum = warp_sum(sum);
}

__global__ void route_kernel(float* probs, int32_t* chosen, const float* logits, int64_t tokens, int experts, int k,
                             bool pre_softmax) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x >> 5) + (threadIdx.x >> 5);
  if (t >= tokens) return;
  const int lane = threadIdx.x & 31;
  const float* l = logits + t * experts;
  int top[kMaxTopk];
  float val[kMaxTopk];
  for (int j = 0; j < k; ++j) {
    float v = -INFINITY;
    int idx = INT_MAX;
    for (int e = lane; e < experts; e += 32) {
      bool taken = false;
      for (int i = 0; i < j; ++i) taken |= top[i] == e;
      if (!taken && (l[e] > v || (l[e] == v && e < idx))) v = l[e], idx = e;
    }
    warp_argmax(v, idx);
    top[j] = idx;
    val[j] = v;
  }
  float m = val[0], sum = 0.f;
  if (pre_softmax) {
    row_softmax_stats(l, experts, m, sum);
  } else {
    for (int j = 0; j < k; ++j) sum += __expf(val[j] - m);
  }
  if (lane != 0) return;
  for (int j = 0; j < k; ++j) {
    chosen[t * k + j] = top[j];
    probs[t * k + j] = __expf(val[j] - m) / sum;
  }
}

// Per token: its softmax's max and 1 / Σ exp, and logsumexp².
__global__ void softmax_rows_kernel(float* row_max, float* row_inv, float* lse_sq, const float* logits,
                                    int64_t tokens, int experts) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x >> 5) + (threadIdx.x >> 5);
  if (t >= tokens) return;
  float m, sum;
  row_softmax_stats(logits + t * experts, experts, m, sum);
  if ((threadIdx.x & 31) != 0) return;
  row_max[t] = m;
  row_inv[t] = 1.f / sum;
  const float lse = m + __logf(sum);
  lse_sq[t] = lse * lse;
}

// Block b sums tokens [b·chunk, (b+1)·chunk): per expert (thread) its softmax scores and its routed pairs; thread
// `experts` the tokens' logsumexp². partial [blocks, experts·2 + 1].
__global__ void router_stats_partial_kernel(float* partial, const float* logits, const int32_t* chosen,
                                            const float* row_max, const float* row_inv, const float* lse_sq,
                                            int64_t tokens, int experts, int k, int64_t chunk) {
  const int64_t lo = blockIdx.x * chunk, hi = min(tokens, lo + chunk);
  float* out = partial + blockIdx.x * int64_t(2 * experts + 1);
  for (int e = threadIdx.x; e <= experts; e += blockDim.x) {
    float score = 0.f, count = 0.f;
    for (int64_t t = lo; t < hi; ++t) {
      if (e == experts) {
        score += lse_sq[t];
        continue;
      }
      score += __expf(logits[t * experts + e] - row_max[t]) * row_inv[t];
      for (int j = 0; j < k; ++j) count += chosen[t * k + j] == e;
    }
    if (e == experts) {
      out[2 * experts] = score;
    } else {
      out[e] = score;
      out[experts + e] = count;
    }
  }
}

// out[c] = Σ_b partial[b, c], blocks in order.
__global__ void sum_partials_kernel(float* out, const float* partial, int blocks, int cols) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float s = 0.f;
  for (int b = 0; b < blocks; ++b) s += partial[int64_t(b) * cols + c];
  out[c] = s;
}

__global__ void route_backward_kernel(float* dlogits, const float* dprobs, const float* probs, const int32_t* chosen,
                                      const float* logits, const float* aux_weight, float z_scale, int64_t tokens,
                                      int experts, int k, bool pre_softmax) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x >> 5) + (threadIdx.x >> 5);
  if (t >= tokens) return;
  const int lane = threadIdx.x & 31;
  const float* l = logits + t * experts;
  const int32_t* ex = chosen + t * k;
  const float* dp = dprobs + t * k;
  float m, sum;
  row_softmax_stats(l, experts, m, sum);
  const float lse = m + __logf(sum);
  // g: the gradient with respect to softmax(l) of the terms that read it (aux loss; probs when pre_softmax).
  float sg = 0.f;
  for (int e = lane; e < experts; e += 32) {
    float g = aux_weight ? aux_weight[e] : 0.f;
    if (pre_softmax)
      for (int j = 0; j < k; ++j) g += ex[j] == e ? dp[j] : 0.f;
    sg += __expf(l[e] - m) / sum * g;
  }
  sg = warp_sum(sg);
  float pd = 0.f;
  if (!pre_softmax)
    for (int j = 0; j < k; ++j) pd += probs[t * k + j] * dp[j];
  for (int e = lane; e < experts; e += 32) {
    const float s = __expf(l[e] - m) / sum;
    float g = aux_weight ? aux_weight[e] : 0.f;
    float top = 0.f;
    for (int j = 0; j < k; ++j) {
      if (ex[j] != e) continue;
      if (pre_softmax) g += dp[j];
      else top = probs[t * k + j] * (dp[j] - pd);
    }
    dlogits[t * experts + e] = s * (g - sg) + 2.f * z_scale * lse * s + top;
  }
}

// Sort keys: a pair's expert, dropped pairs (-1) after every expert.
__global__ void dispatch_keys_kernel(int32_t* keys, int32_t* pairs, int* counts, const int32_t* chosen, int64_t n,
                                     int experts) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int32_t e = chosen[i];
  keys[i] = e < 0 ? experts : e;
  pairs[i] = static_cast<int32_t>(i);
  if (e >= 0) atomicAdd(&counts[e], 1);
}

// rows[pair] for the i-th pair in expert order: its expert's first padded row plus its place among the expert's pairs.
__global__ void dispatch_rows_kernel(int32_t* rows, const int32_t* sorted_keys, const int32_t* sorted_pairs,
                                     const int64_t* first_sorted, const int64_t* first_row, int64_t n, int experts) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int32_t e = sorted_keys[i];
  rows[sorted_pairs[i]] = e == experts ? -1 : static_cast<int32_t>(first_row[e] + (i - first_sorted[e]));
}

// Block p moves pair p's token row to its dispatch row.
template <typename T, int V>
__global__ void permute_kernel(T* out, const T* in, const int32_t* rows, int k, int64_t h) {
  const int32_t r = rows[blockIdx.x];
  if (r < 0) return;
  const T* src = in + (blockIdx.x / k) * h;
  T* dst = out + int64_t(r) * h;
  for (int64_t c = threadIdx.x * int64_t(V); c < h; c += int64_t(blockDim.x) * V)
    store_pack(dst + c, load_pack<T, V>(src + c));
}

// Block t sums its pairs' rows in fp32.
template <typename T, int V>
__global__ void unpermute_kernel(T* out, const T* in, const int32_t* rows, int k, int64_t h) {
  const int64_t t = blockIdx.x;
  for (int64_t c = threadIdx.x * int64_t(V); c < h; c += int64_t(blockDim.x) * V) {
    float acc[V] = {};
    for (int j = 0; j < k; ++j) {
      const int32_t r = rows[t * k + j];
      if (r < 0) continue;
      const Pack<T, V> p = load_pack<T, V>(in + int64_t(r) * h + c);
      #pragma unroll
      for (int e = 0; e < V; ++e) acc[e] += to_f(p.v[e]);
    }
    Pack<T, V> o;
    #pragma unroll
    for (int e = 0; e < V; ++e) o.v[e] = from_f<T>(acc[e]);
    store_pack(out + t * h + c, o);
  }
}

template <typename T>
__global__ void pair_values_kernel(T* out, const T* in, const int32_t* rows, int64_t n, bool to_rows) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int32_t r = rows[i];
  if (to_rows) {
    if (r >= 0) out[r] = in[i];
  } else {
    out[i] = r >= 0 ? in[r] : from_f<T>(0.f);
  }
}

// One block per row r: din from dout (the routing weight scale[r] applied), dscale[r] = Σ_i silu(g)·u·dout.
template <typename T, int V>
__global__ void scaled_swiglu_bwd_kernel(T* din, float* dscale, const T* dout, const T* in, const float* scale,
                                         int64_t f) {
  const int64_t r = blockIdx.x;
  const float w = scale[r];
  const T* g_row = in + r * 2 * f;
  float dw = 0.f;
  for (int64_t c = threadIdx.x * int64_t(V); c < f; c += int64_t(blockDim.x) * V) {
    Pack<T, V> gp = load_pack<T, V>(g_row + c), up = load_pack<T, V>(g_row + f + c);
    const Pack<T, V> dp = load_pack<T, V>(dout + r * f + c);
    #pragma unroll
    for (int e = 0; e < V; ++e) {
      const float g = to_f(gp.v[e]), u = to_f(up.v[e]), d = to_f(dp.v[e]);
      const float sig = 1.f / (1.f + __expf(-g));
      dw += g * sig * u * d;
      gp.v[e] = from_f<T>(d * w * u * sig * (1.f + g * (1.f - sig)));
      up.v[e] = from_f<T>(d * w * g * sig);
    }
    store_pack(din + r * 2 * f + c, gp);
    store_pack(din + r * 2 * f + f + c, up);
  }
  dw = block_sum(dw);
  if (threadIdx.x == 0) dscale[r] = dw;
}

template <typename T>
__global__ void sigmoid_kernel(T* y, const T* x, int64_t n) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = from_f<T>(1.f / (1.f + __expf(-to_f(x[i]))));
}

template <typename T>
__global__ void sigmoid_bwd_kernel(T* dx, const T* dy, const T* y, int64_t n) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float v = to_f(y[i]);
  dx[i] = from_f<T>(to_f(dy[i]) * v * (1.f - v));
}

int warp_blocks(int64_t tokens) { return blocks_for(tokens, kThreads / 32); }

void check_routing(const Tensor& logits, const Tensor& pairs, const char* op) {
  WEFT_CHECK(logits.dtype() == DType::f32 && logits.ndim() == 2 && pairs.ndim() == 2 &&
                 pairs.size(0) == logits.size(0) && pairs.size(1) <= kMaxTopk,
             op, ": expected fp32 logits [t, E] and [t, k <= ", kMaxTopk, "] pairs, got ", logits.describe(), " and ",
             pairs.describe());
}

}  // namespace
}  // namespace cuda

using namespace cuda;

void CudaOps::sigmoid(Tensor& y, const Tensor& x) {
  WEFT_CHECK(y.numel() == x.numel() && y.dtype() == x.dtype(), "sigmoid: ", y.describe(), " from ", x.describe());
  if (x.numel() == 0) return;
  dispatch_storage(x, [&](auto tag) {
    using T = typename decltype(tag)::type;
    sigmoid_kernel<<<blocks_for(x.numel(), kThreads), kThreads, 0, stream()>>>(ptr<T>(y), ptr<T>(x), x.numel());
  });
  CUDA_CHECK_LAUNCH();
}

void CudaOps::sigmoid_backward(Tensor& dx, const Tensor& dy, const Tensor& y) {
  WEFT_CHECK(dx.numel() == y.numel() && dy.numel() == y.numel(), "sigmoid_backward: sizes differ");
  if (y.numel() == 0) return;
  dispatch_storage(y, [&](auto tag) {
    using T = typename decltype(tag)::type;
    sigmoid_bwd_kernel<<<blocks_for(y.numel(), kThreads), kThreads, 0, stream()>>>(ptr<T>(dx), ptr<T>(dy), ptr<T>(y),
                                                                                   y.numel());
  });
  CUDA_CHECK_LAUNCH();
}

void CudaOps::moe_route(Tensor& probs, Tensor& experts, const Tensor& logits, const RouterParams& p) {
  check_routing(logits, experts, "moe_route");
  WEFT_CHECK(p.num_groups == 0 && p.scaling == 1.0, "moe_route: group-limited routing and weight scaling are not in "
             "the GPU router kernel yet (the CPU backend has them)");
  const int64_t t = logits.size(0);
  const int n = static_cast<int>(logits.size(1)), k = static_cast<int>(p.topk);
  WEFT_CHECK(probs.dtype() == DType::f32 && probs.numel() == t * k && experts.dtype() == DType::i32 && k <= n,
             "moe_route: probs ", probs.describe(), ", experts ", experts.describe());
  if (t == 0) return;
  route_kernel<<<warp_blocks(t), kThreads, 0, stream()>>>(ptr<float>(probs), ptr<int32_t>(experts),
                                                          ptr<float>(logits), t, n, k, p.pre_softmax);
  CUDA_CHECK_LAUNCH();
}

void CudaOps::moe_router_stats(Tensor& score_sum, Tensor& counts, Tensor& z_sum, const Tensor& logits,
                               const Tensor& experts) {
  check_routing(logits, experts, "moe_router_stats");
  const int64_t t = logits.size(0);
  const int n = static_cast<int>(logits.size(1)), k = static_cast<int>(experts.size(1));
  WEFT_CHECK(score_sum.numel() == n && counts.numel() == n && z_sum.numel() == 1 &&
                 score_sum.dtype() == DType::f32 && counts.dtype() == DType::f32 && z_sum.dtype() == DType::f32,
             "moe_router_stats: fp32 outputs of ", n, ", ", n, " and 1 values expected");
  Tensor rowwise = Tensor::empty({3, std::max<int64_t>(t, 1)}, DType::f32, Device::cuda);
  float* row_max = ptr<float>(rowwise);
  float* row_inv = row_max + rowwise.size(1);
  float* lse_sq = row_inv + rowwise.size(1);
  if (t > 0) {
    softmax_rows_kernel<<<warp_blocks(t), kThreads, 0, stream()>>>(row_max, row_inv, lse_sq, ptr<float>(logits), t, n);
    CUDA_CHECK_LAUNCH();
  }
  const int blocks = static_cast<int>(std::clamp<int64_t>(t / 64, 1, 256));
  const int64_t chunk = (t + blocks - 1) / blocks, cols = 2 * int64_t(n) + 1;
  Tensor partial = Tensor::empty({blocks, cols}, DType::f32, Device::cuda);
  router_stats_partial_kernel<<<blocks, kThreads, 0, stream()>>>(ptr<float>(partial), ptr<float>(logits),
                                                                 ptr<int32_t>(experts), row_max, row_inv, lse_sq, t, n,
                                                                 k, chunk);
  CUDA_CHECK_LAUNCH();
  // The three outputs may be separate tensors: sum into one buffer, then copy each part.
  Tensor sums = Tensor::empty({cols}, DType::f32, Device::cuda);
  sum_partials_kernel<<<blocks_for(cols, kThreads), kThreads, 0, stream()>>>(ptr<float>(sums), ptr<float>(partial),
                                                                             blocks, static_cast<int>(cols));
  CUDA_CHECK_LAUNCH();
  copy_bytes(score_sum.data_ptr(), Device::cuda, ptr<float>(sums), Device::cuda, n * sizeof(float));
  copy_bytes(counts.data_ptr(), Device::cuda, ptr<float>(sums) + n, Device::cuda, n * sizeof(float));
  copy_bytes(z_sum.data_ptr(), Device::cuda, ptr<float>(sums) + 2 * n, Device::cuda, sizeof(float));
}

void CudaOps::moe_route_backward(Tensor& dlogits, const Tensor& dprobs, const Tensor& probs, const Tensor& experts,
                                 const Tensor& logits, const Tensor& aux_weight, double z_scale,
                                 const RouterParams& p) {
  check_routing(logits, experts, "moe_route_backward");
  const int64_t t = logits.size(0);
  const int n = static_cast<int>(logits.size(1)), k = static_cast<int>(p.topk);
  WEFT_CHECK(dlogits.shape() == logits.shape() && dlogits.dtype() == DType::f32 && dprobs.dtype() == DType::f32 &&
                 probs.dtype() == DType::f32 && (!aux_weight.defined() || aux_weight.dtype() == DType::f32),
             "moe_route_backward: fp32 tensors expected");
  if (t == 0) return;
  route_backward_kernel<<<warp_blocks(t), kThreads, 0, stream()>>>(
      ptr<float>(dlogits), ptr<float>(dprobs), ptr<float>(probs), ptr<int32_t>(experts), ptr<float>(logits),
      aux_weight.defined() ? ptr<float>(aux_weight) : nullptr, static_cast<float>(z_scale), t, n, k, p.pre_softmax);
  CUDA_CHECK_LAUNCH();
}

void CudaOps::moe_dispatch_plan(Tensor& rows, std::vector<int64_t>& counts, const Tensor& experts,
                                int64_t num_experts, int64_t pad) {
  WEFT_CHECK(rows.shape() == experts.shape() && rows.dtype() == DType::i32 && experts.dtype() == DType::i32,
             "moe_dispatch_plan: rows ", rows.describe(), ", experts ", experts.describe());
  const int64_t n = experts.numel();
  const int E = static_cast<int>(num_experts);
  Tensor keys = Tensor::empty({2, std::max<int64_t>(n, 1)}, DType::i32, Device::cuda);
  Tensor sorted = Tensor::empty({2, std::max<int64_t>(n, 1)}, DType::i32, Device::cuda);
  Tensor device_counts = Tensor::zeros({E}, DType::i32, Device::cuda);
  int32_t *key = ptr<int32_t>(keys), *pair = key + keys.size(1);
  int32_t *sorted_key = ptr<int32_t>(sorted), *sorted_pair = sorted_key + sorted.size(1);
  if (n > 0) {
    dispatch_keys_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(key, pair, ptr<int>(device_counts),
                                                                           ptr<int32_t>(experts), n, E);
    CUDA_CHECK_LAUNCH();
    int bits = 1;
    while ((1 << bits) <= E) ++bits;
    size_t scratch_bytes = 0;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, scratch_bytes, key, sorted_key, pair, sorted_pair,
                                               static_cast<int>(n), 0, bits, stream()));
    Tensor scratch = Tensor::empty({static_cast<int64_t>(scratch_bytes) + 1}, DType::u8, Device::cuda);
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(scratch.data_ptr(), scratch_bytes, key, sorted_key, pair, sorted_pair,
                                               static_cast<int>(n), 0, bits, stream()));
  }
  const std::vector<double> host = device_counts.to_doubles();  // waits for the device: the plan needs the counts
  counts.assign(static_cast<size_t>(E), 0);
  std::vector<int64_t> first(2 * static_cast<size_t>(E), 0);  // [first sorted position | first row] per expert
  for (int e = 0, sorted_at = 0, row = 0; e < E; ++e) {
    counts[e] = static_cast<int64_t>(host[e]);
    WEFT_CHECK(pad == 0 || counts[e] <= pad, "moe_dispatch_plan: expert ", e, " has ", counts[e],
               " pairs, more than its ", pad, " rows");
    first[e] = sorted_at;
    first[E + e] = row;
    sorted_at += static_cast<int>(counts[e]);
    row += static_cast<int>(pad > 0 ? pad : counts[e]);
  }
  if (pad > 0) counts.assign(static_cast<size_t>(E), pad);
  if (n == 0) return;
  const Tensor firsts = Tensor::from_vector(first, {2 * int64_t(E)}).to(Device::cuda);
  dispatch_rows_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(
      ptr<int32_t>(rows), sorted_key, sorted_pair, ptr<int64_t>(firsts), ptr<int64_t>(firsts) + E, n, E);
  CUDA_CHECK_LAUNCH();
}

void CudaOps::moe_permute(Tensor& out, const Tensor& in, const Tensor& rows) {
  WEFT_CHECK(in.ndim() == 2 && out.ndim() == 2 && in.size(1) == out.size(1) && in.dtype() == out.dtype() &&
                 rows.ndim() == 2 && rows.size(0) == in.size(0) && rows.dtype() == DType::i32,
             "moe_permute: out ", out.describe(), ", in ", in.describe(), ", rows ", rows.describe());
  if (rows.numel() == 0 || in.size(1) == 0) return;
  const int64_t h = in.size(1);
  dispatch_storage(in, [&](auto tag) {
    using T = typename decltype(tag)::type;
    with_pack<kPack<T>>(packs_fit<T>(h, {out.data_ptr(), in.data_ptr()}), [&](auto v) {
      permute_kernel<T, v><<<rows.numel(), kThreads, 0, stream()>>>(ptr<T>(out), ptr<T>(in), ptr<int32_t>(rows),
                                                                     static_cast<int>(rows.size(1)), h);
    });
  });
  CUDA_CHECK_LAUNCH();
}

void CudaOps::moe_unpermute(Tensor& out, const Tensor& in, const Tensor& rows) {
  WEFT_CHECK(in.ndim() == 2 && out.ndim() == 2 && in.size(1) == out.size(1) && in.dtype() == out.dtype() &&
                 rows.ndim() == 2 && rows.size(0) == out.size(0) && rows.dtype() == DType::i32,
             "moe_unpermute: out ", out.describe(), ", in ", in.describe(), ", rows ", rows.describe());
  if (out.numel() == 0) return;
  const int64_t h = out.size(1);
  dispatch_storage(in, [&](auto tag) {
    using T = typename decltype(tag)::type;
    with_pack<kPack<T>>(packs_fit<T>(h, {out.data_ptr(), in.data_ptr()}), [&](auto v) {
      unpermute_kernel<T, v><<<out.size(0), kThreads, 0, stream()>>>(ptr<T>(out), ptr<T>(in), ptr<int32_t>(rows),
                                                                      static_cast<int>(rows.size(1)), h);
    });
  });
  CUDA_CHECK_LAUNCH();
}

void CudaOps::moe_pair_values(Tensor& out, const Tensor& in, const Tensor& rows, bool to_rows) {
  const int64_t n = rows.numel();
  WEFT_CHECK((to_rows ? in.numel() : out.numel()) == n && in.dtype() == out.dtype(), "moe_pair_values: ", n,
             " pairs, in ", in.describe(), ", out ", out.describe());
  if (n == 0) return;
  dispatch_storage(in, [&](auto tag) {
    using T = typename decltype(tag)::type;
    pair_values_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(ptr<T>(out), ptr<T>(in),
                                                                           ptr<int32_t>(rows), n, to_rows);
  });
  CUDA_CHECK_LAUNCH();
}

void CudaOps::moe_swiglu_backward(Tensor& din, Tensor& dscale, const Tensor& dout, const Tensor& in,
                                  const Tensor& scale) {
  const int64_t f = dout.size(-1), rows = dout.numel() / f;
  WEFT_CHECK(din.shape() == in.shape() && scale.dtype() == DType::f32 && dscale.dtype() == DType::f32 &&
                 scale.numel() == rows && dscale.numel() == rows,
             "moe_swiglu_backward: din ", din.describe(), ", in ", in.describe(), ", scale ", scale.describe());
  if (rows == 0) return;
  dispatch_storage(in, [&](auto tag) {
    using T = typename decltype(tag)::type;
    with_pack<kPack<T>>(packs_fit<T>(f, {din.data_ptr(), dout.data_ptr(), in.data_ptr()}), [&](auto v) {
      scaled_swiglu_bwd_kernel<T, v><<<rows, kThreads, 0, stream()>>>(ptr<T>(din), ptr<float>(dscale), ptr<T>(dout),
                                                                      ptr<T>(in), ptr<float>(scale), f);
    });
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace weft
