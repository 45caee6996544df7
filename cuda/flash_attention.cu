// weft/cuda/flash_attention.cu v2 — flash attention on tensor cores: GQA, causal or full, sliding windows and
// document segments, head dims 64 and 128.
//
// Online softmax in the log2 domain with fp32 state. The forward runs on Hopper's warpgroup MMA (wgmma.cuh), its
// operands read from shared memory in SW128 atoms; the backward on mma.sync bf16 with fp32 accumulators, tiles
// moved with cp.async into XOR-swizzled shared memory. The backward runs two passes without atomics, so it is
// deterministic: one block per key block keeps dK and dV in registers (FlashAttention-2's split), one block per
// query block keeps dQ.
#include "attention_kernels.h"
#include "common.cuh"
#include "wgmma.cuh"

namespace weft {
namespace cuda {
namespace {

// ---------------------------------------------------------------- flash forward (tensor cores)

constexpr int kBM = 64, kBN = 64, kWarps = 4;
constexpr double kLog2e = 1.4426950408889634;  // the flash kernels work in the log2 domain: exp(x) = exp2(x·log2 e)

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// Element (r, c) of a [rows][D] bf16 tile whose 16-byte chunks are XOR-swizzled by row, so that ldmatrix reads of
// eight rows at one column hit eight different bank groups.
template <int D>
__device__ __forceinline__ int swz(int r, int c) {
  return r * D + ((((c >> 3) ^ (r & 7)) << 3) | (c & 7));
}
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
// Four 8×8 b16 matrices from shared memory (a byte address in the shared window, or a pointer into it).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) { ldmatrix_x4(r, smem_addr(p)); }
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  ldmatrix_x4_trans(r, smem_addr(p));
}
// c[4] += a[4] · b[2] for one m16n8k16 bf16 tile with fp32 accumulators.
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
               "{%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
// The m16n8k16 A fragment for 16 key columns [16j, 16j + 16) of a warp's fp32 accumulator tiles (two n8 tiles),
// packed to bf16: how P and dS feed the next MMA without leaving registers.
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

// Loads rows [row0, row0 + rows) of a [tokens][stride] matrix (its head slice starts at `base`) into a tile, XOR-
// swizzled for ldmatrix (swz) or, with kAtoms, laid out in wgmma's SW128 atoms (sw128_offset); rows at or past
// `limit` become zeros.
template <int D, bool kAtoms = false>
__device__ __forceinline__ void load_tile(bf16_t* tile, const bf16_t* base, int64_t stride, int64_t row0, int64_t limit,
                                          int rows) {
  constexpr int kChunks = D / 8;
  for (int i = threadIdx.x; i < rows * kChunks; i += blockDim.x) {
    const int r = i / kChunks, c = i % kChunks;
    const int64_t g = row0 + r;
    const bool valid = g < limit;
    void* dst = kAtoms ? static_cast<void*>(reinterpret_cast<unsigned char*>(tile) + sw128_offset(r, c * 8, rows))
                       : static_cast<void*>(tile + swz<D>(r, c * 8));
    cp_async16(dst, base + (valid ? g : row0) * stride + c * 8, valid);
  }
}

// Whether `rows` queries from q0 × `keys` keys from key0 have any (query, key) pair the mask hides: keys after a
// query (causal), keys a window behind, or rows past the segment's end. Most tiles of a long sequence have none.
__device__ __forceinline__ bool tile_needs_mask(int64_t q0, int rows, int64_t key0, int keys, int64_t seg_hi,
                                                int64_t window, bool causal) {
  return (causal && key0 + keys - 1 > q0) || key0 + keys > seg_hi || q0 + rows > seg_hi ||
         (window > 0 && q0 + rows - 1 - key0 >= window);
}

__device__ __forceinline__ bool visible(int64_t query, int64_t key, int64_t seg_hi, int64_t window, bool causal) {
  return (!causal || key <= query) && key < seg_hi && query < seg_hi && (window <= 0 || query - key < window);
}

// A query block's place: its segment, its first query, and the key tiles [kb_lo, kb_hi) of kKeys keys that its
// kRows rows see. Blocks run the longest rows first.
struct QueryBlock {
  int64_t seg_lo, seg_hi, q0;
  int kb_lo, kb_hi;
};
template <int kRows, int kKeys>
__device__ __forceinline__ QueryBlock query_block(Segments seg, int blocks_per_seg, int64_t window, bool causal) {
  const int s = blockIdx.x / blocks_per_seg, qb = blocks_per_seg - 1 - blockIdx.x % blocks_per_seg;
  QueryBlock b;
  b.seg_lo = seg.cu[s];
  b.seg_hi = seg.cu[s + 1];
  b.q0 = b.seg_lo + int64_t(qb) * kRows;
  const int64_t kv_first = window > 0 ? max(b.seg_lo, b.q0 - window + 1) : b.seg_lo;
  b.kb_lo = static_cast<int>((kv_first - b.seg_lo) / kKeys);
  const int64_t kv_end = causal ? min(b.q0 + kRows, b.seg_hi) : b.seg_hi;
  b.kb_hi = static_cast<int>((kv_end - b.seg_lo + kKeys - 1) / kKeys);
  return b;
}

// Starts loading key tile kb of K and V into one stage (sK, sV at that stage).
template <int D, int kKeys, bool kAtoms = false>
__device__ __forceinline__ void load_key_tile(bf16_t* sK, bf16_t* sV, const bf16_t* k_base, const bf16_t* v_base,
                                              int64_t kv_stride, const QueryBlock& b, int kb) {
  const int64_t key0 = b.seg_lo + int64_t(kb) * kKeys;
  load_tile<D, kAtoms>(sK, k_base, kv_stride, key0, b.seg_hi, kKeys);
  load_tile<D, kAtoms>(sV, v_base, kv_stride, key0, b.seg_hi, kKeys);
}

// The key-tile loop's double buffer: starts loading tile kb + 1 into the other stage of sK/sV (when there is one),
// then waits until tile kb's stage has arrived for the whole block (and, for wgmma's tiles, its async proxy).
template <int D, int kKeys, bool kAtoms = false>
__device__ __forceinline__ void next_key_tile(bf16_t* sK, bf16_t* sV, const bf16_t* k_base, const bf16_t* v_base,
                                              int64_t kv_stride, const QueryBlock& b, int kb, int stage) {
  if (kb + 1 < b.kb_hi) {
    load_key_tile<D, kKeys, kAtoms>(sK + (stage ^ 1) * kKeys * D, sV + (stage ^ 1) * kKeys * D, k_base, v_base,
                                    kv_stride, b, kb + 1);
    cp_async_commit();
    cp_async_wait<1>();
  } else {
    cp_async_wait<0>();
  }
  if (kAtoms) fence_async_shared();
  __syncthreads();
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

// One key tile of the forward's online softmax for a warp's 16 query rows (two per thread): scores become
// probabilities in place, and the running max, sum and output are rescaled. exp2(s·scale·log2e − max) is one
// FFMA and one MUFU op per score.
template <bool kMasked, int D, int kKeys>
__device__ __forceinline__ void online_softmax(float (&sacc)[kKeys / 8][4], float (&o)[D / 8][4], float (&m_run)[2],
                                               float (&l_run)[2], const ColumnRange (&shown)[2], float scale_log2,
                                               int t) {
  float corr[2];
  #pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = -INFINITY;
    #pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt)
      #pragma unroll
      for (int e = 0; e < 2; ++e) {
        float& x = sacc[nt][2 * r + e];
        const int col = nt * 8 + 2 * t + e;
        if (kMasked && (col < shown[r].lo || col > shown[r].hi)) x = -INFINITY;
        mx = fmaxf(mx, x);
      }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m_run[r], mx * scale_log2);
    const float base = m_new == -INFINITY ? 0.f : m_new;
    corr[r] = fast_exp2(m_run[r] - base);
    float rowsum = 0.f;
    #pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt)
      #pragma unroll
      for (int e = 0; e < 2; ++e) {
        float& x = sacc[nt][2 * r + e];
        x = fast_exp2(fmaf(x, scale_log2, -base));
        rowsum += x;
      }
    rowsum += __shfl_xor_sync(0xffffffffu, rowsum, 1);
    rowsum += __shfl_xor_sync(0xffffffffu, rowsum, 2);
    l_run[r] = l_run[r] * corr[r] + rowsum;
    m_run[r] = m_new;
  }
  // Once the running max settles (most tiles of a long row), no row of the warp needs the rescale.
  if (__any_sync(0xffffffffu, corr[0] != 1.f || corr[1] != 1.f)) {
    #pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      o[dt][0] *= corr[0];
      o[dt][1] *= corr[0];
      o[dt][2] *= corr[1];
      o[dt][3] *= corr[1];
    }
  }
}

// The forward runs on wgmma: two warpgroups per block, 64 query rows each (128 per block), 128-key tiles. S = Q·Kᵀ
// reads Q and K from shared memory; P stays in registers as the A operand of O += P·V, V read as an MN-major B.
// Each warp still owns 16 rows of the accumulators, so the online softmax is the mma.sync kernels' own.
constexpr int kFwdRows = 128, kFwdKeys = 128, kFwdThreads = 256;

template <int D>
__global__ void __launch_bounds__(kFwdThreads, 1) flash_fwd_kernel(bf16_t* out, float* lse, const bf16_t* q,
                                                                   const bf16_t* k, const bf16_t* v, Segments seg,
                                                                   int blocks_per_seg, int64_t tokens, int heads,
                                                                   int kv_heads, int64_t window, bool causal,
                                                                   float scale_log2) {
  extern __shared__ unsigned char smem_raw[];
  // SW128 atoms need 1024-byte alignment; the launch asks for 1 KiB more than the tiles take.
  unsigned char* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
  bf16_t* sQ = reinterpret_cast<bf16_t*>(smem);
  bf16_t* sK = sQ + kFwdRows * D;  // two stages
  bf16_t* sV = sK + 2 * kFwdKeys * D;
  constexpr uint32_t kStageBytes = kFwdKeys * D * sizeof(bf16_t);

  const QueryBlock blk = query_block<kFwdRows, kFwdKeys>(seg, blocks_per_seg, window, causal);
  const int64_t seg_lo = blk.seg_lo, seg_hi = blk.seg_hi, q0 = blk.q0;
  const int kb_lo = blk.kb_lo, kb_hi = blk.kb_hi;
  if (q0 >= seg_hi) return;
  const int h = blockIdx.y, hk = h / (heads / kv_heads);
  const int wg = threadIdx.x / 128, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int warp_row = wg * 64 + (threadIdx.x / 32 % 4) * 16;  // the warp's first row in the block

  const int64_t q_stride = int64_t(heads) * D, kv_stride = int64_t(kv_heads) * D;
  const bf16_t* k_base = k + int64_t(hk) * D;
  const bf16_t* v_base = v + int64_t(hk) * D;

  load_tile<D, true>(sQ, q + int64_t(h) * D, q_stride, q0, seg_hi, kFwdRows);
  load_key_tile<D, kFwdKeys, true>(sK, sV, k_base, v_base, kv_stride, blk, kb_lo);
  cp_async_commit();

  // The warpgroup's 64 rows of Q: the 64-column blocks are kFwdRows·128 bytes apart, k steps of 16 are 32 bytes.
  const uint32_t q_addr = smem_addr(sQ) + wg * 64 * 128;
  float o[D / 8][4], m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};
  #pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;

  for (int kb = kb_lo; kb < kb_hi; ++kb) {
    const int stage = (kb - kb_lo) & 1;
    next_key_tile<D, kFwdKeys, true>(sK, sV, k_base, v_base, kv_stride, blk, kb, stage);
    const uint32_t k_addr = smem_addr(sK) + stage * kStageBytes, v_addr = smem_addr(sV) + stage * kStageBytes;

    // S = Q·Kᵀ for the warpgroup's 64 rows and the tile's 128 keys.
    float sacc[kFwdKeys / 8][4];
    wgmma_fence();
    #pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      const uint32_t step = (ks / 4) * 128 + (ks % 4) * 32;
      wgmma_ss<kFwdKeys>(sacc, desc_k_major(q_addr + step / 128 * (kFwdRows * 128) + step % 128),
                         desc_k_major(k_addr + step / 128 * (kFwdKeys * 128) + step % 128), ks > 0);
    }
    wgmma_commit();
    wgmma_wait<0>();
    fence_operands(sacc);

    // Online softmax in the log2 domain; only warps whose rows cross the diagonal, the window's edge or the
    // segment's end pay for the mask.
    const int64_t key0 = seg_lo + int64_t(kb) * kFwdKeys, warp_q0 = q0 + warp_row;
    if (tile_needs_mask(warp_q0, 16, key0, kFwdKeys, seg_hi, window, causal)) {
      const ColumnRange shown[2] = {visible_columns(warp_q0 + g, key0, kFwdKeys, seg_hi, window, causal),
                                    visible_columns(warp_q0 + g + 8, key0, kFwdKeys, seg_hi, window, causal)};
      online_softmax<true, D, kFwdKeys>(sacc, o, m_run, l_run, shown, scale_log2, t);
    } else {
      online_softmax<false, D, kFwdKeys>(sacc, o, m_run, l_run, {}, scale_log2, t);
    }

    // O += P·V, P as bf16 A fragments straight from the scores; V's rows are keys (K), its columns head dims (N).
    uint32_t pa[kFwdKeys / 16][4];
    #pragma unroll
    for (int j = 0; j < kFwdKeys / 16; ++j) a_fragment(pa[j], sacc, j);
    wgmma_fence();
    #pragma unroll
    for (int j = 0; j < kFwdKeys / 16; ++j) wgmma_rs<D>(o, pa[j], desc_mn_major(v_addr + j * 16 * 128, kFwdKeys * 128));
    wgmma_commit();
    wgmma_wait<0>();
    fence_operands(o);
    __syncthreads();  // the stage just read is the next prefetch target
  }

  constexpr float kLn2 = 0.69314718055994530942f;
  #pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = q0 + warp_row + g + 8 * r;
    if (row >= seg_hi) continue;
    const float inv = 1.f / l_run[r];
    bf16_t* dst = out + (row * heads + h) * D;
    #pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
      *reinterpret_cast<uint32_t*>(dst + dt * 8 + 2 * t) = pack_bf16(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
    if (t == 0) lse[int64_t(h) * tokens + row] = m_run[r] * kLn2 + logf(l_run[r]);
  }
}

// Lets a kernel launch with more than 48 KiB of dynamic shared memory.
template <typename Kernel>
void allow_dynamic_smem(Kernel kernel, size_t bytes) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

template <int D>
void launch_flash_fwd(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v, Segments seg,
                      const AttentionParams& p, int64_t tokens, int64_t max_seqlen) {
  const int blocks_per_seg = static_cast<int>((max_seqlen + kFwdRows - 1) / kFwdRows);
  const size_t smem = (kFwdRows * D + 4 * kFwdKeys * D) * sizeof(bf16_t) + 1024;
  allow_dynamic_smem(flash_fwd_kernel<D>, smem);
  const dim3 grid(seg.count * blocks_per_seg, static_cast<unsigned>(p.num_heads));
  flash_fwd_kernel<D><<<grid, kFwdThreads, smem, stream()>>>(
      ptr<bf16_t>(out), ptr<float>(lse), ptr<bf16_t>(q), ptr<bf16_t>(k), ptr<bf16_t>(v), seg, blocks_per_seg, tokens,
      static_cast<int>(p.num_heads), static_cast<int>(p.num_kv_heads), p.window, p.causal,
      static_cast<float>(p.scale * kLog2e));
  CUDA_CHECK_LAUNCH();
}

// ---------------------------------------------------------------- flash backward (tensor cores)
//
// One block per (segment, 64-key block, kv head); its four warps own 16 keys each and keep dK, dV for them in
// registers while the block walks every query tile (and every query head of the kv head's group) that sees the
// keys. dQ has a pass of its own (flash_dq_kernel), one block per query block.

// The row terms of the softmax backward: delta[h, i] = Σ_d dout·out, and the log-sum-exp in the log2 domain.
__global__ void attention_row_terms_kernel(float* delta, float* lse_log2, const bf16_t* dout, const bf16_t* out,
                                           const float* lse, int64_t tokens, int heads, int dim) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int h = blockIdx.y, lane = threadIdx.x & 31;
  if (i >= tokens) return;
  float s = 0.f;
  for (int d = lane; d < dim; d += 32) s += to_f(dout[(i * heads + h) * dim + d]) * to_f(out[(i * heads + h) * dim + d]);
  s = warp_sum(s);
  if (lane == 0) {
    delta[int64_t(h) * tokens + i] = s;
    lse_log2[int64_t(h) * tokens + i] = lse[int64_t(h) * tokens + i] * static_cast<float>(kLog2e);
  }
}

__device__ __forceinline__ void cp_async4(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem),
               "r"(valid ? 4 : 0));
}

// The softmax backward for one score s: p = exp2(s·scale·log2e − lse₂) (zero where the mask hides the pair) and,
// in place of dp, ds = p·(dp − delta).
__device__ __forceinline__ float softmax_grad(float s, float& dp, float lse_log2, float delta, bool shown,
                                              float scale_log2) {
  const float p = shown ? fast_exp2(fmaf(s, scale_log2, -lse_log2)) : 0.f;
  dp = p * (dp - delta);
  return p;
}

// Pᵀ and dSᵀ in place, for a warp's 16 keys × 64 queries (keys are the accumulator rows).
template <bool kMasked>
__device__ __forceinline__ void softmax_backward(float (&sacc)[kBM / 8][4], float (&dpacc)[kBM / 8][4],
                                                 const float* sLse, const float* sDelta, const int64_t (&key_row)[2],
                                                 int64_t q0, int64_t seg_hi, int64_t window, bool causal,
                                                 float scale_log2, int t) {
  #pragma unroll
  for (int nt = 0; nt < kBM / 8; ++nt)
    #pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int col = nt * 8 + 2 * t + (e & 1);
      const bool shown = !kMasked || visible(q0 + col, key_row[e >> 1], seg_hi, window, causal);
      sacc[nt][e] = softmax_grad(sacc[nt][e], dpacc[nt][e], sLse[col], sDelta[col], shown, scale_log2);
    }
}

template <int D>
__global__ void __launch_bounds__(kWarps * 32) flash_bwd_kernel(
    bf16_t* dk, bf16_t* dv, const bf16_t* dout, const bf16_t* q, const bf16_t* k, const bf16_t* v,
    const float* lse_log2, const float* delta, Segments seg, int blocks_per_seg, int64_t tokens, int heads,
    int kv_heads, int64_t window, bool causal, float scale_log2) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  bf16_t* sK = reinterpret_cast<bf16_t*>(smem_raw);
  bf16_t* sV = sK + kBN * D;
  bf16_t* sQ = sV + kBN * D;                                   // two stages
  bf16_t* sdO = sQ + 2 * kBM * D;                              // two stages
  float* sLse = reinterpret_cast<float*>(sdO + 2 * kBM * D);   // two stages of kBM
  float* sDelta = sLse + 2 * kBM;

  const int s = blockIdx.x / blocks_per_seg, kb = blockIdx.x % blocks_per_seg, hk = blockIdx.y;
  const int qpg = heads / kv_heads;
  const int64_t seg_lo = seg.cu[s], seg_hi = seg.cu[s + 1];
  const int64_t k0 = seg_lo + int64_t(kb) * kBN;
  if (k0 >= seg_hi) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t q_stride = int64_t(heads) * D, kv_stride = int64_t(kv_heads) * D;

  // Queries that can see these keys: from the block's first key (every query without the causal mask) to the
  // segment end (or the window's reach). The block walks them tile by tile for each query head of its group,
  // loading the next tile while it works on this one.
  const int64_t q_first = causal ? k0 : seg_lo;
  const int64_t q_end = window > 0 ? min(seg_hi, k0 + kBN - 1 + window) : seg_hi;
  const int qb_lo = static_cast<int>((q_first - seg_lo) / kBM);
  const int q_tiles = static_cast<int>((q_end - seg_lo + kBM - 1) / kBM) - qb_lo, tiles = qpg * q_tiles;
  auto tile_head = [&](int i) { return hk * qpg + i / q_tiles; };
  auto tile_start = [&](int i) { return seg_lo + int64_t(qb_lo + i % q_tiles) * kBM; };
  auto load_query_tile = [&](int i, int stage) {
    const int h = tile_head(i);
    const int64_t q0 = tile_start(i);
    load_tile<D>(sQ + stage * kBM * D, q + int64_t(h) * D, q_stride, q0, seg_hi, kBM);
    load_tile<D>(sdO + stage * kBM * D, dout + int64_t(h) * D, q_stride, q0, seg_hi, kBM);
    for (int r = threadIdx.x; r < kBM; r += blockDim.x) {
      const bool valid = q0 + r < seg_hi;
      const int64_t at = int64_t(h) * tokens + (valid ? q0 + r : q0);
      cp_async4(sLse + stage * kBM + r, lse_log2 + at, valid);
      cp_async4(sDelta + stage * kBM + r, delta + at, valid);
    }
  };
  load_tile<D>(sK, k + int64_t(hk) * D, kv_stride, k0, seg_hi, kBN);
  load_tile<D>(sV, v + int64_t(hk) * D, kv_stride, k0, seg_hi, kBN);
  if (tiles > 0) load_query_tile(0, 0);
  cp_async_commit();

  const int64_t key_row[2] = {k0 + warp * 16 + g, k0 + warp * 16 + g + 8};
  float dk_acc[D / 8][4], dv_acc[D / 8][4];
  #pragma unroll
  for (int i = 0; i < D / 8; ++i)
    #pragma unroll
    for (int e = 0; e < 4; ++e) dk_acc[i][e] = dv_acc[i][e] = 0.f;

  for (int i = 0; i < tiles; ++i) {
    const int stage = i & 1;
    const int64_t q0 = tile_start(i);
    if (i + 1 < tiles) {
      load_query_tile(i + 1, stage ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const bf16_t* cQ = sQ + stage * kBM * D;
    const bf16_t* cdO = sdO + stage * kBM * D;

    // Sᵀ = K_w·Qᵀ and dPᵀ = V_w·dOᵀ for this warp's 16 keys × the tile's 64 queries.
    float sacc[kBM / 8][4], dpacc[kBM / 8][4];
    #pragma unroll
    for (int j = 0; j < kBM / 8; ++j)
      #pragma unroll
      for (int e = 0; e < 4; ++e) sacc[j][e] = dpacc[j][e] = 0.f;
    #pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      uint32_t ka[4], va[4];
      ldmatrix_x4(ka, sK + swz<D>(warp * 16 + (lane & 15), ks * 16 + (lane >> 4) * 8));
      ldmatrix_x4(va, sV + swz<D>(warp * 16 + (lane & 15), ks * 16 + (lane >> 4) * 8));
      #pragma unroll
      for (int p = 0; p < kBM / 16; ++p) {
        uint32_t b[4];
        const int row = p * 16 + (lane & 7) + (lane >> 4) * 8, col = ks * 16 + ((lane >> 3) & 1) * 8;
        ldmatrix_x4(b, cQ + swz<D>(row, col));
        mma(sacc[2 * p], ka, b[0], b[1]);
        mma(sacc[2 * p + 1], ka, b[2], b[3]);
        ldmatrix_x4(b, cdO + swz<D>(row, col));
        mma(dpacc[2 * p], va, b[0], b[1]);
        mma(dpacc[2 * p + 1], va, b[2], b[3]);
      }
    }
    const float* cLse = sLse + stage * kBM;
    const float* cDelta = sDelta + stage * kBM;
    // Only tiles that cross the diagonal, the window's edge or the segment's end pay for the mask.
    if (tile_needs_mask(q0, kBM, k0, kBN, seg_hi, window, causal))
      softmax_backward<true>(sacc, dpacc, cLse, cDelta, key_row, q0, seg_hi, window, causal, scale_log2, t);
    else
      softmax_backward<false>(sacc, dpacc, cLse, cDelta, key_row, q0, seg_hi, window, causal, scale_log2, t);
    // dV_w += Pᵀ·dO and dK_w += dSᵀ·Q, the A operands straight from the accumulators.
    #pragma unroll
    for (int j = 0; j < kBM / 16; ++j) {
      uint32_t pa[4], da[4];
      a_fragment(pa, sacc, j);
      a_fragment(da, dpacc, j);
      #pragma unroll
      for (int dt = 0; dt < D / 16; ++dt) {
        uint32_t b[4];
        const int row = j * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, col = dt * 16 + (lane >> 4) * 8;
        ldmatrix_x4_trans(b, cdO + swz<D>(row, col));
        mma(dv_acc[2 * dt], pa, b[0], b[1]);
        mma(dv_acc[2 * dt + 1], pa, b[2], b[3]);
        ldmatrix_x4_trans(b, cQ + swz<D>(row, col));
        mma(dk_acc[2 * dt], da, b[0], b[1]);
        mma(dk_acc[2 * dt + 1], da, b[2], b[3]);
      }
    }
    __syncthreads();  // this stage is free for the next prefetch
  }
  // dK (times the softmax scale) and dV for this warp's keys.
  const float scale = scale_log2 / static_cast<float>(kLog2e);
  #pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (key_row[r] >= seg_hi) continue;
    bf16_t* dkr = dk + (key_row[r] * kv_heads + hk) * D;
    bf16_t* dvr = dv + (key_row[r] * kv_heads + hk) * D;
    #pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      *reinterpret_cast<uint32_t*>(dkr + dt * 8 + 2 * t) = pack_bf16(dk_acc[dt][2 * r] * scale, dk_acc[dt][2 * r + 1] * scale);
      *reinterpret_cast<uint32_t*>(dvr + dt * 8 + 2 * t) = pack_bf16(dv_acc[dt][2 * r], dv_acc[dt][2 * r + 1]);
    }
  }
}

// dQ: one block per (segment, 64-query block, query head) walks the key tiles as the forward does, recomputes P
// and dP, and keeps dQ += dS·K in registers. Two more GEMMs than gathering dQ in the key-block kernel through fp32
// atomics, yet faster on H200 (4.22 against 5.29 ms at the 1.5B shape), and deterministic: the summation order
// does not depend on scheduling.
template <int D>
__global__ void __launch_bounds__(kWarps * 32) flash_dq_kernel(bf16_t* dq, const bf16_t* dout, const bf16_t* q,
                                                                const bf16_t* k, const bf16_t* v, const float* lse_log2,
                                                                const float* delta, Segments seg, int blocks_per_seg,
                                                                int64_t tokens, int heads, int kv_heads,
                                                                int64_t window, bool causal, float scale_log2) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  bf16_t* sQ = reinterpret_cast<bf16_t*>(smem_raw);
  bf16_t* sdO = sQ + kBM * D;
  bf16_t* sK = sdO + kBM * D;  // two stages
  bf16_t* sV = sK + 2 * kBN * D;

  const QueryBlock blk = query_block<kBM, kBN>(seg, blocks_per_seg, window, causal);
  const int64_t seg_lo = blk.seg_lo, seg_hi = blk.seg_hi, q0 = blk.q0;
  const int kb_lo = blk.kb_lo, kb_hi = blk.kb_hi;
  if (q0 >= seg_hi) return;
  const int h = blockIdx.y, hk = h / (heads / kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;

  const int64_t q_stride = int64_t(heads) * D, kv_stride = int64_t(kv_heads) * D;
  const bf16_t* k_base = k + int64_t(hk) * D;
  const bf16_t* v_base = v + int64_t(hk) * D;

  load_tile<D>(sQ, q + int64_t(h) * D, q_stride, q0, seg_hi, kBM);
  load_tile<D>(sdO, dout + int64_t(h) * D, q_stride, q0, seg_hi, kBM);
  load_key_tile<D, kBN>(sK, sV, k_base, v_base, kv_stride, blk, kb_lo);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  uint32_t qf[D / 16][4], df[D / 16][4];
  #pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
    ldmatrix_x4(qf[ks], sQ + swz<D>(warp * 16 + (lane & 15), ks * 16 + (lane >> 4) * 8));
    ldmatrix_x4(df[ks], sdO + swz<D>(warp * 16 + (lane & 15), ks * 16 + (lane >> 4) * 8));
  }
  const int64_t row_q[2] = {q0 + warp * 16 + g, q0 + warp * 16 + g + 8};
  float row_lse[2], row_delta[2];
  #pragma unroll
  for (int r = 0; r < 2; ++r) {
    const bool valid = row_q[r] < seg_hi;  // rows past the segment are masked; their terms must not be read
    row_lse[r] = valid ? lse_log2[int64_t(h) * tokens + row_q[r]] : 0.f;
    row_delta[r] = valid ? delta[int64_t(h) * tokens + row_q[r]] : 0.f;
  }
  float dq_acc[D / 8][4];
  #pragma unroll
  for (int i = 0; i < D / 8; ++i) dq_acc[i][0] = dq_acc[i][1] = dq_acc[i][2] = dq_acc[i][3] = 0.f;

  for (int kb = kb_lo; kb < kb_hi; ++kb) {
    const int stage = (kb - kb_lo) & 1;
    bf16_t* cK = sK + stage * kBN * D;
    bf16_t* cV = sV + stage * kBN * D;
    next_key_tile<D, kBN>(sK, sV, k_base, v_base, kv_stride, blk, kb, stage);

    // S = Q·Kᵀ and dP = dO·Vᵀ for this warp's 16 queries and the tile's 64 keys.
    float sacc[kBN / 8][4], dpacc[kBN / 8][4];
    #pragma unroll
    for (int i = 0; i < kBN / 8; ++i)
      #pragma unroll
      for (int e = 0; e < 4; ++e) sacc[i][e] = dpacc[i][e] = 0.f;
    #pragma unroll
    for (int ks = 0; ks < D / 16; ++ks)
      #pragma unroll
      for (int p = 0; p < kBN / 16; ++p) {
        uint32_t b[4];
        const int row = p * 16 + (lane & 7) + (lane >> 4) * 8, col = ks * 16 + ((lane >> 3) & 1) * 8;
        ldmatrix_x4(b, cK + swz<D>(row, col));
        mma(sacc[2 * p], qf[ks], b[0], b[1]);
        mma(sacc[2 * p + 1], qf[ks], b[2], b[3]);
        ldmatrix_x4(b, cV + swz<D>(row, col));
        mma(dpacc[2 * p], df[ks], b[0], b[1]);
        mma(dpacc[2 * p + 1], df[ks], b[2], b[3]);
      }
    // dS in place of dP (queries are the accumulator rows here).
    const int64_t key0 = seg_lo + int64_t(kb) * kBN;
    const bool masked = tile_needs_mask(q0, kBM, key0, kBN, seg_hi, window, causal);
    #pragma unroll
    for (int nt = 0; nt < kBN / 8; ++nt)
      #pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1;
        const bool shown = !masked || visible(row_q[r], key0 + nt * 8 + 2 * t + (e & 1), seg_hi, window, causal);
        softmax_grad(sacc[nt][e], dpacc[nt][e], row_lse[r], row_delta[r], shown, scale_log2);
      }
    // dQ += dS·K, dS taken from the accumulators as bf16 A fragments.
    #pragma unroll
    for (int j = 0; j < kBN / 16; ++j) {
      uint32_t da[4];
      a_fragment(da, dpacc, j);
      #pragma unroll
      for (int dt = 0; dt < D / 16; ++dt) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, cK + swz<D>(j * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, dt * 16 + (lane >> 4) * 8));
        mma(dq_acc[2 * dt], da, b[0], b[1]);
        mma(dq_acc[2 * dt + 1], da, b[2], b[3]);
      }
    }
    __syncthreads();  // the stage just read is the next prefetch target
  }

  const float scale = scale_log2 / static_cast<float>(kLog2e);
  #pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (row_q[r] >= seg_hi) continue;
    bf16_t* dst = dq + (row_q[r] * heads + h) * D;
    #pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
      *reinterpret_cast<uint32_t*>(dst + dt * 8 + 2 * t) =
          pack_bf16(dq_acc[dt][2 * r] * scale, dq_acc[dt][2 * r + 1] * scale);
  }
}

template <int D>
void launch_flash_bwd(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q, const Tensor& k,
                      const Tensor& v, const Tensor& out, const Tensor& lse, Segments seg, const AttentionParams& p,
                      int64_t tokens, int64_t max_seqlen) {
  const int heads = static_cast<int>(p.num_heads), kv_heads = static_cast<int>(p.num_kv_heads);
  Tensor delta = Tensor::empty({heads, tokens}, DType::f32, Device::cuda);
  Tensor lse_log2 = Tensor::empty({heads, tokens}, DType::f32, Device::cuda);
  attention_row_terms_kernel<<<dim3(blocks_for(tokens, 4), heads), 128, 0, stream()>>>(
      ptr<float>(delta), ptr<float>(lse_log2), ptr<bf16_t>(dout), ptr<bf16_t>(out), ptr<float>(lse), tokens, heads, D);
  CUDA_CHECK_LAUNCH();
  // Keys that start no block (past a segment's end) are still written: zero them first.
  CUDA_CHECK(cudaMemsetAsync(dk.data_ptr(), 0, dk.nbytes(), stream()));
  CUDA_CHECK(cudaMemsetAsync(dv.data_ptr(), 0, dv.nbytes(), stream()));
  const int key_blocks = static_cast<int>((max_seqlen + kBN - 1) / kBN);
  const float scale_log2 = static_cast<float>(p.scale * kLog2e);
  const size_t key_smem = (2 * kBN * D + 4 * kBM * D) * sizeof(bf16_t) + 4 * kBM * sizeof(float);
  allow_dynamic_smem(flash_bwd_kernel<D>, key_smem);
  flash_bwd_kernel<D><<<dim3(seg.count * key_blocks, kv_heads), kWarps * 32, key_smem, stream()>>>(
      ptr<bf16_t>(dk), ptr<bf16_t>(dv), ptr<bf16_t>(dout), ptr<bf16_t>(q), ptr<bf16_t>(k), ptr<bf16_t>(v),
      ptr<float>(lse_log2), ptr<float>(delta), seg, key_blocks, tokens, heads, kv_heads, p.window, p.causal,
      scale_log2);
  CUDA_CHECK_LAUNCH();
  const int query_blocks = static_cast<int>((max_seqlen + kBM - 1) / kBM);
  const size_t query_smem = (2 * kBM * D + 4 * kBN * D) * sizeof(bf16_t);
  allow_dynamic_smem(flash_dq_kernel<D>, query_smem);
  flash_dq_kernel<D><<<dim3(seg.count * query_blocks, heads), kWarps * 32, query_smem, stream()>>>(
      ptr<bf16_t>(dq), ptr<bf16_t>(dout), ptr<bf16_t>(q), ptr<bf16_t>(k), ptr<bf16_t>(v), ptr<float>(lse_log2),
      ptr<float>(delta), seg, query_blocks, tokens, heads, kv_heads, p.window, p.causal, scale_log2);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

bool flash_attention_supports(const Tensor& q, const AttentionParams& p) {
  return q.dtype() == DType::bf16 && (p.head_dim == 64 || p.head_dim == 128);
}

void flash_attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v, Segments seg,
                             const AttentionParams& p, int64_t tokens, int64_t max_seqlen) {
  if (p.head_dim == 64) launch_flash_fwd<64>(out, lse, q, k, v, seg, p, tokens, max_seqlen);
  else launch_flash_fwd<128>(out, lse, q, k, v, seg, p, tokens, max_seqlen);
}

void flash_attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q, const Tensor& k,
                              const Tensor& v, const Tensor& out, const Tensor& lse, Segments seg,
                              const AttentionParams& p, int64_t tokens, int64_t max_seqlen) {
  if (p.head_dim == 64) launch_flash_bwd<64>(dq, dk, dv, dout, q, k, v, out, lse, seg, p, tokens, max_seqlen);
  else launch_flash_bwd<128>(dq, dk, dv, dout, q, k, v, out, lse, seg, p, tokens, max_seqlen);
}

}  // namespace cuda
}  // namespace weft
