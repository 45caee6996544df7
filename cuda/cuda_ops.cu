// weft/cuda/cuda_ops.cu v11 — CUDA backend: device set-up, streams, memory, elementwise ops, bias, reductions, AdamW.
#include <cublasLt.h>
#include <nccl.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "allocator.h"
#include "common.cuh"
#include "cuda_ops.h"
#include "event_marks.h"
#include "nccl_comm.h"
#include "ops/device.h"

namespace weft {
namespace cuda {

namespace {
// The stream the ops queue on: the main stream, or the side stream between use_side_queue(true) and (false). The
// side stream has the lowest priority and the main stream the next one up, so that the block scheduler gives the
// side work only the SMs that the main stream's kernels leave idle (their tails, the gaps between them), and the
// communicators' streams (nccl_comm.cpp, the highest) still come first.
cudaStream_t g_stream = nullptr, g_main = nullptr, g_side = nullptr;
cudaEvent_t g_fork = nullptr;        // recorded on the main stream when the side stream takes over
EventMarks* g_side_marks = nullptr;  // side_mark's marks on the side stream (made with it, kept as long)
}

cudaStream_t stream() { return g_stream; }

namespace {

template <typename D, typename S>
__global__ void convert_kernel(D* dst, const S* src, int64_t n) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < n) dst[i] = static_cast<D>(src[i]);
}
__global__ void f32_to_bf16(bf16_t* dst, const float* src, int64_t n) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < n) dst[i] = __float2bfloat16(src[i]);
}
__global__ void bf16_to_f32(float* dst, const bf16_t* src, int64_t n) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < n) dst[i] = __bfloat162float(src[i]);
}

template <typename Y, typename X, int V>
__global__ void add_kernel(Y* y, const X* x, float alpha, int64_t n) {
  const int64_t i = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * V;
  if (i >= n) return;
  Pack<Y, V> yp = load_pack<Y, V>(y + i);
  const Pack<X, V> xp = load_pack<X, V>(x + i);
  #pragma unroll
  for (int e = 0; e < V; ++e) yp.v[e] = from_f<Y>(to_f(yp.v[e]) + alpha * to_f(xp.v[e]));
  store_pack(y + i, yp);
}

template <typename T>
__global__ void scale_kernel(T* y, float alpha, int64_t n) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = from_f<T>(alpha * to_f(y[i]));
}

// Σ x² per block in fp32, into partial[block] (summed on the host in block order: no atomics, so repeatable).
// Each thread keeps kSquaresInFlight packs of V loading at once: with one 2-byte load per step the gradient norm
// read 3 GB of bf16 gradients at 1.4 TB/s (ncu, H200, 1.5B step).
constexpr int kSquaresInFlight = 4;
template <typename T, int V>
__global__ void sum_squares_kernel(const T* x, int64_t n, double* partial) {
  const int64_t packs = n / V, stride = int64_t(gridDim.x) * blockDim.x;
  float s = 0.f;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < packs; i += kSquaresInFlight * stride) {
    Pack<T, V> p[kSquaresInFlight];
    #pragma unroll
    for (int k = 0; k < kSquaresInFlight; ++k)
      if (i + k * stride < packs) p[k] = load_pack<T, V>(x + (i + k * stride) * V);
    #pragma unroll
    for (int k = 0; k < kSquaresInFlight; ++k)
      #pragma unroll
      for (int e = 0; e < V; ++e) {
        const float v = i + k * stride < packs ? to_f(p[k].v[e]) : 0.f;
        s += v * v;
      }
  }
  for (int64_t i = packs * V + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) {
    const float v = to_f(x[i]);
    s += v * v;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = static_cast<double>(s);
}

template <typename T>
__global__ void bias_add_kernel(T* y, const T* b, int64_t rows, int64_t cols) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < rows * cols) y[i] = from_f<T>(to_f(y[i]) + to_f(b[i % cols]));
}

// The device twins of split_master and join_master (src/optim/split_master.h): an fp32 master as its bf16 model
// weight, rounded to nearest with ties toward zero, and its low 16 bits.
__device__ __forceinline__ void split_master(float x, bf16_t& value, uint16_t& low) {
  const uint32_t u = __float_as_uint(x);
  low = static_cast<uint16_t>(u & 0xffffu);
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  value = __ushort_as_bfloat16(static_cast<uint16_t>(nan ? (u >> 16) | 0x40u : (u >> 16) + (low > 0x8000u)));
}
__device__ __forceinline__ float join_master(bf16_t value, uint16_t low) {
  const uint16_t high = static_cast<uint16_t>(__bfloat16_as_ushort(value) - (low > 0x8000u));
  return __uint_as_float((static_cast<uint32_t>(high) << 16) | low);
}

// AdamW on fp32 masters, torch.optim.AdamW's arrangement; the gradient clipped by grad_scale on the way in and the
// model's copy written on the way out, so neither takes a pass of its own over the parameters. The masters W are
// fp32, or (W = uint16_t, train.master_weights = split) the low halves that complete the bf16 model copy to them.
// Moments M are fp32 or bf16 (stored rounded; the step uses the values before rounding, as the CPU reference
// does), gradients G fp32 or bf16 (train.grad_dtype). Each thread steps P consecutive parameters; the first
// `decayed` take weight decay.
template <typename W, typename V, typename M, typename G, int P>
__global__ void adamw_kernel(W* w, V* value, const G* g, M* m, M* v, int64_t n, int64_t decayed, float lr,
                             float b1, float b2, float eps, float decay, float bc1, float bc2_sqrt,
                             float grad_scale) {
  constexpr bool kSplit = std::is_same_v<W, uint16_t>;
  static_assert(!kSplit || std::is_same_v<V, bf16_t>, "split masters complete a bf16 model copy");
  const int64_t i = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * P;
  if (i >= n) return;
  Pack<W, P> wp = load_pack<W, P>(w + i);
  const Pack<G, P> gp = load_pack<G, P>(g + i);
  Pack<M, P> mp = load_pack<M, P>(m + i), vp = load_pack<M, P>(v + i);
  Pack<V, P> out;
  if constexpr (kSplit) out = load_pack<V, P>(value + i);
  #pragma unroll
  for (int k = 0; k < P; ++k) {
    const float gi = to_f(gp.v[k]) * grad_scale;
    const float mi = b1 * to_f(mp.v[k]) + (1.f - b1) * gi;
    const float vi = b2 * to_f(vp.v[k]) + (1.f - b2) * gi * gi;
    mp.v[k] = from_f<M>(mi);
    vp.v[k] = from_f<M>(vi);
    const float denom = sqrtf(vi) / bc2_sqrt + eps;
    float wi;
    if constexpr (kSplit) wi = join_master(out.v[k], wp.v[k]);
    else wi = wp.v[k];
    wi = wi * (i + k < decayed ? decay : 1.f) - (lr / bc1) * mi / denom;
    if constexpr (kSplit) split_master(wi, out.v[k], wp.v[k]);
    else {
      wp.v[k] = wi;
      out.v[k] = from_f<V>(wi);
    }
  }
  store_pack(w + i, wp);
  store_pack(m + i, mp);
  store_pack(v + i, vp);
  store_pack(value + i, out);
}

}  // namespace
}  // namespace cuda

using namespace cuda;

CudaOps::CudaOps() = default;

void* CudaOps::allocate(size_t bytes) { return device_allocator().allocate(bytes); }
void CudaOps::deallocate(void* p) { device_allocator().deallocate(p); }

void CudaOps::copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  const cudaMemcpyKind kind = dst_device == Device::cuda
                                  ? (src_device == Device::cuda ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                  : cudaMemcpyDeviceToHost;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, stream()));
  if (kind != cudaMemcpyDeviceToDevice) CUDA_CHECK(cudaStreamSynchronize(stream()));  // host memory is pageable
}

void CudaOps::zero(Tensor& t) {
  if (t.nbytes()) CUDA_CHECK(cudaMemsetAsync(t.data_ptr(), 0, t.nbytes(), stream()));
}

void CudaOps::synchronize() { CUDA_CHECK(cudaStreamSynchronize(stream())); }

size_t CudaOps::peak_memory() { return device_allocator().peak_bytes_in_use(); }

void CudaOps::use_side_queue(bool on) {
  if (!on) {
    g_stream = g_main;
    return;
  }
  if (!g_side) {
    int least = 0, greatest = 0;
    CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    CUDA_CHECK(cudaStreamCreateWithPriority(&g_side, cudaStreamNonBlocking, least));
    CUDA_CHECK(cudaEventCreateWithFlags(&g_fork, cudaEventDisableTiming));
    g_side_marks = new EventMarks();
  }
  CUDA_CHECK(cudaEventRecord(g_fork, g_main));
  CUDA_CHECK(cudaStreamWaitEvent(g_side, g_fork, 0));
  g_stream = g_side;
}

int CudaOps::side_mark() {
  return g_side ? g_side_marks->record(g_side) : -1;
}

void CudaOps::wait_side(int mark) {
  if (mark >= 0) CUDA_CHECK(cudaStreamWaitEvent(g_main, g_side_marks->event(mark), 0));
}

void CudaOps::join_side() {
  if (!g_side) return;
  wait_side(side_mark());
  g_side_marks->forget();
}

void CudaOps::convert(Tensor& dst, const Tensor& src) {
  WEFT_CHECK(dst.numel() == src.numel(), "convert: size mismatch ", dst.describe(), " vs ", src.describe());
  const int64_t n = src.numel();
  if (n == 0) return;
  const int threads = 256, blocks = blocks_for(n, threads);
  if (dst.dtype() == src.dtype()) {
    CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), src.nbytes(), cudaMemcpyDeviceToDevice, stream()));
  } else if (dst.dtype() == DType::bf16 && src.dtype() == DType::f32) {
    f32_to_bf16<<<blocks, threads, 0, stream()>>>(ptr<bf16_t>(dst), ptr<float>(src), n);
  } else if (dst.dtype() == DType::f32 && src.dtype() == DType::bf16) {
    bf16_to_f32<<<blocks, threads, 0, stream()>>>(ptr<float>(dst), ptr<bf16_t>(src), n);
  } else if (dst.dtype() == DType::i32 && src.dtype() == DType::i64) {
    convert_kernel<<<blocks, threads, 0, stream()>>>(ptr<int32_t>(dst), ptr<int64_t>(src), n);
  } else if (dst.dtype() == DType::f32 && src.dtype() == DType::i32) {
    convert_kernel<<<blocks, threads, 0, stream()>>>(ptr<float>(dst), ptr<int32_t>(src), n);
  } else {
    fail(str("CUDA convert: ", src.describe(), " → ", dst.describe(), " is not supported"));
  }
  CUDA_CHECK_LAUNCH();
}

void CudaOps::add(Tensor& y, const Tensor& x, double alpha) {
  WEFT_CHECK(y.numel() == x.numel(), "add: size mismatch ", y.describe(), " vs ", x.describe());
  const int64_t n = y.numel();
  if (n == 0) return;
  dispatch_storage(y, [&](auto tag_Y) {
    using Y = typename decltype(tag_Y)::type;
    dispatch_storage(x, [&](auto tag_X) {
      using X = typename decltype(tag_X)::type;
      using Wider = std::conditional_t<(sizeof(X) > sizeof(Y)), X, Y>;
      with_pack<kPack<Wider>>(packs_fit<Wider>(n, {y.data_ptr(), x.data_ptr()}), [&](auto v) {
        add_kernel<Y, X, v><<<blocks_for(n / v, 256), 256, 0, stream()>>>(ptr<Y>(y), ptr<X>(x),
                                                                          static_cast<float>(alpha), n);
      });
    });
  });
  CUDA_CHECK_LAUNCH();
}

void CudaOps::scale(Tensor& y, double alpha) {
  const int64_t n = y.numel();
  if (n == 0) return;
  dispatch_storage(y, [&](auto tag_T) {
    using T = typename decltype(tag_T)::type;
    scale_kernel<<<blocks_for(n, 256), 256, 0, stream()>>>(ptr<T>(y), static_cast<float>(alpha), n);
  });
  CUDA_CHECK_LAUNCH();
}

double CudaOps::sum_squares(const std::vector<Tensor>& xs) {
  constexpr int kThreads = 512;
  // Four 512-thread blocks fill an SM's 2,048 threads: a grid of one resident wave leaves no second, part-empty one.
  // Each tensor's blocks write their partial sums to its own stretch of one buffer, read back once.
  std::vector<int> blocks;
  int64_t all_blocks = 0;
  for (const Tensor& x : xs) {
    blocks.push_back(x.numel() == 0 ? 0 : std::min(blocks_for(x.numel(), kThreads), 4 * sm_count()));
    all_blocks += blocks.back();
  }
  if (all_blocks == 0) return 0.0;
  Tensor partial = Tensor::empty({all_blocks}, DType::f64, Device::cuda);
  int64_t at = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (blocks[i] == 0) continue;
    const Tensor& x = xs[i];
    dispatch_storage(x, [&](auto tag_T) {
      using T = typename decltype(tag_T)::type;
      with_pack<kPack<T>>(packs_fit<T>(kPack<T>, {x.data_ptr()}), [&](auto v) {
        sum_squares_kernel<T, v>
            <<<blocks[i], kThreads, 0, stream()>>>(ptr<T>(x), x.numel(), ptr<double>(partial) + at);
      });
    });
    CUDA_CHECK_LAUNCH();
    at += blocks[i];
  }
  const Tensor host = partial.to(Device::cpu);
  double total = 0.0;
  at = 0;
  for (int b : blocks) {  // each tensor's partials in order, then the tensors in order
    double sum = 0.0;
    for (int k = 0; k < b; ++k) sum += host.data<double>()[at + k];
    total += sum;
    at += b;
  }
  return total;
}

void CudaOps::bias_add(Tensor& y, const Tensor& bias) {
  const int64_t cols = bias.numel(), rows = y.numel() / cols;
  WEFT_CHECK(rows * cols == y.numel() && bias.dtype() == y.dtype(), "bias_add: ", bias.describe(), " does not tile ",
             y.describe());
  dispatch_storage(y, [&](auto tag_T) {
    using T = typename decltype(tag_T)::type;
    bias_add_kernel<<<blocks_for(y.numel(), 256), 256, 0, stream()>>>(ptr<T>(y), ptr<T>(bias), rows, cols);
  });
  CUDA_CHECK_LAUNCH();
}

void CudaOps::adamw(Tensor& param, Tensor& value, const Tensor& grad, Tensor& m, Tensor& v,
                    const AdamWParams& p) {
  const bool split = param.dtype() == DType::u16;
  WEFT_CHECK((param.dtype() == DType::f32 || (split && value.dtype() == DType::bf16)) && m.dtype() == v.dtype() &&
                 (m.dtype() == DType::f32 || m.dtype() == DType::bf16) && param.numel() == grad.numel() &&
                 value.numel() == param.numel(),
             "CUDA adamw works on fp32 master weights (or the low halves of split ones beside a bf16 model copy), "
             "fp32 or bf16 grads and moments and a model copy of their length; got ", param.describe(), ", ",
             grad.describe(), ", ", m.describe(), ", ", value.describe());
  const int64_t n = param.numel();
  if (n == 0) return;
  const float bc1 = static_cast<float>(1 - std::pow(p.beta1, double(p.step)));
  const float bc2 = static_cast<float>(std::sqrt(1 - std::pow(p.beta2, double(p.step))));
  // Four parameters per thread when every array's part starts on a boundary of four of its elements.
  const auto aligned = [&](const Tensor& t) {
    return reinterpret_cast<uintptr_t>(t.data_ptr()) % (4 * dtype_size(t.dtype())) == 0;
  };
  const bool fits = n % 4 == 0 && aligned(param) && aligned(grad) && aligned(m) && aligned(v) && aligned(value);
  const auto launch = [&](auto tag_W, auto tag_V) {
    dispatch_storage(m, [&](auto tag_M) {
      dispatch_storage(grad, [&](auto tag_G) {
        with_pack<4>(fits, [&](auto pack) {
          using W = typename decltype(tag_W)::type;
          using V = typename decltype(tag_V)::type;
          using M = typename decltype(tag_M)::type;
          using G = typename decltype(tag_G)::type;
          constexpr int P = decltype(pack)::value;
          adamw_kernel<W, V, M, G, P><<<blocks_for(n / P, 256), 256, 0, stream()>>>(
              ptr<W>(param), ptr<V>(value), ptr<G>(grad), ptr<M>(m), ptr<M>(v), n, p.decayed,
              static_cast<float>(p.lr),
              static_cast<float>(p.beta1), static_cast<float>(p.beta2), static_cast<float>(p.eps),
              static_cast<float>(1 - p.lr * p.weight_decay), bc1, bc2, static_cast<float>(p.grad_scale));
        });
      });
    });
  };
  if (split) launch(Type<uint16_t>{}, Type<bf16_t>{});
  else dispatch_storage(value, [&](auto tag_V) { launch(Type<float>{}, tag_V); });
  CUDA_CHECK_LAUNCH();
}

bool cuda_device_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

bool enable_cuda_backend(int local_rank) {
  static CudaOps* ops = nullptr;
  if (ops) return true;
  if (!cuda_device_available()) return false;
  int count = 0;
  CUDA_CHECK(cudaGetDeviceCount(&count));
  const int device = local_rank % count;
  CUDA_CHECK(cudaSetDevice(device));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  // The kernels exist for sm_90a only: another GPU would fail at the first launch with a less helpful message.
  WEFT_CHECK(prop.major == 9 && prop.minor == 0, "weft's CUDA backend is built for Hopper GPUs (sm_90a); GPU ", device,
             " is ", prop.name, " (compute capability ", prop.major, ".", prop.minor, ")");
  int least = 0, greatest = 0;
  CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  CUDA_CHECK(cudaStreamCreateWithPriority(&cuda::g_main, cudaStreamNonBlocking, std::max(greatest, least - 1)));
  cuda::g_stream = cuda::g_main;
  ops = new CudaOps();
  register_ops(Device::cuda, ops);
  device_support().comm_factory = make_nccl_comm;
  device_support().set_gemm_autotune = set_gemm_autotune;
  device_support().memory_free = [] {
    size_t free = 0, total = 0;
    CUDA_CHECK(cudaMemGetInfo(&free, &total));
    return free;
  };
  return true;
}

namespace {

std::string cuda_versions() {
  int runtime = 0, driver = 0, nccl = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  ncclGetVersion(&nccl);
  const std::string driver_text = driver == 0 ? "no GPU driver" : str("driver ", driver / 1000, ".", driver % 1000 / 10);
  return str("CUDA runtime ", runtime / 1000, ".", runtime % 1000 / 10, " (", driver_text, "), cuBLASLt ",
             cublasLtGetVersion(), ", NCCL ", nccl / 10000, ".", nccl / 100 % 100, ".", nccl % 100);
}

}  // namespace

void install_cuda_support() {
  device_support().enable = enable_cuda_backend;
  device_support().versions = cuda_versions;
}

}  // namespace weft
