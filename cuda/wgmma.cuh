// weft/cuda/wgmma.cuh v4 — Hopper warpgroup MMA (wgmma) for the flash kernels: shared-memory descriptors of
// 128-byte-swizzled bf16 tiles, and the two forms the kernels use.
//
// A warpgroup (four warps, 128 threads) multiplies a 64-row A by an N-column B in one asynchronous instruction, B
// (and A, in the first form) read straight from shared memory, so operands cost no ldmatrix and no registers.
// Accumulators are laid out per warp as mma.sync's m16n8 tiles side by side (warp w owns rows 16w..16w+15), so an
// accumulator turns into the A operand of the next MMA in registers, as with mma.sync.
#pragma once
#include <cstdint>

namespace weft::cuda {

// Tiles for wgmma live in shared memory as "SW128 atoms": the tile's columns split into blocks of 64 bf16 (128 bytes,
// one row of an atom); block b holds every row, 128 bytes each, and the 16-byte chunks of row r are XOR-swizzled
// by r mod 8, so eight rows form a 1024-byte atom: element (r, c) of a `rows`-row tile sits at byte
// (c / 64)·rows·128 + r·128 + ((c / 8 mod 8) XOR (r mod 8))·16 + (c mod 8)·2. The TMA unit writes exactly this with
// its 128-byte swizzle. The tile must start on a 1024-byte boundary.

// The byte offset of element (r, c) in a SW128 tile of `rows` rows, as above: where threads store a tile that wgmma
// or a TMA store reads.
__device__ __forceinline__ uint32_t sw128_offset(int r, int c, int rows) {
  return (c / 64) * rows * 128 + r * 128 + (((c / 8) % 8) ^ (r % 8)) * 16 + (c % 8) * 2;
}
// A descriptor's 14-bit fields hold byte quantities divided by 16.
__device__ __forceinline__ uint64_t desc_field(uint32_t bytes) { return uint64_t((bytes & 0x3FFFF) >> 4); }
// The descriptor of a K-major operand (rows along M or N, the 64-column blocks along K) starting at byte address
// `addr` of a SW128 tile; stepping 16 along K inside a block moves it on by 32 bytes, the next block by rows·128
// (k_step_offset, desc_advance).
__device__ __forceinline__ uint64_t desc_k_major(uint32_t addr) {
  return desc_field(addr) | (uint64_t(1) << 16) | (desc_field(1024) << 32) | (uint64_t(1) << 62);
}
// The byte offset of k step `ks` (columns [16ks, 16ks + 16)) in a K-major SW128 tile of `rows` rows.
__device__ __forceinline__ uint32_t k_step_offset(int ks, int rows) { return (ks / 4) * rows * 128 + (ks % 4) * 32; }
// A descriptor moved on by `bytes` (a multiple of 16) in shared memory, e.g. to the next k step: one 32-bit add to
// the start-address field, where recomputing the descriptor from the new address takes a chain of three dependent
// uniform-datapath instructions before every wgmma. The field (the low 14 bits) spans 256 KiB, more than a block's
// shared memory, so the add never carries out of it.
__device__ __forceinline__ uint64_t desc_advance(uint64_t desc, uint32_t bytes) {
  return (desc & ~uint64_t(0xFFFFFFFFu)) | uint32_t(uint32_t(desc) + (bytes >> 4));
}
// The descriptor of an MN-major operand: the tile's rows run along K (16 rows per instruction, `addr` at the first)
// and its 64-column blocks along M or N, `block_bytes` apart.
__device__ __forceinline__ uint64_t desc_mn_major(uint32_t addr, uint32_t block_bytes) {
  return desc_field(addr) | (desc_field(block_bytes) << 16) | (desc_field(1024) << 32) | (uint64_t(1) << 62);
}
// The descriptor of a no-swizzle operand whose 8 × 16-byte core matrices lie 128 bytes apart along both of its
// dimensions: a 16 × 8 B tile's two core matrices then lie within 384 bytes of `addr`, whichever stride parts
// them. For a tile of constants (kConstTileBytes of them), where only the values matter, not their places.
constexpr int kConstTileBytes = 512;
__device__ __forceinline__ uint64_t desc_const_tile(uint32_t addr) {
  return desc_field(addr) | (desc_field(128) << 16) | (desc_field(128) << 32);
}

// Orders this thread's register writes (accumulators, A fragments) before the wgmma instructions that follow.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Waits until at most N committed groups are still running.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Pins accumulators in place across a wait: the compiler must not read them before the wait or write them after
// an instruction that is still running.
template <int T>
__device__ __forceinline__ void fence_operands(float (&d)[T][4]) {
  #pragma unroll
  for (int i = 0; i < T; ++i)
    #pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[i][e])::"memory");
}

// The same for A fragments that an unfinished wgmma may still be reading.
template <int T>
__device__ __forceinline__ void fence_operands(uint32_t (&a)[T][4]) {
  #pragma unroll
  for (int i = 0; i < T; ++i)
    #pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+r"(a[i][e])::"memory");
}

#define WEFT_ACC4(d, j) "+f"(d[j][0]), "+f"(d[j][1]), "+f"(d[j][2]), "+f"(d[j][3])
#define WEFT_ACC32(d, j)                                                                                        \
  WEFT_ACC4(d, j), WEFT_ACC4(d, j + 1), WEFT_ACC4(d, j + 2), WEFT_ACC4(d, j + 3), WEFT_ACC4(d, j + 4),         \
      WEFT_ACC4(d, j + 5), WEFT_ACC4(d, j + 6), WEFT_ACC4(d, j + 7)
#define WEFT_D32 \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, "  \
  "%23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define WEFT_D64                                                                                                \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, "  \
  "%23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, "   \
  "%44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"

// d (64 × N, fp32) = A·B + (accumulate ? d : 0), A (64 × 16) and B (16 × N) in shared memory, both K-major or,
// with kMnMajor, both MN-major (descriptors from desc_mn_major: the tiles' rows run along K).
template <int N, bool kMnMajor = false>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 8][4], uint64_t a, uint64_t b, int accumulate) {
  static_assert(N == 64 || N == 128, "wgmma_ss: N is 64 or 128");
  constexpr int kT = kMnMajor ? 1 : 0;
  if constexpr (N == 64) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " WEFT_D32 ", %32, %33, p, 1, 1, %35, %35;\n}\n"
                 : WEFT_ACC32(d, 0)
                 : "l"(a), "l"(b), "r"(accumulate), "n"(kT));
  } else {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " WEFT_D64 ", %64, %65, p, 1, 1, %67, %67;\n}\n"
                 : WEFT_ACC32(d, 0), WEFT_ACC32(d, 8)
                 : "l"(a), "l"(b), "r"(accumulate), "n"(kT));
  }
}

// d (64 × N, fp32) += A·B, A (64 × 16) in registers as bf16 fragments (see a_fragment), B (16 × N) MN-major in
// shared memory.
template <int N>
__device__ __forceinline__ void wgmma_rs(float (&d)[N / 8][4], const uint32_t (&a)[4], uint64_t b) {
  static_assert(N == 8 || N == 64 || N == 128, "wgmma_rs: N is 8, 64 or 128");
  if constexpr (N == 8) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%0, %1, %2, %3}, {%4, %5, %6, %7}, %8, 1, 1, "
                 "1, 1;\n"
                 : WEFT_ACC4(d, 0)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
  } else if constexpr (N == 64) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " WEFT_D32
                 ", {%32, %33, %34, %35}, %36, 1, 1, 1, 1;\n"
                 : WEFT_ACC32(d, 0)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
  } else {
    asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " WEFT_D64
                 ", {%64, %65, %66, %67}, %68, 1, 1, 1, 1;\n"
                 : WEFT_ACC32(d, 0), WEFT_ACC32(d, 8)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
  }
}
#undef WEFT_ACC4
#undef WEFT_ACC32
#undef WEFT_D32
#undef WEFT_D64

}  // namespace weft::cuda
