// weft/cuda/allocator.cpp v1 — size-class caching on top of cudaMalloc.
#include "allocator.h"

#include <algorithm>

#include "cuda_check.h"

namespace weft {

size_t CachingAllocator::round_size(size_t bytes) {
  constexpr size_t kSmall = 512, kLarge = size_t(2) << 20;
  if (bytes == 0) bytes = 1;
  if (bytes <= (size_t(1) << 20)) return (bytes + kSmall - 1) / kSmall * kSmall;
  return (bytes + kLarge - 1) / kLarge * kLarge;
}

void* CachingAllocator::allocate(size_t bytes) {
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  void* ptr = nullptr;
  auto it = free_.find(size);
  if (it != free_.end() && !it->second.empty()) {
    ptr = it->second.back();
    it->second.pop_back();
  } else {
    cudaError_t st = cudaMalloc(&ptr, size);
    if (st == cudaErrorMemoryAllocation) {
      // Give the cache back and try once more before failing.
      cudaGetLastError();
      for (auto& [s, blocks] : free_)
        for (void* p : blocks) {
          CUDA_CHECK(cudaFree(p));
          reserved_ -= s;
        }
      free_.clear();
      st = cudaMalloc(&ptr, size);
    }
    if (st != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      fail(str("out of GPU memory: asked for ", size >> 20, " MiB with ", in_use_ >> 20, " MiB in use, ",
               free_b >> 20, " MiB free of ", total_b >> 20, " MiB (lower train.micro_batch_size, or use "
               "train.recompute / more model parallelism)"));
    }
    reserved_ += size;
  }
  live_[ptr] = size;
  in_use_ += size;
  peak_ = std::max(peak_, in_use_);
  return ptr;
}

void CachingAllocator::deallocate(void* ptr) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  WEFT_ASSERT(it != live_.end());
  in_use_ -= it->second;
  free_[it->second].push_back(ptr);
  live_.erase(it);
}

void CachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [s, blocks] : free_)
    for (void* p : blocks) {
      cudaFree(p);
      reserved_ -= s;
    }
  free_.clear();
}

CachingAllocator::~CachingAllocator() { release_cached(); }

CachingAllocator& device_allocator() {
  static CachingAllocator* a = new CachingAllocator();  // outlives static tensors at exit
  return *a;
}

}  // namespace weft
