// weft/cuda/flash_attention.cu v11 — flash attention on Hopper's tensor cores, the forward: GQA, causal or full,
// sliding windows and document segments, head dims 64 and 128 (the backward is in flash_attention_bwd.cu).
//
// Every product runs on warpgroup MMA (wgmma.cuh): the TMA unit moves tiles into shared memory laid out in SW128
// atoms, from where wgmma reads its operands; scores stay in registers as the A operand of the next product. Online
// softmax in the log2 domain with fp32 state.
#include "flash_common.cuh"

namespace weft {
namespace cuda {
namespace {

// One key tile of the forward's online softmax for a warp's 16 query rows (two per thread): scores become
// probabilities in place, the running max and sum move on, and corr says how to rescale the output.
// exp2(s·scale·log2e − max) is one FFMA and one MUFU op per score. Each row's max and sum gather in kParts partial
// values, combined at the end: one running value per row made a chain of 32 dependent instructions, the longest
// path through the softmax in a profile of the head-dim-64 forward (eight parts at head dim 128; four at head dim
// 64, where eight and sixteen measured 1–3 % slower once the row sums left registers to spare).
// The max must agree across the row's quad of threads; the sum need not until the epilogue, so l_run holds this
// thread's part of it (quad_row_sum adds them). Without kSum the sum is left to the tensor cores (kRowSumByMma) and
// l_run is untouched.
template <bool kMasked, bool kSum, int kKeys, int kParts>
__device__ __forceinline__ void online_softmax(float (&sacc)[kKeys / 8][4], float (&m_run)[2], float (&l_run)[2],
                                               float (&corr)[2], const ColumnRange (&shown)[2], float scale_log2,
                                               int t) {
  // The running max moves only when a tile's max passes it by more than kMaxSlack (log2 units), as FlashAttention-4
  // does: probabilities then reach at most 2^kMaxSlack before normalization, harmless in fp32 and in bf16's
  // exponent range, and most tiles after a row's first leave O unscaled (rescale_output skips the warp's 64 FMUL).
  constexpr float kMaxSlack = 8.f;
  // Element e of n8 tile nt is row e / 2, column nt·8 + 2t + e % 2; it goes to part (nt mod kParts/2)·2 + e % 2.
  auto part = [](int nt, int e) { return (nt % (kParts / 2)) * 2 + e % 2; };
  auto combine = [](const float (&v)[kParts], auto op) {  // a balanced tree of neighbours
    float w[kParts];
    #pragma unroll
    for (int p = 0; p < kParts; ++p) w[p] = v[p];
    #pragma unroll
    for (int n = 1; n < kParts; n *= 2)
      #pragma unroll
      for (int p = 0; p < kParts; p += 2 * n) w[p] = op(w[p], w[p + n]);
    return w[0];
  };
  float mx[2][kParts], sum[2][kParts], base[2];
  #pragma unroll
  for (int r = 0; r < 2; ++r)
    #pragma unroll
    for (int p = 0; p < kParts; ++p) mx[r][p] = -INFINITY, sum[r][p] = 0.f;
  #pragma unroll
  for (int nt = 0; nt < kKeys / 8; ++nt)
    #pragma unroll
    for (int e = 0; e < 4; ++e) {
      float& x = sacc[nt][e];
      const int r = e / 2, col = nt * 8 + 2 * t + e % 2;
      if (kMasked && (col < shown[r].lo || col > shown[r].hi)) x = -INFINITY;
      mx[r][part(nt, e)] = fmaxf(mx[r][part(nt, e)], x);
    }
  #pragma unroll
  for (int r = 0; r < 2; ++r) {
    float m = combine(mx[r], [](float a, float b) { return fmaxf(a, b); });
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
    const float m_tile = m * scale_log2;
    const bool moves = m_tile > m_run[r] + kMaxSlack;  // always true on a row's first visible scores
    corr[r] = moves ? fast_exp2(m_run[r] - m_tile) : 1.f;
    if (moves) m_run[r] = m_tile;
    base[r] = m_run[r] == -INFINITY ? 0.f : m_run[r];
  }
  #pragma unroll
  for (int nt = 0; nt < kKeys / 8; ++nt)
    #pragma unroll
    for (int e = 0; e < 4; ++e) {
      float& x = sacc[nt][e];
      x = fast_exp2(fmaf(x, scale_log2, -base[e / 2]));
      if (kSum) sum[e / 2][part(nt, e)] += x;
    }
  if (kSum)
    #pragma unroll
    for (int r = 0; r < 2; ++r)
      l_run[r] = l_run[r] * corr[r] + combine(sum[r], [](float a, float b) { return a + b; });
}
// A row's sum from its quad's four parts (online_softmax leaves them apart).
__device__ __forceinline__ float quad_row_sum(float part) {
  part += __shfl_xor_sync(0xffffffffu, part, 1);
  return part + __shfl_xor_sync(0xffffffffu, part, 2);
}
// O's rows rescaled to a new running max (corr from online_softmax). Once the max settles (most tiles of a long
// row), no row of the warp needs it.
// kRowSum: the row sums' accumulator (see kRowSumByMma) too.
template <int D, bool kRowSum>
__device__ __forceinline__ void rescale_output(float (&o)[D / 8][4], float (&row_sum)[1][4], const float (&corr)[2]) {
  if (__any_sync(0xffffffffu, corr[0] != 1.f || corr[1] != 1.f)) {
    if (kRowSum) {
      row_sum[0][0] *= corr[0];
      row_sum[0][1] *= corr[0];
      row_sum[0][2] *= corr[1];
      row_sum[0][3] *= corr[1];
    }
    #pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      o[dt][0] *= corr[0];
      o[dt][1] *= corr[0];
      o[dt][2] *= corr[1];
      o[dt][3] *= corr[1];
    }
  }
}

// ---------------------------------------------------------------- forward

// The forward runs on wgmma: kFwdWgs consumer warpgroups per block, 64 query rows each, 128-key tiles. S = Q·Kᵀ
// reads Q and K from shared memory; P stays in registers as the A operand of O += P·V, V read as an MN-major B.
// Each warp owns 16 rows of the accumulators (two per thread), as with mma.sync's m16n8 tiles. At head dim 64 a
// tile's exp2 work takes the SM's MUFU units as long as its two products take the tensor cores, so the forward is
// bound by how well the softmax hides behind other warpgroups' products: three warpgroups (192 rows, as
// FlashAttention-3 has at head dim 64) give each softmax two turns to hide behind; head dim 128's accumulators
// need two warpgroups' register budget.
template <int D>
constexpr int kFwdWgs = D == 64 ? 3 : 2;
template <int D>
constexpr int kFwdRows = 64 * kFwdWgs<D>;
constexpr int kFwdKeys = 128;
// At head dim 64 each row's sum of probabilities comes from the tensor cores: P·V gains an m64n8 product of P with
// a tile of ones, whose accumulator columns all hold the row's sum of P as rounded to bf16 (the P that weights V),
// rescaled with O. That takes one FADD per score off the softmax, whose issue slots bound the forward there (+1.9 %);
// at head dim 128, where the power cap binds, the extra product cost 3.3 %.
template <int D>
constexpr bool kRowSumByMma = D == 64;
template <int D>
constexpr int kOnesElems = kRowSumByMma<D> ? kConstTileBytes / 2 : 0;  // the ones, read through desc_const_tile

template <int D>
__global__ void __launch_bounds__(pipeline_threads(kFwdWgs<D>), 1) flash_fwd_kernel(bf16_t* out, float* lse,
                                                                   const __grid_constant__ FlashMaps maps, Segments seg,
                                                                   int blocks_per_seg, int64_t tokens, int heads,
                                                                   int kv_heads, int64_t window, bool causal,
                                                                   float scale_log2) {
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = aligned_tiles(smem_raw);
  bf16_t* sQ = reinterpret_cast<bf16_t*>(smem);
  constexpr int kWgs = kFwdWgs<D>, kRows = kFwdRows<D>, kSoftmaxParts = kWgs == 2 ? 8 : 4;
  bf16_t* sK = sQ + kRows * D;  // kStages stages
  bf16_t* sV = sK + kStages * kFwdKeys * D;
  bf16_t* sOnes = sV + kStages * kFwdKeys * D;
  const TilePipeline<kStages, kWgs> pipe{reinterpret_cast<uint64_t*>(sOnes + kOnesElems<D>)};
  constexpr uint32_t kStageBytes = kFwdKeys * D * sizeof(bf16_t);

  const QueryBlock blk = query_block<kRows, kFwdKeys>(seg, heads, blocks_per_seg, window, causal);
  const int64_t seg_lo = blk.seg_lo, seg_hi = blk.seg_hi, q0 = blk.q0;
  const int kb_lo = blk.kb_lo, tiles = blk.kb_hi - blk.kb_lo;
  if (q0 >= seg_hi) return;
  const int h = blk.h, hk = h / (heads / kv_heads);
  const int wg = threadIdx.x / 128, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int warp_row = wg * 64 + (threadIdx.x / 32 % 4) * 16;  // the warp's first row in the block
  if constexpr (kRowSumByMma<D>) {
    for (int i = threadIdx.x; i < kOnesElems<D> / 2; i += blockDim.x)
      store_shared_u32(smem_addr(sOnes) + 4 * i, 0x3F803F80u);  // two bf16 ones
    fence_async_shared();  // the ones are read by wgmma, after pipe.init's barrier
  }
  pipe.init();

  if (threadIdx.x >= consumer_threads(kWgs)) {  // the producer: Q, then the key tiles
    producer_registers();
    const int p = threadIdx.x - consumer_threads(kWgs);
    constexpr uint32_t kQBytes = kRows * D * sizeof(bf16_t), kKvBytes = 2 * kFwdKeys * D * sizeof(bf16_t);
    pipe.produce(
        tiles, p, [&](int i) { return i == 0 ? kQBytes + kKvBytes : kKvBytes; },
        [&](int i, int stage, uint64_t* full) {
          if (i == 0) tma_tile<D, kRows>(sQ, &maps.q, h, q0, full);
          const int64_t key0 = seg_lo + int64_t(kb_lo + i) * kFwdKeys;
          tma_tile<D, kFwdKeys>(sK + stage * kFwdKeys * D, &maps.k, hk, key0, full);
          tma_tile<D, kFwdKeys>(sV + stage * kFwdKeys * D, &maps.v, hk, key0, full);
        },
        [](int, int) {});
    return;
  }
  consumer_registers<kWgs>();

  // The warpgroup's 64 rows of Q.
  const uint64_t q_desc = desc_k_major(smem_addr(sQ) + wg * 64 * 128);
  float o[D / 8][4], m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f}, row_sum[1][4] = {};
  #pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;

  // Turn i issues S = Q·Kᵀ for tile i + 1, then O += P·V for tile i; the softmax of tile i + 1 runs as soon as its
  // scores are in, while this warpgroup's P·V and then the other warpgroup's turn keep the tensor cores busy
  // (FlashAttention-3's two overlaps). P waits in fp32 until P·V of the previous tile has read the bf16 fragments;
  // the output is rescaled only after that P·V has landed. (The first and last turns are peeled off: wgmma under a
  // branch would be serialized.)
  uint32_t pa[kFwdKeys / 16][4];
  float sacc[kFwdKeys / 8][4], corr[2];
  // O += P·V for tile i: V's rows are keys (K), its columns head dims (N).
  // With kRowSumByMma, each k step also adds P's row sums into row_sum (B: the same 16 × 8 ones each step).
  const uint64_t ones_desc = desc_const_tile(smem_addr(sOnes));
  auto issue_pv = [&](int i) {
    const uint64_t v_desc = desc_mn_major(smem_addr(sV) + i % kStages * kStageBytes, kFwdKeys * 128);
    #pragma unroll
    for (int j = 0; j < kFwdKeys / 16; ++j) {
      wgmma_rs<D>(o, pa[j], desc_advance(v_desc, j * 16 * 128));
      if constexpr (kRowSumByMma<D>) wgmma_rs<8>(row_sum, pa[j], ones_desc);
    }
  };
  // S = Q·Kᵀ for the warpgroup's 64 rows and tile i's 128 keys.
  auto issue_scores = [&](int i) {
    const uint64_t k_desc = desc_k_major(smem_addr(sK) + i % kStages * kStageBytes);
    #pragma unroll
    for (int ks = 0; ks < D / 16; ++ks)
      wgmma_ss<kFwdKeys>(sacc, desc_advance(q_desc, k_step_offset(ks, kRows)),
                         desc_advance(k_desc, k_step_offset(ks, kFwdKeys)), ks > 0);
  };
  // Online softmax of tile i in the log2 domain (only warps whose rows cross the diagonal, the window's edge or the
  // segment's end pay for the mask).
  auto softmax = [&](int i) {
    fence_operands(sacc);
    const int64_t key0 = seg_lo + int64_t(kb_lo + i) * kFwdKeys, warp_q0 = q0 + warp_row;
    if (tile_needs_mask(warp_q0, 16, key0, kFwdKeys, seg_hi, window, causal)) {
      const ColumnRange shown[2] = {visible_columns(warp_q0 + g, key0, kFwdKeys, seg_hi, window, causal),
                                    visible_columns(warp_q0 + g + 8, key0, kFwdKeys, seg_hi, window, causal)};
      online_softmax<true, !kRowSumByMma<D>, kFwdKeys, kSoftmaxParts>(sacc, m_run, l_run, corr, shown, scale_log2, t);
    } else {
      online_softmax<false, !kRowSumByMma<D>, kFwdKeys, kSoftmaxParts>(sacc, m_run, l_run, corr, {}, scale_log2, t);
    }
  };
  // P of the tile just softmaxed becomes the next turn's A fragments.
  auto keep_p = [&] {
    #pragma unroll
    for (int j = 0; j < kFwdKeys / 16; ++j) a_fragment(pa[j], sacc, j);
  };
  // The key tiles this warpgroup's rows see, [0, seen). At head dim 64 (192-row blocks, 128-key tiles) a block's
  // last tile can lie wholly after a warpgroup's last row under the causal mask (3 % of the warpgroups' tiles on the
  // 1.5B shape), and in the last block of a segment whose length is no multiple of 192 whole warpgroups have no rows
  // (5 %). Such a warpgroup skips the products and softmax of the tiles it does not see but still takes its turns
  // and releases their stages, so the other warpgroups' rotation and the stages' hand-over go on unchanged; it always
  // takes tile 0, so that no wgmma sits under a branch. At head dim 128 a block's rows meet the key tiles on the
  // diagonal, so only blocks past a segment's end would skip anything, and there the loop bound that is no longer
  // the block's made the kernel 3.7 % slower on two sequences of 4,096: it keeps the block's.
  const int64_t wg_first = q0 + wg * 64, wg_last = min(wg_first + 63, seg_hi - 1);
  const int seen = D == 128              ? tiles
                   : wg_first >= seg_hi ? 1
                   : causal             ? min(tiles, static_cast<int>((wg_last - seg_lo) / kFwdKeys) + 1 - kb_lo)
                                        : tiles;
  const Pingpong<kWgs> turn{wg};
  turn.start(tiles + 1);
  pipe.wait_full(0);
  tensor_turn(turn, false, [&] { issue_scores(0); });
  softmax(0);
  keep_p();  // O is still zero: nothing to rescale
  for (int i = 0; i + 1 < seen; ++i) {
    pipe.wait_full(i + 1);
    turn.mine();
    wgmma_fence();
    issue_scores(i + 1);
    wgmma_commit();
    issue_pv(i);
    wgmma_commit();
    turn.yours(false);
    wgmma_wait<1>();  // the scores; P·V may still run
    softmax(i + 1);
    wgmma_wait<0>();
    fence_operands(o);
    if constexpr (kRowSumByMma<D>) fence_operands(row_sum);
    fence_operands(pa);  // P·V read these until now: they must not have been reused for the softmax
    pipe.release(i);
    rescale_output<D, kRowSumByMma<D>>(o, row_sum, corr);
    keep_p();
  }
  tensor_turn(turn, seen == tiles, [&] { issue_pv(seen - 1); }, o);
  if constexpr (kRowSumByMma<D>) fence_operands(row_sum);
  pipe.release(seen - 1);
  // The turns left, each releasing the tile the full schedule would have released after it: released only once
  // full, a stage's phase is never arrived at early, and released turn by turn, the producer never waits on a
  // warpgroup that waits for its turn.
  for (int i = seen; i < tiles; ++i) {
    pipe.wait_full(i);
    pipe.release(i);
    turn.mine();
    turn.yours(i == tiles - 1);
  }

  // The output rows, normalized. When all of this warpgroup's 64 rows lie in the segment (or run past the tensor's
  // end, which the TMA unit clips), they go as bf16 into its rows of the Q tile, read for the last time by its last
  // S product, and leave by TMA stores: the warps are done at once, where 4-byte global stores from every thread,
  // queued behind one another, held the block for about a twelfth of the consumers' time at head dim 128
  // (profiled). Rows that run into the next segment are stored directly, row by row.
  constexpr float kLn2 = 0.69314718055994530942f;
  const int64_t wg_row0 = q0 + wg * 64;
  const bool by_tma = wg_row0 + 64 <= seg_hi || seg_hi == tokens;
  #pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = q0 + warp_row + g + 8 * r;
    const float l = kRowSumByMma<D> ? row_sum[0][2 * r] : quad_row_sum(l_run[r]), inv = 1.f / l;
    if (by_tma) {
      #pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        const uint32_t at = smem_addr(sQ) + sw128_offset(warp_row + g + 8 * r, dt * 8 + 2 * t, kRows);
        store_shared_u32(at, pack_bf16(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv));
      }
    } else if (row < seg_hi) {
      bf16_t* dst = out + (row * heads + h) * D;
      #pragma unroll
      for (int dt = 0; dt < D / 8; ++dt)
        *reinterpret_cast<uint32_t*>(dst + dt * 8 + 2 * t) = pack_bf16(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
    }
    if (t == 0 && row < seg_hi) lse[int64_t(h) * tokens + row] = m_run[r] * kLn2 + logf(l);
  }
  if (by_tma) {
    fence_async_shared();
    warpgroup_sync<kWgs>(wg);
    if (threadIdx.x % 128 == 0) {
      tma_store_tile<D>(&maps.out, smem_addr(sQ) + wg * 64 * 128, kRows * 128, h, wg_row0);
      bulk_wait_read();  // the block's shared memory must outlive the store's reads
    }
  }
}

template <int D>
void launch_flash_fwd(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v, Segments seg,
                      const AttentionParams& p, int64_t tokens, int64_t max_seqlen) {
  const int blocks_per_seg = static_cast<int>((max_seqlen + kFwdRows<D> - 1) / kFwdRows<D>);
  const size_t smem = pipeline_smem((kFwdRows<D> * D + 2 * kStages * kFwdKeys * D + kOnesElems<D>) * sizeof(bf16_t));
  allow_dynamic_smem(flash_fwd_kernel<D>, smem, "flash attention forward");
  const int heads = static_cast<int>(p.num_heads), kv_heads = static_cast<int>(p.num_kv_heads);
  const unsigned grid = static_cast<unsigned>(seg.count) * blocks_per_seg * heads;
  const FlashMaps maps{head_map(q, tokens, heads, D, kFwdRows<D>), head_map(k, tokens, kv_heads, D, kFwdKeys),
                       head_map(v, tokens, kv_heads, D, kFwdKeys), {}, head_map(out, tokens, heads, D, 64)};
  flash_fwd_kernel<D><<<grid, pipeline_threads(kFwdWgs<D>), smem, stream()>>>(
      ptr<bf16_t>(out), ptr<float>(lse), maps, seg, blocks_per_seg, tokens, heads, kv_heads, p.window, p.causal,
      static_cast<float>(p.scale * kLog2e));
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

}  // namespace cuda
}  // namespace weft
