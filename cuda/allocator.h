// weft/cuda/allocator.h v1 — a caching device allocator.
//
// Training allocates and frees the same activation sizes every step; cudaMalloc/cudaFree synchronise the device
// and cost tens of microseconds each. Freed blocks are kept in per-size free lists (sizes rounded up to 512 bytes,
// or to 2 MiB above 1 MiB) and handed out again; all work runs on one stream, so a block freed by the host is
// safe to reuse by the next kernel queued on it.
#pragma once
#include <cstddef>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace weft {

class CachingAllocator {
 public:
  ~CachingAllocator();
  void* allocate(size_t bytes);
  void deallocate(void* ptr);
  // Returns every cached block to the driver (after an out-of-memory, or at shutdown).
  void release_cached();
  size_t bytes_in_use() const { return in_use_; }
  size_t peak_bytes_in_use() const { return peak_; }
  size_t bytes_reserved() const { return reserved_; }
  void reset_peak() { peak_ = in_use_; }
  // Rounds a request to the size class it is served from.
  static size_t round_size(size_t bytes);

 private:
  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;  // size class → cached blocks
  std::unordered_map<void*, size_t> live_;      // block → size class
  size_t in_use_ = 0, peak_ = 0, reserved_ = 0;
};

// The process-wide allocator of the CUDA backend.
CachingAllocator& device_allocator();

}  // namespace weft
