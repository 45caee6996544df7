// weft/cuda/flash_attention_bwd.cu v9 — flash attention on Hopper's tensor cores, the backward: two deterministic
// passes, or one pass that adds dQ up in L2 (split from flash_attention.cu v3; flash_common.cuh).
#include "flash_common.cuh"

namespace weft {
namespace cuda {
namespace {

// ---------------------------------------------------------------- backward
//
// Two passes on wgmma, no atomics. The key pass: one block per (segment, 128-key block, kv head), two warpgroups
// of 64 keys that keep dK and dV in registers while the block walks every query tile (of every query head of the
// kv head's group) that sees its keys. The query pass: one block per (segment, 128-query block, query head), two
// warpgroups of 64 queries keeping dQ while the block walks key tiles, as the forward does. Tiles are 64 wide, 128
// at head dim 64, where the registers allow it: half the pipeline turns, and less shared memory read per product
// (wgmma's N is 128, not 64).
//
// The one-pass backward (FlashAttention-3's, when determinism is not asked for) drops the query pass and its
// recomputed S and dP: two products of seven. dQ = dS·K sums over keys, which are the rows of the key pass's
// accumulators, so both warpgroups store their dS of a tile into one shared SW128 tile (128 keys × the tile's
// queries) and each multiplies all 128 keys' dS (read as an MN-major A) by K for one 64 × 64 quarter or half of
// the tile's dQ: at head dim 64 its half of the 128 queries, at 128 all 64 queries and its half of the head dims.
// The other warpgroup's dS is complete only a turn later, so the product of tile i rides in the dV/dK turn of tile
// i + 1; two dS tiles alternate, and a warpgroup writes one only after the other has finished reading it (named
// barriers 5-8). Each warpgroup's 64 × 64 fp32 partial then goes back through shared memory and one TMA bulk
// reduction adds it to an fp32 buffer in L2, whose order of additions follows the scheduling: dQ's last bits may
// differ from run to run. Two pipeline stages make room. (A first form, each warpgroup reducing its own 64 keys'
// partial for all 128 queries, moved twice the bytes through L2 and was slower than the two passes.)
constexpr int kBwdKeys = 128, kDqRows = 128;
constexpr int kBwdWgs = 2;  // consumer warpgroups per block (tile_pipeline.cuh)
// The one-pass backward's named barriers for the dS tiles (5-8): after Pingpong's and the warpgroup barriers.
// Barrier kDsBarriers + 2w + s: warpgroup w may write dS tile s (the other warpgroup has read it).
constexpr int kDsBarriers = kFreeBarrier<kBwdWgs> + kBwdWgs;
template <int D>
constexpr int kBwdQueries = D == 64 ? 128 : 64;
template <int D>
constexpr int kDqKeys = D == 64 ? 128 : 64;
template <bool kOnePass>
constexpr int kKeyStages = kOnePass ? 2 : kStages;
// The one-pass backward's shared memory: two dS tiles (bf16), and per warpgroup its dQ partial (fp32).
template <int D, bool kOnePass>
constexpr uint32_t kDsBytes = kOnePass ? kBwdKeys * kBwdQueries<D> * sizeof(bf16_t) : 0;
template <int D, bool kOnePass>
constexpr uint32_t kPartialBytes = kOnePass ? 64 * 64 * sizeof(float) : 0;
template <int D, bool kOnePass>
constexpr uint32_t kOnePassBytes = 2 * kDsBytes<D, kOnePass> + 2 * kPartialBytes<D, kOnePass>;

// The row terms of the softmax backward: delta[h, i] = Σ_d dout·out, and the log-sum-exp in the log2 domain. Row
// r = i·heads + h of dout and out is D contiguous bf16 (16-byte aligned, as the TMA loads need): D / 8 lanes read it
// in 16-byte packs and add their parts in a fixed order.
template <int D>
__global__ void attention_row_terms_kernel(float* delta, float* lse_log2, const bf16_t* dout, const bf16_t* out,
                                           const float* lse, int64_t tokens, int heads) {
  constexpr int kLanes = D / 8;
  const int64_t row = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / kLanes;
  const int part = threadIdx.x % kLanes;
  const bool valid = row < tokens * heads;
  float s = 0.f;
  if (valid) {
    const Pack<bf16_t, 8> a = load_pack<bf16_t, 8>(dout + row * D + part * 8);
    const Pack<bf16_t, 8> b = load_pack<bf16_t, 8>(out + row * D + part * 8);
    #pragma unroll
    for (int k = 0; k < 8; ++k) s += to_f(a.v[k]) * to_f(b.v[k]);
  }
  #pragma unroll
  for (int o = kLanes / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);  // every lane takes part
  if (valid && part == 0) {
    const int64_t at = int64_t(row % heads) * tokens + row / heads;
    delta[at] = s;
    lse_log2[at] = lse[at] * static_cast<float>(kLog2e);
  }
}

// The softmax backward for one score s: p = exp2(s·scale·log2e − lse₂) (zero where the mask hides the pair) and,
// in place of dp, ds = p·(dp − delta).
__device__ __forceinline__ float softmax_grad(float s, float& dp, float lse_log2, float delta, bool shown,
                                              float scale_log2) {
  const float p = shown ? fast_exp2(fmaf(s, scale_log2, -lse_log2)) : 0.f;
  dp = p * (dp - delta);
  return p;
}

// The columns [lo, hi] of a query tile (`n` queries from q0) that see key `key`; empty when lo > hi.
__device__ __forceinline__ ColumnRange seeing_queries(int64_t key, int64_t q0, int n, int64_t seg_hi, int64_t window,
                                                      bool causal) {
  const int64_t first = causal ? max(q0, key) : q0;
  int64_t last = key >= seg_hi ? q0 - 1 : min(seg_hi - 1, q0 + n - 1);
  if (window > 0) last = min(last, key + window - 1);
  return {static_cast<int>(min(first - q0, int64_t(n))), static_cast<int>(max(last - q0, int64_t(-1)))};
}

// The softmax terms (lse in log2 units, delta) of a scores tile's queries. The key pass's columns are queries: their
// terms sit in shared memory, read a pair of adjacent columns per load. The query pass's rows are: two per thread.
struct ColumnTerms {
  const float* lse;
  const float* delta;
};
struct RowTerms {
  float lse[2], delta[2];
};

// A scores tile's softmax backward in place: P in s, dS in dp. Each warp holds 16 accumulator rows, two per thread
// (r = 0, 1: rows g and g + 8); columns are 2t, 2t + 1 of each n8 tile. `terms` are ColumnTerms or RowTerms.
template <bool kMasked, int N, typename Terms>
__device__ __forceinline__ void softmax_backward(float (&s)[N / 8][4], float (&dp)[N / 8][4],
                                                 const ColumnRange (&shown)[2], const Terms& terms, float scale_log2,
                                                 int t) {
  constexpr bool kColumnTerms = std::is_same_v<Terms, ColumnTerms>;
  #pragma unroll
  for (int nt = 0; nt < N / 8; ++nt) {
    float2 lse_pair{}, delta_pair{};
    if constexpr (kColumnTerms) {
      lse_pair = *reinterpret_cast<const float2*>(terms.lse + nt * 8 + 2 * t);
      delta_pair = *reinterpret_cast<const float2*>(terms.delta + nt * 8 + 2 * t);
    }
    #pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = e >> 1, col = nt * 8 + 2 * t + (e & 1);
      const bool visible = !kMasked || (col >= shown[r].lo && col <= shown[r].hi);
      float lse2, dlt;
      if constexpr (kColumnTerms) {
        lse2 = e & 1 ? lse_pair.y : lse_pair.x;
        dlt = e & 1 ? delta_pair.y : delta_pair.x;
      } else {
        lse2 = terms.lse[r];
        dlt = terms.delta[r];
      }
      s[nt][e] = softmax_grad(s[nt][e], dp[nt][e], lse2, dlt, visible, scale_log2);
    }
  }
}

// Two K-major SS products over the head dim, A and B tiles in SW128 atoms: d1 = A1·B1ᵀ, d2 = A2·B2ᵀ (A rows 64 of
// an a_rows-row tile from a1/a2, B rows N of an b_rows-row tile from b1/b2), issued on one pingpong turn.
template <int D, int N>
__device__ __forceinline__ void two_score_products(float (&d1)[N / 8][4], float (&d2)[N / 8][4], uint32_t a1,
                                                   uint32_t a2, int a_rows, uint32_t b1, uint32_t b2, int b_rows,
                                                   const Pingpong<kBwdWgs>& turn) {
  tensor_turn(
      turn, false,
      [&] {
        const uint64_t a1d = desc_k_major(a1), a2d = desc_k_major(a2), b1d = desc_k_major(b1), b2d = desc_k_major(b2);
        #pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) {
          const uint32_t a_step = k_step_offset(ks, a_rows), b_step = k_step_offset(ks, b_rows);
          wgmma_ss<N>(d1, desc_advance(a1d, a_step), desc_advance(b1d, b_step), ks > 0);
          wgmma_ss<N>(d2, desc_advance(a2d, a_step), desc_advance(b2d, b_step), ks > 0);
        }
      },
      d1, d2);
}

// The one-pass backward's dS: a warpgroup's dSᵀ fragments (its 64 keys × N queries as A fragments, see a_fragment;
// warp w holds keys 16w..16w + 15), stored from row `row0` of an SW128 tile of kBwdKeys rows (keys) whose 64-column
// blocks are queries.
template <int N>
__device__ __forceinline__ void store_ds(uint32_t tile, const uint32_t (&da)[N / 16][4], int row0, int warp, int g,
                                         int t) {
  #pragma unroll
  for (int j = 0; j < N / 16; ++j)
    #pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = row0 + 16 * warp + g + 8 * (e & 1), c = 16 * j + 8 * (e >> 1) + 2 * t;
      store_shared_u32(tile + sw128_offset(r, c, kBwdKeys), da[j][e]);
    }
}

// The one-pass backward's fp32 dQ buffer is [heads][D / 64][rows][64]: each 64-column block of a head's dQ on its
// own, so that a warpgroup's 64 × 64 partial is one contiguous run of the buffer. Column c (< 64) of row `row` (a
// token) sits at dq_slot: its 16-byte chunks are XOR-swizzled by the token mod 8, so that the warps' stores of a
// partial into shared memory, which has the buffer's layout, spread over all banks.
__device__ __forceinline__ int dq_slot(int64_t row, int c) {
  return (((c / 4) ^ static_cast<int>(row & 7)) * 4) + c % 4;
}

// The one-pass backward's 64 × 64 dQ partial of 64 queries from q0 (warp w's rows 16w..16w + 15) into shared memory
// laid out as the fp32 buffer's rows.
__device__ __forceinline__ void store_dq(float* tile, const float (&acc)[8][4], int64_t q0, int warp, int g, int t) {
  #pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = 16 * warp + g + 8 * half;
    #pragma unroll
    for (int dt = 0; dt < 8; ++dt)
      *reinterpret_cast<float2*>(tile + r * 64 + dq_slot(q0 + r, dt * 8 + 2 * t)) =
          make_float2(acc[dt][2 * half], acc[dt][2 * half + 1]);
  }
}

// dq[token, h, :] = scale · the one-pass buffer's rows (h, ·, token), unswizzled; one thread per 4 columns.
template <int D>
__global__ void dq_from_buffer_kernel(bf16_t* dq, const float* buffer, int64_t tokens, int64_t buffer_rows,
                                      int heads, float scale) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= tokens * heads * (D / 4)) return;
  const int c = static_cast<int>(i % (D / 4)) * 4;
  const int64_t token = i / (D / 4) / heads;
  const int h = static_cast<int>(i / (D / 4) % heads);
  const float4 v = *reinterpret_cast<const float4*>(
      buffer + ((int64_t(h) * (D / 64) + c / 64) * buffer_rows + token) * 64 + dq_slot(token, c % 64));
  uint2 packed;
  packed.x = pack_bf16(v.x * scale, v.y * scale);
  packed.y = pack_bf16(v.z * scale, v.w * scale);
  *reinterpret_cast<uint2*>(dq + (token * heads + h) * D + c) = packed;
}

// The key pass; with kOnePass it also adds each tile's dQ partials to dq_buffer (laid out as dq_slot says, zero at
// the start).
template <int D, bool kOnePass>
__global__ void __launch_bounds__(pipeline_threads(kBwdWgs), 1) flash_dkv_kernel(
    bf16_t* dk, bf16_t* dv, float* dq_buffer, int64_t buffer_rows, const __grid_constant__ FlashMaps maps,
    const float* lse_log2, const float* delta, Segments seg, int64_t tokens, int heads,
    int kv_heads, int64_t window, bool causal, float scale_log2) {
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = aligned_tiles(smem_raw);
  bf16_t* sK = reinterpret_cast<bf16_t*>(smem);
  bf16_t* sV = sK + kBwdKeys * D;
  constexpr int kSt = kKeyStages<kOnePass>;
  bf16_t* sQ = sV + kBwdKeys * D;  // kSt stages of Q, dO, lse and delta
  bf16_t* sdO = sQ + kSt * kBwdQueries<D> * D;
  // One pass: two dS tiles, then each warpgroup's dQ partial.
  unsigned char* sDs = reinterpret_cast<unsigned char*>(sdO + kSt * kBwdQueries<D> * D);
  float* sPartials = reinterpret_cast<float*>(sDs + 2 * kDsBytes<D, kOnePass>);
  float* sLse = reinterpret_cast<float*>(sDs + kOnePassBytes<D, kOnePass>);
  float* sDelta = sLse + kSt * kBwdQueries<D>;
  const TilePipeline<kSt> pipe{reinterpret_cast<uint64_t*>(sDelta + kSt * kBwdQueries<D>)};
  constexpr uint32_t kTileBytes = kBwdQueries<D> * D * sizeof(bf16_t);

  // (segment, kv head) groups, the first key block (the most queries see it) first.
  const GridPlace place = longest_first_place(seg.count * kv_heads);
  const int s = place.group / kv_heads, kb = place.pos, hk = place.group % kv_heads;
  const int qpg = heads / kv_heads;
  const int64_t seg_lo = seg.cu[s], seg_hi = seg.cu[s + 1];
  const int64_t k0 = seg_lo + int64_t(kb) * kBwdKeys;
  if (k0 >= seg_hi) return;
  const int wg = threadIdx.x / 128, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int warp = threadIdx.x / 32 % 4, warp_key = wg * 64 + warp * 16;  // the warp's first key in the block
  pipe.init();

  // Queries that can see these keys: from the block's first key (every query without the causal mask) to the
  // segment end (or the window's reach). The block walks them tile by tile for each query head of its group.
  const int64_t q_first = causal ? k0 : seg_lo;
  const int64_t q_end = window > 0 ? min(seg_hi, k0 + kBwdKeys - 1 + window) : seg_hi;
  const int qb_lo = static_cast<int>((q_first - seg_lo) / kBwdQueries<D>);
  const int q_tiles = static_cast<int>((q_end - seg_lo + kBwdQueries<D> - 1) / kBwdQueries<D>) - qb_lo;
  const int tiles = qpg * q_tiles;
  auto tile_start = [&](int i) { return seg_lo + int64_t(qb_lo + i % q_tiles) * kBwdQueries<D>; };

  if (threadIdx.x >= consumer_threads(kBwdWgs)) {  // the producer: K and V, then the query tiles and their row terms
    producer_registers();
    const int p = threadIdx.x - consumer_threads(kBwdWgs);
    constexpr uint32_t kKvBytes = 2 * kBwdKeys * D * sizeof(bf16_t);
    pipe.produce(
        tiles, p, [&](int i) { return i == 0 ? kKvBytes + 2 * kTileBytes : 2 * kTileBytes; },  // Q and dO tiles
        [&](int i, int stage, uint64_t* full) {
          if (i == 0) {
            tma_tile<D, kBwdKeys>(sK, &maps.k, hk, k0, full);
            tma_tile<D, kBwdKeys>(sV, &maps.v, hk, k0, full);
          }
          const int h = hk * qpg + i / q_tiles;
          tma_tile<D, kBwdQueries<D>>(sQ + stage * kBwdQueries<D> * D, &maps.q, h, tile_start(i), full);
          tma_tile<D, kBwdQueries<D>>(sdO + stage * kBwdQueries<D> * D, &maps.dout, h, tile_start(i), full);
        },
        [&](int i, int stage) {  // the row terms of the tile's queries (zero past the segment)
          if (p >= kBwdQueries<D>) return;
          const int64_t row = tile_start(i) + p, at = int64_t(hk * qpg + i / q_tiles) * tokens + row;
          sLse[stage * kBwdQueries<D> + p] = row < seg_hi ? lse_log2[at] : 0.f;
          sDelta[stage * kBwdQueries<D> + p] = row < seg_hi ? delta[at] : 0.f;
        });
    return;
  }
  consumer_registers<kBwdWgs>();

  const int64_t key_row[2] = {k0 + warp_key + g, k0 + warp_key + g + 8};
  // The warpgroup's 64 keys of K and V as A operands.
  const uint32_t k_addr = smem_addr(sK) + wg * 64 * 128, v_addr = smem_addr(sV) + wg * 64 * 128;
  float dk_acc[D / 8][4], dv_acc[D / 8][4];
  #pragma unroll
  for (int i = 0; i < D / 8; ++i)
    #pragma unroll
    for (int e = 0; e < 4; ++e) dk_acc[i][e] = dv_acc[i][e] = 0.f;
  // Two turns per tile: the score products, then dV and dK (and, one pass, the previous tile's dQ); one pass adds a
  // last turn for the last tile's dQ.
  const Pingpong<kBwdWgs> turn{wg};
  turn.start(2 * tiles + (kOnePass ? 1 : 0));
  float* partial = sPartials + wg * (kPartialBytes<D, kOnePass> / sizeof(float));
  const bool leader = threadIdx.x % 128 == 0;  // issues the warpgroup's bulk reductions
  // One pass: this warpgroup's 64 × 64 of tile j's dQ over all 128 keys, from dS tile j % 2 (issued in a turn).
  // Its queries are the tile's 64-column block dq_queries of dS, its head dims K's block dq_dims.
  const int dq_queries = D == 64 ? wg : 0, dq_dims = D == 64 ? 0 : wg;
  auto issue_dq = [&](float (&acc)[8][4], int j) {
    const uint64_t ds = desc_mn_major(smem_addr(sDs) + (j % 2) * kDsBytes<D, kOnePass> + dq_queries * kBwdKeys * 128,
                                      kBwdKeys * 128);
    const uint64_t kd = desc_mn_major(smem_addr(sK) + dq_dims * kBwdKeys * 128, kBwdKeys * 128);
    #pragma unroll
    for (int ks = 0; ks < kBwdKeys / 16; ++ks)
      wgmma_ss<64, true>(acc, desc_advance(ds, ks * 16 * 128), desc_advance(kd, ks * 16 * 128), ks > 0);
  };
  // One pass, after tile j's dQ product has landed: the partial to L2, and (when a later tile will rewrite dS tile
  // j % 2) the other warpgroup told that this one has read it.
  auto flush_dq = [&](const float (&acc)[8][4], int j) {
    if (j + 2 < tiles) asm volatile("bar.arrive %0, 256;\n" ::"r"(kDsBarriers + 2 * (1 - wg) + j % 2) : "memory");
    if (leader) bulk_wait_read();  // the previous partial has left
    warpgroup_sync<kBwdWgs>(wg);
    const int64_t q = tile_start(j) + 64 * dq_queries;
    store_dq(partial, acc, q, warp, g, t);
    fence_async_shared();
    warpgroup_sync<kBwdWgs>(wg);
    const int64_t block = int64_t(hk * qpg + j / q_tiles) * (D / 64) + dq_dims;
    if (leader) bulk_reduce_add(dq_buffer + (block * buffer_rows + q) * 64, partial, kPartialBytes<D, kOnePass>);
  };

  for (int i = 0; i < tiles; ++i) {
    const int stage = i % kSt;
    const int64_t q0 = tile_start(i);
    pipe.wait_full(i);
    const uint32_t q_addr = smem_addr(sQ) + stage * kTileBytes, do_addr = smem_addr(sdO) + stage * kTileBytes;

    // Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ for the warpgroup's 64 keys × the tile's queries.
    float sacc[kBwdQueries<D> / 8][4], dpacc[kBwdQueries<D> / 8][4];
    two_score_products<D, kBwdQueries<D>>(sacc, dpacc, k_addr, v_addr, kBwdKeys, q_addr, do_addr, kBwdQueries<D>, turn);
    const ColumnTerms terms{sLse + stage * kBwdQueries<D>, sDelta + stage * kBwdQueries<D>};
    // Only warps whose keys cross the diagonal, the window's edge or the segment's end pay for the mask.
    if (tile_needs_mask(q0, kBwdQueries<D>, k0 + warp_key, 16, seg_hi, window, causal)) {
      const ColumnRange shown[2] = {seeing_queries(key_row[0], q0, kBwdQueries<D>, seg_hi, window, causal),
                                    seeing_queries(key_row[1], q0, kBwdQueries<D>, seg_hi, window, causal)};
      softmax_backward<true, kBwdQueries<D>>(sacc, dpacc, shown, terms, scale_log2, t);
    } else {
      softmax_backward<false, kBwdQueries<D>>(sacc, dpacc, {}, terms, scale_log2, t);
    }
    // dV += Pᵀ·dO and dK += dSᵀ·Q, Pᵀ and dSᵀ as A fragments; dO and Q are MN-major B operands (rows: queries).
    uint32_t pa[kBwdQueries<D> / 16][4], da[kBwdQueries<D> / 16][4];
    #pragma unroll
    for (int j = 0; j < kBwdQueries<D> / 16; ++j) {
      a_fragment(pa[j], sacc, j);
      a_fragment(da[j], dpacc, j);
    }
    auto issue_dv_dk = [&] {
      const uint64_t dod = desc_mn_major(do_addr, kTileBytes / (D / 64));
      const uint64_t qd = desc_mn_major(q_addr, kTileBytes / (D / 64));
      #pragma unroll
      for (int j = 0; j < kBwdQueries<D> / 16; ++j) {
        wgmma_rs<D>(dv_acc, pa[j], desc_advance(dod, j * 16 * 128));
        wgmma_rs<D>(dk_acc, da[j], desc_advance(qd, j * 16 * 128));
      }
    };
    if constexpr (kOnePass) {
      // This warpgroup's half of dS tile i % 2, once the other warpgroup has read tile i - 2 from it.
      if (i >= 2) asm volatile("bar.sync %0, 256;\n" ::"r"(kDsBarriers + 2 * wg + i % 2) : "memory");
      store_ds<kBwdQueries<D>>(smem_addr(sDs) + (i % 2) * kDsBytes<D, kOnePass>, da, 64 * wg, warp, g, t);
      fence_async_shared();  // the turns' barriers order it before either warpgroup's dQ product
      float dq_part[8][4];  // the first k step overwrites (zeroing it serializes wgmma)
      // The other warpgroup's half of dS tile i - 1 is in by now. At i = 0 the product runs on tile 0 and is
      // dropped: a wgmma under a branch would serialize them all. The dQ product goes first, in a group of its
      // own, so that its partial is on its way to L2 while dV and dK are still being computed: flushing it after
      // all three had landed held the warpgroup's next turn back (profiled).
      turn.mine();
      wgmma_fence();
      issue_dq(dq_part, i > 0 ? i - 1 : 0);
      wgmma_commit();
      issue_dv_dk();
      wgmma_commit();
      turn.yours(false);
      wgmma_wait<1>();
      fence_operands(dq_part);
      if (i > 0) flush_dq(dq_part, i - 1);
      wgmma_wait<0>();
      fence_operands(dv_acc);
      fence_operands(dk_acc);
      fence_operands(pa);  // dV and dK read these until now: the flush must not have reused their registers
      fence_operands(da);
      pipe.release(i);
    } else {
      tensor_turn(turn, i == tiles - 1, issue_dv_dk, dv_acc, dk_acc);
      pipe.release(i);
    }
  }
  if constexpr (kOnePass) {  // the last tile's dQ in a turn of its own
    float dq_part[8][4];
    tensor_turn(turn, true, [&] { issue_dq(dq_part, tiles - 1); }, dq_part);
    flush_dq(dq_part, tiles - 1);
    if (leader) bulk_wait_done();  // the shared memory must outlive the last reduction's reads
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

// dQ: one block per (segment, 128-query block, query head) walks the key tiles as the forward does, recomputes P
// and dP, and keeps dQ += dS·K in registers. Two more GEMMs than gathering dQ in the key pass through fp32
// atomics, and deterministic: the summation order does not depend on scheduling.
template <int D>
__global__ void __launch_bounds__(pipeline_threads(kBwdWgs), 1) flash_dq_kernel(bf16_t* dq,
                                                                  const __grid_constant__ FlashMaps maps,
                                                                  const float* lse_log2, const float* delta,
                                                                  Segments seg, int blocks_per_seg, int64_t tokens,
                                                                  int heads, int kv_heads, int64_t window, bool causal,
                                                                  float scale_log2) {
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = aligned_tiles(smem_raw);
  bf16_t* sQ = reinterpret_cast<bf16_t*>(smem);
  bf16_t* sdO = sQ + kDqRows * D;
  bf16_t* sK = sdO + kDqRows * D;  // kStages stages
  bf16_t* sV = sK + kStages * kDqKeys<D> * D;
  const TilePipeline<> pipe{reinterpret_cast<uint64_t*>(sV + kStages * kDqKeys<D> * D)};
  constexpr uint32_t kStageBytes = kDqKeys<D> * D * sizeof(bf16_t);

  const QueryBlock blk = query_block<kDqRows, kDqKeys<D>>(seg, heads, blocks_per_seg, window, causal);
  const int64_t seg_lo = blk.seg_lo, seg_hi = blk.seg_hi, q0 = blk.q0;
  const int kb_lo = blk.kb_lo, tiles = blk.kb_hi - blk.kb_lo;
  if (q0 >= seg_hi) return;
  const int h = blk.h, hk = h / (heads / kv_heads);
  const int wg = threadIdx.x / 128, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int warp_row = wg * 64 + (threadIdx.x / 32 % 4) * 16;
  pipe.init();

  if (threadIdx.x >= consumer_threads(kBwdWgs)) {  // the producer: Q and dO, then the key tiles
    producer_registers();
    const int p = threadIdx.x - consumer_threads(kBwdWgs);
    constexpr uint32_t kQBytes = 2 * kDqRows * D * sizeof(bf16_t), kKvBytes = 2 * kDqKeys<D> * D * sizeof(bf16_t);
    pipe.produce(
        tiles, p, [&](int i) { return i == 0 ? kQBytes + kKvBytes : kKvBytes; },
        [&](int i, int stage, uint64_t* full) {
          if (i == 0) {
            tma_tile<D, kDqRows>(sQ, &maps.q, h, q0, full);
            tma_tile<D, kDqRows>(sdO, &maps.dout, h, q0, full);
          }
          const int64_t key0 = seg_lo + int64_t(kb_lo + i) * kDqKeys<D>;
          tma_tile<D, kDqKeys<D>>(sK + stage * kDqKeys<D> * D, &maps.k, hk, key0, full);
          tma_tile<D, kDqKeys<D>>(sV + stage * kDqKeys<D> * D, &maps.v, hk, key0, full);
        },
        [](int, int) {});
    return;
  }
  consumer_registers<kBwdWgs>();

  const int64_t row_q[2] = {q0 + warp_row + g, q0 + warp_row + g + 8};
  RowTerms terms;
  #pragma unroll
  for (int r = 0; r < 2; ++r) {
    const bool valid = row_q[r] < seg_hi;  // rows past the segment are masked; their terms must not be read
    terms.lse[r] = valid ? lse_log2[int64_t(h) * tokens + row_q[r]] : 0.f;
    terms.delta[r] = valid ? delta[int64_t(h) * tokens + row_q[r]] : 0.f;
  }
  const uint32_t q_addr = smem_addr(sQ) + wg * 64 * 128, do_addr = smem_addr(sdO) + wg * 64 * 128;
  float dq_acc[D / 8][4];
  #pragma unroll
  for (int i = 0; i < D / 8; ++i) dq_acc[i][0] = dq_acc[i][1] = dq_acc[i][2] = dq_acc[i][3] = 0.f;
  const Pingpong<kBwdWgs> turn{wg};  // two turns per tile: the score products, then dQ
  turn.start(2 * tiles);

  for (int i = 0; i < tiles; ++i) {
    const int stage = i % kStages, kb = kb_lo + i;
    pipe.wait_full(i);
    const uint32_t k_addr = smem_addr(sK) + stage * kStageBytes, v_addr = smem_addr(sV) + stage * kStageBytes;

    // S = Q·Kᵀ and dP = dO·Vᵀ for the warpgroup's 64 queries and the tile's keys; then dS in place of dP.
    float sacc[kDqKeys<D> / 8][4], dpacc[kDqKeys<D> / 8][4];
    two_score_products<D, kDqKeys<D>>(sacc, dpacc, q_addr, do_addr, kDqRows, k_addr, v_addr, kDqKeys<D>, turn);
    const int64_t key0 = seg_lo + int64_t(kb) * kDqKeys<D>, warp_q0 = q0 + warp_row;
    if (tile_needs_mask(warp_q0, 16, key0, kDqKeys<D>, seg_hi, window, causal)) {
      const ColumnRange shown[2] = {visible_columns(row_q[0], key0, kDqKeys<D>, seg_hi, window, causal),
                                    visible_columns(row_q[1], key0, kDqKeys<D>, seg_hi, window, causal)};
      softmax_backward<true, kDqKeys<D>>(sacc, dpacc, shown, terms, scale_log2, t);
    } else {
      softmax_backward<false, kDqKeys<D>>(sacc, dpacc, {}, terms, scale_log2, t);
    }
    // dQ += dS·K, dS as A fragments; K an MN-major B (rows are keys).
    uint32_t da[kDqKeys<D> / 16][4];
    #pragma unroll
    for (int j = 0; j < kDqKeys<D> / 16; ++j) a_fragment(da[j], dpacc, j);
    tensor_turn(
        turn, i == tiles - 1,
        [&] {
          const uint64_t kd = desc_mn_major(k_addr, kStageBytes / (D / 64));
          #pragma unroll
          for (int j = 0; j < kDqKeys<D> / 16; ++j) wgmma_rs<D>(dq_acc, da[j], desc_advance(kd, j * 16 * 128));
        },
        dq_acc);
    pipe.release(i);
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
  WEFT_ASSERT(packs_fit<bf16_t>(D, {dout.data_ptr(), out.data_ptr()}));
  attention_row_terms_kernel<D><<<blocks_for(tokens * heads * (D / 8), 256), 256, 0, stream()>>>(
      ptr<float>(delta), ptr<float>(lse_log2), ptr<bf16_t>(dout), ptr<bf16_t>(out), ptr<float>(lse), tokens, heads);
  CUDA_CHECK_LAUNCH();
  // Keys that start no block (past a segment's end) are still written: zero them first.
  CUDA_CHECK(cudaMemsetAsync(dk.data_ptr(), 0, dk.nbytes(), stream()));
  CUDA_CHECK(cudaMemsetAsync(dv.data_ptr(), 0, dv.nbytes(), stream()));
  const int key_blocks = static_cast<int>((max_seqlen + kBwdKeys - 1) / kBwdKeys);
  const float scale_log2 = static_cast<float>(p.scale * kLog2e);
  const FlashMaps key_maps{head_map(q, tokens, heads, D, kBwdQueries<D>), head_map(k, tokens, kv_heads, D, kBwdKeys),
                           head_map(v, tokens, kv_heads, D, kBwdKeys),
                           head_map(dout, tokens, heads, D, kBwdQueries<D>), {}};  // no output map
  // The key pass, in one of two forms: kOnePass also gathers dQ in `buffer`.
  auto key_pass = [&](auto one_pass, float* buffer, int64_t buffer_rows) {
    constexpr bool kOnePass = decltype(one_pass)::value;
    constexpr int kSt = kKeyStages<kOnePass>;
    const size_t smem = pipeline_smem((2 * kBwdKeys * D + 2 * kSt * kBwdQueries<D> * D) * sizeof(bf16_t) +
                                          kOnePassBytes<D, kOnePass> + 2 * kSt * kBwdQueries<D> * sizeof(float),
                                      kSt);
    allow_dynamic_smem(flash_dkv_kernel<D, kOnePass>, smem, "flash attention backward (key pass)");
    flash_dkv_kernel<D, kOnePass><<<seg.count * key_blocks * kv_heads, pipeline_threads(kBwdWgs), smem, stream()>>>(
        ptr<bf16_t>(dk), ptr<bf16_t>(dv), buffer, buffer_rows, key_maps, ptr<float>(lse_log2), ptr<float>(delta), seg,
        tokens, heads, kv_heads, p.window, p.causal, scale_log2);
    CUDA_CHECK_LAUNCH();
  };
  if (!p.deterministic) {
    // A query tile of the last segment may run past the last token: kBwdQueries<D> rows of slack per head.
    const int64_t rows = tokens + kBwdQueries<D>;
    Tensor buffer = Tensor::empty({heads, D / 64, rows, 64}, DType::f32, Device::cuda);
    CUDA_CHECK(cudaMemsetAsync(buffer.data_ptr(), 0, buffer.nbytes(), stream()));
    key_pass(std::true_type{}, ptr<float>(buffer), rows);
    dq_from_buffer_kernel<D><<<blocks_for(tokens * heads * (D / 4), 256), 256, 0, stream()>>>(
        ptr<bf16_t>(dq), ptr<float>(buffer), tokens, rows, heads, static_cast<float>(p.scale));
    CUDA_CHECK_LAUNCH();
    return;
  }
  key_pass(std::false_type{}, nullptr, 0);
  const int query_blocks = static_cast<int>((max_seqlen + kDqRows - 1) / kDqRows);
  const size_t query_smem = pipeline_smem((2 * kDqRows * D + 2 * kStages * kDqKeys<D> * D) * sizeof(bf16_t));
  allow_dynamic_smem(flash_dq_kernel<D>, query_smem, "flash attention backward (query pass)");
  const FlashMaps query_maps{head_map(q, tokens, heads, D, kDqRows), head_map(k, tokens, kv_heads, D, kDqKeys<D>),
                             head_map(v, tokens, kv_heads, D, kDqKeys<D>), head_map(dout, tokens, heads, D, kDqRows),
                             {}};
  flash_dq_kernel<D><<<seg.count * query_blocks * heads, pipeline_threads(kBwdWgs), query_smem, stream()>>>(
      ptr<bf16_t>(dq), query_maps, ptr<float>(lse_log2),
      ptr<float>(delta), seg, query_blocks, tokens, heads, kv_heads, p.window, p.causal, scale_log2);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void flash_attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q, const Tensor& k,
                              const Tensor& v, const Tensor& out, const Tensor& lse, Segments seg,
                              const AttentionParams& p, int64_t tokens, int64_t max_seqlen) {
  if (p.head_dim == 64) launch_flash_bwd<64>(dq, dk, dv, dout, q, k, v, out, lse, seg, p, tokens, max_seqlen);
  else launch_flash_bwd<128>(dq, dk, dv, dout, q, k, v, out, lse, seg, p, tokens, max_seqlen);
}

}  // namespace cuda
}  // namespace weft
