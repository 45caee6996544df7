// weft/cuda/tile_pipeline.cuh v5 — the flash kernels' block organisation on Hopper: a producer warpgroup moves
// tiles into shared memory with the TMA unit, two or three consumer warpgroups compute on them, mbarriers hand
// stages over and named barriers give the consumers turns on the tensor cores.
#pragma once
#include <cuda.h>
#include <cudaTypedefs.h>

#include <cstdint>

#include "common.cuh"

namespace weft::cuda {

// A block is a producer warpgroup feeding kWgs consumer warpgroups (two, or three where their registers allow)
// through stages of shared memory (TilePipeline), with no block-wide barrier in the loop; the consumers take turns
// on the tensor cores (Pingpong).
constexpr int kProducerThreads = 128;
constexpr int consumer_threads(int wgs) { return 128 * wgs; }
constexpr int pipeline_threads(int wgs) { return consumer_threads(wgs) + kProducerThreads; }

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// Stores 4 bytes at shared-memory address `addr` (as smem_addr gives it), e.g. into a tile that wgmma or a TMA store
// reads next.
__device__ __forceinline__ void store_shared_u32(uint32_t addr, uint32_t value) {
  asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(addr), "r"(value) : "memory");
}

// Starts the TMA load of rows [row0, row0 + kRows) of head `head` into a tile of SW128 atoms (one box per 64-column
// block); `bar` counts the bytes as they land.
template <int D, int kRows>
__device__ __forceinline__ void tma_tile(bf16_t* tile, const CUtensorMap* map, int head, int64_t row0, uint64_t* bar) {
  #pragma unroll
  for (int b = 0; b < D / 64; ++b)
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n"
        ::"r"(smem_addr(tile) + b * kRows * 128), "l"(map), "r"(b * 64), "r"(head), "r"(static_cast<int>(row0)),
        "r"(smem_addr(bar))
        : "memory");
}

// Starts the TMA store of a tile of SW128 atoms (one box of the map's rows per 64-column block, `block_bytes` apart
// in shared memory) to the rows from row0 of head `head`, as one bulk group; rows past the tensor's end are not
// written. The shared memory must stay as it is until bulk_wait_read.
template <int D>
__device__ __forceinline__ void tma_store_tile(const CUtensorMap* map, uint32_t tile, uint32_t block_bytes, int head,
                                               int64_t row0) {
  #pragma unroll
  for (int b = 0; b < D / 64; ++b)
    asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%1, %2, %3}], [%4];\n"
                 ::"l"(map), "r"(b * 64), "r"(head), "r"(static_cast<int>(row0)), "r"(tile + b * block_bytes)
                 : "memory");
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}

__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.release.cta.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
// Adds `bytes` to the transactions the barrier's current phase waits for (the TMA loads about to be issued).
__device__ __forceinline__ void mbar_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes)
               : "memory");
}
// Waits until the barrier's phase of this parity has completed.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, int parity) {
  asm volatile(
      "{\n.reg .pred done;\nwait:\n"
      "mbarrier.try_wait.parity.acquire.cta.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait;\n}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
}

// Called by a whole warpgroup as the roles split: the producer hands its registers to the consumers (setmaxnreg),
// 128 × 24 + 256 × 240 or 128 × 24 + 384 × 160 of the SM's 64 Ki.
constexpr int kProducerRegisters = 24;
template <int kWgs>
constexpr int kConsumerRegisters = kWgs == 2 ? 240 : 160;
static_assert(128 * kProducerRegisters + consumer_threads(2) * kConsumerRegisters<2> <= 65536 &&
              128 * kProducerRegisters + consumer_threads(3) * kConsumerRegisters<3> <= 65536);
__device__ __forceinline__ void producer_registers() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kProducerRegisters));
}
template <int kWgs>
__device__ __forceinline__ void consumer_registers() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kConsumerRegisters<kWgs>));
}
// A pipeline of kN stages of shared memory and their barriers (2·kN mbarriers): full[s] completes when
// every producer thread has arrived and the bytes its TMA loads expect have landed; empty[s] when all threads of
// the kWgs consumer warpgroups are done reading it. Three stages (kStages, the default) let the producer run two
// tiles ahead.
constexpr int kStages = 3;
template <int kN = kStages, int kWgs = 2>
struct TilePipeline {
  uint64_t* bar;  // full[kN], then empty[kN]
  // Called by every thread of the block, before the roles split.
  __device__ void init() const {
    if (threadIdx.x == 0)
      for (int s = 0; s < kN; ++s) {
        mbar_init(bar + s, kProducerThreads);
        mbar_init(bar + kN + s, consumer_threads(kWgs));
      }
    __syncthreads();
  }
  // Consumers: wait for tile i, then release it once read.
  __device__ void wait_full(int i) const { mbar_wait(bar + i % kN, (i / kN) & 1); }
  __device__ void release(int i) const { mbar_arrive(bar + kN + i % kN); }
  // The producer warpgroup, thread p: for each tile, once its stage is free, thread 0 announces `bytes(i)` and
  // `issue(i, stage, full)` starts the TMA loads; `fill(i, stage)` lets every thread write what TMA does not carry
  // (plain stores); then all arrive.
  template <typename Bytes, typename Issue, typename Fill>
  __device__ void produce(int n, int p, Bytes bytes, Issue issue, Fill fill) const {
    for (int i = 0; i < n; ++i) {
      const int s = i % kN;
      if (i >= kN) mbar_wait(bar + kN + s, (i / kN - 1) & 1);
      if (p == 0) {
        mbar_expect_tx(bar + s, bytes(i));
        issue(i, s, bar + s);
      }
      fill(i, s);
      mbar_arrive(bar + s);
    }
  }
};

// A kernel's dynamic shared memory: its tiles (SW128 atoms, which must start on a 1024-byte boundary) from the
// first such boundary, then the pipeline's barriers. The launch asks for pipeline_smem(tile bytes), 1 KiB more than
// tiles and barriers take; the kernel finds its tiles at aligned_tiles(smem_raw).
constexpr size_t pipeline_smem(size_t tile_bytes, int stages = kStages) {
  return tile_bytes + 2 * stages * sizeof(uint64_t) + 1024;
}
__device__ __forceinline__ unsigned char* aligned_tiles(unsigned char* smem_raw) {
  return smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
}

// Pingpong among the kWgs consumer warpgroups (FlashAttention-3's schedule): a warpgroup issues its wgmma only on
// its turn and hands the turn to the next one once issued, so the groups take the tensor cores in rotation and each
// one's softmax runs while the others' products do. Named barrier 1 + w means "warpgroup w may issue"; each
// warpgroup passes through the same number of turns, warpgroup 0 first.
template <int kWgs = 2>
struct Pingpong {
  static constexpr int kThreads = 256;  // a turn's barrier: the warpgroup that waits and the one that hands over
  int wg;
  // Before the first turn; `turns` is how many each warpgroup will take.
  __device__ void start(int turns) const {
    if (wg == kWgs - 1 && turns > 0) asm volatile("bar.arrive 1, %0;\n" ::"n"(kThreads) : "memory");
  }
  __device__ void mine() const { asm volatile("bar.sync %0, %1;\n" ::"r"(1 + wg), "n"(kThreads) : "memory"); }
  // After issuing; the last warpgroup keeps its last turn, which nobody would take. The next warpgroup's barrier
  // is 1 + (wg + 1) mod kWgs, written 2 − wg for two warpgroups: the general form changed the two-warpgroup
  // kernels' machine code (the head-dim-128 forward measured 0.8 % slower in one call of two).
  __device__ void yours(bool last) const {
    const int next = kWgs == 2 ? 2 - wg : 1 + (wg + 1) % kWgs;
    if (!(last && wg == kWgs - 1)) asm volatile("bar.arrive %0, %1;\n" ::"r"(next), "n"(kThreads) : "memory");
  }
};
// The first named barrier free after Pingpong's.
template <int kWgs>
constexpr int kFreeBarrier = 1 + kWgs;

// Shared-memory stores, then reads by the async proxy (wgmma operands, bulk copies): each storing thread fences its
// stores, and a barrier orders them before the reader's issue.
__device__ __forceinline__ void fence_async_shared() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// A barrier over one of kWgs consumer warpgroups' 128 threads (the kWgs named barriers after Pingpong's).
template <int kWgs>
__device__ __forceinline__ void warpgroup_sync(int wg) {
  asm volatile("bar.sync %0, 128;\n" ::"r"(kFreeBarrier<kWgs> + wg) : "memory");
}
// Adds `bytes` (a multiple of 16) of fp32 from shared memory into global memory, in the L2 (a TMA bulk reduction),
// as a bulk group of its own; the shared memory may be rewritten after bulk_wait_read.
__device__ __forceinline__ void bulk_reduce_add(float* dst, const float* src, uint32_t bytes) {
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n"
               "cp.async.bulk.commit_group;\n" ::"l"(dst), "r"(smem_addr(src)), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void bulk_wait_read() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }
__device__ __forceinline__ void bulk_wait_done() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }

// The driver's tensor-map encoder, found through the runtime (weft does not link libcuda itself).
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found));
    WEFT_CHECK(found == cudaDriverEntryPointSuccess && fn, "attention: the CUDA driver has no cuTensorMapEncodeTiled");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}

// The tensor map of a bf16 [tokens][heads][dim] tensor for boxes of 64 head dims × one head × `rows` tokens, written
// to shared memory with the 128-byte swizzle, the layout wgmma's SW128 descriptors read; tokens past the end read
// as zeros.
inline CUtensorMap head_map(const Tensor& t, int64_t tokens, int64_t heads, int dim, int rows) {
  CUtensorMap map;
  const cuuint64_t dims[3] = {cuuint64_t(dim), cuuint64_t(heads), cuuint64_t(tokens)};
  const cuuint64_t strides[2] = {cuuint64_t(dim) * sizeof(bf16_t), cuuint64_t(heads * dim) * sizeof(bf16_t)};
  const cuuint32_t box[3] = {64, 1, cuuint32_t(rows)}, unit[3] = {1, 1, 1};
  const CUresult r = tensor_map_encoder()(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3,
                                          const_cast<bf16_t*>(ptr<bf16_t>(t)), dims, strides, box, unit,
                                          CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                          CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  WEFT_CHECK(r == CUDA_SUCCESS, "attention: cuTensorMapEncodeTiled failed (CUresult ", int(r), ") for a [", tokens,
             "][", heads, "][", dim, "] bf16 tensor");
  return map;
}

}  // namespace weft::cuda
