// weft/bench/grad_reduce_bench.cpp v4 — data-parallel gradient reduction at the 1.5B benchmark shape, under mpirun
// on GPUs: weft's optimizer (fp32, then bf16 (train.grad_dtype) gradients in buckets of BUCKET elements (default
// 40M, as parallel.ddp_bucket_size), all-reduced, or reduce-scattered with the distributed optimizer, the mean
// folded into the collective) against one NCCL collective over the same bytes, and against the same bytes cut into
// as many plain NCCL calls as weft has buckets (which separates the cost of many calls from that of weft's scaled
// reduction on its own stream). Reports NCCL's bus bandwidth (algbw · 2(n−1)/n for all-reduce, · (n−1)/n for
// reduce-scatter), the median of 10 timed runs after 3 warm-ups, and weft's share of the one-call figure.
//
//   mpirun -np 2 build-gpu/bench/weft_bench_grad_reduce [BUCKET]
#include <mpi.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

#include "cuda_ops.h"
#include "dist/mpi_env.h"
#include "ops/device.h"
#include "optim/optimizer.h"

using namespace weft;

namespace {

// The parameter shapes of the 1.5B model (hidden 2048, 16 layers, 8 KV groups of 128, ffn 8192, vocab 128256).
std::vector<Shape> shapes_1p5b() {
  std::vector<Shape> s{{128256, 2048}};
  for (int l = 0; l < 16; ++l)
    for (const Shape& x : std::vector<Shape>{{2048}, {3072, 2048}, {2048, 2048}, {2048}, {16384, 2048}, {2048, 8192}})
      s.push_back(x);
  s.push_back({2048});
  s.push_back({128256, 2048});
  return s;
}

// Median seconds of `body` over 10 runs (after 3), every rank starting together after an untimed `setup`.
double median_seconds(const std::function<void()>& setup, const std::function<void()>& body) {
  std::vector<double> t;
  for (int i = 0; i < 13; ++i) {
    setup();
    ops_for(Device::cuda).synchronize();
    MPI_Barrier(MPI_COMM_WORLD);
    const auto start = std::chrono::steady_clock::now();
    body();
    ops_for(Device::cuda).synchronize();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (i >= 3) t.push_back(s);
  }
  std::sort(t.begin(), t.end());
  double slowest = t[t.size() / 2];
  MPI_Allreduce(MPI_IN_PLACE, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return slowest;
}

}  // namespace

int main(int argc, char** argv) {
  MpiEnv mpi(&argc, &argv);
  long long bucket_elements = 40000000;
  const char* arg = argc > 1 ? argv[1] : "";
  const auto [end, error] = std::from_chars(arg, arg + std::strlen(arg), bucket_elements);
  if (argc > 2 || (argc == 2 && (error != std::errc() || *end != '\0')) || bucket_elements <= 0) {
    std::fprintf(stderr, "usage: weft_bench_grad_reduce [BUCKET] (elements per bucket, a positive integer)\n");
    return 2;
  }
  install_cuda_support();
  if (!device_support().enable(node_local_rank())) {
    std::fprintf(stderr, "weft_bench_grad_reduce: no GPU\n");
    return 1;
  }
  std::vector<int> all(mpi.size());
  for (int r = 0; r < mpi.size(); ++r) all[r] = r;
  auto dp = device_support().comm_factory("dp", {all});
  const double n = mpi.size();

  std::vector<Parameter> params;
  for (const Shape& s : shapes_1p5b()) {
    Parameter p;
    p.value = Tensor::zeros(s, DType::bf16, Device::cuda);
    p.grad = Tensor::zeros(s, DType::f32, Device::cuda);
    params.push_back(std::move(p));
  }
  std::vector<Parameter*> ptrs;
  int64_t count = 0;
  for (Parameter& p : params) {
    ptrs.push_back(&p);
    count += p.numel();
  }
  for (const auto& [grad_dtype, distributed] : std::vector<std::pair<DType, bool>>{
           {DType::f32, false}, {DType::f32, true}, {DType::bf16, false}, {DType::bf16, true}}) {
    const double bytes = double(count) * dtype_size(grad_dtype);
    if (mpi.rank() == 0 && !distributed)
      std::printf("gradient reduction over %d GPUs: %.2fM %s gradients (%.2f GB)\n", mpi.size(), count / 1e6,
                  dtype_name(grad_dtype), bytes / 1e9);
    const double factor = distributed ? (n - 1) / n : 2 * (n - 1) / n;
    double weft_s = 0, raw_s = 0, split_s = 0;
    int buckets = 0;
    {
      Optimizer opt(ptrs, {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .distributed = distributed,
                           .data_parallel = mpi.size(), .bucket_elements = bucket_elements,
                           .bf16_grads = grad_dtype == DType::bf16}, *dp);
      buckets = opt.buckets();
      weft_s = median_seconds(
          [&] {
            opt.zero_grad();
            for (Parameter* p : ptrs) grad_gemm_beta(*p);  // as the backward's writers leave them: written
          },
          [&] { opt.reduce_gradients(); });
    }
    {
      Tensor whole = Tensor::zeros({count / mpi.size() * mpi.size()}, grad_dtype, Device::cuda);
      Tensor part = whole.rows(0, whole.numel() / mpi.size());
      raw_s = median_seconds([] {}, [&] {
        if (distributed) dp->reduce_scatter(part, whole);
        else dp->all_reduce(whole);
      });
      const int64_t piece = whole.numel() / buckets / mpi.size() * mpi.size();
      split_s = median_seconds([] {}, [&] {
        for (int b = 0; b < buckets; ++b) {
          Tensor in = whole.rows(b * piece, b + 1 == buckets ? whole.numel() : (b + 1) * piece);
          Tensor out = in.rows(0, in.numel() / mpi.size());
          if (distributed) dp->reduce_scatter(out, in);
          else dp->all_reduce(in);
        }
      });
    }
    if (mpi.rank() == 0)
      std::printf("%s %s: weft %d buckets %.2f ms, %.1f GB/s bus | one NCCL call %.2f ms, %.1f GB/s bus | %.1f%% | "
                  "%d plain NCCL calls %.2f ms, %.1f GB/s bus\n",
                  dtype_name(grad_dtype), distributed ? "reduce-scatter (distributed optimizer)" : "all-reduce",
                  buckets, weft_s * 1e3,
                  bytes / weft_s * factor / 1e9, raw_s * 1e3, bytes / raw_s * factor / 1e9, 100 * raw_s / weft_s,
                  buckets, split_s * 1e3, bytes / split_s * factor / 1e9);
  }
  return 0;
}
