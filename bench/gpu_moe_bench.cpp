// weft/bench/gpu_moe_bench.cpp v1 — the MoE issue's kernels at its two benchmark shapes: the experts' grouped GEMMs
// beside one dense GEMM of the same total size, and the token dispatch (routing, plan, permutation both ways) per
// layer. Mixtral-small: 8192 tokens, hidden 2048, 8 experts of width 5632, top-2; Qwen2-MoE-small: 4096 tokens,
// 60 experts of width 1408, top-4. Rows per expert from a random routing (as at initialisation: near balanced).
#include <numeric>

#include "gpu_bench_util.h"

using namespace weft;
using weft::bench::random_bf16;
using weft::bench::timed;

namespace {

struct MoeShape {
  int64_t tokens, experts, topk, width;
};
constexpr int64_t kHidden = 2048;
const MoeShape kShapes[] = {{8192, 8, 2, 5632}, {4096, 60, 4, 1408}};

// A random top-k routing of the shape's tokens: experts [t, k] on the GPU, and the rows each expert receives.
std::pair<Tensor, std::vector<int64_t>> random_routing(const MoeShape& s) {
  std::mt19937 gen(3);
  Tensor chosen = Tensor::empty({s.tokens, s.topk}, DType::i32);
  std::vector<int32_t> all(static_cast<size_t>(s.experts));
  std::vector<int64_t> rows(static_cast<size_t>(s.experts), 0);
  for (int64_t t = 0; t < s.tokens; ++t) {
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), gen);
    for (int64_t j = 0; j < s.topk; ++j) {
      chosen.data<int32_t>()[t * s.topk + j] = all[j];
      ++rows[all[j]];
    }
  }
  return {chosen.to(Device::cuda), rows};
}

// fc1 of every expert at the shape (arg: 0 Mixtral-small, 1 Qwen2-MoE-small): [rows_e, hidden]·[2·width, hidden]ᵀ.
void BM_GroupedGemm(benchmark::State& state) {
  const MoeShape& s = kShapes[state.range(0)];
  const auto [chosen, rows] = random_routing(s);
  const int64_t total = s.tokens * s.topk, n = 2 * s.width;
  std::vector<Tensor> w;
  for (int64_t e = 0; e < s.experts; ++e) w.push_back(random_bf16({n, kHidden}, 0.02f).clone());
  const Tensor& x = random_bf16({total, kHidden});
  Tensor y = Tensor::empty({total, n}, DType::bf16, Device::cuda);
  timed(state, [&] { ops_for(Device::cuda).grouped_gemm(y, x, w, true, rows); }, 2.0 * total * n * kHidden, 0);
}
BENCHMARK(BM_GroupedGemm)->Arg(0)->Arg(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// The same product as one dense GEMM: what the grouped GEMM would reach if the experts were one matrix.
void BM_DenseGemmOfTheSameSize(benchmark::State& state) {
  const MoeShape& s = kShapes[state.range(0)];
  const int64_t total = s.tokens * s.topk, n = 2 * s.width;
  const Tensor &x = random_bf16({total, kHidden}), &w = random_bf16({n, kHidden}, 0.02f);
  Tensor y = Tensor::empty({total, n}, DType::bf16, Device::cuda);
  timed(state, [&] { ops_for(Device::cuda).gemm(y, x, false, w, true, 1.0, 0.0); }, 2.0 * total * n * kHidden, 0);
}
BENCHMARK(BM_DenseGemmOfTheSameSize)->Arg(0)->Arg(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// One MoE layer's dispatch, forward and backward: routing of fp32 logits, the plan (its counts reach the host),
// the tokens permuted to their experts, the experts' rows combined back; then the backward's two permutations.
void BM_MoeDispatch(benchmark::State& state) {
  const MoeShape& s = kShapes[state.range(0)];
  Ops& ops = ops_for(Device::cuda);
  Tensor logits = Tensor::empty({s.tokens, s.experts}, DType::f32, Device::cuda);
  ops.convert(logits, random_bf16({s.tokens, s.experts}));
  const Tensor& x = random_bf16({s.tokens, kHidden});
  const int64_t total = s.tokens * s.topk;
  Tensor probs = Tensor::empty({s.tokens, s.topk}, DType::f32, Device::cuda);
  Tensor chosen = Tensor::empty({s.tokens, s.topk}, DType::i32, Device::cuda);
  Tensor rows = Tensor::empty({s.tokens, s.topk}, DType::i32, Device::cuda);
  Tensor permuted = Tensor::empty({total, kHidden}, DType::bf16, Device::cuda);
  Tensor combined = Tensor::empty({s.tokens, kHidden}, DType::bf16, Device::cuda);
  std::vector<int64_t> counts;
  timed(
      state,
      [&] {
        ops.moe_route(probs, chosen, logits, {.topk = s.topk});
        ops.moe_dispatch_plan(rows, counts, chosen, s.experts, 0);
        ops.moe_permute(permuted, x, rows);
        ops.moe_unpermute(combined, permuted, rows);
        ops.moe_permute(permuted, combined, rows);
        ops.moe_unpermute(combined, permuted, rows);
      },
      0, 4.0 * total * kHidden * 2 * 2);
}
BENCHMARK(BM_MoeDispatch)->Arg(0)->Arg(1)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
