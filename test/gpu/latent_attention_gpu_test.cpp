// weft/test/gpu/latent_attention_gpu_test.cpp v1 — latent attention's head layout on the GPU (mla_split, mla_merge)
// against the CPU reference, at DeepSeek-V2's dims and at small odd ones.
#include "gpu_util.h"

namespace weft::test {
namespace {

TEST(GpuLatentAttention, SplitAndMergeMatchTheCpu) {
  REQUIRE_GPU();
  const int64_t t = 70, positions = 96;
  struct Dims {
    int64_t heads, nope, rope, value;
  };
  for (const Dims& m : {Dims{4, 128, 64, 128}, Dims{3, 12, 6, 10}}) {
    const int64_t d = m.nope + m.rope;
    Tensor cs = Tensor::empty({positions, m.rope / 2}, DType::f32), sn = cs.clone();
    for (int64_t p = 0; p < positions; ++p)
      for (int64_t i = 0; i < m.rope / 2; ++i) {
        const double angle = p * std::pow(10000.0, -2.0 * i / m.rope);
        cs.data<float>()[p * m.rope / 2 + i] = float(0.9 * std::cos(angle));  // a YaRN-like magnitude
        sn.data<float>()[p * m.rope / 2 + i] = float(0.9 * std::sin(angle));
      }
    cs = bf16_rounded(cs);
    sn = bf16_rounded(sn);
    Tensor pos = Tensor::empty({t}, DType::i32);
    for (int64_t i = 0; i < t; ++i) pos.data<int32_t>()[i] = static_cast<int32_t>((i * 29) % positions);
    const Tensor q = bf16_rounded(randn({t, m.heads * d})), kv = bf16_rounded(randn({t, m.heads * (m.nope + m.value)})),
                 kr = bf16_rounded(randn({t, m.rope}));
    Tensor qh = Tensor::empty({t, m.heads, d}, DType::f32), kh = qh.clone(),
           vh = Tensor::empty({t, m.heads, m.value}, DType::f32);
    cpu_ops().mla_split(qh, kh, vh, q, kv, kr, pos, cs, sn);
    Tensor gqh = poisoned(qh.shape(), DType::bf16), gkh = poisoned(kh.shape(), DType::bf16),
           gvh = poisoned(vh.shape(), DType::bf16);
    const Tensor gpos = pos.to(Device::cuda), gcs = gpu(cs), gsn = gpu(sn);
    ops_for(Device::cuda).mla_split(gqh, gkh, gvh, gpu(q), gpu(kv), gpu(kr), gpos, gcs, gsn);
    EXPECT_LT(rel_error(gqh, qh), 1e-2) << m.heads;
    EXPECT_LT(rel_error(gkh, kh), 1e-2) << m.heads;
    EXPECT_EQ(rel_error(gvh, vh), 0.0) << m.heads;

    const Tensor dqh = bf16_rounded(randn(qh.shape())), dkh = bf16_rounded(randn(kh.shape())),
                 dvh = bf16_rounded(randn(vh.shape()));
    Tensor dq = Tensor::empty(q.shape(), DType::f32), dkv = Tensor::empty(kv.shape(), DType::f32),
           dkr = Tensor::empty(kr.shape(), DType::f32);
    cpu_ops().mla_merge(dq, dkv, dkr, dqh, dkh, dvh, pos, cs, sn);
    Tensor gdq = poisoned(dq.shape(), DType::bf16), gdkv = poisoned(dkv.shape(), DType::bf16),
           gdkr = poisoned(dkr.shape(), DType::bf16);
    ops_for(Device::cuda).mla_merge(gdq, gdkv, gdkr, gpu(dqh), gpu(dkh), gpu(dvh), gpos, gcs, gsn);
    EXPECT_LT(rel_error(gdq, dq), 1e-2) << m.heads;
    EXPECT_EQ(rel_error(gdkv, dkv), 0.0) << m.heads;
    EXPECT_LT(rel_error(gdkr, dkr), 1e-2) << m.heads;  // summed over the heads in fp32, rounded once
  }
}

}  // namespace
}  // namespace weft::test
