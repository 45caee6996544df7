// weft/bench/cpu_ops_bench.cpp v1 — CPU backend throughput: GEMM shapes of the tiny demo model, attention.
#include <benchmark/benchmark.h>
#include <mpi.h>

#include <random>

#include "ops/cpu/cpu_ops.h"

using namespace weft;

namespace {

Tensor random(const Shape& s) {
  std::mt19937 gen(1);
  std::normal_distribution<float> n;
  Tensor t = Tensor::empty(s, DType::f32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = n(gen);
  return t;
}

// y[m, n] = x[m, k]·W[n, k]ᵀ: a linear layer's forward.
void BM_GemmNT(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  Tensor a = random({m, k}), b = random({n, k}), c = Tensor::empty({m, n}, DType::f32);
  for (auto _ : state) cpu_ops().gemm(c, a, false, b, true, 1.0, 0.0);
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * m * n * k, benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_GemmNT)->Args({1024, 384, 128})->Args({1024, 704, 128})->Args({1024, 128, 352})->Args({512, 512, 512});

// dx[m, k] = dy[m, n]·W[n, k]: a linear layer's input gradient.
void BM_GemmNN(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  Tensor a = random({m, n}), b = random({n, k}), c = Tensor::empty({m, k}, DType::f32);
  for (auto _ : state) cpu_ops().gemm(c, a, false, b, false, 1.0, 0.0);
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * m * n * k, benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_GemmNN)->Args({1024, 384, 128})->Args({1024, 704, 128})->Args({1024, 128, 352});

// dW[n, k] += dy[m, n]ᵀ·x[m, k]: a linear layer's weight gradient.
void BM_GemmTN(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  Tensor a = random({m, n}), b = random({m, k}), c = Tensor::zeros({n, k}, DType::f32);
  for (auto _ : state) cpu_ops().gemm(c, a, true, b, false, 1.0, 1.0);
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * m * n * k, benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_GemmTN)->Args({1024, 384, 128})->Args({1024, 128, 352});

void BM_Attention(benchmark::State& state) {
  const int64_t seq = state.range(0), h = 4, d = 32, rows = 4, t = rows * seq;
  Tensor q = random({t, h, d}), k = random({t, 2, d}), v = random({t, 2, d});
  Tensor out = Tensor::empty({t, h, d}, DType::f32), lse = Tensor::empty({h, t}, DType::f32);
  std::vector<int32_t> cu;
  for (int64_t r = 0; r <= rows; ++r) cu.push_back(static_cast<int32_t>(r * seq));
  const Tensor cu_t = Tensor::from_vector(cu, {rows + 1});
  AttentionParams p{h, 2, d, 0, 0.17};
  for (auto _ : state) cpu_ops().attention_forward(out, lse, q, k, v, cu_t, p);
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * 2 * rows * h * d * seq * seq / 2,
                                                 benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_Attention)->Arg(128)->Arg(256);

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  MPI_Finalize();
  return 0;
}
