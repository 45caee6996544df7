// weft/cuda/flash_common.cuh v6 — what the flash attention kernels share (flash_attention.cu, the forward;
// flash_attention_bwd.cu, the backward): bf16 packing, register A fragments, exp2, a tensor-core turn, tensor maps,
// masks and tiling.
#pragma once
#include "attention_kernels.h"
#include "common.cuh"
#include "tile_pipeline.cuh"
#include "wgmma.cuh"

namespace weft::cuda {

constexpr double kLog2e = 1.4426950408889634;  // the flash kernels work in the log2 domain: exp(x) = exp2(x·log2 e)
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
// A warp's share of a register A operand (wgmma's, laid out as mma.sync's m16n8k16) for 16 columns [16j, 16j + 16)
// of its fp32 accumulator tiles (two n8 tiles), packed to bf16: how P and dS feed the next product in registers.
template <int N>
__device__ __forceinline__ void a_fragment(uint32_t (&a)[4], const float (&acc)[N][4], int j) {
  a[0] = pack_bf16(acc[2 * j][0], acc[2 * j][1]);
  a[1] = pack_bf16(acc[2 * j][2], acc[2 * j][3]);
  a[2] = pack_bf16(acc[2 * j + 1][0], acc[2 * j + 1][1]);
  a[3] = pack_bf16(acc[2 * j + 1][2], acc[2 * j + 1][3]);
}
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// One pingpong turn on the tensor cores: wait for this warpgroup's turn, issue `issue`'s wgmma instructions as one
// group, hand the turn on (`last`: the warpgroup's last turn), wait for the products to land and pin the
// accumulators they wrote. Nothing else may come between the fence and the commit, and no wgmma may sit under a
// branch inside `issue`: either makes ptxas serialize every wgmma of the kernel (note C7520), as does a kernel short
// of registers (C7512); the test flash_wgmma_async fails on such notes.
template <class Turn, class Issue, class... Accumulators>
__device__ __forceinline__ void tensor_turn(const Turn& turn, bool last, Issue&& issue, Accumulators&... acc) {
  turn.mine();
  wgmma_fence();
  issue();
  wgmma_commit();
  turn.yours(last);
  wgmma_wait<0>();
  (fence_operands(acc), ...);
}

// The tensor maps of a call's bf16 [tokens][heads][D] inputs, for the TMA unit: boxes of 64 head dims (128 bytes, one
// SW128 atom row) × one head × a tile's rows, written to shared memory in the SW128 layout wgmma reads. Rows past
// the tensor's end arrive as zeros; rows past a segment's end arrive as they are and the masks give them zero
// weight (P = 0 exactly, so they add nothing).
struct FlashMaps {
  CUtensorMap q, k, v, dout, out;  // out: the forward's output, stored in boxes of 64 rows
};

// Whether `rows` queries from q0 × `keys` keys from key0 have any (query, key) pair the mask hides: keys after a
// query (causal), keys a window behind, or rows past the segment's end. Most tiles of a long sequence have none.
__device__ __forceinline__ bool tile_needs_mask(int64_t q0, int rows, int64_t key0, int keys, int64_t seg_hi,
                                                int64_t window, bool causal) {
  return (causal && key0 + keys - 1 > q0) || key0 + keys > seg_hi || q0 + rows > seg_hi ||
         (window > 0 && q0 + rows - 1 - key0 >= window);
}

// A block's place in a one-dimensional grid of `groups` × positions that starts the longest blocks first. The GPU
// starts blocks in order of their index, so the index is position-major: every group's position-0 block starts
// before any group's position 1. Under the causal mask a forward query block's work grows with its position in the
// sequence and a key block's shrinks, so position 0 is the last query block, or the first key block. With one
// group after another instead (x fastest in a (blocks, heads) grid), the last groups' longest blocks started in the
// last wave and ran on alone: a list-scheduling model of the 1.5B shape on 132 SMs (bench/attention_grid_model.py)
// gives the backward key pass 328 tile-times against 260 in this order (256 if perfectly balanced), the forward 274
// against 257. On an H200 the key pass at head dim 128 went from 380 to 456 TFLOP/s, the forward from 494 to 508.
struct GridPlace {
  int group, pos;
};
__device__ __forceinline__ GridPlace longest_first_place(int groups) {
  return {static_cast<int>(blockIdx.x % groups), static_cast<int>(blockIdx.x / groups)};
}

// A query block's place: its segment, its first query, and the key tiles [kb_lo, kb_hi) of kKeys keys that its
// kRows rows see. The block of position `pos` in a grid of (segment, query head) groups: the last query block
// first.
struct QueryBlock {
  int64_t seg_lo, seg_hi, q0;
  int kb_lo, kb_hi;
  int h;
};
template <int kRows, int kKeys>
__device__ __forceinline__ QueryBlock query_block(Segments seg, int heads, int blocks_per_seg, int64_t window,
                                                  bool causal) {
  const GridPlace place = longest_first_place(seg.count * heads);
  const int s = place.group / heads, qb = blocks_per_seg - 1 - place.pos;
  QueryBlock b;
  b.h = place.group % heads;
  b.seg_lo = seg.cu[s];
  b.seg_hi = seg.cu[s + 1];
  b.q0 = b.seg_lo + int64_t(qb) * kRows;
  const int64_t kv_first = window > 0 ? max(b.seg_lo, b.q0 - window + 1) : b.seg_lo;
  b.kb_lo = static_cast<int>((kv_first - b.seg_lo) / kKeys);
  const int64_t kv_end = causal ? min(b.q0 + kRows, b.seg_hi) : b.seg_hi;
  b.kb_hi = static_cast<int>((kv_end - b.seg_lo + kKeys - 1) / kKeys);
  return b;
}

// The columns [lo, hi] of a key tile (`keys` keys from key0) that query `row` sees; empty when lo > hi. Masking by
// two 32-bit bounds per row keeps the mask's registers and instructions off the 64-bit token indices.
struct ColumnRange {
  int lo, hi;
};
__device__ __forceinline__ ColumnRange visible_columns(int64_t row, int64_t key0, int keys, int64_t seg_hi,
                                                       int64_t window, bool causal) {
  const int64_t last = row >= seg_hi ? key0 - 1 : min(seg_hi - 1, causal ? row : key0 + keys - 1);
  const int64_t first = window > 0 ? max(key0, row - window + 1) : key0;
  return {static_cast<int>(min(first - key0, int64_t(keys))), static_cast<int>(max(last - key0, int64_t(-1)))};
}

}  // namespace weft::cuda
