// weft/cuda/common.cuh v4 — what every kernel file shares: the backend's stream, dtype dispatch, bf16 conversion,
// warp and block reductions, launch checking.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "cuda_check.h"
#include "stream.h"
#include "tensor/tensor.h"

namespace weft::cuda {

using bf16_t = __nv_bfloat16;

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(bf16_t x) { return __bfloat162float(x); }
template <typename T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) { return x; }
template <>
__device__ __forceinline__ bf16_t from_f<bf16_t>(float x) { return __float2bfloat16(x); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[32];
  __syncthreads();  // the buffer may still be in use by a previous call
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < int(blockDim.x >> 5) ? partial[lane] : 0.f;  // every warp reduces the partials itself
  return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v) {
  __shared__ float partial[32];
  __syncthreads();
  v = warp_max(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < int(blockDim.x >> 5) ? partial[lane] : -INFINITY;
  return warp_max(v);
}

inline int blocks_for(int64_t n, int threads) { return static_cast<int>((n + threads - 1) / threads); }

// Elementwise kernels move V consecutive elements per access: one 16-byte load (8 bf16, 4 floats) where the rows
// allow it, since 2-byte accesses leave a memory-bound kernel at a third of the bandwidth (ncu, H200).
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};
template <typename T, int V>
__device__ __forceinline__ Pack<T, V> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, V>*>(p);
}
template <typename T, int V>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, V>& x) {
  *reinterpret_cast<Pack<T, V>*>(p) = x;
}
// The widest pack of T: 16 bytes.
template <typename T>
constexpr int kPack = 16 / sizeof(T);
// Whether rows of `row_elements` elements of T at these addresses can be moved in packs of kPack<T>: every row
// start then falls on a 16-byte boundary.
template <typename T>
bool packs_fit(int64_t row_elements, std::initializer_list<const void*> bases) {
  if (row_elements % kPack<T> != 0) return false;
  for (const void* p : bases)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}
// Calls f(std::integral_constant<int, V>{}) when `fits`, else f(std::integral_constant<int, 1>{}).
template <int V, typename F>
void with_pack(bool fits, F&& f) {
  if (fits) f(std::integral_constant<int, V>{});
  else f(std::integral_constant<int, 1>{});
}

template <typename T>
struct Type {
  using type = T;
};
// Calls f(Type<T>{}) with T = float or bf16_t for the tensor's dtype (C++17: nvcc builds these files as C++17).
template <typename F>
decltype(auto) dispatch_storage(const Tensor& t, F&& f) {
  switch (t.dtype()) {
    case DType::f32: return f(Type<float>{});
    case DType::bf16: return f(Type<bf16_t>{});
    default: fail(str("CUDA op: expected an f32 or bf16 tensor, got ", t.describe()));
  }
}

// A pointer to a tensor's data as T (the dtype is checked by the dispatch that chose T).
template <typename T>
T* ptr(const Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

// The current GPU's SM count (asked once: kernels that size their grid to one resident wave ask on every launch).
inline int sm_count() {
  static const int sms = [] {
    int device = 0, value = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrMultiProcessorCount, device));
    return value;
  }();
  return sms;
}

// Lets a kernel launch with `bytes` of dynamic shared memory, more than the default 48 KiB; `what` names the
// launch in the error when the GPU's per-block limit is below that.
template <typename Kernel>
void allow_dynamic_smem(Kernel kernel, size_t bytes, const char* what = "kernel") {
  static const int limit = [] {
    int device = 0, value = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    return value;
  }();
  WEFT_CHECK(bytes <= size_t(limit), what, " needs ", bytes, " bytes of shared memory per block; this GPU allows ",
             limit);
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

}  // namespace weft::cuda
