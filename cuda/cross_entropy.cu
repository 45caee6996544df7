// weft/cuda/cross_entropy.cu v1 — vocab-parallel cross-entropy: row max, Σexp and target logit, loss, and the
// gradient written over the logits (the softmax itself is never stored).
#include "common.cuh"
#include "cuda_ops.h"

namespace weft {
namespace cuda {
namespace {

constexpr int kThreads = 512;

template <typename T>
__global__ void ce_max_kernel(float* row_max, const T* logits, int64_t cols, int64_t valid) {
  const T* x = logits + blockIdx.x * cols;
  float m = -INFINITY;
  for (int64_t c = threadIdx.x; c < valid; c += blockDim.x) m = fmaxf(m, to_f(x[c]));
  m = block_max(m);
  if (threadIdx.x == 0) row_max[blockIdx.x] = m;
}

template <typename T>
__global__ void ce_sums_kernel(float* sum_exp, float* target, const T* logits, const float* row_max,
                               const int32_t* labels, int64_t cols, int64_t valid, int64_t start) {
  const int64_t r = blockIdx.x;
  const T* x = logits + r * cols;
  const float m = row_max[r];
  float s = 0.f;
  for (int64_t c = threadIdx.x; c < valid; c += blockDim.x) s += __expf(to_f(x[c]) - m);
  s = block_sum(s);
  if (threadIdx.x == 0) {
    sum_exp[r] = s;
    const int64_t t = int64_t(labels[r]) - start;
    target[r] = (t >= 0 && t < valid) ? to_f(x[t]) : 0.f;
  }
}

__global__ void ce_loss_kernel(float* loss, const float* row_max, const float* sum_exp, const float* target, int64_t n) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < n) loss[i] = logf(sum_exp[i]) + row_max[i] - target[i];
}

template <typename T>
__global__ void ce_bwd_kernel(T* dlogits, const T* logits, const float* row_max, const float* sum_exp,
                              const int32_t* labels, const float* row_scale, int64_t cols, int64_t valid, int64_t start) {
  const int64_t r = blockIdx.x;
  const float m = row_max[r], inv = 1.f / sum_exp[r], sc = row_scale[r];
  const int64_t target = int64_t(labels[r]) - start;
  const T* x = logits + r * cols;
  T* d = dlogits + r * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    float g = 0.f;
    if (c < valid) g = __expf(to_f(x[c]) - m) * inv - (c == target ? 1.f : 0.f);
    d[c] = from_f<T>(sc * g);
  }
}

void check_stats(const Tensor& t, const char* what) {
  WEFT_CHECK(t.dtype() == DType::f32 && t.device() == Device::cuda, "CUDA cross-entropy: ", what, " must be f32 on the GPU");
}

}  // namespace
}  // namespace cuda

using namespace cuda;

void CudaOps::cross_entropy_max(Tensor& row_max, const Tensor& logits, int64_t valid_cols) {
  check_stats(row_max, "row_max");
  const int64_t rows = logits.size(0), cols = logits.size(1);
  if (rows == 0) return;
  dispatch_storage(logits, [&](auto tag_T) {
    using T = typename decltype(tag_T)::type;
    ce_max_kernel<<<rows, kThreads, 0, stream()>>>(ptr<float>(row_max), ptr<T>(logits), cols, std::min(valid_cols, cols));
  });
  CUDA_CHECK_LAUNCH();
}

void CudaOps::cross_entropy_sums(Tensor& sum_exp, Tensor& target_logit, const Tensor& logits, const Tensor& row_max,
                                 const Tensor& labels, int64_t vocab_start, int64_t valid_cols) {
  check_stats(sum_exp, "sum_exp");
  const int64_t rows = logits.size(0), cols = logits.size(1);
  if (rows == 0) return;
  dispatch_storage(logits, [&](auto tag_T) {
    using T = typename decltype(tag_T)::type;
    ce_sums_kernel<<<rows, kThreads, 0, stream()>>>(ptr<float>(sum_exp), ptr<float>(target_logit), ptr<T>(logits),
                                                    ptr<float>(row_max), ptr<int32_t>(labels), cols,
                                                    std::min(valid_cols, cols), vocab_start);
  });
  CUDA_CHECK_LAUNCH();
}

void CudaOps::cross_entropy_loss(Tensor& loss, const Tensor& row_max, const Tensor& sum_exp,
                                 const Tensor& target_logit) {
  check_stats(loss, "loss");
  const int64_t n = loss.numel();
  if (n == 0) return;
  ce_loss_kernel<<<blocks_for(n, 256), 256, 0, stream()>>>(ptr<float>(loss), ptr<float>(row_max), ptr<float>(sum_exp),
                                                           ptr<float>(target_logit), n);
  CUDA_CHECK_LAUNCH();
}

void CudaOps::cross_entropy_backward(Tensor& dlogits, const Tensor& logits, const Tensor& row_max,
                                     const Tensor& sum_exp, const Tensor& labels, const Tensor& row_scale,
                                     int64_t vocab_start, int64_t valid_cols) {
  check_stats(row_scale, "row_scale");
  const int64_t rows = logits.size(0), cols = logits.size(1);
  if (rows == 0) return;
  dispatch_storage(logits, [&](auto tag_T) {
    using T = typename decltype(tag_T)::type;
    ce_bwd_kernel<<<rows, kThreads, 0, stream()>>>(ptr<T>(dlogits), ptr<T>(logits), ptr<float>(row_max),
                                                   ptr<float>(sum_exp), ptr<int32_t>(labels), ptr<float>(row_scale),
                                                   cols, std::min(valid_cols, cols), vocab_start);
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace weft
