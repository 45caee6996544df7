// weft/test/unit/ops_test.cpp v6 — the CPU reference ops: backward ops against central finite differences in
// double precision (step 1e-6: truncation error ~h² ≈ 1e-12 and rounding ~ε/h ≈ 1e-10, so a relative
// agreement of 1e-6 leaves a wide margin while still catching any wrong term), GEMM against a naive product,
// AdamW against its closed form.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <random>

#include "ops/cpu/cpu_ops.h"
#include "test_util.h"

using namespace weft;
using weft::test::expect_gradient;
using weft::test::random_tensor;

namespace {

Ops& cpu() { return cpu_ops(); }

double dot(const Tensor& a, const Tensor& b) {
  double s = 0;
  for (int64_t i = 0; i < a.numel(); ++i) s += a.data<double>()[i] * b.data<double>()[i];
  return s;
}

// attention_backward against finite differences of Σ r·attention(q, k, v), for q, k and v.
void expect_attention_gradients(Tensor& q, Tensor& k, Tensor& v, const Tensor& r, const Tensor& cu,
                                const AttentionParams& p, std::mt19937& gen, const std::string& what) {
  Tensor out = Tensor::empty(q.shape(), DType::f64), lse = Tensor::empty({p.num_heads, q.shape()[0]}, DType::f64);
  auto loss = [&] {
    cpu().attention_forward(out, lse, q, k, v, cu, p);
    return dot(out, r);
  };
  loss();
  Tensor dq = Tensor::empty(q.shape(), DType::f64), dk = Tensor::empty(k.shape(), DType::f64),
         dv = Tensor::empty(v.shape(), DType::f64);
  cpu().attention_backward(dq, dk, dv, r, q, k, v, out, lse, cu, p);
  expect_gradient(q, loss, dq, what + " dq", gen);
  expect_gradient(k, loss, dk, what + " dk", gen);
  expect_gradient(v, loss, dv, what + " dv", gen);
}

}  // namespace

TEST(CpuGemm, MatchesNaiveProductForEveryTransposeAndRaggedSizes) {
  std::mt19937 gen(11);
  for (auto [m, n, k] : {std::tuple{7, 19, 300}, {1, 1, 1}, {33, 17, 5}, {4, 16, 256}, {65, 3, 513}})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (DType dt : {DType::f32, DType::f64}) {
          Tensor a = random_tensor(ta ? Shape{k, m} : Shape{m, k}, dt, gen);
          Tensor b = random_tensor(tb ? Shape{n, k} : Shape{k, n}, dt, gen);
          Tensor c = random_tensor({m, n}, dt, gen);
          const std::vector<double> av = a.to_doubles(), bv = b.to_doubles(), c0 = c.to_doubles();
          cpu().gemm(c, a, ta, b, tb, 0.5, 2.0);
          const std::vector<double> got = c.to_doubles();
          for (int i = 0; i < m; ++i)
            for (int j = 0; j < n; ++j) {
              double ref = 0;
              for (int p = 0; p < k; ++p) ref += av[ta ? p * m + i : i * k + p] * bv[tb ? j * k + p : p * n + j];
              ref = 0.5 * ref + 2.0 * c0[i * n + j];
              const double tol = dt == DType::f32 ? 1e-4 * std::sqrt(double(k)) : 1e-12 * k;
              ASSERT_NEAR(got[i * n + j], ref, tol) << m << "x" << n << "x" << k << " ta " << ta << " tb " << tb;
            }
        }
}

// gemm_add writes the product plus the residual into its output and leaves the residual as it was; a residual of
// another shape is refused.
TEST(CpuGemm, GemmAddAddsTheResidual) {
  std::mt19937 gen(12);
  const Tensor a = random_tensor({9, 40}, DType::f64, gen), b = random_tensor({13, 40}, DType::f64, gen);
  const Tensor r = random_tensor({9, 13}, DType::f64, gen);
  const std::vector<double> r0 = r.to_doubles();
  Tensor ref = r.clone(), d = Tensor::empty({9, 13}, DType::f64);
  cpu().gemm(ref, a, false, b, true, 1.0, 1.0);
  cpu().gemm_add(d, a, false, b, true, r);
  const std::vector<double> got = d.to_doubles(), want = ref.to_doubles();
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-12) << i;
  EXPECT_EQ(r.to_doubles(), r0);
  const Tensor wrong = random_tensor({13, 9}, DType::f64, gen);
  EXPECT_THROW(cpu().gemm_add(d, a, false, b, true, wrong), Error);
}

TEST(CpuOps, RmsNormBackward) {
  std::mt19937 gen(1);
  Tensor x = random_tensor({5, 16}, DType::f64, gen), w = random_tensor({16}, DType::f64, gen);
  const Tensor r = random_tensor({5, 16}, DType::f64, gen);
  Tensor y = Tensor::empty({5, 16}, DType::f64), rstd = Tensor::empty({5}, DType::f64);
  auto loss = [&] {
    cpu().rmsnorm_forward(y, rstd, x, w, 1e-5);
    return dot(y, r);
  };
  loss();
  Tensor dx = Tensor::zeros({5, 16}, DType::f64), dw = Tensor::zeros({16}, DType::f64);
  cpu().rmsnorm_backward(dx, dw, r, x, w, rstd, false);
  expect_gradient(x, loss, dx, "rmsnorm dx", gen);
  expect_gradient(w, loss, dw, "rmsnorm dw", gen);
  // accumulate = true adds to what dx held.
  Tensor acc = Tensor::zeros({5, 16}, DType::f64);
  cpu().add(acc, dx, 1.0);
  Tensor dw2 = Tensor::zeros({16}, DType::f64);
  cpu().rmsnorm_backward(acc, dw2, r, x, w, rstd, true);
  for (int64_t i = 0; i < acc.numel(); ++i) EXPECT_NEAR(acc.data<double>()[i], 2 * dx.data<double>()[i], 1e-12);
}

TEST(CpuOps, RopeBackwardIsInverseRotation) {
  std::mt19937 gen(2);
  const int64_t t = 6, heads = 3, d = 8, positions = 20;
  Tensor x = random_tensor({t, heads, d}, DType::f64, gen);
  const Tensor r = random_tensor({t, heads, d}, DType::f64, gen);
  Tensor pos = Tensor::empty({t}, DType::i32);
  for (int64_t i = 0; i < t; ++i) pos.data<int32_t>()[i] = static_cast<int32_t>((i * 7) % positions);
  Tensor cs = Tensor::empty({positions, d / 2}, DType::f64), sn = Tensor::empty({positions, d / 2}, DType::f64);
  for (int64_t p = 0; p < positions; ++p)
    for (int64_t i = 0; i < d / 2; ++i) {
      const double ang = double(p) * std::pow(10000.0, -2.0 * double(i) / double(d));
      cs.data<double>()[p * d / 2 + i] = std::cos(ang);
      sn.data<double>()[p * d / 2 + i] = std::sin(ang);
    }
  auto loss = [&] {
    Tensor y = x.clone();
    cpu().rope(y, pos, cs, sn, false);
    return dot(y, r);
  };
  Tensor dx = r.clone();
  cpu().rope(dx, pos, cs, sn, true);
  expect_gradient(x, loss, dx, "rope dx", gen);
  // forward then inverse is the identity
  Tensor y = x.clone();
  cpu().rope(y, pos, cs, sn, false);
  cpu().rope(y, pos, cs, sn, true);
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_NEAR(y.data<double>()[i], x.data<double>()[i], 1e-12);
}

TEST(CpuOps, SwiGluBackward) {
  std::mt19937 gen(3);
  Tensor in = random_tensor({5, 14}, DType::f64, gen, 2.0);
  const Tensor r = random_tensor({5, 7}, DType::f64, gen);
  Tensor out = Tensor::empty({5, 7}, DType::f64);
  auto loss = [&] {
    cpu().swiglu_forward(out, in);
    return dot(out, r);
  };
  Tensor din = Tensor::empty({5, 14}, DType::f64);
  cpu().swiglu_backward(din, r, in);
  expect_gradient(in, loss, din, "swiglu", gen, 70);
}

TEST(CpuOps, EmbeddingForwardBackwardOnAShard) {
  std::mt19937 gen(4);
  Tensor table = random_tensor({6, 5}, DType::f64, gen);
  Tensor ids = Tensor::from_vector<int32_t>({10, 3, 12, 15, 10, 11}, {6});  // shard holds ids [10, 16)
  const Tensor r = random_tensor({6, 5}, DType::f64, gen);
  Tensor out = Tensor::empty({6, 5}, DType::f64);
  auto loss = [&] {
    cpu().embedding_forward(out, ids, table, 10);
    return dot(out, r);
  };
  loss();
  for (int64_t c = 0; c < 5; ++c) EXPECT_EQ(out.data<double>()[1 * 5 + c], 0.0);  // id 3 is not on this shard
  Tensor dtable = Tensor::zeros({6, 5}, DType::f64);
  cpu().embedding_backward(dtable, r, ids, 10);
  expect_gradient(table, loss, dtable, "embedding", gen, 30);
}

TEST(CpuOps, CrossEntropyWithPaddedColumns) {
  std::mt19937 gen(5);
  const int64_t t = 6, cols = 11, valid = 9;
  Tensor logits = random_tensor({t, cols}, DType::f64, gen, 3.0);
  Tensor labels = Tensor::from_vector<int32_t>({0, 8, 3, 5, 1, 7}, {t});
  const Tensor scale = random_tensor({t}, DType::f64, gen);
  Tensor mx = Tensor::empty({t}, DType::f64), se = Tensor::empty({t}, DType::f64), tl = Tensor::empty({t}, DType::f64),
         loss_t = Tensor::empty({t}, DType::f64);
  auto loss = [&] {
    cpu().cross_entropy_stats(mx, se, tl, logits, labels, 0, valid);
    cpu().cross_entropy_loss(loss_t, mx, se, tl);
    return dot(loss_t, scale);
  };
  loss();
  // Reference: log-softmax over the valid columns only.
  for (int64_t r = 0; r < t; ++r) {
    double m = -1e300, s = 0;
    for (int64_t c = 0; c < valid; ++c) m = std::max(m, logits.data<double>()[r * cols + c]);
    for (int64_t c = 0; c < valid; ++c) s += std::exp(logits.data<double>()[r * cols + c] - m);
    const double ref = std::log(s) + m - logits.data<double>()[r * cols + labels.data<int32_t>()[r]];
    EXPECT_NEAR(loss_t.data<double>()[r], ref, 1e-12);
  }
  Tensor dlogits = Tensor::empty({t, cols}, DType::f64);
  cpu().cross_entropy_backward(dlogits, logits, mx, se, labels, scale, 0, valid);
  expect_gradient(logits, loss, dlogits, "cross-entropy", gen, 66);
  for (int64_t r = 0; r < t; ++r)
    for (int64_t c = valid; c < cols; ++c) EXPECT_EQ(dlogits.data<double>()[r * cols + c], 0.0);
}

// Two vocab shards' statistics, each moved onto the max of both (the TP all-reduce's part), sum to the whole row's.
TEST(CpuOps, CrossEntropyShardStatisticsCombine) {
  std::mt19937 gen(15);
  const int64_t t = 5, cols = 12, split = 7;
  const Tensor logits = random_tensor({t, cols}, DType::f64, gen, 4.0);
  const Tensor labels = Tensor::from_vector<int32_t>({0, 6, 7, 11, 3}, {t});
  const auto stats = [&](const Tensor& part, int64_t start) {
    std::array<Tensor, 3> st{Tensor::empty({t}, DType::f64), Tensor::empty({t}, DType::f64),
                             Tensor::empty({t}, DType::f64)};
    cpu().cross_entropy_stats(st[0], st[1], st[2], part, labels, start, part.size(1));
    return st;
  };
  Tensor left = Tensor::empty({t, split}, DType::f64), right = Tensor::empty({t, cols - split}, DType::f64);
  for (int64_t r = 0; r < t; ++r)
    for (int64_t c = 0; c < cols; ++c)
      (c < split ? left.data<double>()[r * split + c] : right.data<double>()[r * (cols - split) + c - split]) =
          logits.data<double>()[r * cols + c];
  const auto whole = stats(logits, 0);
  auto a = stats(left, 0), b = stats(right, split);
  Tensor row_max = Tensor::empty({t}, DType::f64);
  for (int64_t r = 0; r < t; ++r)
    row_max.data<double>()[r] = std::max(a[0].data<double>()[r], b[0].data<double>()[r]);
  cpu().cross_entropy_rescale(a[1], a[0], row_max);
  cpu().cross_entropy_rescale(b[1], b[0], row_max);
  for (int64_t r = 0; r < t; ++r) {
    EXPECT_EQ(row_max.data<double>()[r], whole[0].data<double>()[r]);
    EXPECT_NEAR(a[1].data<double>()[r] + b[1].data<double>()[r], whole[1].data<double>()[r],
                1e-12 * whole[1].data<double>()[r]);
    EXPECT_EQ(a[2].data<double>()[r] + b[2].data<double>()[r], whole[2].data<double>()[r]);
  }
}

TEST(CpuOps, QkvMergeIsTheAdjointOfSplit) {
  std::mt19937 gen(6);
  const int64_t t = 3, groups = 2, qpg = 3, d = 4;
  const Tensor qkv = random_tensor({t, groups * (qpg + 2) * d}, DType::f64, gen);
  Tensor q = Tensor::empty({t, groups * qpg, d}, DType::f64), k = Tensor::empty({t, groups, d}, DType::f64),
         v = Tensor::empty({t, groups, d}, DType::f64);
  // RoPE tables for positions 0..2 whose position 0 is no rotation; token 0 sits at position 0.
  Tensor cs = random_tensor({3, d / 2}, DType::f64, gen), sn = random_tensor({3, d / 2}, DType::f64, gen);
  for (int64_t i = 0; i < d / 2; ++i) cs.data<double>()[i] = 1, sn.data<double>()[i] = 0;
  const Tensor pos = Tensor::from_vector<int32_t>({0, 2, 1}, {3});
  cpu().qkv_split(q, k, v, qkv, pos, cs, sn);
  // Megatron layout: group g of token t starts at (t·groups + g)·(qpg+2)·d with its q heads, then k, then v.
  const double* in = qkv.data<double>();
  EXPECT_EQ(q.data<double>()[(1 * qpg + 2) * d], in[1 * 5 * d + 2 * d]);
  EXPECT_EQ(k.data<double>()[1 * d + 1], in[1 * 5 * d + 3 * d + 1]);
  EXPECT_EQ(v.data<double>()[(1 * groups + 1) * d], in[(1 * groups + 1) * 5 * d + 4 * d]);
  // Token 1 (position 2): q and k rotated as rope does (rotate-half pairs (i, i + d/2)), v as it was.
  const double* c = cs.data<double>() + 2 * d / 2;
  const double* s = sn.data<double>() + 2 * d / 2;
  const double* kin = in + (1 * groups + 1) * 5 * d + 3 * d;
  const double* kout = k.data<double>() + (1 * groups + 1) * d;
  EXPECT_NEAR(kout[1], kin[1] * c[1] - kin[1 + d / 2] * s[1], 1e-15);
  EXPECT_NEAR(kout[1 + d / 2], kin[1 + d / 2] * c[1] + kin[1] * s[1], 1e-15);
  EXPECT_EQ(v.data<double>()[(1 * groups + 1) * d + 1], in[(1 * groups + 1) * 5 * d + 4 * d + 1]);
  const Tensor dq = random_tensor(q.shape(), DType::f64, gen), dk = random_tensor(k.shape(), DType::f64, gen),
               dv = random_tensor(v.shape(), DType::f64, gen);
  const Tensor dq0 = dq.clone();
  Tensor dqkv = Tensor::empty(qkv.shape(), DType::f64);
  cpu().qkv_merge(dqkv, dq, dk, dv, pos, cs, sn);
  EXPECT_EQ(dq.to_doubles(), dq0.to_doubles());  // the inputs stay as they are
  EXPECT_NEAR(dot(q, dq) + dot(k, dk) + dot(v, dv), dot(qkv, dqkv), 1e-10);
}

TEST(CpuOps, AttentionBackwardWithGqaWindowAndDocuments) {
  for (int64_t window : {0, 3}) {
    std::mt19937 gen(7 + window);
    const int64_t t = 12, h = 4, hk = 2, d = 8;
    Tensor q = random_tensor({t, h, d}, DType::f64, gen), k = random_tensor({t, hk, d}, DType::f64, gen),
           v = random_tensor({t, hk, d}, DType::f64, gen);
    const Tensor r = random_tensor({t, h, d}, DType::f64, gen);
    const Tensor cu = Tensor::from_vector<int32_t>({0, 5, 12}, {3});  // two documents
    AttentionParams p{h, hk, d, window, 1.0 / std::sqrt(double(d))};
    Tensor out = Tensor::empty({t, h, d}, DType::f64), lse = Tensor::empty({h, t}, DType::f64);
    cpu().attention_forward(out, lse, q, k, v, cu, p);
    // The first token of each document sees only itself: its output is its own value vector.
    for (int64_t head = 0; head < h; ++head)
      for (int64_t i = 0; i < d; ++i)
        EXPECT_NEAR(out.data<double>()[(5 * h + head) * d + i], v.data<double>()[(5 * hk + head / 2) * d + i], 1e-12);
    expect_attention_gradients(q, k, v, r, cu, p, gen, "attention");
  }
}

// Context parallelism's building blocks: attention without the causal mask, and merging two partial results.
TEST(CpuOps, FullAttentionAndMergeEqualAttentionOverTheUnionOfKeys) {
  std::mt19937 gen(17);
  const int64_t t = 6, h = 4, hk = 2, d = 8;
  const std::vector<int32_t> bounds{0, 2, 6};
  const Tensor cu = Tensor::from_vector<int32_t>(bounds, {3});
  Tensor q = random_tensor({t, h, d}, DType::f64, gen);
  Tensor k1 = random_tensor({t, hk, d}, DType::f64, gen), v1 = random_tensor({t, hk, d}, DType::f64, gen);
  const Tensor k2 = random_tensor({t, hk, d}, DType::f64, gen), v2 = random_tensor({t, hk, d}, DType::f64, gen);
  AttentionParams p{h, hk, d, 0, 1.0 / std::sqrt(double(d))};
  p.causal = false;
  Tensor out = Tensor::empty({t, h, d}, DType::f64), lse = Tensor::empty({h, t}, DType::f64);
  Tensor out2 = Tensor::empty({t, h, d}, DType::f64), lse2 = Tensor::empty({h, t}, DType::f64);
  cpu().attention_forward(out, lse, q, k1, v1, cu, p);
  cpu().attention_forward(out2, lse2, q, k2, v2, cu, p);
  cpu().attention_merge(out, lse, out2, lse2);
  // Softmax over both key sets of the query's segment, written out.
  for (int64_t s = 0; s < 2; ++s)
    for (int64_t i = bounds[s]; i < bounds[s + 1]; ++i)
      for (int64_t head = 0; head < h; ++head) {
        std::vector<double> score, acc(d, 0.0);
        std::vector<const double*> values;
        for (const auto& [k, v] : {std::pair<const Tensor*, const Tensor*>{&k1, &v1}, {&k2, &v2}})
          for (int64_t j = bounds[s]; j < bounds[s + 1]; ++j) {
            double dot_qk = 0;
            for (int64_t e = 0; e < d; ++e)
              dot_qk += q.data<double>()[(i * h + head) * d + e] * k->data<double>()[(j * hk + head / 2) * d + e];
            score.push_back(dot_qk * p.scale);
            values.push_back(v->data<double>() + (j * hk + head / 2) * d);
          }
        double sum = 0;
        for (size_t j = 0; j < score.size(); ++j) {
          sum += std::exp(score[j]);
          for (int64_t e = 0; e < d; ++e) acc[e] += std::exp(score[j]) * values[j][e];
        }
        EXPECT_NEAR(lse.data<double>()[head * t + i], std::log(sum), 1e-12);
        for (int64_t e = 0; e < d; ++e) EXPECT_NEAR(out.data<double>()[(i * h + head) * d + e], acc[e] / sum, 1e-12);
      }
  // The backward without the mask, against finite differences.
  const Tensor r = random_tensor({t, h, d}, DType::f64, gen);
  expect_attention_gradients(q, k1, v1, r, cu, p, gen, "full attention");
}

// Σ x² over a list of tensors: each tensor's sum, added in list order (what the gradient norm's runs rely on).
TEST(CpuOps, SumSquaresOverAListAddsEachTensorsSumInOrder) {
  std::mt19937 gen(11);
  const Tensor a = random_tensor({1000}, DType::f32, gen), b = random_tensor({17}, DType::f32, gen);
  const Tensor none = Tensor::empty({0}, DType::f32);
  double want = 0;
  for (const Tensor& x : {a, none, b}) {
    double s = 0;
    for (int64_t i = 0; i < x.numel(); ++i) s += double(x.data<float>()[i]) * double(x.data<float>()[i]);
    want += s;
  }
  EXPECT_EQ(cpu().sum_squares({a, none, b}), want);
  EXPECT_EQ(cpu().sum_squares(a) + cpu().sum_squares(b), want);
  EXPECT_EQ(cpu().sum_squares(std::vector<Tensor>{}), 0.0);
  EXPECT_GT(want, 0.0);
}

TEST(CpuOps, AdamWMatchesClosedForm) {
  std::mt19937 gen(8);
  Tensor w = random_tensor({10}, DType::f64, gen), m = Tensor::zeros({10}, DType::f64),
         v = Tensor::zeros({10}, DType::f64), value = Tensor::zeros({10}, DType::f32);
  const Tensor w0 = w.clone();
  const double clip = 0.25;
  const AdamWParams p{1e-2, 0.9, 0.95, 1e-8, 0.1, 1, clip};
  const Tensor g = random_tensor({10}, DType::f64, gen);
  cpu().adamw(w, value, g, m, v, p);
  for (int i = 0; i < 10; ++i) {
    const double gi = clip * g.data<double>()[i];
    EXPECT_NEAR(m.data<double>()[i], 0.1 * gi, 1e-15);
    const double mh = (0.1 * gi) / 0.1, vh = (0.05 * gi * gi) / 0.05;
    const double ref = w0.data<double>()[i] * (1 - 1e-2 * 0.1) - 1e-2 * mh / (std::sqrt(vh) + 1e-8);
    EXPECT_NEAR(w.data<double>()[i], ref, 1e-12);
    EXPECT_EQ(value.data<float>()[i], static_cast<float>(w.data<double>()[i]));  // the model copy, rounded
  }
}

// bf16 moments: stored rounded to nearest, the step's update taken from the values before rounding, and the next
// step starting from the rounded ones.
TEST(CpuOps, AdamWWithBf16Moments) {
  std::mt19937 gen(9);
  const int n = 64;
  const Tensor w0 = random_tensor({n}, DType::f32, gen), g1 = random_tensor({n}, DType::f32, gen),
               g2 = random_tensor({n}, DType::f32, gen);
  Tensor w = w0.clone(), value = Tensor::zeros({n}, DType::bf16);
  Tensor m = Tensor::zeros({n}, DType::bf16), v = Tensor::zeros({n}, DType::bf16);
  const auto at = [](const Tensor& t, int i) { return t.to_doubles()[i]; };
  const auto rounded = [](double x) { return double(bf16::from_float(float(x)).to_float()); };
  std::vector<double> m1(n), v1(n), w1(n);
  AdamWParams p{1e-2, 0.9, 0.95, 1e-8, 0.1, 1, 1.0};
  cpu().adamw(w, value, g1, m, v, p);
  for (int i = 0; i < n; ++i) {
    const double gi = at(g1, i), mi = 0.1 * gi, vi = 0.05 * gi * gi;
    EXPECT_NEAR(at(m, i), rounded(mi), std::abs(mi) * 1e-6) << i;
    EXPECT_NEAR(at(v, i), rounded(vi), std::abs(vi) * 1e-6) << i;
    // The update from the unrounded moments: the rounded ones would move it by up to 2^-8 of its size.
    w1[i] = at(w0, i) * (1 - 1e-3) - 1e-2 * (mi / 0.1) / (std::sqrt(vi / 0.05) + 1e-8);
    EXPECT_NEAR(at(w, i), w1[i], 1e-6 + 1e-4 * 1e-2) << i;
    m1[i] = at(m, i);
    v1[i] = at(v, i);
  }
  p.step = 2;
  cpu().adamw(w, value, g2, m, v, p);
  for (int i = 0; i < n; ++i) {
    const double gi = at(g2, i), mi = 0.9 * m1[i] + 0.1 * gi, vi = 0.95 * v1[i] + 0.05 * gi * gi;
    EXPECT_NEAR(at(m, i), rounded(mi), std::abs(mi) * 1e-6) << i;
    const double ref = w1[i] * (1 - 1e-3) - 1e-2 * (mi / 0.19) / (std::sqrt(vi / (1 - 0.95 * 0.95)) + 1e-8);
    EXPECT_NEAR(at(w, i), ref, 1e-5) << i;
    EXPECT_EQ(at(value, i), rounded(at(w, i))) << i;  // the bf16 model copy
  }
}
