// weft/test/gpu/moe_gpu_test.cpp v1 — the CUDA mixture-of-experts ops against the CPU reference: routing (both
// forms), its statistics and backward, the dispatch order, permutation, the scaled SwiGLU, the grouped GEMMs.
//
// Routing compares fp32 logits on both sides, so the experts chosen are the same; bf16 outputs hold ‖Δ‖/‖ref‖ ≤
// 1e-2, fp32 ones from fp32 inputs ≤ 1e-5 (the kernels' __expf against the CPU's double exp), as ops_gpu_test.cpp.
#include <algorithm>
#include <numeric>

#include "gpu_util.h"

using namespace weft;
using namespace weft::test;

namespace {

Ops& gpu_ops() { return ops_for(Device::cuda); }

// Random expert choices [t, k] without repeats in a row, some pairs dropped (-1).
Tensor random_choices(int64_t t, int64_t k, int64_t experts, double dropped) {
  Tensor out = Tensor::empty({t, k}, DType::i32);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<int32_t> all(static_cast<size_t>(experts));
  for (int64_t i = 0; i < t; ++i) {
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng());
    for (int64_t j = 0; j < k; ++j) out.data<int32_t>()[i * k + j] = u(rng()) < dropped ? -1 : all[j];
  }
  return out;
}

}  // namespace

TEST(GpuMoe, RoutingStatsAndBackwardMatchTheCpu) {
  REQUIRE_GPU();
  for (auto [t, experts, k] : {std::tuple{4096, 8, 2}, {3000, 60, 4}, {517, 64, 8}})
    for (const bool pre : {false, true}) {
      SCOPED_TRACE(str(t, " tokens, ", experts, " experts, top-", k, pre ? ", pre-softmax" : ""));
      const RouterParams p{.topk = k, .pre_softmax = pre};
      const Tensor logits = randn({t, experts}, 2.0);
      Tensor probs = Tensor::empty({t, k}, DType::f32), chosen = Tensor::empty({t, k}, DType::i32);
      cpu_ops().moe_route(probs, chosen, logits, p);
      Tensor gprobs = poisoned({t, k}, DType::f32), gchosen = poisoned({t, k}, DType::i32);
      const Tensor glogits = logits.to(Device::cuda);
      gpu_ops().moe_route(gprobs, gchosen, glogits, p);
      EXPECT_TRUE(same_bits(gchosen, chosen));
      EXPECT_LT(rel_error(gprobs, probs), 1e-5);

      Tensor stats = Tensor::empty({2 * experts + 1}, DType::f32), gstats = poisoned({2 * experts + 1}, DType::f32);
      auto parts = [&](Tensor& s) {
        return std::tuple{s.rows(0, experts), s.rows(experts, 2 * experts), s.rows(2 * experts, 2 * experts + 1)};
      };
      auto [sc, cn, z] = parts(stats);
      auto [gsc, gcn, gz] = parts(gstats);
      cpu_ops().moe_router_stats(sc, cn, z, logits, chosen);
      gpu_ops().moe_router_stats(gsc, gcn, gz, glogits, gchosen);
      EXPECT_LT(rel_error(gsc, sc), 1e-5);
      EXPECT_TRUE(same_bits(gcn, cn));
      EXPECT_LT(rel_error(gz, z), 1e-5);

      const Tensor dprobs = randn({t, k}), aux = randn({experts}, 0.1);
      Tensor dlogits = Tensor::empty({t, experts}, DType::f32), gdlogits = poisoned({t, experts}, DType::f32);
      cpu_ops().moe_route_backward(dlogits, dprobs, probs, chosen, logits, aux, 0.01, p);
      gpu_ops().moe_route_backward(gdlogits, dprobs.to(Device::cuda), gprobs, gchosen, glogits, aux.to(Device::cuda),
                                   0.01, p);
      EXPECT_LT(rel_error(gdlogits, dlogits), 1e-5);
    }
}

TEST(GpuMoe, DispatchPlanPermutationAndCombineMatchTheCpu) {
  REQUIRE_GPU();
  for (auto [t, experts, k, pad] : {std::tuple{4096, 8, 2, 0}, {2048, 60, 4, 0}, {1000, 16, 2, 160}}) {
    SCOPED_TRACE(str(t, " tokens, ", experts, " experts, top-", k, ", pad ", pad));
    const Tensor chosen = random_choices(t, k, experts, pad > 0 ? 0.05 : 0.02);
    Tensor rows = Tensor::empty({t, k}, DType::i32), grows = poisoned({t, k}, DType::i32);
    std::vector<int64_t> counts, gcounts;
    cpu_ops().moe_dispatch_plan(rows, counts, chosen, experts, pad);
    gpu_ops().moe_dispatch_plan(grows, gcounts, chosen.to(Device::cuda), experts, pad);
    EXPECT_EQ(gcounts, counts);
    EXPECT_TRUE(same_bits(grows, rows));
    const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t(0));
    for (const int64_t h : {2048, 1000}) {  // 16-byte packs, and rows that cannot use them
      const Tensor x = bf16_rounded(randn({t, h}));
      Tensor permuted = Tensor::zeros({total, h}, DType::f32), gpermuted = gpu(permuted);
      cpu_ops().moe_permute(permuted, x, rows);
      gpu_ops().moe_permute(gpermuted, gpu(x), grows);
      EXPECT_EQ(rel_error(gpermuted, permuted), 0.0) << "h " << h;
      Tensor combined = Tensor::empty({t, h}, DType::f32), gcombined = poisoned({t, h}, DType::bf16);
      cpu_ops().moe_unpermute(combined, permuted, rows);
      gpu_ops().moe_unpermute(gcombined, gpermuted, grows);
      EXPECT_LT(rel_error(gcombined, combined), 1e-2) << "h " << h;
    }
    const Tensor pairs = randn({t, k});
    Tensor by_row = Tensor::zeros({total}, DType::f32), back = Tensor::empty({t, k}, DType::f32);
    Tensor gby_row = gpu(by_row, DType::f32), gback = poisoned({t, k}, DType::f32);
    cpu_ops().moe_pair_values(by_row, pairs, rows, true);
    cpu_ops().moe_pair_values(back, by_row, rows, false);
    gpu_ops().moe_pair_values(gby_row, pairs.to(Device::cuda), grows, true);
    gpu_ops().moe_pair_values(gback, gby_row, grows, false);
    EXPECT_TRUE(same_bits(gby_row, by_row));
    EXPECT_TRUE(same_bits(gback, back));
  }
}

TEST(GpuMoe, ScaledSwigluAndSigmoidMatchTheCpu) {
  REQUIRE_GPU();
  for (const int64_t f : {1408, 5632, 1001}) {
    const int64_t rows = 700;
    const Tensor in = bf16_rounded(randn({rows, 2 * f})), dout = bf16_rounded(randn({rows, f}));
    const Tensor scale = randn({rows, 1}, 0.5);
    Tensor out = Tensor::empty({rows, f}, DType::f32), gout = poisoned({rows, f}, DType::bf16);
    cpu_ops().moe_swiglu_forward(out, in, scale);
    gpu_ops().moe_swiglu_forward(gout, gpu(in), scale.to(Device::cuda));
    EXPECT_LT(rel_error(gout, out), 1e-2) << "f " << f;
    Tensor din = Tensor::empty({rows, 2 * f}, DType::f32), dscale = Tensor::empty({rows, 1}, DType::f32);
    Tensor gdin = poisoned({rows, 2 * f}, DType::bf16), gdscale = poisoned({rows, 1}, DType::f32);
    cpu_ops().moe_swiglu_backward(din, dscale, dout, in, scale);
    gpu_ops().moe_swiglu_backward(gdin, gdscale, gpu(dout), gpu(in), scale.to(Device::cuda));
    EXPECT_LT(rel_error(gdin, din), 1e-2) << "f " << f;
    EXPECT_LT(rel_error(gdscale, dscale), 2e-3) << "f " << f;
  }
  const Tensor x = randn({5000, 1}, 3.0), dy = randn({5000, 1});
  Tensor y = Tensor::empty({5000, 1}, DType::f32), dx = Tensor::empty({5000, 1}, DType::f32);
  Tensor gy = poisoned({5000, 1}, DType::f32), gdx = poisoned({5000, 1}, DType::f32);
  cpu_ops().sigmoid(y, x);
  cpu_ops().sigmoid_backward(dx, dy, y);
  gpu_ops().sigmoid(gy, x.to(Device::cuda));
  gpu_ops().sigmoid_backward(gdx, dy.to(Device::cuda), gy);
  EXPECT_LT(rel_error(gy, y), 1e-5);
  EXPECT_LT(rel_error(gdx, dx), 1e-5);
}

TEST(GpuMoe, GroupedGemmForwardAndBackwardMatchTheCpu) {
  REQUIRE_GPU();
  const std::vector<int64_t> rows = {300, 0, 1024, 77, 513};
  const int64_t total = std::accumulate(rows.begin(), rows.end(), int64_t(0)), n = 768, k = 512;
  const Tensor a = bf16_rounded(randn({total, k})), dc = bf16_rounded(randn({total, n}));
  std::vector<Tensor> w, gw, dw, gdw;
  for (size_t g = 0; g < rows.size(); ++g) {
    w.push_back(bf16_rounded(randn({n, k}, 0.05)));
    gw.push_back(gpu(w.back()));
    dw.push_back(randn({n, k}));
    gdw.push_back(gpu(dw.back(), DType::f32));
  }
  Tensor c = Tensor::empty({total, n}, DType::f32), gc = poisoned({total, n}, DType::bf16);
  cpu_ops().grouped_gemm(c, a, w, true, rows);
  gpu_ops().grouped_gemm(gc, gpu(a), gw, true, rows);
  EXPECT_LT(rel_error(gc, c), 1e-2);
  Tensor da = Tensor::empty({total, k}, DType::f32), gda = poisoned({total, k}, DType::bf16);
  cpu_ops().grouped_gemm(da, dc, w, false, rows);
  gpu_ops().grouped_gemm(gda, gpu(dc), gw, false, rows);
  EXPECT_LT(rel_error(gda, da), 1e-2);
  const std::vector<double> beta = {1, 0, 0, 1, 0};
  cpu_ops().grouped_gemm_wgrad(dw, dc, a, rows, beta);
  gpu_ops().grouped_gemm_wgrad(gdw, gpu(dc), gpu(a), rows, beta);
  for (size_t g = 0; g < rows.size(); ++g) EXPECT_LT(rel_error(gdw[g], dw[g]), 2e-3) << "group " << g;
}
