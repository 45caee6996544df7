// weft/test/gpu/gpu_util.h v2 — helpers for comparing the CUDA backend with the CPU reference.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#include "cuda_ops.h"
#include "ops/ops.h"

namespace weft::test {

// Every GPU test starts with this: the CUDA backend, or a clean skip where there is no GPU (CI).
#define REQUIRE_GPU()                                                               \
  do {                                                                              \
    if (!::weft::enable_cuda_backend(0)) GTEST_SKIP() << "no CUDA device visible"; \
  } while (0)

// The test inputs' generator: seeded from WEFT_TEST_SEED (default 1234), printed once, so that a failure can be
// replayed; other seeds exercise the kernels on other inputs.
inline std::mt19937& rng() {
  static std::mt19937 gen([] {
    const char* env = std::getenv("WEFT_TEST_SEED");
    const unsigned seed = env ? static_cast<unsigned>(std::strtoul(env, nullptr, 10)) : 1234u;
    std::printf("GPU test inputs from WEFT_TEST_SEED = %u\n", seed);
    return seed;
  }());
  return gen;
}

// Normal(0, scale) values as an f32 CPU tensor.
inline Tensor randn(const Shape& shape, double scale = 1.0) {
  Tensor t = Tensor::empty(shape, DType::f32);
  std::normal_distribution<float> n(0.f, static_cast<float>(scale));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = n(rng());
  return t;
}

// The CPU f32 tensor rounded to `dtype` and moved to the GPU.
inline Tensor gpu(const Tensor& cpu, DType dtype = DType::bf16) {
  Tensor c = Tensor::empty(cpu.shape(), dtype);
  cpu_ops().convert(c, cpu);
  return c.to(Device::cuda);
}
// The CPU f32 tensor rounded through bf16 (what the GPU sees), still f32 on the CPU.
inline Tensor bf16_rounded(const Tensor& cpu) {
  Tensor b = Tensor::empty(cpu.shape(), DType::bf16), back = Tensor::empty(cpu.shape(), DType::f32);
  cpu_ops().convert(b, cpu);
  cpu_ops().convert(back, b);
  return back;
}
// A GPU output filled with NaNs, so that an element a kernel forgets to write fails the comparison.
inline Tensor poisoned(const Shape& shape, DType dtype) {
  Tensor host = Tensor::empty(shape, dtype);
  std::memset(host.data_ptr(), 0xff, host.nbytes());
  return host.to(Device::cuda);
}

// ‖gpu − cpu‖ / ‖cpu‖ (gpu of any dtype, moved to the host); NaN anywhere gives infinity.
inline double rel_error(const Tensor& gpu_out, const Tensor& cpu_ref) {
  const auto a = gpu_out.to_doubles(), b = cpu_ref.to_doubles();
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// Whether two tensors (on any device) hold the same bytes.
inline bool same_bits(const Tensor& a, const Tensor& b) {
  const Tensor ha = a.to(Device::cpu), hb = b.to(Device::cpu);
  return ha.nbytes() == hb.nbytes() && std::memcmp(ha.data_ptr(), hb.data_ptr(), ha.nbytes()) == 0;
}

}  // namespace weft::test
