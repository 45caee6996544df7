// weft/test/gpu/ops_gpu_test.cpp v10 — every CUDA op against the CPU reference on fresh random inputs.
//
// Inputs are drawn anew each run and rounded to bf16 before the CPU sees them, so both sides compute on the same
// values; the CPU computes in fp32 (attention and norms accumulate in double). Tolerances: outputs stored in bf16
// carry a relative rounding error near 2^-9 ≈ 2e-3 per element, and sums of products add error of the same order,
// so ‖Δ‖/‖ref‖ ≤ 1e-2 for bf16 outputs; fp32 outputs from bf16 inputs (grads, statistics) ≤ 2e-3.
#include "gpu_util.h"
#include "optim/split_master.h"

using namespace weft;
using namespace weft::test;

TEST(GpuOps, GemmAllTransposesBf16AndFp32Outputs) {
  REQUIRE_GPU();
  for (auto [m, n, k] : {std::tuple{256, 384, 512}, {7, 13, 40}, {1000, 64, 3}})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const Tensor a = bf16_rounded(randn(ta ? Shape{k, m} : Shape{m, k}));
        const Tensor b = bf16_rounded(randn(tb ? Shape{n, k} : Shape{k, n}));
        const Tensor c0 = randn({m, n});
        Tensor ref = c0.clone();
        cpu_ops().gemm(ref, a, ta, b, tb, 0.5, 1.0);
        Tensor out32 = gpu(c0, DType::f32);
        ops_for(Device::cuda).gemm(out32, gpu(a), ta, gpu(b), tb, 0.5, 1.0);
        EXPECT_LT(rel_error(out32, ref), 2e-3) << m << "x" << n << "x" << k << " " << ta << tb;
        Tensor ref0 = c0.clone();
        cpu_ops().gemm(ref0, a, ta, b, tb, 1.0, 0.0);
        Tensor out16 = poisoned({m, n}, DType::bf16);
        ops_for(Device::cuda).gemm(out16, gpu(a), ta, gpu(b), tb, 1.0, 0.0);
        EXPECT_LT(rel_error(out16, ref0), 1e-2) << m << "x" << n << "x" << k << " " << ta << tb;
        // A residual added as the product is written: the residual is left as it was.
        const Tensor r = bf16_rounded(randn({m, n}));
        Tensor ref_add = Tensor::empty({m, n}, DType::f32), out_add = poisoned({m, n}, DType::bf16), gr = gpu(r);
        cpu_ops().gemm_add(ref_add, a, ta, b, tb, r);
        ops_for(Device::cuda).gemm_add(out_add, gpu(a), ta, gpu(b), tb, gr);
        EXPECT_LT(rel_error(out_add, ref_add), 1e-2) << m << "x" << n << "x" << k << " " << ta << tb;
        EXPECT_TRUE(same_bits(gr, gpu(r)));
      }
}

// train.gemm_autotune: the fastest candidate's results, and an accumulating call of the shape on the algorithm its
// overwriting twin chose.
TEST(GpuOps, AutotunedGemmsKeepTheirResults) {
  REQUIRE_GPU();
  set_gemm_autotune(true);
  for (auto [m, n, k] : {std::tuple{512, 768, 1024}, {100, 300, 64}})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const Tensor a = bf16_rounded(randn(ta ? Shape{k, m} : Shape{m, k}));
        const Tensor b = bf16_rounded(randn(tb ? Shape{n, k} : Shape{k, n}));
        Tensor ref = Tensor::zeros({m, n}, DType::f32);
        cpu_ops().gemm(ref, a, ta, b, tb, 1.0, 0.0);
        cpu_ops().gemm(ref, a, ta, b, tb, 0.5, 1.0);
        Tensor out = poisoned({m, n}, DType::f32);
        ops_for(Device::cuda).gemm(out, gpu(a), ta, gpu(b), tb, 1.0, 0.0);
        ops_for(Device::cuda).gemm(out, gpu(a), ta, gpu(b), tb, 0.5, 1.0);
        EXPECT_LT(rel_error(out, ref), 2e-3) << m << "x" << n << "x" << k << " " << ta << tb;
      }
  set_gemm_autotune(false);
}

TEST(GpuOps, RmsNormForwardBackward) {
  REQUIRE_GPU();
  // Rows held in registers (one pack per thread, part of a second one), more rows than resident blocks so that
  // each block loads its next row early; rows that cannot use 16-byte packs; a hidden size whose dw takes more
  // than 48 KiB of shared memory.
  for (const int64_t h : {1024, 2048, 3072, 1021, 16384}) {
    SCOPED_TRACE("hidden " + std::to_string(h));
    const int64_t rows = h <= 4096 ? 3000 : 300;
    const Tensor x = bf16_rounded(randn({rows, h})), w = bf16_rounded(randn({h}, 0.5)),
                 dy = bf16_rounded(randn({rows, h}));
    Tensor y = Tensor::empty({rows, h}, DType::f32), rstd = Tensor::empty({rows}, DType::f32);
    cpu_ops().rmsnorm_forward(y, rstd, x, w, 1e-5);
    Tensor gy = poisoned({rows, h}, DType::bf16), grstd = poisoned({rows}, DType::f32);
    ops_for(Device::cuda).rmsnorm_forward(gy, grstd, gpu(x), gpu(w), 1e-5);
    EXPECT_LT(rel_error(gy, y), 1e-2);
    EXPECT_LT(rel_error(grstd, rstd), 1e-4);
    const Tensor dx0 = bf16_rounded(randn({rows, h}));
    Tensor dx = dx0.clone(), dw = Tensor::zeros({h}, DType::f32);
    cpu_ops().rmsnorm_backward(dx, dw, dy, x, w, rstd, true);
    Tensor gdx = gpu(dx0), gdw = Tensor::zeros({h}, DType::f32, Device::cuda);
    ops_for(Device::cuda).rmsnorm_backward(gdx, gdw, gpu(dy), gpu(x), gpu(w), grstd, true);
    EXPECT_LT(rel_error(gdx, dx), 1e-2);
    EXPECT_LT(rel_error(gdw, dw), 2e-3);
    // dw as a bf16 gradient (train.grad_dtype = bf16) adding to what it holds: the fp32 sum rounds once.
    const Tensor dw0 = bf16_rounded(randn({h}));
    Tensor dw_acc = dw0.clone(), gdw16 = gpu(dw0), gdx16 = gpu(dx0), dx_acc = dx0.clone();
    cpu_ops().rmsnorm_backward(dx_acc, dw_acc, dy, x, w, rstd, true);
    ops_for(Device::cuda).rmsnorm_backward(gdx16, gdw16, gpu(dy), gpu(x), gpu(w), grstd, true);
    EXPECT_LT(rel_error(gdw16, dw_acc), 6e-3);
    // dx overwritten rather than added to.
    Tensor dx_new = Tensor::empty({rows, h}, DType::f32), dw_new = Tensor::zeros({h}, DType::f32);
    cpu_ops().rmsnorm_backward(dx_new, dw_new, dy, x, w, rstd, false);
    Tensor gdx_new = poisoned({rows, h}, DType::bf16), gdw_new = Tensor::zeros({h}, DType::f32, Device::cuda);
    ops_for(Device::cuda).rmsnorm_backward(gdx_new, gdw_new, gpu(dy), gpu(x), gpu(w), grstd, false);
    EXPECT_LT(rel_error(gdx_new, dx_new), 1e-2);
    EXPECT_LT(rel_error(gdw_new, dw_new), 2e-3);
  }
}

TEST(GpuOps, AddInPackedAndElementwiseForms) {
  REQUIRE_GPU();
  for (const int64_t n : {4096, 4099}) {
    const Tensor y0 = bf16_rounded(randn({n})), x = bf16_rounded(randn({n}));
    Tensor y = y0.clone();
    cpu_ops().add(y, x, -0.75);
    Tensor gy16 = gpu(y0), gy32 = gpu(y0, DType::f32);
    ops_for(Device::cuda).add(gy16, gpu(x), -0.75);  // bf16 += bf16
    ops_for(Device::cuda).add(gy32, gpu(x), -0.75);  // f32 += bf16
    EXPECT_LT(rel_error(gy16, y), 1e-2) << n;
    EXPECT_LT(rel_error(gy32, y), 1e-6) << n;
  }
}

TEST(GpuOps, RopeQkvSwigluEmbedding) {
  REQUIRE_GPU();
  const int64_t t = 96, groups = 2, qpg = 3, positions = 128;
  for (const int64_t d : {64, 12}) {  // 16-byte packs, and heads whose halves cannot use them
    Tensor cs = Tensor::empty({positions, d / 2}, DType::f32), sn = Tensor::empty({positions, d / 2}, DType::f32);
    for (int64_t p = 0; p < positions; ++p)
      for (int64_t i = 0; i < d / 2; ++i) {
        cs.data<float>()[p * d / 2 + i] = std::cos(p * std::pow(10000.0, -2.0 * i / d));
        sn.data<float>()[p * d / 2 + i] = std::sin(p * std::pow(10000.0, -2.0 * i / d));
      }
    cs = bf16_rounded(cs);
    sn = bf16_rounded(sn);
    Tensor pos = Tensor::empty({t}, DType::i32);
    for (int64_t i = 0; i < t; ++i) pos.data<int32_t>()[i] = static_cast<int32_t>((i * 37) % positions);
    const Tensor gpos = pos.to(Device::cuda), gcs = gpu(cs), gsn = gpu(sn);

    // The QKV split with RoPE on q and k, and its backward, against the CPU.
    const Tensor qkv = bf16_rounded(randn({t, groups * (qpg + 2) * d}));
    Tensor q = Tensor::empty({t, groups * qpg, d}, DType::f32), k = Tensor::empty({t, groups, d}, DType::f32),
           v = Tensor::empty({t, groups, d}, DType::f32);
    cpu_ops().qkv_split(q, k, v, qkv, pos, cs, sn);
    Tensor gq = poisoned(q.shape(), DType::bf16), gk = poisoned(k.shape(), DType::bf16),
           gv = poisoned(v.shape(), DType::bf16);
    ops_for(Device::cuda).qkv_split(gq, gk, gv, gpu(qkv), gpos, gcs, gsn);
    EXPECT_LT(rel_error(gq, q), 1e-2) << d;
    EXPECT_LT(rel_error(gk, k), 1e-2) << d;
    EXPECT_EQ(rel_error(gv, v), 0.0) << d;
    const Tensor dq = bf16_rounded(randn(q.shape())), dk = bf16_rounded(randn(k.shape())),
                 dv = bf16_rounded(randn(v.shape()));
    Tensor dqkv = Tensor::empty(qkv.shape(), DType::f32);
    cpu_ops().qkv_merge(dqkv, dq, dk, dv, pos, cs, sn);
    Tensor merged = poisoned(qkv.shape(), DType::bf16);
    ops_for(Device::cuda).qkv_merge(merged, gpu(dq), gpu(dk), gpu(dv), gpos, gcs, gsn);
    EXPECT_LT(rel_error(merged, dqkv), 1e-2) << d;

    for (bool inverse : {false, true}) {
      Tensor r = q.clone();
      cpu_ops().rope(r, pos, cs, sn, inverse);
      Tensor gr = gpu(q);
      ops_for(Device::cuda).rope(gr, gpos, gcs, gsn, inverse);
      EXPECT_LT(rel_error(gr, r), 1e-2) << "d " << d << ", inverse " << inverse;
    }
  }

  for (const int64_t f : {200, 203}) {  // 16-byte packs, and rows that cannot use them
    const Tensor in = bf16_rounded(randn({t, 2 * f}, 2.0)), dout = bf16_rounded(randn({t, f}));
    Tensor out = Tensor::empty({t, f}, DType::f32), din = Tensor::empty({t, 2 * f}, DType::f32);
    cpu_ops().swiglu_forward(out, in);
    cpu_ops().swiglu_backward(din, dout, in);
    Tensor gout = poisoned({t, f}, DType::bf16), gdin = poisoned({t, 2 * f}, DType::bf16);
    ops_for(Device::cuda).swiglu_forward(gout, gpu(in));
    ops_for(Device::cuda).swiglu_backward(gdin, gpu(dout), gpu(in));
    EXPECT_LT(rel_error(gout, out), 1e-2) << f;
    EXPECT_LT(rel_error(gdin, din), 1e-2) << f;
  }

  const int64_t rows = 50, h = 128, start = 100;
  const Tensor table = bf16_rounded(randn({rows, h}));
  std::uniform_int_distribution<int32_t> id(80, 170);  // some ids fall outside this shard [100, 150)
  Tensor ids = Tensor::empty({t}, DType::i32);
  for (int64_t i = 0; i < t; ++i) ids.data<int32_t>()[i] = id(rng());
  Tensor e = Tensor::empty({t, h}, DType::f32);
  cpu_ops().embedding_forward(e, ids, table, start);
  Tensor ge = poisoned({t, h}, DType::bf16);
  ops_for(Device::cuda).embedding_forward(ge, ids.to(Device::cuda), gpu(table), start);
  EXPECT_EQ(rel_error(ge, e), 0.0);
  const Tensor g = bf16_rounded(randn({t, h}));
  Tensor dt = Tensor::zeros({rows, h}, DType::f32), gdt = Tensor::zeros({rows, h}, DType::f32, Device::cuda);
  cpu_ops().embedding_backward(dt, g, ids, start);
  ops_for(Device::cuda).embedding_backward(gdt, gpu(g), ids.to(Device::cuda), start);
  EXPECT_EQ(rel_error(gdt, dt), 0.0);  // each row sums its tokens in token order, as the CPU does: no atomics
  // Into a bf16 gradient holding values: each row's sum in fp32, rounded once.
  const Tensor dt0 = bf16_rounded(randn({rows, h}));
  Tensor dt_acc = dt0.clone(), gdt16 = gpu(dt0);
  cpu_ops().embedding_backward(dt_acc, g, ids, start);
  ops_for(Device::cuda).embedding_backward(gdt16, gpu(g), ids.to(Device::cuda), start);
  EXPECT_LT(rel_error(gdt16, dt_acc), 6e-3);

  const int64_t bias_rows = 700, cols = 300;  // several blocks of rows, columns not a multiple of a block
  const Tensor dy = bf16_rounded(randn({bias_rows, cols})), db0 = randn({cols});
  Tensor db = db0.clone();
  cpu_ops().bias_grad(db, dy);
  Tensor gdb = gpu(db0, DType::f32);
  ops_for(Device::cuda).bias_grad(gdb, gpu(dy));
  EXPECT_LT(rel_error(gdb, db), 1e-5);
  Tensor gdb16 = gpu(db0);  // a bf16 gradient
  ops_for(Device::cuda).bias_grad(gdb16, gpu(dy));
  Tensor db16 = bf16_rounded(db0);
  cpu_ops().bias_grad(db16, dy);
  EXPECT_LT(rel_error(gdb16, db16), 6e-3);
}

TEST(GpuOps, CrossEntropyWithPaddingAndAdamW) {
  REQUIRE_GPU();
  const int64_t t = 64, cols = 3000, valid = 2900, start = 1000;
  const Tensor logits = bf16_rounded(randn({t, cols}, 3.0));
  std::uniform_int_distribution<int32_t> lab(0, 4999);
  Tensor labels = Tensor::empty({t}, DType::i32);
  for (int64_t i = 0; i < t; ++i) labels.data<int32_t>()[i] = lab(rng());
  const Tensor scale = randn({t});
  Tensor mx = Tensor::empty({t}, DType::f32), se = Tensor::empty({t}, DType::f32), tl = Tensor::empty({t}, DType::f32),
         loss = Tensor::empty({t}, DType::f32), dl = Tensor::empty({t, cols}, DType::f32);
  cpu_ops().cross_entropy_stats(mx, se, tl, logits, labels, start, valid);
  cpu_ops().cross_entropy_loss(loss, mx, se, tl);
  cpu_ops().cross_entropy_backward(dl, logits, mx, se, labels, scale, start, valid);
  Ops& g = ops_for(Device::cuda);
  Tensor gl = gpu(logits), glab = labels.to(Device::cuda);
  Tensor gmx = poisoned({t}, DType::f32), gse = poisoned({t}, DType::f32), gtl = poisoned({t}, DType::f32),
         gloss = poisoned({t}, DType::f32);
  g.cross_entropy_stats(gmx, gse, gtl, gl, glab, start, valid);
  g.cross_entropy_loss(gloss, gmx, gse, gtl);
  EXPECT_LT(rel_error(gmx, mx), 1e-6);
  EXPECT_LT(rel_error(gse, se), 1e-5);
  EXPECT_LT(rel_error(gtl, tl), 1e-6);
  EXPECT_LT(rel_error(gloss, loss), 1e-4);
  // Σexp moved onto a larger max, as another vocab shard's would make it.
  Tensor higher = mx.clone();
  for (int64_t i = 0; i < t; ++i) higher.data<float>()[i] += 0.5f * float(i % 7);
  Tensor se_moved = se.clone();
  cpu_ops().cross_entropy_rescale(se_moved, mx, higher);
  g.cross_entropy_rescale(gse, gmx, gpu(higher, DType::f32));
  EXPECT_LT(rel_error(gse, se_moved), 1e-5);
  g.cross_entropy_stats(gmx, gse, gtl, gl, glab, start, valid);
  g.cross_entropy_backward(gl, gl, gmx, gse, glab, gpu(scale, DType::f32), start, valid);  // in place
  EXPECT_LT(rel_error(gl, dl), 1e-2);

  const Tensor w0 = randn({5000}), grad = randn({5000}), m0 = randn({5000}, 0.1);
  Tensor v0 = randn({5000}, 0.1);
  for (int64_t i = 0; i < 5000; ++i) v0.data<float>()[i] = std::abs(v0.data<float>()[i]);
  const AdamWParams p{1e-3, 0.9, 0.95, 1e-8, 0.1, 7, 0.4};
  // One step from w0, m0, v0 (fp32 moments) on the CPU and on the GPU, the GPU's gradient in `grad_dtype` and its
  // bf16 model copy poisoned beforehand.
  struct Stepped {
    Tensor w, m, v, value, gw, gm, gv, gvalue;
  };
  const auto step_both = [&](const Tensor& g_host, DType grad_dtype, const AdamWParams& q) {
    Stepped r{w0.clone(), m0.clone(), v0.clone(), Tensor::zeros({5000}, DType::f32),
              gpu(w0, DType::f32), gpu(m0, DType::f32), gpu(v0, DType::f32), poisoned({5000}, DType::bf16)};
    cpu_ops().adamw(r.w, r.value, g_host, r.m, r.v, q);
    g.adamw(r.gw, r.gvalue, gpu(g_host, grad_dtype), r.gm, r.gv, q);
    return r;
  };
  const Stepped full = step_both(grad, DType::f32, p);
  EXPECT_LT(rel_error(full.gw, full.w), 1e-6);
  EXPECT_LT(rel_error(full.gm, full.m), 1e-6);
  EXPECT_LT(rel_error(full.gvalue, full.value), 4e-3);  // the bf16 model copy: the masters rounded
  // Weight decay on a leading part only (a bucket's decayed parameters come first), ending mid-pack.
  AdamWParams part = p;
  part.decayed = 1234;
  const Stepped cut = step_both(grad, DType::f32, part);
  EXPECT_LT(rel_error(cut.gw, cut.w), 1e-6);
  EXPECT_GT(rel_error(cut.gw, full.w), 1e-6);  // the decay did stop where asked
  // bf16 moments (train.adam_moments_dtype = bf16) against the CPU's: four parameters per thread over the whole
  // buffers, one per thread over parts that start off a 4-element boundary.
  for (const auto& [lo, hi] : {std::pair<int64_t, int64_t>{0, 5000}, {1, 4998}}) {
    const int64_t n = hi - lo;
    Tensor hw = w0.rows(lo, hi).clone(), hm = Tensor::empty({n}, DType::bf16), hv = Tensor::empty({n}, DType::bf16);
    Tensor hvalue = Tensor::empty({n}, DType::f32);
    cpu_ops().convert(hm, m0.rows(lo, hi));
    cpu_ops().convert(hv, v0.rows(lo, hi));
    Tensor gbm = hm.to(Device::cuda), gbv = hv.to(Device::cuda), gw2 = gpu(w0, DType::f32);
    Tensor gm_all = poisoned({5000}, DType::bf16), gv_all = poisoned({5000}, DType::bf16);
    Tensor gm_part = gm_all.rows(lo, hi), gv_part = gv_all.rows(lo, hi), gw_part = gw2.rows(lo, hi);
    Tensor gvalue_part = full.gvalue.rows(lo, hi);
    g.convert(gm_part, gbm);
    g.convert(gv_part, gbv);
    cpu_ops().adamw(hw, hvalue, grad.rows(lo, hi), hm, hv, p);
    g.adamw(gw_part, gvalue_part, gpu(grad, DType::f32).rows(lo, hi), gm_part, gv_part, p);
    EXPECT_LT(rel_error(gw_part, hw), 1e-6) << lo;
    EXPECT_LT(rel_error(gm_part, hm), 1e-3) << lo;
    EXPECT_LT(rel_error(gv_part, hv), 1e-3) << lo;
    EXPECT_LT(rel_error(gvalue_part, hvalue), 4e-3) << lo;
  }
  // bf16 gradients (train.grad_dtype = bf16): the step reads them as the fp32 step reads their rounded values.
  const Tensor grad16 = bf16_rounded(grad);
  const Stepped half = step_both(grad16, DType::bf16, p);
  EXPECT_LT(rel_error(half.gw, half.w), 1e-6);
  EXPECT_LT(rel_error(half.gm, half.m), 1e-6);
  EXPECT_LT(rel_error(half.gv, half.v), 1e-6);
  EXPECT_NEAR(g.sum_squares(gpu(grad, DType::f32)), cpu_ops().sum_squares(grad), 1e-4 * cpu_ops().sum_squares(grad));
  EXPECT_NEAR(g.sum_squares(gpu(grad16)), cpu_ops().sum_squares(grad16), 1e-4 * cpu_ops().sum_squares(grad16));
}

// Split masters (train.master_weights = split): the GPU steps fp32 masters held as bf16 weights and low halves as
// it steps separate fp32 masters. Over five steps (bf16 moments and gradients, clipping, decay ending mid-pack) the
// masters agree bit for bit, the weights agree except on ties (there toward zero), and the first step matches the
// CPU's. Four parameters per thread over the whole buffers, one per thread from an odd start.
TEST(GpuOps, AdamWOnSplitMasters) {
  REQUIRE_GPU();
  Ops& g = ops_for(Device::cuda);
  const int64_t n = 5000;
  const Tensor w0 = randn({n}), m0 = randn({n}, 0.1);
  Tensor v0 = randn({n}, 0.1);
  for (int64_t i = 0; i < n; ++i) v0.data<float>()[i] = std::abs(v0.data<float>()[i]);
  Tensor value0 = Tensor::empty({n}, DType::bf16), low0 = Tensor::empty({n}, DType::u16);
  for (int64_t i = 0; i < n; ++i)
    split_master(w0.data<float>()[i], value0.data<bf16>()[i], low0.data<uint16_t>()[i]);
  for (const auto& [lo, hi] : {std::pair<int64_t, int64_t>{0, n}, {1, n - 2}}) {
    Tensor fw = gpu(w0, DType::f32), fvalue = poisoned({n}, DType::bf16), fm = gpu(m0), fv = gpu(v0);
    Tensor svalue = value0.to(Device::cuda), slow = low0.to(Device::cuda), sm = gpu(m0), sv = gpu(v0);
    Tensor cw = w0.rows(lo, hi).clone(), cvalue = Tensor::empty({hi - lo}, DType::f32);
    Tensor cm = Tensor::empty({hi - lo}, DType::bf16), cv = Tensor::empty({hi - lo}, DType::bf16);
    cpu_ops().convert(cm, m0.rows(lo, hi));
    cpu_ops().convert(cv, v0.rows(lo, hi));
    for (int64_t step = 1; step <= 5; ++step) {
      AdamWParams p{1e-3, 0.9, 0.95, 1e-8, 0.1, step, 0.7};
      p.decayed = 1234;
      const Tensor grad = bf16_rounded(randn({n}));
      const Tensor ggrad = gpu(grad).rows(lo, hi);
      Tensor a = fw.rows(lo, hi), b = fvalue.rows(lo, hi), c = fm.rows(lo, hi), d = fv.rows(lo, hi);
      g.adamw(a, b, ggrad, c, d, p);
      Tensor e = slow.rows(lo, hi), f = svalue.rows(lo, hi), h = sm.rows(lo, hi), k = sv.rows(lo, hi);
      g.adamw(e, f, ggrad, h, k, p);
      if (step > 1) continue;
      cpu_ops().adamw(cw, cvalue, grad.rows(lo, hi), cm, cv, p);
      Tensor joined = Tensor::empty({hi - lo}, DType::f32);
      const Tensor hv = svalue.rows(lo, hi).to(Device::cpu), hl = slow.rows(lo, hi).to(Device::cpu);
      for (int64_t i = 0; i < hi - lo; ++i)
        joined.data<float>()[i] = join_master(hv.data<bf16>()[i], hl.data<uint16_t>()[i]);
      EXPECT_LT(rel_error(joined, cw), 1e-6) << lo;
    }
    EXPECT_TRUE(same_bits(sm, fm) && same_bits(sv, fv)) << lo;
    const Tensor hw = fw.to(Device::cpu), hfv = fvalue.to(Device::cpu), hv = svalue.to(Device::cpu),
                 hl = slow.to(Device::cpu);
    int64_t master_diffs = 0, value_diffs = 0;
    for (int64_t i = lo; i < hi; ++i) {
      const float joined = join_master(hv.data<bf16>()[i], hl.data<uint16_t>()[i]);
      master_diffs += std::memcmp(&joined, &hw.data<float>()[i], 4) != 0;
      uint32_t u;
      std::memcpy(&u, &joined, 4);
      const uint16_t want = (u & 0xffffu) == 0x8000u ? static_cast<uint16_t>(u >> 16) : hfv.data<bf16>()[i].bits;
      value_diffs += hv.data<bf16>()[i].bits != want;
    }
    EXPECT_EQ(master_diffs, 0) << lo;
    EXPECT_EQ(value_diffs, 0) << lo;
  }
}

// The gradient norm's Σ g²: lengths from one element to several passes of the whole grid (20M: each thread then
// takes more than its four packs in flight), starts on and off a 16-byte boundary, a tail past the last pack.
TEST(GpuOps, SumSquaresOverLengthsAndOffsets) {
  REQUIRE_GPU();
  Ops& g = ops_for(Device::cuda);
  const Tensor all = bf16_rounded(randn({20'000'003}));
  for (DType dtype : {DType::bf16, DType::f32}) {
    const Tensor on_gpu = gpu(all, dtype);
    std::vector<Tensor> pieces;
    double each = 0;
    for (auto [lo, hi] : {std::pair<int64_t, int64_t>{0, 1}, {3, 10}, {0, 5000}, {1, 4998}, {0, 20'000'003},
                          {5, 20'000'000}}) {
      const double sum = g.sum_squares(on_gpu.rows(lo, hi));
      EXPECT_NEAR(sum, cpu_ops().sum_squares(all.rows(lo, hi)), 1e-5 * cpu_ops().sum_squares(all.rows(lo, hi)))
          << dtype_name(dtype) << " [" << lo << ", " << hi << ")";
      pieces.push_back(on_gpu.rows(lo, hi));
      each += sum;
    }
    // The list form (the gradient norm's runs, one wait): each piece's sum, added in order, bit for bit.
    pieces.insert(pieces.begin() + 2, on_gpu.rows(7, 7));
    EXPECT_EQ(g.sum_squares(pieces), each) << dtype_name(dtype);
  }
}

namespace {

// Random segments of a [t] token axis (lengths ≥ 1) as cu_seqlens, and the longest one.
std::pair<Tensor, int64_t> random_segments(int64_t t, int pieces) {
  std::vector<int32_t> cu{0};
  std::uniform_int_distribution<int64_t> cut(1, t - 1);
  std::vector<int64_t> cuts;
  for (int i = 0; i + 1 < pieces; ++i) cuts.push_back(cut(rng()));
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  for (int64_t c : cuts) cu.push_back(static_cast<int32_t>(c));
  cu.push_back(static_cast<int32_t>(t));
  int64_t longest = 0;
  for (size_t i = 1; i < cu.size(); ++i) longest = std::max<int64_t>(longest, cu[i] - cu[i - 1]);
  return {Tensor::from_vector(cu, {static_cast<int64_t>(cu.size())}), longest};
}

void check_attention(int64_t t, int64_t heads, int64_t kv_heads, int64_t d, int64_t window, int pieces,
                     bool causal = true) {
  const Tensor q = bf16_rounded(randn({t, heads, d})), k = bf16_rounded(randn({t, kv_heads, d})),
               v = bf16_rounded(randn({t, kv_heads, d})), dout = bf16_rounded(randn({t, heads, d}));
  const auto [cu, longest] = random_segments(t, pieces);
  AttentionParams p{heads, kv_heads, d, window, 1.0 / std::sqrt(double(d)), longest, causal};
  Tensor out = Tensor::empty({t, heads, d}, DType::f32), lse = Tensor::empty({heads, t}, DType::f32);
  cpu_ops().attention_forward(out, lse, q, k, v, cu, p);
  Tensor dq = Tensor::empty(q.shape(), DType::f32), dk = Tensor::empty(k.shape(), DType::f32),
         dv = Tensor::empty(v.shape(), DType::f32);
  cpu_ops().attention_backward(dq, dk, dv, dout, q, k, v, out, lse, cu, p);
  Ops& g = ops_for(Device::cuda);
  const std::string what = str("t ", t, " heads ", heads, "/", kv_heads, " d ", d, " window ", window, " segments ",
                               cu.numel() - 1, causal ? "" : " no mask");
  Tensor gout = poisoned(out.shape(), DType::bf16), glse = poisoned(lse.shape(), DType::f32);
  const Tensor gq = gpu(q), gk = gpu(k), gv = gpu(v), gcu = cu.to(Device::cuda);
  g.attention_forward(gout, glse, gq, gk, gv, gcu, p);
  EXPECT_LT(rel_error(gout, out), 1e-2) << what;
  EXPECT_LT(rel_error(glse, lse), 1e-3) << what;
  // Both backward forms (the default adds dQ up in scheduling order); the deterministic one must
  // give the same bits on a second call.
  for (const bool deterministic : {false, true}) {
    AttentionParams pb = p;
    pb.deterministic = deterministic;
    const std::string form = deterministic ? ", deterministic" : ", default";
    std::vector<Tensor> first;
    for (int call = 0; call < (deterministic ? 2 : 1); ++call) {
      Tensor gdq = poisoned(q.shape(), DType::bf16), gdk = poisoned(k.shape(), DType::bf16),
             gdv = poisoned(v.shape(), DType::bf16);
      g.attention_backward(gdq, gdk, gdv, gpu(dout), gq, gk, gv, gout, glse, gcu, pb);
      EXPECT_LT(rel_error(gdq, dq), 2e-2) << what << form;
      EXPECT_LT(rel_error(gdk, dk), 2e-2) << what << form;
      EXPECT_LT(rel_error(gdv, dv), 2e-2) << what << form;
      if (call == 0) first = {gdq, gdk, gdv};
      else
        EXPECT_TRUE(same_bits(gdq, first[0]) && same_bits(gdk, first[1]) && same_bits(gdv, first[2])) << what;
    }
  }
}

}  // namespace

TEST(GpuOps, AttentionCausalGqaWindowsAndDocuments) {
  REQUIRE_GPU();
  check_attention(300, 8, 2, 128, 0, 1);
  check_attention(300, 8, 2, 128, 0, 4);
  check_attention(257, 4, 4, 64, 0, 3);
  check_attention(400, 6, 1, 64, 37, 2);
  check_attention(200, 4, 2, 128, 100, 5);
  check_attention(64, 2, 1, 32, 0, 2);  // a head dim the tensor-core kernel does not take
  // Several waves of query blocks on an H100/H200 (more than it has SMs), at both head dims.
  check_attention(1024, 16, 4, 128, 0, 3);
  check_attention(1024, 24, 8, 64, 300, 2);
  // Head dim 64's 192-row query blocks without a window: warpgroups that see fewer key tiles than their block, or
  // (past a segment's end) none.
  check_attention(1000, 8, 2, 64, 0, 3);
}

// Context parallelism's pieces: attention with no causal mask (tensor-core and reference kernels) and the merge.
TEST(GpuOps, AttentionWithoutMaskAndMerge) {
  REQUIRE_GPU();
  check_attention(300, 8, 2, 128, 0, 3, false);
  check_attention(257, 4, 4, 64, 0, 1, false);
  check_attention(64, 2, 1, 32, 0, 2, false);
  const int64_t t = 100, heads = 4, d = 64;
  const Tensor out1 = bf16_rounded(randn({t, heads, d})), out2 = bf16_rounded(randn({t, heads, d}));
  const Tensor lse1 = randn({heads, t}), lse2 = randn({heads, t});
  Tensor out = out1.clone(), lse = lse1.clone();
  cpu_ops().attention_merge(out, lse, out2, lse2);
  Tensor gout = gpu(out1), glse = lse1.to(Device::cuda);
  ops_for(Device::cuda).attention_merge(gout, glse, gpu(out2), lse2.to(Device::cuda));
  EXPECT_LT(rel_error(gout, out), 1e-2);
  EXPECT_LT(rel_error(glse, lse), 1e-5);
}
