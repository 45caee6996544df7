// weft/src/model/parameter.cpp v3 — parameter construction, shard index maps, layout-independent init.
#include "model/parameter.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <thread>

#include "ops/ops.h"

namespace weft {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Runs body(begin, end) over [0, n) in one contiguous range per hardware thread: drawing a 1.5B-parameter model's
// normals on one core takes about a minute.
template <typename F>
void parallel_ranges(int64_t n, F&& body) {
  const int64_t threads = std::clamp<int64_t>(std::thread::hardware_concurrency(), 1, std::max<int64_t>(1, n >> 20));
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t) pool.emplace_back(body, n * t / threads, n * (t + 1) / threads);
  body(int64_t(0), n / threads);
  for (std::thread& th : pool) th.join();
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

}  // namespace

double counter_normal(uint64_t seed, const std::string& name, int64_t index) {
  const uint64_t key = splitmix64(seed ^ fnv1a(name));
  const uint64_t a = splitmix64(key + 2 * static_cast<uint64_t>(index));
  const uint64_t b = splitmix64(key + 2 * static_cast<uint64_t>(index) + 1);
  const double u1 = (double(a >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
  const double u2 = double(b >> 11) * 0x1.0p-53;          // [0, 1)
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

std::vector<int64_t> global_indices(const Parameter& p) {
  const Shape& ls = p.value.shape();
  std::vector<int64_t> out(static_cast<size_t>(p.value.numel()), -1);
  if (p.shard_dim < 0) {
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<int64_t>(i);
    return out;
  }
  // Split both shapes around the shard dim: [outer, dim, inner].
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < p.shard_dim; ++d) outer *= ls[d];
  for (size_t d = p.shard_dim + 1; d < ls.size(); ++d) inner *= ls[d];
  const int64_t ldim = ls[p.shard_dim], gdim = p.global_shape[p.shard_dim];
  for (const ShardBlock& b : p.blocks)
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < b.length; ++j)
        for (int64_t i = 0; i < inner; ++i)
          out[(o * ldim + b.local_begin + j) * inner + i] = (o * gdim + b.global_begin + j) * inner + i;
  return out;
}

Parameter make_parameter(const std::string& name, const Shape& global_shape, const Shape& local_shape, int shard_dim,
                         std::vector<ShardBlock> blocks, InitKind init, double init_std, DType dtype, Device device,
                         uint64_t seed) {
  WEFT_ASSERT(shard_dim < 0 || !blocks.empty());
  Parameter p;
  p.name = name;
  p.global_shape = global_shape;
  p.shard_dim = shard_dim;
  p.blocks = std::move(blocks);
  p.init = init;
  p.init_std = init_std;
  p.weight_decay = global_shape.size() > 1;

  Tensor host = Tensor::empty(local_shape, DType::f64);
  p.value = host;  // global_indices reads the local shape from value
  const std::vector<int64_t> idx = global_indices(p);
  double* h = host.data<double>();
  p.value = Tensor::empty(local_shape, dtype, Device::cpu);
  Tensor flat_host = host.reshape({host.numel()}), flat_value = p.value.reshape({host.numel()});
  parallel_ranges(static_cast<int64_t>(idx.size()), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      if (idx[i] < 0) h[i] = 0;  // padding (e.g. vocabulary rows past the real vocabulary)
      else if (init == InitKind::ones) h[i] = 1;
      else if (init == InitKind::zeros) h[i] = 0;
      else h[i] = init_std * counter_normal(seed, name, idx[i]);
    }
    Tensor part = flat_value.rows(begin, end);
    cpu_ops().convert(part, flat_host.rows(begin, end));
  });
  p.value = p.value.to(device);
  // Low-precision parameters accumulate their gradients in fp32.
  p.grad = Tensor::zeros(local_shape, stat_dtype(dtype), device);
  return p;
}

double grad_gemm_beta(Parameter& p) {
  const double beta = p.grad_unwritten ? 0.0 : 1.0;
  p.grad_unwritten = false;
  return beta;
}

void prepare_grad(Parameter& p) {
  if (p.grad_unwritten) ops_for(p.grad).zero(p.grad);
  p.grad_unwritten = false;
}

}  // namespace weft
