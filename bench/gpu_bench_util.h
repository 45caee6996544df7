// weft/bench/gpu_bench_util.h v1 — what the GPU benchmark files share: random inputs drawn once, CUDA-event timing.
#pragma once
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <map>
#include <random>
#include <utility>

#include "cuda_ops.h"
#include "stream.h"

namespace weft::bench {

// Random bf16 on the GPU, drawn once per shape and scale for the whole run and then shared: Google Benchmark
// reruns a benchmark's set-up for every repetition and every trial of its iteration count, and the host takes
// seconds to draw the 1.05G normals of one [tokens, vocab] gradient, which pushed the bench stage past its 300 s
// limit. Benchmarks only read these; one that writes its input copies it first.
inline const Tensor& random_bf16(const Shape& s, float scale = 1.f) {
  // Never destroyed: freeing device memory from a static destructor would run after the backend has shut down.
  static auto* drawn = new std::map<std::pair<Shape, float>, Tensor>;
  auto [it, fresh] = drawn->try_emplace({s, scale});
  if (fresh) {
    std::mt19937 gen(7);
    std::normal_distribution<float> n(0.f, scale);
    Tensor host = Tensor::empty(s, DType::bf16);
    for (int64_t i = 0; i < host.numel(); ++i) host.data<bf16>()[i] = bf16::from_float(n(gen));
    it->second = host.to(Device::cuda);
  }
  return it->second;
}

// Times `body` with CUDA events and reports `flops` or `bytes` per iteration as rates.
template <typename F>
void timed(benchmark::State& state, F&& body, double flops, double bytes) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  body();  // warm-up: plans, allocations
  for (auto _ : state) {
    cudaEventRecord(start, cuda::stream());
    body();
    cudaEventRecord(stop, cuda::stream());
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(ms / 1e3);
  }
  if (flops > 0) state.counters["TFLOP/s"] = benchmark::Counter(flops / 1e12, benchmark::Counter::kIsIterationInvariantRate);
  if (bytes > 0) state.counters["GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

}  // namespace weft::bench
