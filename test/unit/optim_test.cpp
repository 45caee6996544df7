// weft/test/unit/optim_test.cpp v6 — Megatron's LR schedule, clipping, the weight-decay rule and its layout,
// bf16 moments, split masters, deferred zeroing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numbers>
#include <utility>
#include <vector>

#include "dist/process_grid.h"
#include "optim/optimizer.h"
#include "optim/lr_schedule.h"
#include "optim/split_master.h"
#include "test_util.h"

using namespace weft;
using weft::test::each_rank_alone;

TEST(LrSchedule, WarmupThenCosineToMinLr) {
  const LrSchedule s{1e-3, 1e-4, 10, 110, "cosine"};
  EXPECT_DOUBLE_EQ(s.at(0), 0.0);           // Megatron starts warmup from 0
  EXPECT_DOUBLE_EQ(s.at(5), 5e-4);
  EXPECT_DOUBLE_EQ(s.at(10), 1e-3);         // end of warmup is the peak
  EXPECT_NEAR(s.at(60), 1e-4 + 0.5 * (std::cos(std::numbers::pi * 0.5) + 1) * 9e-4, 1e-15);
  EXPECT_NEAR(s.at(110), 1e-4, 1e-15);
  EXPECT_DOUBLE_EQ(s.at(200), 1e-4);         // past decay: min_lr
}

TEST(LrSchedule, LinearAndConstant) {
  const LrSchedule lin{2e-3, 0.0, 0, 100, "linear"};
  EXPECT_DOUBLE_EQ(lin.at(0), 2e-3);
  EXPECT_DOUBLE_EQ(lin.at(25), 1.5e-3);
  EXPECT_DOUBLE_EQ(lin.at(100), 0.0);
  const LrSchedule flat{2e-3, 0.0, 4, 100, "constant"};
  EXPECT_DOUBLE_EQ(flat.at(2), 1e-3);
  EXPECT_DOUBLE_EQ(flat.at(50), 2e-3);
  EXPECT_DOUBLE_EQ(flat.at(500), 2e-3);
}

TEST(Optimizer, NoWeightDecayOnOneDimensionalParameters) {
  auto self = each_rank_alone();
  Parameter w = make_parameter("w", {2, 2}, {2, 2}, -1, {}, InitKind::ones, 0, DType::f64, Device::cpu, 0);
  Parameter b = make_parameter("b", {2}, {2}, -1, {}, InitKind::ones, 0, DType::f64, Device::cpu, 0);
  EXPECT_TRUE(w.weight_decay);
  EXPECT_FALSE(b.weight_decay);
  Optimizer opt({&w, &b}, {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.5}, *self);
  opt.step(0.1);  // zero gradients: only decay moves a parameter
  EXPECT_NEAR(w.value.to_doubles()[0], 1.0 - 0.1 * 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(b.value.to_doubles()[0], 1.0);
}

// A bucket steps in one AdamW call, its decayed parameters laid out first: parameters with and without weight
// decay, interleaved in the model's order, end as a separate step of each would leave them.
TEST(Optimizer, OneCallPerBucketMatchesAStepPerParameter) {
  auto self = each_rank_alone();
  std::vector<Parameter> params;
  for (const auto& [name, shape] : std::vector<std::pair<const char*, Shape>>{
           {"n1", {3}}, {"w1", {2, 5}}, {"n2", {4}}, {"w2", {3, 3}}, {"n3", {2}}})
    params.push_back(make_parameter(name, shape, shape, -1, {}, InitKind::normal, 0.5, DType::f64, Device::cpu, 9));
  for (const int64_t bucket_elements : {int64_t(0), int64_t(12)}) {
    std::vector<Parameter> mine = params;  // the optimizer copies their values and points these at its buffers
    std::vector<Parameter*> ptrs;
    for (Parameter& p : mine) ptrs.push_back(&p);
    const OptimizerConfig cfg{.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.3,
                              .bucket_elements = bucket_elements};
    Optimizer opt(ptrs, cfg, *self);
    std::vector<Tensor> expected;
    for (size_t k = 0; k < mine.size(); ++k) {
      Parameter& p = mine[k];
      for (int64_t i = 0; i < p.grad.numel(); ++i) p.grad.data<double>()[i] = std::cos(1.3 * double(i + 7 * k));
      Tensor w = p.value.clone().reshape({p.value.numel()}), value = w.clone();
      Tensor m = Tensor::zeros({w.numel()}, DType::f64), v = Tensor::zeros({w.numel()}, DType::f64);
      const AdamWParams h{.lr = 0.05, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
                          .weight_decay = p.weight_decay ? 0.3 : 0.0};
      cpu_ops().adamw(w, value, p.grad.reshape({w.numel()}), m, v, h);
      expected.push_back(value);
    }
    opt.step(0.05);
    for (size_t k = 0; k < mine.size(); ++k)
      EXPECT_EQ(mine[k].value.to_doubles(), expected[k].to_doubles())
          << mine[k].name << " (buckets of " << bucket_elements << " elements)";
  }
}

TEST(Optimizer, ClipScalesOnlyAboveTheThresholdAndNormSkipsDuplicates) {
  auto self = each_rank_alone();
  Parameter p = make_parameter("p", {4}, {4}, -1, {}, InitKind::zeros, 0, DType::f64, Device::cpu, 0);
  Parameter copy = make_parameter("copy", {4}, {4}, -1, {}, InitKind::zeros, 0, DType::f64, Device::cpu, 0);
  copy.pipeline_copy = true;
  Optimizer opt({&p, &copy}, {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0}, *self);
  for (int i = 0; i < 4; ++i) p.grad.data<double>()[i] = copy.grad.data<double>()[i] = 1.5;
  EXPECT_DOUBLE_EQ(std::sqrt(opt.grad_norm_squared(0)), 3.0);  // the pipeline copy is not counted
  opt.clip(3.0, 6.0);
  EXPECT_DOUBLE_EQ(opt.grad_scale(), 1.0);
  opt.clip(3.0, 1.0);
  const double coeff = 1.0 / (3.0 + 1e-6);
  EXPECT_DOUBLE_EQ(opt.grad_scale(), coeff);

  // The clipped step equals a step on gradients scaled beforehand, and the scale lasts one step.
  Parameter q = make_parameter("q", {4}, {4}, -1, {}, InitKind::zeros, 0, DType::f64, Device::cpu, 0);
  Optimizer plain({&q}, {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0}, *self);
  for (int i = 0; i < 4; ++i) q.grad.data<double>()[i] = 1.5 * coeff;
  opt.step(0.1);
  plain.step(0.1);
  EXPECT_DOUBLE_EQ(p.grad.data<double>()[0], 1.5);  // the gradients themselves stay unscaled
  EXPECT_EQ(p.value.to_doubles(), q.value.to_doubles());
  EXPECT_NEAR(opt.gather_state("exp_avg")[0].to_doubles()[0], 0.1 * 1.5 * coeff, 1e-15);  // m = (1 − β₁)·g·coeff
  EXPECT_DOUBLE_EQ(opt.grad_scale(), 1.0);
}

// bf16 moments beside fp32 masters: half the moment bytes, and the state survives the checkpoint round trip
// (gathered, stored as fp32, scattered into a fresh optimizer) exactly.
TEST(Optimizer, Bf16MomentsHalveTheStateAndRoundTrip) {
  auto self = each_rank_alone();
  const auto fresh = [](const char* name) {
    return make_parameter(name, {8, 4}, {8, 4}, -1, {}, InitKind::normal, 0.5, DType::f32, Device::cpu, 5);
  };
  Parameter a = fresh("w"), b = fresh("w"), c = fresh("w");
  Optimizer half({&a}, {.bf16_moments = true}, *self), same({&b}, {.bf16_moments = true}, *self),
      full({&c}, {}, *self);
  EXPECT_EQ(half.shard_bytes(), 32 * (4 + 2 + 2));
  EXPECT_EQ(full.shard_bytes(), 32 * (4 + 4 + 4));
  for (Parameter* p : {&a, &c})
    for (int64_t i = 0; i < 32; ++i) p->grad.data<float>()[i] = std::sin(0.7f * float(i)) * 1e-3f;
  half.step(1e-2);
  full.step(1e-2);
  for (const char* kind : {"exp_avg", "exp_avg_sq"}) {
    const Tensor m = half.gather_state(kind)[0];
    ASSERT_EQ(m.dtype(), DType::bf16) << kind;
    const auto x = m.to_doubles(), y = full.gather_state(kind)[0].to_doubles();
    for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], y[i], std::abs(y[i]) * 0x1p-8) << kind << " " << i;
    Tensor stored = Tensor::empty(m.shape(), DType::f32);  // checkpoints keep optimizer state in fp32
    cpu_ops().convert(stored, m);
    same.scatter_state(kind, {stored});
    EXPECT_EQ(same.gather_state(kind)[0].to_doubles(), x) << kind;
  }
  // The first step's update uses the moments before rounding, so it equals the fp32 optimizer's.
  EXPECT_EQ(a.value.to_doubles(), c.value.to_doubles());

  Parameter wide = make_parameter("wide", {4}, {4}, -1, {}, InitKind::zeros, 0, DType::f64, Device::cpu, 0);
  EXPECT_THROW(Optimizer({&wide}, {.bf16_moments = true}, *self), Error);
}

// Split masters: the bf16 weight and the low 16 bits give back every float bit for bit, and the weight is the float
// rounded to nearest, ties toward zero (where bf16's own rounding goes to even), NaN kept a NaN.
TEST(SplitMaster, HalvesGiveBackEveryFloatAndTheWeightIsRounded) {
  std::vector<uint32_t> patterns = {0x00000000u, 0x80000000u, 0x3f808000u, 0x3f818000u, 0xbf808000u, 0x3f80ffffu,
                                    0x7f7fffffu, 0xff7fffffu, 0x7f800000u, 0x00008001u, 0x3f7f8001u, 0x7fc00001u,
                                    0x7f800001u, 0xffffffffu};
  uint64_t state = 88172645463325252ull;  // xorshift: a million more patterns, every sign, exponent and mantissa
  for (int i = 0; i < 1000000; ++i) {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    patterns.push_back(static_cast<uint32_t>(state));
  }
  int ties = 0;
  for (const uint32_t u : patterns) {
    float x;
    std::memcpy(&x, &u, 4);
    bf16 value;
    uint16_t low;
    split_master(x, value, low);
    if (std::isnan(x)) {
      EXPECT_TRUE(std::isnan(value.to_float())) << std::hex << u;
      EXPECT_TRUE(std::isnan(join_master(value, low))) << std::hex << u;
      continue;
    }
    const float back = join_master(value, low);
    uint32_t b;
    std::memcpy(&b, &back, 4);
    ASSERT_EQ(b, u) << std::hex << u;
    if ((u & 0xffffu) == 0x8000u) {  // a tie: toward zero
      ++ties;
      EXPECT_EQ(value.bits, u >> 16) << std::hex << u;
    } else {
      EXPECT_EQ(value.bits, bf16::from_float(x).bits) << std::hex << u;
    }
  }
  EXPECT_GE(ties, 4);
}

// An optimizer with split masters holds 2 bytes of master per parameter, and a checkpoint's fp32 masters go in
// (the weights become their rounded values) and come back out bit for bit.
TEST(SplitMaster, OptimizerStateRoundTripsThroughCheckpoints) {
  auto self = each_rank_alone();
  Parameter w = make_parameter("w", {8, 4}, {8, 4}, -1, {}, InitKind::normal, 0.5, DType::bf16, Device::cpu, 5);
  const std::vector<double> initial = w.value.to_doubles();
  Optimizer opt({&w}, {.bf16_moments = true, .split_master = true}, *self);
  EXPECT_EQ(opt.shard_bytes(), 32 * (2 + 2 + 2));
  EXPECT_EQ(opt.gather_state("master")[0].to_doubles(), initial);  // the masters start as the weights
  Tensor masters = Tensor::empty({8, 4}, DType::f32);
  for (int64_t i = 0; i < 32; ++i) masters.data<float>()[i] = std::sin(1.3f * float(i)) * 0.1f + 1e-6f * float(i);
  opt.scatter_state("master", {masters});
  const Tensor back = opt.gather_state("master")[0];
  ASSERT_EQ(back.dtype(), DType::f32);
  EXPECT_EQ(std::memcmp(back.data_ptr(), masters.data_ptr(), masters.nbytes()), 0);
  for (int64_t i = 0; i < 32; ++i)
    EXPECT_EQ(w.value.data<bf16>()[i].bits, bf16::from_float(masters.data<float>()[i]).bits) << i;

  Parameter wide = make_parameter("wide", {4}, {4}, -1, {}, InitKind::zeros, 0, DType::f32, Device::cpu, 0);
  EXPECT_THROW(Optimizer({&wide}, {.split_master = true}, *self), Error);
}

// zero_grad leaves the gradients' memory as it was: a GEMM's first write overwrites it (beta 0), the next one adds,
// and a gradient nothing wrote reads as zeros.
TEST(Optimizer, ZeroGradDefersToWritersAndReaders) {
  auto self = each_rank_alone();
  Parameter a = make_parameter("a", {2, 2}, {2, 2}, -1, {}, InitKind::ones, 0, DType::f64, Device::cpu, 0);
  Parameter b = make_parameter("b", {2, 2}, {2, 2}, -1, {}, InitKind::ones, 0, DType::f64, Device::cpu, 0);
  Optimizer opt({&a, &b}, {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0}, *self);
  for (Parameter* p : {&a, &b})
    for (int i = 0; i < 4; ++i) p->grad.data<double>()[i] = 5.0;  // last step's gradients
  opt.zero_grad();
  EXPECT_TRUE(a.grad_unwritten);
  EXPECT_DOUBLE_EQ(a.grad.data<double>()[0], 5.0);  // no pass over the memory
  const Tensor x = Tensor::from_vector<double>({1, 2, 3, 4}, {2, 2});
  cpu_ops().gemm(a.grad, x, true, x, false, 1.0, grad_gemm_beta(a));  // xᵀx = [[10, 14], [14, 20]]
  EXPECT_FALSE(a.grad_unwritten);
  EXPECT_EQ(a.grad.to_doubles(), (std::vector<double>{10, 14, 14, 20}));
  cpu_ops().gemm(a.grad, x, true, x, false, 1.0, grad_gemm_beta(a));  // a second micro-batch adds
  EXPECT_EQ(a.grad.to_doubles(), (std::vector<double>{20, 28, 28, 40}));
  EXPECT_NEAR(std::sqrt(opt.grad_norm_squared(0)), std::sqrt(400.0 + 2 * 784 + 1600), 1e-9);  // b counts as zero
  EXPECT_EQ(b.grad.to_doubles(), std::vector<double>(4, 0.0));
}
